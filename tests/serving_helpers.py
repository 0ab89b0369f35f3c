"""Helpers for the serving-core tests: build replicas from plain request specs, check every step, read metrics.

A request spec is a `Spec` (arrival, prompt, true output, priority, prefix keys). Runs always build fresh
`Request` objects, so one spec list can be replayed under several configurations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.serving.config import SchedulerConfig
from replay.serving.executors.simulated import SimulatedExecutor
from replay.serving.kv_blocks import blocks_for
from replay.serving.plan import StepPlan
from replay.serving.policies import QUEUE_POLICIES, ROUTERS, VICTIM_POLICIES
from replay.serving.request import Request, RequestStatus
from replay.serving.scheduler import Scheduler
from replay.simulate import Replica, simulate, token_times_s

DONE = (RequestStatus.FINISHED, RequestStatus.REJECTED)


@dataclass(frozen=True)
class Spec:
    """One request of a hand-made or generated workload."""

    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    priority: int = 0
    block_hashes: tuple | None = None
    predicted_output_tokens: float | None = None


class CheckedExecutor:
    """Wraps an executor and checks every plan it is given against the scheduler's limits and state."""

    def __init__(self, inner, cfg: SchedulerConfig, requests: dict[int, Request]) -> None:
        self.inner = inner
        self.cfg = cfg
        self.requests = requests
        self.num_plans = 0
        self.num_decode_runs = 0
        self.num_swapped_blocks = 0

    def execute(self, plan: StepPlan):
        self._check(plan)
        return self.inner.execute(plan)

    def execute_decode_run(self, plan: StepPlan, max_steps: int, stop_at_s: float, now_s: float):
        self._check(plan)
        self.num_decode_runs += 1
        assert plan.is_decode_only and max_steps >= 2
        for c in plan.chunks:
            r = self.requests[c.req]
            assert c.num_tokens == 1 and c.produces_token and r.num_output_tokens >= 1, f"{r} in a decode run"
            assert r.num_tokens + max_steps - 1 <= self.cfg.max_model_len, f"decode run of {max_steps} overruns {r}"
        return self.inner.execute_decode_run(plan, max_steps, stop_at_s, now_s)

    def _check(self, plan: StepPlan) -> None:
        cfg = self.cfg
        self.num_plans += 1
        self.num_swapped_blocks += plan.swap_out_blocks
        assert plan.chunks, "empty plan"
        assert plan.num_tokens <= cfg.max_num_batched_tokens, f"token budget exceeded: {plan.num_tokens}"
        assert len(plan.chunks) <= cfg.max_num_seqs, f"sequence cap exceeded: {len(plan.chunks)}"
        assert plan.num_tokens == sum(c.num_tokens for c in plan.chunks)
        ids = [c.req for c in plan.chunks]
        assert len(set(ids)) == len(ids), f"a request twice in one step: {ids}"
        for c in plan.chunks:
            r = self.requests[c.req]
            assert r.status == RequestStatus.RUNNING, f"{r} scheduled while not running"
            assert c.num_tokens >= 1
            assert c.num_cached_tokens == r.num_computed_tokens
            assert c.num_cached_tokens + c.num_tokens <= r.num_tokens, f"{r} computes beyond its known tokens"
            assert c.produces_token == (c.num_cached_tokens + c.num_tokens == r.num_tokens)
            assert c.num_output_after == r.num_output_tokens + c.produces_token
            assert len(r.block_table) * cfg.block_size >= c.num_cached_tokens + c.num_tokens, (
                f"{r} computes {c.num_tokens} tokens without KV blocks for them")
            if not cfg.chunked_prefill:
                assert c.produces_token, f"phased mode split a prefill: {c}"


def build(specs: list[Spec], cfg: SchedulerConfig, cost, *, policy: str = "fcfs", victim: str = "last_admitted",
          num_replicas: int = 1, fast_decode: bool = True, policy_params: dict | None = None):
    """Fresh requests and replicas (checked executors) for `specs`."""
    reqs = [Request(i, s.arrival_s, s.prompt_tokens, priority=s.priority,
                    predicted_output_tokens=s.predicted_output_tokens,
                    block_hashes=list(s.block_hashes) if s.block_hashes is not None else None)
            for i, s in enumerate(specs)]
    by_idx = {r.idx: r for r in reqs}
    true = np.array([s.output_tokens for s in specs], dtype=np.int64)
    replicas = []
    for k in range(num_replicas):
        sched = Scheduler(cfg, QUEUE_POLICIES.create(policy, **(policy_params or {})), VICTIM_POLICIES.create(victim))
        replicas.append(Replica(k, sched, CheckedExecutor(SimulatedExecutor(cost, true), cfg, by_idx),
                                fast_decode=fast_decode))
    return reqs, replicas


def step_checker(reqs: list[Request]):
    """A `simulate(check=...)` callback: scheduler and pool integrity plus independent accounting, after every step."""
    seen_now: dict[int, float] = {}

    def check(rep: Replica) -> None:
        sched, cfg = rep.scheduler, rep.scheduler.cfg
        sched.check_integrity()
        pool = sched.pool
        assert pool.num_free + pool.num_used == pool.num_blocks == cfg.num_kv_blocks
        in_tables = set()
        for r in sched.running:
            in_tables.update(r.block_table)
            assert r.num_tokens <= cfg.max_model_len, f"{r} longer than max_model_len"
            if cfg.kv_mode == "static":
                assert len(r.block_table) == cfg.max_blocks_per_seq, f"static {r} without a full reservation"
            else:
                assert len(r.block_table) == blocks_for(r.num_computed_tokens, cfg.block_size), (
                    f"paged {r} holds blocks its computed tokens do not need")
        # Blocks in use are exactly the blocks of the running requests (no leak, no block outside a table).
        assert len(in_tables) == pool.num_used == sum(1 for c in pool.refcount if c > 0)
        assert len(sched.running) <= cfg.max_num_seqs
        for r in reqs:
            if r.replica != rep.index:
                continue
            if r.status in DONE:
                assert not r.block_table and r.swapped_blocks == 0, f"done {r} still holds blocks"
            elif r.status != RequestStatus.RUNNING:
                assert not r.block_table, f"{r} holds GPU blocks while not running"
        assert rep.now_s >= seen_now.get(rep.index, 0.0), "replica clock went backwards"
        seen_now[rep.index] = rep.now_s

    return check


def run(specs: list[Spec], cfg: SchedulerConfig, cost, *, router: str | None = None, checked: bool = True, **kw):
    """Build and simulate; returns (requests, replicas)."""
    reqs, replicas = build(specs, cfg, cost, **kw)
    r = ROUTERS.create(router) if router is not None else None
    simulate(reqs, replicas, r, check=step_checker(reqs) if checked else None)
    return reqs, replicas


def outcome(reqs: list[Request], replicas: list[Replica]) -> list[tuple]:
    """Everything a request's metrics derive from, per request (floats compared exactly by the tests)."""
    ends = [rep.log.ends_s() for rep in replicas]
    return [(r.idx, r.replica, int(r.status), r.reject_reason, r.finish_reason, r.first_scheduled_s, r.first_token_s,
             r.finish_s, r.num_output_tokens, r.num_preemptions, r.prefix_hit_tokens,
             tuple(token_times_s(r, ends[r.replica]).tolist()))
            for r in reqs]


def step_logs(replicas: list[Replica]) -> list[dict[str, np.ndarray]]:
    out = []
    for rep in replicas:
        cols = rep.log.columns()
        cols["end_s"] = rep.log.ends_s()
        out.append(cols)
    return out
