"""The preemptive partition runner (SRTF, LAS): the running set is re-decided at every event.

At each event time the active jobs (queued and running) are ordered by the policy's key (then submit
time, then index); the partition's GPUs are granted greedily in that order (a job that does not fit
the GPUs left is skipped; smaller later ones may still go, as in the Helios SRTF simulator); running
jobs left out are preempted, granted queued jobs are placed in order (one that cannot be placed now,
e.g. fragmentation under consolidate, keeps waiting). A job's running time adds up over its
segments to exactly its duration: preemption costs nothing (no checkpoint overhead).

Accounting per job: ``base`` seconds run before ``acct`` (the time its current run, or the last key
change, began); while running, executed = base + (now - acct). ``version`` bumps on every start and
preemption, so heap entries of an older run are recognized and dropped.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

INF = math.inf


def run_preemptive(ids: np.ndarray, jobs, duration_s: np.ndarray, state, policy, placement, out, p: int, on_done) -> None:
    """Simulate the jobs ``ids`` of one partition under a preemptive ``policy``; results go to ``out``."""
    n_all = len(duration_s)
    submit_all = jobs.submit_s
    gpus_all = jobs.num_gpus
    gpus = gpus_all.tolist()
    dur = duration_s.tolist()
    submit = submit_all[ids].tolist()
    base = np.zeros(n_all)  # executed seconds before acct (only entries of ids are used)
    acct = np.zeros(n_all)
    offset = np.zeros(n_all)  # LAS promotion: attained GPU-seconds not counted any more
    running = np.zeros(n_all, bool)
    version = _Versions()
    seg_start: dict[int, float] = {}
    alloc_of: dict[int, tuple] = {}
    seg_j: list[int] = []
    seg_s: list[float] = []
    seg_e: list[float] = []
    active: dict[int, None] = {}  # insertion-ordered set of queued + running jobs
    waiting: dict[int, None] = {}  # the queued ones
    demand = 0  # GPUs of all active jobs: when they all fit the partition, nobody is preempted
    completions: list = []  # (end, j, version)
    changes: list = []  # LAS threshold crossings: (time, j, version, executed at that time)
    promotions: list = []  # LAS starvation promotion: (time, j, version)
    promote_s = getattr(policy, "promote_after_s", None)
    quota = state.total_gpus
    view = state.view
    i, n, events = 0, len(ids), 0

    def stop(j: int, t: float) -> None:
        state.release(*alloc_of.pop(j))
        seg_j.append(j)
        seg_s.append(seg_start.pop(j))
        seg_e.append(t)
        running[j] = False
        version.bump(j)

    def push_change(j: int, t: float) -> None:
        executed = base[j] + (t - acct[j])
        target = policy.next_change_executed_s(gpus[j], executed, offset[j])
        if target < dur[j]:
            heapq.heappush(changes, (t + (target - executed), j, version[j], target))

    def begin(j: int, t: float, alloc) -> None:
        state.allocate(*alloc)
        alloc_of[j] = alloc
        if math.isnan(out.start[j]):
            out.start[j] = t
            out.nodes[j] = len(alloc[0])
        running[j] = True
        del waiting[j]
        acct[j] = t
        seg_start[j] = t
        version.bump(j)
        heapq.heappush(completions, (t + (dur[j] - base[j]), j, version[j]))
        push_change(j, t)

    def queued(j: int, t: float) -> None:
        waiting[j] = None
        if promote_s is not None:
            heapq.heappush(promotions, (t + promote_s, j, version[j]))

    while True:
        # drop heap entries of runs that ended or were preempted, so they cause no event
        while completions and (completions[0][2] != version[completions[0][1]] or not running[completions[0][1]]):
            heapq.heappop(completions)
        while changes and (changes[0][2] != version[changes[0][1]] or not running[changes[0][1]]):
            heapq.heappop(changes)
        while promotions and (promotions[0][2] != version[promotions[0][1]] or running[promotions[0][1]]
                              or promotions[0][1] not in active):
            heapq.heappop(promotions)
        t = min(submit[i] if i < n else INF, completions[0][0] if completions else INF,
                changes[0][0] if changes else INF, promotions[0][0] if promotions else INF)
        if t == INF:
            break
        events += 1
        finished = 0
        while completions and completions[0][0] <= t:
            _, j, v = heapq.heappop(completions)
            if v != version[j] or not running[j]:
                continue
            stop(j, t)
            base[j] = dur[j]
            out.end[j] = t
            del active[j]
            demand -= gpus[j]
            finished += 1
        while changes and changes[0][0] <= t:
            _, j, v, target = heapq.heappop(changes)
            if v == version[j] and running[j]:
                base[j], acct[j] = target, t  # pin the crossing exactly (no float drift around a threshold)
                push_change(j, t)
        while promotions and promotions[0][0] <= t:
            _, j, v = heapq.heappop(promotions)
            if v == version[j] and not running[j] and j in active:
                offset[j] = base[j] * gpus[j]
        while i < n and submit[i] <= t:
            j = int(ids[i])
            active[j] = None
            demand += gpus[j]
            queued(j, t)
            i += 1
        if demand <= quota:  # every active job gets its GPUs: just place the queued ones in key order
            if waiting:
                _decide(t, waiting, jobs, policy, base, acct, offset, running, quota, gpus, placement, view, begin, stop,
                        queued, out)
        elif active:
            _decide(t, active, jobs, policy, base, acct, offset, running, quota, gpus, placement, view, begin, stop,
                    queued, out)
        if finished and on_done is not None:
            on_done(finished)
    if active:
        raise AssertionError(f"partition {p}: {len(active)} job(s) never finished")
    out.events += events
    out.segs.append((np.array(seg_j, np.int64), np.array(seg_s), np.array(seg_e), p))


def _decide(t, active, jobs, policy, base, acct, offset, running, quota, gpus, placement, view, begin, stop, queued, out):
    """Grant GPUs in key order, preempt running jobs left out, place granted queued jobs."""
    ids = np.fromiter(active, np.int64, len(active))
    run = running[ids]
    executed = base[ids] + np.where(run, t - acct[ids], 0.0)
    key = policy.dynamic_key(jobs, ids, executed, offset[ids])
    order = np.lexsort((ids, jobs.submit_s[ids], key))
    ids, run = ids[order], run[order]
    g = jobs.num_gpus[ids]
    cs = np.cumsum(g)
    k = int(np.searchsorted(cs, quota, side="right"))  # the first k jobs fit together
    chosen = np.zeros(len(ids), bool)
    chosen[:k] = True
    left = quota - (int(cs[k - 1]) if k else 0)
    pos = k
    while left > 0 and pos < len(ids):
        fits = np.flatnonzero(g[pos:] <= left)
        if not len(fits):
            break
        pos += int(fits[0])
        chosen[pos] = True
        left -= int(g[pos])
        pos += 1
    for j in ids[run & ~chosen].tolist():
        base[j] += t - acct[j]
        stop(j, t)
        out.preempt[j] += 1
        queued(j, t)
    for j in ids[chosen & ~run].tolist():
        alloc = placement.place(view, gpus[j]) if gpus[j] <= view.total_free else None
        if alloc is not None:
            begin(j, t, alloc)


class _Versions(dict):
    """Run version per job (0 until first started)."""

    def __missing__(self, j: int) -> int:
        return 0

    def bump(self, j: int) -> None:
        self[j] = self.get(j, 0) + 1
