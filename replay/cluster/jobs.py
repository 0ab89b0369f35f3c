"""The jobs of one cluster replay: a `JobWorkload` of numpy arrays, loaded from the catalog or generated.

A workload comes from the canonical ``jobs_derived`` view of the DuckDB catalog (one trace, optionally
one of its clusters) or from :func:`generate_jobs`. Selection, in this order:

1. cluster: keep the trace's rows of ``cluster`` (ITP ``cluster04``, Helios ``Venus``) when given;
2. window: keep ``start_s <= submit_s < start_s + duration_s`` (trace seconds); ``submit_s`` is then
   shifted so the window start is 0;
3. exclusion: a job without a usable run time (missing, NaN or negative) or without GPUs (null or
   <= 0: CPU-only) cannot be replayed; it is dropped and counted in ``JobWorkload.excluded`` under
   its first reason;
4. ``max_jobs``: the first N in submit order.

The run time is the view's ``run_s``: ``end_s - start_s`` where both are known, else the trace's
``duration_s`` (the derived Philly tables and ITP only have ``submit_s`` and ``duration_s``).
Fractional GPU requests (PAI asks for e.g. 0.5 GPU) are rounded **up** to whole GPUs: the simulated
cluster allocates whole GPUs, and a job sharing a GPU still occupies it. Rows are stably sorted by
(submit_s, trace order), so the workload is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.paths import data_paths
from replay.sources import TraceNotFoundError

GENERATED = "generated"
"""The trace name that selects :func:`generate_jobs` instead of the catalog."""
MAX_DURATION_S = 14 * 86400.0
"""Generated durations are clipped to this (Helios and Slurm clusters' 14-day limit)."""
GENERATED_GPU_SIZES = (1, 2, 4, 8, 16, 32, 64)
"""GPU counts the generator draws from."""
GENERATED_GPU_PROBS = (0.70, 0.08, 0.08, 0.10, 0.025, 0.01, 0.005)
"""Probabilities of :data:`GENERATED_GPU_SIZES` (mostly single-GPU jobs, as in Helios and Philly)."""


@dataclass(frozen=True, eq=False)
class JobWorkload:
    """The jobs of one replay, one array entry per job, sorted by submit time."""

    trace: str
    """Trace name ("generated" for the generator)."""
    job_id: np.ndarray
    """object array of str: the trace's job id."""
    submit_s: np.ndarray
    """float64, ascending: seconds since the window start."""
    duration_s: np.ndarray
    """float64 >= 0: true run time. Only the simulated executor (and an explicit oracle) may read it."""
    num_gpus: np.ndarray
    """int64 >= 1: GPUs the job needs (fractional requests rounded up)."""
    num_nodes: np.ndarray | None = None
    """int64: nodes the job ran on in the trace; None if the trace has none."""
    user: np.ndarray | None = None
    """object array: user id; None if the trace has none."""
    group: np.ndarray | None = None
    """object array: virtual cluster (VC) or group tag; None if the trace has none."""
    status: np.ndarray | None = None
    """object array: the trace's final status (completed / failed / killed ...); None if unknown."""
    gpu_type: np.ndarray | None = None
    """object array: GPU type asked for; None if the trace has none."""
    cluster: np.ndarray | None = None
    """object array: the trace's cluster of each job (ITP's cluster01...; the derived Philly tables' VC);
    None if the trace has none. A duration predictor keeps one history per cluster, as in training."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Jobs in the window dropped as unreplayable: reason -> count."""

    def __post_init__(self) -> None:
        n = len(self.submit_s)
        cols = {k: getattr(self, k) for k in ("job_id", "duration_s", "num_gpus", "num_nodes", "user", "group",
                                               "status", "gpu_type", "cluster")}
        wrong = {k: len(v) for k, v in cols.items() if v is not None and len(v) != n}
        if wrong:
            raise ValueError(f"JobWorkload: {n} submit times but column lengths {wrong}")
        if n and (np.any(np.diff(self.submit_s) < 0) or self.submit_s[0] < 0):
            raise ValueError("JobWorkload: submit_s must be non-negative and ascending")
        if n and (np.any(self.num_gpus < 1) or np.any(~np.isfinite(self.duration_s)) or np.any(self.duration_s < 0)):
            raise ValueError("JobWorkload: every job needs num_gpus >= 1 and a finite duration_s >= 0")

    def __len__(self) -> int:
        return len(self.submit_s)


def load_jobs(trace: str, *, cluster: str | None = None, data_root: str | Path | None = None,
              max_jobs: int | None = None, start_s: float = 0.0, duration_s: float | None = None) -> JobWorkload:
    """The jobs of ``trace`` (and ``cluster``) in the window, from the catalog of ``data_root`` (module doc)."""
    _check_window(max_jobs, start_s, duration_s)
    paths = data_paths(data_root)
    if not paths.catalog.exists():
        raise TraceNotFoundError(f"no catalog at {paths.catalog}: ingest the job trace first (`ingest run <source>`)")
    import duckdb  # the catalog is DuckDB; imported here so that generated runs need no catalog at all

    con = duckdb.connect(str(paths.catalog), read_only=True)
    try:
        con.execute("SET threads TO 1")
        _require_trace(con, trace, cluster)
        where, params = "trace = ?", [trace]
        if cluster is not None:
            where, params = where + " AND cluster = ?", params + [cluster]
        if duration_s is None:
            where, params = where + " AND submit_s >= ?", params + [start_s]
        else:
            where, params = where + " AND submit_s >= ? AND submit_s < ?", params + [start_s, start_s + duration_s]
        # fetchnumpy drains the result (DuckDB 2 refuses a new query while one is half read).
        cols = con.execute(
            'SELECT job_id, submit_s, run_s, num_gpus, num_nodes, "user", "group", status, gpu_type, cluster FROM '
            f"(SELECT *, row_number() OVER () AS _pos FROM jobs_derived WHERE {where}) ORDER BY submit_s, _pos",
            params).fetchnumpy()
    finally:
        con.close()
    return _select(trace, cols, start_s, max_jobs)


def _require_trace(con, trace: str, cluster: str | None) -> None:
    """TraceNotFoundError naming the known job traces (or clusters) unless ``trace`` has jobs."""
    has_view = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'jobs_derived'").fetchall()[0][0]
    known = [r[0] for r in con.execute("SELECT DISTINCT trace FROM jobs ORDER BY 1").fetchall()] if has_view else []
    if trace not in known:
        raise TraceNotFoundError(f"job trace {trace!r} is not in the catalog; known job traces: {', '.join(known) or 'none'} "
                                 f"(ingest it first with `ingest run <source>`), or 'generated'")
    if cluster is not None:
        clusters = [r[0] for r in con.execute("SELECT DISTINCT cluster FROM jobs WHERE trace = ? AND cluster IS NOT NULL "
                                              "ORDER BY 1", [trace]).fetchall()]
        if cluster not in clusters:
            raise ValueError(f"trace {trace!r} has no cluster {cluster!r}; its clusters: {', '.join(clusters) or 'none'}")


def _masked(col) -> np.ndarray:
    """A fetched column as a plain array: masked entries become NaN (numbers) or None (objects)."""
    if isinstance(col, np.ma.MaskedArray):
        if col.dtype.kind in "fiu":
            return col.astype(np.float64).filled(np.nan)
        out = np.asarray(col.data, dtype=object)
        out[np.ma.getmaskarray(col)] = None
        return out
    return np.asarray(col)


def _select(trace: str, cols: dict, start_s: float, max_jobs: int | None) -> JobWorkload:
    run_s = _masked(cols["run_s"]).astype(np.float64)
    gpus = _masked(cols["num_gpus"]).astype(np.float64)
    bad_run = ~(run_s >= 0)  # NaN (missing) or negative
    bad_gpu = ~bad_run & ~(gpus > 0)
    excluded = {k: int(v.sum()) for k, v in (("missing or negative run time", bad_run), ("no GPUs", bad_gpu)) if v.any()}
    keep = np.flatnonzero(~(bad_run | bad_gpu))
    if max_jobs is not None:
        keep = keep[:max_jobs]

    def obj(name: str) -> np.ndarray | None:
        arr = _masked(cols[name])[keep].astype(object)
        return None if all(v is None for v in arr) else arr

    nodes = _masked(cols["num_nodes"])[keep]
    return JobWorkload(
        trace=trace,
        job_id=np.asarray(_masked(cols["job_id"])[keep], dtype=object),
        submit_s=_masked(cols["submit_s"]).astype(np.float64)[keep] - start_s,
        duration_s=run_s[keep],
        num_gpus=np.ceil(gpus[keep]).astype(np.int64),
        num_nodes=None if np.isnan(nodes).all() else np.nan_to_num(nodes, nan=0).astype(np.int64),
        user=obj("user"), group=obj("group"), status=obj("status"), gpu_type=obj("gpu_type"),
        cluster=obj("cluster"), excluded=excluded,
    )


def generate_jobs(num_jobs: int, seed: int = 0, *, rate_per_s: float = 0.2, duration_median_s: float = 300.0,
                  duration_sigma: float = 2.0, num_users: int = 200, num_vcs: int = 0) -> JobWorkload:
    """A synthetic Helios-like workload (for tests and the 3.36 M-job benchmark).

    Poisson arrivals at ``rate_per_s`` (the first at 0); lognormal durations (median
    ``duration_median_s``, log-space sigma ``duration_sigma``: heavy-tailed) rounded to whole seconds and
    clipped to [1 s, 14 days]; GPU counts from :data:`GENERATED_GPU_SIZES` with
    :data:`GENERATED_GPU_PROBS`; users uniform over ``num_users``; ``num_vcs`` > 0 also draws a VC
    (``vc0`` ...) per job. Deterministic for (arguments, seed).
    """
    if num_jobs < 1 or not (rate_per_s > 0 and duration_median_s > 0 and duration_sigma >= 0) or num_users < 1:
        raise ValueError("generate_jobs needs num_jobs >= 1, rate_per_s > 0, duration_median_s > 0, "
                         "duration_sigma >= 0, num_users >= 1")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_per_s, num_jobs)
    gaps[0] = 0.0
    submit = np.cumsum(gaps)
    duration = np.clip(np.rint(rng.lognormal(math.log(duration_median_s), duration_sigma, num_jobs)), 1, MAX_DURATION_S)
    gpus = rng.choice(np.array(GENERATED_GPU_SIZES, np.int64), size=num_jobs, p=np.array(GENERATED_GPU_PROBS))
    users = rng.integers(0, num_users, num_jobs)
    group = None
    if num_vcs > 0:
        group = np.array([f"vc{v}" for v in range(num_vcs)], dtype=object)[rng.integers(0, num_vcs, num_jobs)]
    return JobWorkload(
        trace=GENERATED, job_id=np.array([str(i) for i in range(num_jobs)], dtype=object), submit_s=submit,
        duration_s=duration.astype(np.float64), num_gpus=gpus,
        user=np.array([f"u{u}" for u in range(num_users)], dtype=object)[users], group=group)


def _check_window(max_jobs: int | None, start_s: float, duration_s: float | None) -> None:
    if max_jobs is not None and max_jobs < 1:
        raise ValueError(f"max_jobs must be None or >= 1, got {max_jobs}")
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be finite and >= 0, got {start_s}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be None or finite and > 0, got {duration_s}")
