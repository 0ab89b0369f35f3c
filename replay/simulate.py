"""The replay loop in virtual time: replicas step, arrivals are routed, time jumps over idle gaps.

`simulate` is policy-agnostic: it drives `schedule -> execute -> update` on each replica and keeps a
step log. Each replica has its own clock; the loop always advances the replica with the earliest
clock, and an arrival is routed before any replica steps past its arrival time (an arrival at exactly
a step's start is admissible in that step).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

from replay.serving.executors.base import Executor
from replay.serving.plan import StepPlan
from replay.serving.policies.router import Router
from replay.serving.request import Request, RequestStatus
from replay.serving.scheduler import Scheduler
from replay.steplog import StepLog

INF = math.inf


class Replica:
    """One serving instance: a scheduler, an executor, a clock and a step log."""

    def __init__(self, index: int, scheduler: Scheduler, executor: Executor, fast_decode: bool = True) -> None:
        self.index = index
        self.stop_at_arrivals = False
        """Always end decode runs at the next arrival (set with several replicas: routers read replica state)."""
        self.scheduler = scheduler
        self.executor = executor
        self.fast_decode = fast_decode
        self.now_s = 0.0
        self.log = StepLog()

    def step(self, next_arrival_s: float) -> list[Request]:
        """Run one step (or one decode run that stops before `next_arrival_s` matters); returns finished requests."""
        sched = self.scheduler
        plan = sched.schedule(self.now_s)
        if not plan.chunks:
            raise RuntimeError(
                f"replica {self.index}: nothing schedulable with {sched.num_waiting} waiting and "
                f"{len(sched.running)} running requests at t={self.now_s:.6f}s (a scheduler bug)"
            )
        return self.run_plan(plan, next_arrival_s)

    def run_plan(self, plan: StepPlan, next_arrival_s: float) -> list[Request]:
        """Execute `plan` (just built by `scheduler.schedule(now_s)`), log it, advance the clock; see `step`."""
        sched, now = self.scheduler, self.now_s
        num_waiting, num_preempted = sched.num_waiting, sched.num_preempted_in_step
        if self.fast_decode and sched.can_run_decodes(plan):
            limit = sched.decode_run_limit(plan)
            if limit > 1:
                stop = next_arrival_s if self.stop_at_arrivals or sched.arrivals_matter() else INF
                run = self.executor.execute_decode_run(plan, limit, stop, now)
                n = len(run.step_times_s)
                ends = run.end_s
                self.log.extend(
                    ends,
                    start_s=np.concatenate(([now], ends[:-1])), duration_s=run.step_times_s,
                    num_seqs=len(plan.chunks), num_decodes=plan.num_decodes, num_prefill_tokens=0,
                    num_tokens=plan.num_decodes, kv_blocks_used=sched.decode_run_kv_used(plan, n),
                    num_waiting=num_waiting, num_preempted=0,
                )
                self.now_s = float(ends[-1])
                return sched.update_decode_run(plan, n, run.finished, self.now_s)
        result = self.executor.execute(plan)
        end = now + result.duration_s
        num_tokens = plan.num_tokens
        self.log.append(
            end, start_s=now, duration_s=result.duration_s, num_seqs=len(plan.chunks),
            num_decodes=plan.num_decodes, num_prefill_tokens=num_tokens - plan.num_decodes, num_tokens=num_tokens,
            kv_blocks_used=sched.pool.num_used, num_waiting=num_waiting, num_preempted=num_preempted,
        )
        self.now_s = end
        return sched.update(plan, result, end)


def simulate(
    requests: list[Request],
    replicas: list[Replica],
    router: Router | None = None,
    on_done: Callable[[int], None] | None = None,
    check: Callable[[Replica], None] | None = None,
) -> None:
    """Replay `requests` (sorted by arrival) through `replicas` until every request is finished or rejected.

    `on_done(n)` is called with the number of requests that just completed (for progress bars);
    `check(replica)` runs after every step (tests pass integrity checks here).
    """
    arrivals = [r.arrival_s for r in requests]
    if any(b < a for a, b in zip(arrivals, arrivals[1:])):
        raise ValueError("requests must be sorted by arrival_s")
    if len(replicas) > 1 and router is None:
        raise ValueError("several replicas need a router")
    views = [rep.scheduler for rep in replicas]
    for rep in replicas:
        rep.stop_at_arrivals = len(replicas) > 1
    busy: list[tuple[float, int]] = []
    n, ai = len(requests), 0
    while True:
        next_arrival = arrivals[ai] if ai < n else INF
        if busy and busy[0][0] < next_arrival:
            _, k = heapq.heappop(busy)
            rep = replicas[k]
            done = rep.step(next_arrival)
            if check is not None:
                check(rep)
            if done and on_done is not None:
                on_done(len(done))
            if rep.scheduler.has_work():
                heapq.heappush(busy, (rep.now_s, k))
        elif ai < n:
            req = requests[ai]
            ai += 1
            k = router.route(req, views) if len(replicas) > 1 else 0
            req.replica = k
            rep = replicas[k]
            idle = not rep.scheduler.has_work()
            if idle:
                rep.now_s = max(rep.now_s, req.arrival_s)
            if not rep.scheduler.add_request(req, req.arrival_s):
                if on_done is not None:
                    on_done(1)
            elif idle:
                heapq.heappush(busy, (rep.now_s, k))
        else:
            break
    stuck = [r for r in requests if not RequestStatus(r.status).is_done]
    if stuck:
        raise RuntimeError(f"{len(stuck)} requests neither finished nor rejected, e.g. {stuck[0]!r}")


def token_times_s(req: Request, ends_s: np.ndarray) -> np.ndarray:
    """End times of the steps that produced `req`'s output tokens (its token times), from its replica's step ends."""
    segs = req.token_segments
    if len(segs) == 1:
        a, b = segs[0]
        return ends_s[a:b + 1]
    if not segs:
        return np.zeros(0)
    return np.concatenate([ends_s[a:b + 1] for a, b in segs])
