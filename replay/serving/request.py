"""A request as the scheduler sees it: prompt length, tokens computed so far, and status.

The true output length is NOT here: only the executor knows it (DESIGN convention 3). The
scheduler learns that a request finished from `StepResult.finished`.
"""

from __future__ import annotations

from enum import IntEnum


class RequestStatus(IntEnum):
    """Ordered lifecycle: a request only moves forward, except RUNNING <-> PREEMPTED, and RUNNING -> WAITING when
    it is handed to another instance with its KV (disaggregated decode, migration: see `Scheduler.park`)."""

    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2
    FINISHED = 3
    REJECTED = 4

    @property
    def is_done(self) -> bool:
        return self >= RequestStatus.FINISHED


class Request:
    """Scheduler-side state of one request. `idx` is its position in the replayed workload."""

    __slots__ = (
        "idx", "arrival_s", "num_prompt_tokens", "num_output_tokens", "num_computed_tokens",
        "status", "block_table", "block_hashes", "num_cached_hash_blocks", "priority",
        "predicted_output_tokens", "policy_key", "num_preemptions", "swapped_blocks",
        "first_scheduled_s", "first_token_s", "finish_s", "reject_reason", "prefix_hit_tokens",
        "token_segments", "admit_seq", "replica", "finish_reason", "kv_imported",
    )

    def __init__(
        self,
        idx: int,
        arrival_s: float,
        num_prompt_tokens: int,
        *,
        priority: int = 0,
        predicted_output_tokens: float | None = None,
        block_hashes: list | None = None,
    ) -> None:
        self.idx = idx
        self.arrival_s = arrival_s
        self.num_prompt_tokens = num_prompt_tokens
        self.num_output_tokens = 0
        """Output tokens generated so far."""
        self.num_computed_tokens = 0
        """Tokens whose KV is in GPU memory (reset to 0 by a recompute preemption)."""
        self.status = RequestStatus.WAITING
        self.block_table: list[int] = []
        self.block_hashes = block_hashes
        """Prefix-cache keys of the prompt's full KV blocks (None: not cacheable)."""
        self.num_cached_hash_blocks = 0
        """Leading blocks of block_table that are registered in the prefix cache."""
        self.priority = priority
        self.predicted_output_tokens = predicted_output_tokens
        self.policy_key: tuple = ()
        self.num_preemptions = 0
        self.swapped_blocks = 0
        """Blocks held in the CPU swap pool while preempted by swap (0 otherwise)."""
        self.first_scheduled_s: float | None = None
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.reject_reason: str | None = None
        self.prefix_hit_tokens = 0
        self.token_segments: list[list[int]] = []
        """[first step, last step] index ranges, in the replica's step log, of steps that produced a token.

        The scheduler extends the last range when a token comes from the step right after it, and opens a new
        range otherwise (after a preemption, or a prefill-only step that left the decode out). A request handed
        to another instance (`Scheduler.park`) must have its ranges moved aside by the caller first: they index
        the old instance's log."""
        self.admit_seq = 0
        """Order of (re)admission into the running set; victim policies use it."""
        self.replica = 0
        self.finish_reason: str | None = None
        """'stop' (reached its true length) or 'length' (hit max_model_len)."""
        self.kv_imported = False
        """True while queued with the KV of its num_computed_tokens on another instance (`Scheduler.add_imported`):
        admission copies it in instead of recomputing it."""

    @property
    def num_tokens(self) -> int:
        """All tokens known so far: prompt plus generated output."""
        return self.num_prompt_tokens + self.num_output_tokens

    @property
    def num_remaining_prefill(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    def __repr__(self) -> str:
        return (
            f"Request(idx={self.idx}, status={self.status.name}, prompt={self.num_prompt_tokens}, "
            f"out={self.num_output_tokens}, computed={self.num_computed_tokens}, blocks={len(self.block_table)})"
        )
