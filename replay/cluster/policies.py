"""Ordering policies: which queued job runs next (admission and placement are separate steps).

A policy maps jobs to a primary sort key (smaller runs first); ties break by submit time, then
workload index, so every order is total and deterministic. Keys are computed vectorized over a
:class:`JobsView`, which holds what a live scheduler could know: submit times, GPU counts and, for
duration-aware policies, ``predicted_duration_s``. True durations never reach a policy: SJF, SRTF,
QSSF and EASY read predictions, which are the true durations only in an explicit oracle run (the
harness fills them from the truth when the config says ``oracle=True``, and records it).

Non-preemptive policies (``fifo``, ``sjf``, ``qssf``) are *blocking*, as in the Helios QSSF simulator:
the queue is served in key order and stops at the first job that cannot be placed. ``easy`` adds
EASY backfilling to FIFO. Preemptive policies (``srtf``, ``las``) re-decide the running set at every
event: jobs in key order are granted the partition's GPUs greedily (a job that does not fit the GPUs
left is skipped, later smaller ones may still go), running jobs left out are preempted (no
checkpoint overhead), chosen queued jobs are placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from replay.serving.registry import Registry

DEFAULT_LAS_THRESHOLDS_GPU_S = (3_600.0, 36_000.0)
"""Tiresias 2D-LAS queue thresholds in attained GPU-seconds: 1 GPU-hour, 10 GPU-hours (3 queues)."""


@dataclass(frozen=True, eq=False)
class JobsView:
    """What a scheduler may read about the jobs of a run (aligned with the workload)."""

    submit_s: np.ndarray
    """float64 submit times."""
    num_gpus: np.ndarray
    """int64 GPUs per job."""
    predicted_duration_s: np.ndarray | None = None
    """float64 predicted run time per job; None when the run has no predictions."""

    def predicted(self, policy: str) -> np.ndarray:
        if self.predicted_duration_s is None:
            raise ValueError(f"policy {policy!r} needs predicted durations (a predictor, or the oracle)")
        return self.predicted_duration_s


class OrderingPolicy(Protocol):
    """Orders jobs. Implementations are small and pure (LAS keeps only its parameters)."""

    name: str
    preemptive: bool
    """True: the running set is re-decided at every event (jobs may be preempted)."""
    backfill: bool
    """True: EASY backfill behind a blocked head (non-preemptive only)."""
    needs_predictions: bool
    """True: reads ``predicted_duration_s`` (the harness must provide it)."""

    def static_key(self, jobs: JobsView) -> np.ndarray:
        """Non-preemptive: float64 primary key per job (smaller first)."""
        ...

    def dynamic_key(self, jobs: JobsView, ids: np.ndarray, executed_s: np.ndarray, offset_gpu_s: np.ndarray) -> np.ndarray:
        """Preemptive: primary key of jobs ``ids`` having run ``executed_s`` seconds (``offset_gpu_s``: LAS promotion)."""
        ...

    def next_change_executed_s(self, num_gpus: int, executed_s: float, offset_gpu_s: float) -> float:
        """Preemptive: executed seconds at which a running job's key next gets worse (inf: never)."""
        ...


POLICIES: Registry[OrderingPolicy] = Registry("scheduling policy")


class _Base:
    name = "base"
    preemptive = False
    backfill = False
    needs_predictions = False

    def __init__(self, **params) -> None:
        """Policies take the run's policy parameters as keywords and ignore those that are not theirs."""

    def static_key(self, jobs: JobsView) -> np.ndarray:
        raise NotImplementedError(f"{self.name} is preemptive")

    def dynamic_key(self, jobs, ids, executed_s, offset_gpu_s) -> np.ndarray:
        raise NotImplementedError(f"{self.name} is not preemptive")

    def next_change_executed_s(self, num_gpus: int, executed_s: float, offset_gpu_s: float) -> float:
        return math.inf


