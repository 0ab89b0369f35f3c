"""The event-driven cluster simulator: submissions, completions and policy events, nothing in between.

Time jumps from event to event (never stepped): a submission, a completion, and for LAS a running
job's crossing of a queue threshold or a starvation promotion. At each event time, completions are
applied first, then policy events, then submissions, then the scheduler decides (Helios' order).
Each VC (partition) is simulated independently on its own nodes; without VCs the cluster is one
partition. Jobs not admitted (``partition < 0``) are skipped. Ties: submit time, then index.

Non-preemptive policies keep the queue in a heap keyed by (key, submit, index) and stop at the first
job that cannot be placed (blocking), so an event costs O(log n) plus the placements it makes; EASY
keeps a FIFO list and scans it behind a blocked head. Preemptive policies (SRTF, LAS) recompute keys
over the active jobs (queued + running) with numpy at each event. The simulated executor is just the
true durations: a job holds its GPUs for ``duration_s`` of running time in total, over one segment
or, when preempted, several (no checkpoint overhead).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from replay.cluster.cluster import ClusterSpec, ClusterState
from replay.cluster.placement import Placement
from replay.cluster.preemptive import run_preemptive
from replay.cluster.policies import JobsView, OrderingPolicy

INF = math.inf


@dataclass
class SimOutput:
    """Per-job outcomes (NaN / 0 for jobs never run) and every run segment."""

    start_s: np.ndarray
    """First start time."""
    end_s: np.ndarray
    """Completion time."""
    num_preemptions: np.ndarray
    """Times the job was preempted."""
    num_nodes_placed: np.ndarray
    """Nodes of the job's first placement."""
    seg_job: np.ndarray
    """Run segments: job index."""
    seg_start_s: np.ndarray
    """Run segments: start."""
    seg_end_s: np.ndarray
    """Run segments: end."""
    seg_gpus: np.ndarray
    """Run segments: GPUs held."""
    seg_partition: np.ndarray
    """Run segments: partition (VC) index."""
    num_events: int
    """Event times processed (all partitions)."""


class _Out:
    def __init__(self, n: int) -> None:
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.preempt = np.zeros(n, np.int64)
        self.nodes = np.zeros(n, np.int64)
        self.segs: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # (jobs, starts, ends, partition)
        self.events = 0


