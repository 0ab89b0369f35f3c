"""The replay loop in wall-clock time, for an executor that really computes (the GPU executor).

Requests arrive at their (scaled) trace times on a real clock: each loop turn queues every request whose
arrival time has passed, then runs one step of whatever the scheduler plans; when nothing is queued or
running, the loop sleeps until the next arrival. A step starts when the scheduler has built its plan and ends
when the executor has returned (the sampled ids are back on the host), so the scheduler's own time shows up as
gaps between steps, as on a live server. One replica; decode runs are never batched (`fast_decode` off).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from replay.serving.request import Request, RequestStatus
from replay.simulate import Replica


def run_wallclock(requests: list[Request], replica: Replica, *, clock: Callable[[], float] = time.perf_counter,
                  sleep: Callable[[float], None] = time.sleep, on_done: Callable[[int], None] | None = None,
                  check: Callable[[Replica], None] | None = None) -> float:
    """Serve `requests` (sorted by arrival_s, seconds from the start) through `replica`; returns the elapsed seconds.

    Request and step times in the replica's log are seconds since the loop started.
    """
    arrivals = [r.arrival_s for r in requests]
    if any(b < a for a, b in zip(arrivals, arrivals[1:])):
        raise ValueError("requests must be sorted by arrival_s")
    replica.fast_decode = False
    sched = replica.scheduler
    t0 = clock()
    n, ai = len(requests), 0
    while True:
        now = clock() - t0
        while ai < n and arrivals[ai] <= now:
            req = requests[ai]
            ai += 1
            req.replica = replica.index
            if not sched.add_request(req, req.arrival_s) and on_done is not None:
                on_done(1)
        if not sched.has_work():
            if ai >= n:
                break
            sleep(max(0.0, arrivals[ai] - (clock() - t0)))
            continue
        plan = sched.schedule(now)
        if not plan.chunks:
            raise RuntimeError(f"nothing schedulable with {sched.num_waiting} waiting and {len(sched.running)} "
                               f"running requests at t={now:.6f}s (a scheduler bug)")
        replica.now_s = clock() - t0  # the step starts once its plan is built
        done = replica.run_plan(plan, float("inf"))
        if check is not None:
            check(replica)
        if done and on_done is not None:
            on_done(len(done))
    stuck = [r for r in requests if not RequestStatus(r.status).is_done]
    if stuck:
        raise RuntimeError(f"{len(stuck)} requests neither finished nor rejected, e.g. {stuck[0]!r}")
    return clock() - t0
