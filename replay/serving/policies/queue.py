"""Queue-order policies: which waiting request is admitted next, and whether it may displace a running one.

A policy maps a request to a sort key (smaller runs first); ties break by arrival then index, so every
order is total and deterministic. Length-aware policies read `Request.predicted_output_tokens`, which
the harness fills once per trace: from a predictor, or from the truth when the run is explicitly
flagged as an oracle run (the scheduler cannot tell the difference and never sees true lengths).

A *preemptive* policy may preempt a running request whose key is worse than the best waiting one
when the latter cannot otherwise be admitted; `tokens_until_key_change` tells the fast path how many
decode steps a running request's key stays fixed (None: it never gets worse while running).
"""

from __future__ import annotations

from typing import Protocol

from replay.serving.registry import Registry
from replay.serving.request import Request


class QueuePolicy(Protocol):
    """Orders requests. Implementations are small, pure and stateless."""

    name: str
    preemptive: bool
    """True if a better waiting request may displace a running one."""
    needs_predictions: bool
    """True if the key reads `predicted_output_tokens` (the harness must provide them)."""
    arrival_ordered: bool
    """True if a newcomer always sorts after every queued request (lets decode runs ignore arrivals)."""

    def key(self, req: Request) -> tuple:
        """Sort key; smaller is served first."""
        ...

    def tokens_until_key_change(self, req: Request) -> int | None:
        """Decode steps before a running request's key may get worse (None: never)."""
        ...


QUEUE_POLICIES: Registry[QueuePolicy] = Registry("queue policy")


class _Base:
    name = "base"
    preemptive = False
    needs_predictions = False
    arrival_ordered = False

    def tokens_until_key_change(self, req: Request) -> int | None:
        return None


@QUEUE_POLICIES.register("fcfs")
class Fcfs(_Base):
    """First come, first served (vLLM's default)."""

    name = "fcfs"
    arrival_ordered = True

    def key(self, req: Request) -> tuple:
        return (req.arrival_s, req.idx)


@QUEUE_POLICIES.register("sjf")
class Sjf(_Base):
    """Shortest job first on predicted output length, non-preemptive (the length-prediction papers' SJF)."""

    name = "sjf"
    needs_predictions = True

    def key(self, req: Request) -> tuple:
        return (req.predicted_output_tokens, req.arrival_s, req.idx)


@QUEUE_POLICIES.register("srpt")
class Srpt(_Base):
    """Shortest remaining predicted output first, preemptive.

    Remaining = predicted output - generated so far (floored at 0 when the prediction was too short).
    A running request's key only improves as it generates, so the fast path needs no extra bound.
    """

    name = "srpt"
    preemptive = True
    needs_predictions = True

    def key(self, req: Request) -> tuple:
        return (max(req.predicted_output_tokens - req.num_output_tokens, 0.0), req.arrival_s, req.idx)


@QUEUE_POLICIES.register("priority")
class PriorityClasses(_Base):
    """Strict priority classes (smaller `priority` first), FCFS within a class; preemptive."""

    name = "priority"
    preemptive = True

    def key(self, req: Request) -> tuple:
        return (req.priority, req.arrival_s, req.idx)


@QUEUE_POLICIES.register("mlfq")
class SkipJoinMlfq(_Base):
    """FastServe's skip-join multi-level feedback queue, on output tokens as the unit of service.

    Level i has quantum `base_quantum_tokens * ratio**i`. A request joins the highest level whose
    quantum covers its prefill (prompt tokens / `prefill_tokens_per_quantum_token`: prefill is that
    many times cheaper per token than decode), instead of always joining level 0, and is demoted one
    level each time its attained output exceeds the cumulative quanta of the levels it has passed.
    Preemptive: a better-level waiting request displaces the worst running one.
    """

    name = "mlfq"
    preemptive = True

    def __init__(self, base_quantum_tokens: int = 32, ratio: float = 2.0, num_levels: int = 8,
                 prefill_tokens_per_quantum_token: float = 16.0) -> None:
        if base_quantum_tokens < 1 or ratio <= 1 or num_levels < 1 or prefill_tokens_per_quantum_token <= 0:
            raise ValueError("mlfq needs base_quantum_tokens >= 1, ratio > 1, num_levels >= 1, prefill ratio > 0")
        self.base_quantum_tokens = base_quantum_tokens
        self.ratio = ratio
        self.num_levels = num_levels
        self.prefill_tokens_per_quantum_token = prefill_tokens_per_quantum_token
        # _quanta[i]: output tokens a request may attain at level i before it is demoted.
        q = [int(base_quantum_tokens * ratio**i) for i in range(num_levels)]
        self._quanta = q

    def _join_level(self, req: Request) -> int:
        prefill_cost = req.num_prompt_tokens / self.prefill_tokens_per_quantum_token
        for level, quantum in enumerate(self._quanta):
            if prefill_cost <= quantum:
                return level
        return self.num_levels - 1

    def _level_and_left(self, req: Request) -> tuple[int, int | None]:
        level = self._join_level(req)
        attained = req.num_output_tokens
        while level < self.num_levels - 1:
            quantum = self._quanta[level]
            if attained < quantum:
                return level, quantum - attained
            attained -= quantum
            level += 1
        return level, None

    def key(self, req: Request) -> tuple:
        return (self._level_and_left(req)[0], req.arrival_s, req.idx)

    def tokens_until_key_change(self, req: Request) -> int | None:
        return self._level_and_left(req)[1]