def simulate(jobs: JobsView, duration_s: np.ndarray, partition: np.ndarray, spec: ClusterSpec,
             policy: OrderingPolicy, placement: Placement, *, on_done: Callable[[int], None] | None = None) -> SimOutput:
    """Run every admitted job (``partition[j] >= 0``: index into ``spec.partitions()``) to completion."""
    n = len(duration_s)
    out = _Out(n)
    state = ClusterState.of(spec)
    for p, (_, nodes) in enumerate(spec.partitions()):
        ids = np.flatnonzero(partition == p)
        if len(ids) == 0:
            continue
        part = state.partition(nodes)
        runner = run_preemptive if policy.preemptive else _run_queue
        runner(ids, jobs, duration_s, part, policy, placement, out, p, on_done)
        part.check_integrity()
        if part.total_free != part.total_gpus:
            raise AssertionError(f"partition {p}: GPUs still allocated after every job finished")
    def cat(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    seg_job = cat([s[0] for s in out.segs], np.int64)
    seg_partition = cat([np.full(len(s[0]), s[3]) for s in out.segs], np.int64)
    return SimOutput(out.start, out.end, out.preempt, out.nodes, seg_job, cat([s[1] for s in out.segs], np.float64),
                     cat([s[2] for s in out.segs], np.float64), jobs.num_gpus[seg_job], seg_partition, out.events)


def _run_queue(ids, jobs: JobsView, duration_s, state: ClusterState, policy, placement, out: _Out, p: int, on_done) -> None:
    """Non-preemptive: blocking priority queue, or FIFO with EASY backfill."""
    submit = jobs.submit_s[ids].tolist()
    gpus = jobs.num_gpus.tolist()
    dur = duration_s.tolist()
    key = policy.static_key(jobs).tolist() if not policy.backfill else None
    pred = jobs.predicted(policy.name).tolist() if policy.backfill else None
    view = state.view
    start, end, nnodes = out.start, out.end, out.nodes
    queue: list = []  # heap of (key, submit, j), or the FIFO list of j for backfill
    running: list = []  # heap of (end, j, nodes, counts)
    est_end: dict[int, float] = {}  # backfill: running job -> expected end (start + prediction)
    i, n, events, blocked = 0, len(ids), 0, -1

    def launch(j: int, t: float, alloc) -> None:
        state.allocate(*alloc)
        start[j] = t
        end[j] = t + dur[j]
        nnodes[j] = len(alloc[0])
        heapq.heappush(running, (t + dur[j], j, alloc[0], alloc[1]))
        if pred is not None:
            est_end[j] = t + pred[j]

    while i < n or running:
        t = min(submit[i] if i < n else INF, running[0][0] if running else INF)
        events += 1
        finished = 0
        while running and running[0][0] <= t:
            _, j, nodes, counts = heapq.heappop(running)
            state.release(nodes, counts)
            est_end.pop(j, None)
            finished += 1
        while i < n and submit[i] <= t:
            j = int(ids[i])
            if key is None:
                queue.append(j)
            else:
                heapq.heappush(queue, (key[j], submit[i], j))
            i += 1
        if key is not None:
            while queue:
                j = queue[0][2]
                if j == blocked and not finished:
                    break  # nothing was freed since this head failed: it still cannot be placed
                alloc = placement.place(view, gpus[j]) if gpus[j] <= state.total_free else None
                if alloc is None:
                    blocked = j
                    break
                heapq.heappop(queue)
                launch(j, t, alloc)
        elif queue:
            queue = _easy(queue, t, gpus, pred, est_end, state, placement, launch)
        if finished and on_done is not None:
            on_done(finished)
        if not running and queue and i >= n:
            raise AssertionError(f"partition {p}: {len(queue)} job(s) can never be placed (admission should have refused them)")
    out.events += events
    out.segs.append((ids, start[ids], end[ids], p))  # one run segment per job: no preemption


def _easy(queue: list, t: float, gpus, pred, est_end: dict, state: ClusterState, placement, launch) -> list:
    """FIFO starts while the head fits; then EASY backfill behind the blocked head. Returns the new queue."""
    view = state.view
    h = 0
    while h < len(queue):
        j = queue[h]
        alloc = placement.place(view, gpus[j]) if gpus[j] <= state.total_free else None
        if alloc is None:
            break
        launch(j, t, alloc)
        h += 1
    queue = queue[h:]
    if len(queue) < 2 or state.total_free == 0:
        return queue
    shadow_s, extra = _reservation(t, gpus[queue[0]], est_end, state.total_free, gpus)
    kept = [queue[0]]
    for k in range(1, len(queue)):
        j = queue[k]
        free = state.total_free
        if free == 0:
            kept.extend(queue[k:])
            break
        g = gpus[j]
        ends_in_time = t + pred[j] <= shadow_s
        if g <= free and (ends_in_time or g <= extra):
            alloc = placement.place(view, g)
            if alloc is not None:
                launch(j, t, alloc)
                if not ends_in_time:
                    extra -= g
                continue
        kept.append(j)
    return kept


def _reservation(t: float, need: int, est_end: dict, free: int, gpus) -> tuple[float, int]:
    """EASY shadow time for a head needing ``need`` GPUs, and the GPUs spare at that time.

    Running jobs release their GPUs at their expected ends (an end already past counts as now). If
    the head is blocked by fragmentation rather than by count, the shadow time is now.
    """
    if free >= need:
        return t, free - need
    for e, j in sorted((max(e, t), j) for j, e in est_end.items()):
        free += gpus[j]
        if free >= need:
            return e, free - need
    return INF, 0