@POLICIES.register("fifo")
class Fifo(_Base):
    """First in, first out by submit time; blocking (the head waits for room, nothing passes it)."""

    name = "fifo"

    def static_key(self, jobs: JobsView) -> np.ndarray:
        return jobs.submit_s


@POLICIES.register("sjf")
class Sjf(_Base):
    """Shortest job first on (predicted or, with --oracle, true) duration; non-preemptive, blocking (Helios' SJF)."""

    name = "sjf"
    needs_predictions = True

    def static_key(self, jobs: JobsView) -> np.ndarray:
        return jobs.predicted(self.name)


@POLICIES.register("qssf")
class Qssf(_Base):
    """Quasi-shortest-service first (Helios): predicted GPU time = predicted duration x GPUs; non-preemptive, blocking."""

    name = "qssf"
    needs_predictions = True

    def static_key(self, jobs: JobsView) -> np.ndarray:
        return jobs.predicted(self.name) * jobs.num_gpus


class Easy(Fifo):
    """FIFO with EASY backfill: a later job may start if it does not delay the blocked head's reservation.

    The head's reservation is the earliest time enough GPUs free up, from the running jobs' expected
    ends (start + predicted duration; the oracle uses true durations). A later job starts now if it
    fits now and either ends (by its prediction) before the reservation or uses only GPUs the head
    will not need then. The reservation counts GPUs, as EASY counts processors.
    """

    name = "easy"
    backfill = True
    needs_predictions = True


POLICIES.register("easy")(Easy)
POLICIES.register("fifo-backfill")(Easy)


@POLICIES.register("srtf")
class Srtf(_Base):
    """Shortest remaining time first: predicted (or, with --oracle, true) duration minus time run, floored at 0; preemptive."""

    name = "srtf"
    preemptive = True
    needs_predictions = True

    def dynamic_key(self, jobs, ids, executed_s, offset_gpu_s) -> np.ndarray:
        return np.maximum(jobs.predicted(self.name)[ids] - executed_s, 0.0)


@POLICIES.register("las")
class Las(_Base):
    """Tiresias discretized 2D-LAS: queues by attained GPU-seconds (GPUs x time run), FIFO within a queue; preemptive.

    Queue k holds jobs whose attained service lies in [T_{k-1}, T_k) for thresholds
    ``las_thresholds_gpu_s`` (T_0 = 0). With ``las_promote_after_s``, a job waiting that long since it was
    last queued goes back to queue 0 (Tiresias' starvation guard: its attained service counts from there).
    """

    name = "las"
    preemptive = True

    def __init__(self, las_thresholds_gpu_s: tuple[float, ...] = DEFAULT_LAS_THRESHOLDS_GPU_S,
                 las_promote_after_s: float | None = None, **params) -> None:
        t = tuple(float(x) for x in las_thresholds_gpu_s)
        if any(not (x > 0 and math.isfinite(x)) for x in t) or list(t) != sorted(set(t)):
            raise ValueError(f"las thresholds must be positive, finite and strictly increasing, got {t}")
        if las_promote_after_s is not None and not las_promote_after_s > 0:
            raise ValueError(f"las_promote_after_s must be None or > 0, got {las_promote_after_s}")
        self.thresholds_gpu_s = np.array(t, np.float64)
        self.promote_after_s = las_promote_after_s

    def dynamic_key(self, jobs, ids, executed_s, offset_gpu_s) -> np.ndarray:
        attained = executed_s * jobs.num_gpus[ids] - offset_gpu_s
        return np.searchsorted(self.thresholds_gpu_s, attained, side="right").astype(np.float64)

    def next_change_executed_s(self, num_gpus: int, executed_s: float, offset_gpu_s: float) -> float:
        attained = executed_s * num_gpus - offset_gpu_s
        k = int(np.searchsorted(self.thresholds_gpu_s, attained, side="right"))
        if k >= len(self.thresholds_gpu_s):
            return math.inf
        return (self.thresholds_gpu_s[k] + offset_gpu_s) / num_gpus
