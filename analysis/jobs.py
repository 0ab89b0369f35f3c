"""Job characterization over the catalog: durations, queueing delay, final status, job size, user and
VC concentration, per-user completion ratio, and :func:`characterize_jobs` gathering the key numbers.

All aggregation runs in DuckDB over the ``jobs_derived`` view (``run_s = coalesce(end_s - start_s,
duration_s)``, ``queue_s = start_s - submit_s``, ``gpu_s = run_s * num_gpus``); Python only reshapes
the few rows that come back (one per group, or one per user for concentration curves).

Conventions shared by every function here:

* ``gpu_only=True`` (the default) keeps GPU jobs only (``num_gpus > 0``), as the Helios paper does:
  53% of Helios jobs are CPU-only. Fractional PAI requests (0 < num_gpus < 1) are GPU jobs.
* ``cluster`` restricts to one cluster of a multi-cluster trace (Helios, ITP).
* Durations exclude jobs still running at the end of the trace (no end: censored); GPU time
  (``gpu_s``) likewise counts only jobs with a known run time.
* VCs are keyed by ``(cluster, group)``: Helios VC ids collide across clusters (FORMATS §6.5). A
  VC's label is ``cluster/group``, or just ``group`` where the cluster is null or equals the group
  (Philly: the cluster *is* the VC).
* Quantiles are DuckDB ``quantile_cont`` (linear interpolation between order statistics, numpy's
  default ``method='linear'``).
* Missing data raises :class:`analysis.catalog.NotAvailable` with the reason.

Size buckets (:data:`SIZE_BUCKETS`): ``coarse`` is 1, 2-4, 5-8, >8 GPUs; ``helios`` follows the
HeliosArtifact job notebook (``job_bar_gpu_num_complete_rate``: bars for 1, 2, 4, 8, 16, 32 and >=64
GPUs) widened into ranges 1, 2, 3-4, 5-8, 9-16, 17-32, >32 so that non-power-of-two requests land
somewhere; on Helios, whose requests are powers of two, the buckets hold exactly the artifact's bars.
Both add ``<1`` for fractional requests and ``0`` for CPU-only jobs (when ``gpu_only=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from analysis.catalog import NotAvailable, arrays, frame, job_columns, not_available, one, require_view, rows, trace_filter
from ingest.schema import JOB_STATUSES

QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
"""The fixed quantile points every CDF reports."""
FINAL_STATUSES = ("completed", "failed", "killed", "cancelled")
"""Statuses of jobs that have finished; the completion ratio is completed over these."""
TOP_FRACTIONS = (0.01, 0.05, 0.10)
"""The top-x% points :func:`top_shares` reports."""


@dataclass(frozen=True)
class SizeBuckets:
    """GPU-count buckets: bucket ``i`` holds ``upper[i-1] < num_gpus <= upper[i]`` (``upper[0]`` is 1);
    ``0`` (CPU-only) and ``<1`` (fractional) are always prepended."""

    name: str
    """Name in :data:`SIZE_BUCKETS`."""
    upper: tuple[float, ...]
    """Inclusive upper bound of each bucket, ascending; the first is 1, the last may be ``inf``."""
    labels: tuple[str, ...]
    """One label per bucket."""

    def __post_init__(self) -> None:
        if len(self.upper) != len(self.labels) or not self.upper:
            raise ValueError(f"size buckets {self.name}: {len(self.upper)} bounds for {len(self.labels)} labels")
        if self.upper[0] != 1 or any(b <= a for a, b in zip(self.upper, self.upper[1:])):
            raise ValueError(f"size buckets {self.name}: bounds must start at 1 and ascend, got {self.upper}")

    def sql(self, col: str = "num_gpus") -> tuple[str, str]:
        """(label expression, rank expression) for a SQL ``SELECT``."""
        label = [f"WHEN {col} = 0 THEN '0'", f"WHEN {col} < 1 THEN '<1'"]
        rank = [f"WHEN {col} = 0 THEN 0", f"WHEN {col} < 1 THEN 1"]
        for i, (ub, lab) in enumerate(zip(self.upper, self.labels)):
            cond = "TRUE" if math.isinf(ub) else f"{col} <= {ub!r}"
            label.append(f"WHEN {cond} THEN '{lab}'")
            rank.append(f"WHEN {cond} THEN {i + 2}")
        return f"CASE {' '.join(label)} END", f"CASE {' '.join(rank)} END"


SIZE_BUCKETS = {
    "coarse": SizeBuckets("coarse", (1, 4, 8, math.inf), ("1", "2-4", "5-8", ">8")),
    "helios": SizeBuckets("helios", (1, 2, 4, 8, 16, 32, math.inf), ("1", "2", "3-4", "5-8", "9-16", "17-32", ">32")),
}
"""The named bucket schemes (see the module docstring)."""

VC_LABEL = """CASE WHEN cluster IS NULL OR cluster = "group" THEN "group" ELSE cluster || '/' || "group" END"""
STATUS_RANK = "CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(JOB_STATUSES)) + " END"


def _key(by: str | None, buckets: str) -> tuple[str, str, str | None]:
    """(key expression, rank expression, column the key needs) for a grouping."""
    if by is None:
        return "'all'", "0", None
    if by == "size":
        return (*size_buckets(buckets).sql(), None)
    if by == "group":
        return VC_LABEL, "0", "group"
    if by in ("cluster", "gpu_type", "user"):
        return f'"{by}"', "0", by
    if by == "status":
        return "status", STATUS_RANK, None
    raise ValueError(f"unknown grouping {by!r}; use None, 'size', 'group', 'cluster', 'gpu_type', 'user' or 'status'")


def size_buckets(name: str) -> SizeBuckets:
    """The bucket scheme called ``name`` in :data:`SIZE_BUCKETS`."""
    try:
        return SIZE_BUCKETS[name]
    except KeyError:
        raise ValueError(f"unknown size buckets {name!r}; known: {', '.join(SIZE_BUCKETS)}") from None


def _base(trace: str, cluster: str | None, gpu_only: bool) -> tuple[str, list]:
    where, params = trace_filter(trace, cluster)
    return f"FROM jobs_derived WHERE {where}{' AND num_gpus > 0' if gpu_only else ''}", params


def _need(con: duckdb.DuckDBPyConnection, trace: str, cluster: str | None, *columns: str | None) -> dict[str, int]:
    have = job_columns(con, trace, cluster)
    if have["jobs"] == 0:
        raise NotAvailable(f"{trace}: no jobs" + (f" in cluster {cluster!r}" if cluster else ""))
    for col in columns:
        if col and have[col] == 0:
            raise NotAvailable(f"{trace}: no job has a {col!r} value")
    return have


def quantile_sql(quantiles: tuple[float, ...]) -> str:
    """A DuckDB list literal of quantile points, for ``quantile_cont(x, <list>)``."""
    if not quantiles or any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {quantiles}")
    return "[" + ", ".join(repr(float(q)) for q in quantiles) + "]"


def _cdf(con, trace, value: str, *, by, buckets, quantiles, cluster, gpu_only, needs: str | None) -> pl.DataFrame:
    key, rank, key_col = _key(by, buckets)
    _need(con, trace, cluster, needs, key_col)
    base, params = _base(trace, cluster, gpu_only)
    got = rows(con,
               f"SELECT key, min(rank) AS rank, count(*) AS jobs, avg(v) AS mean, "
               f"quantile_cont(v, {quantile_sql(quantiles)}) FROM (SELECT {key} AS key, {rank} AS rank, {value} AS v "
               f"{base}) WHERE v IS NOT NULL AND key IS NOT NULL GROUP BY key ORDER BY rank, jobs DESC, key", params)
    if not got:
        raise NotAvailable(f"{trace}: no job has a {value} value" + (" (GPU jobs only)" if gpu_only else ""))
    long = [(k, n, mean, float(p), v) for k, _, n, mean, qs in got for p, v in zip(quantiles, qs)]
    return pl.DataFrame(long, orient="row", schema={"key": pl.String, "jobs": pl.Int64, "mean_s": pl.Float64,
                                                    "p": pl.Float64, "value_s": pl.Float64})


def duration_cdf(con: duckdb.DuckDBPyConnection, trace: str, *, by: str | None = None, buckets: str = "coarse",
                 quantiles: tuple[float, ...] = QUANTILES, cluster: str | None = None,
                 gpu_only: bool = True) -> pl.DataFrame:
    """Job run time quantiles, overall (``by=None``) or per ``size`` bucket, ``group`` (VC), ``cluster``,
    ``status`` or ``gpu_type``: long format ``key, jobs, mean_s, p, value_s``."""
    return _cdf(con, trace, "run_s", by=by, buckets=buckets, quantiles=quantiles, cluster=cluster,
                gpu_only=gpu_only, needs="run_known")


def queue_cdf(con: duckdb.DuckDBPyConnection, trace: str, *, by: str | None = None, buckets: str = "coarse",
              quantiles: tuple[float, ...] = QUANTILES, cluster: str | None = None,
              gpu_only: bool = True) -> pl.DataFrame:
    """Queueing delay (``start_s - submit_s``) quantiles of started jobs, overall or per ``size``,
    ``group`` (VC), ``cluster`` or ``gpu_type``; same columns as :func:`duration_cdf`. NotAvailable
    for traces without start times (ITP, the derived Philly job lists)."""
    return _cdf(con, trace, "queue_s", by=by, buckets=buckets, quantiles=quantiles, cluster=cluster,
                gpu_only=gpu_only, needs="start_s")


def _shares(df: pl.DataFrame, within: str | None) -> pl.DataFrame:
    over = (lambda e: e.sum().over(within)) if within else (lambda e: e.sum())
    total_gpu = over(pl.col("gpu_s"))
    return df.with_columns(
        job_share=pl.col("jobs") / over(pl.col("jobs")),
        gpu_time_share=pl.when(total_gpu > 0).then(pl.col("gpu_s") / total_gpu),
    )


def status_shares(con: duckdb.DuckDBPyConnection, trace: str, *, by: str | None = None, buckets: str = "coarse",
                  cluster: str | None = None, gpu_only: bool = True) -> pl.DataFrame:
    """Final-status shares by job count and by GPU time, overall or within each ``by`` group:
    ``key, status, jobs, job_share, gpu_s, gpu_time_share``. GPU time counts jobs with a known run
    time; ``gpu_time_share`` is null where a group has none. NotAvailable if every status is unknown."""
    key, rank, key_col = _key(by, buckets)
    have = _need(con, trace, cluster, key_col)
    if have["status_known"] == 0:
        raise NotAvailable(f"{trace}: upstream records no final status (every job is 'unknown')")
    base, params = _base(trace, cluster, gpu_only)
    df = frame(con, f"SELECT {key} AS key, min({rank}) AS rank, status, min({STATUS_RANK}) AS srank, count(*) AS jobs, "
                    f"coalesce(sum(gpu_s), 0) AS gpu_s {base} GROUP BY ALL ORDER BY rank, key, srank", params)
    return _shares(df, "key").select("key", "status", "jobs", "job_share", "gpu_s", "gpu_time_share")


def size_distribution(con: duckdb.DuckDBPyConnection, trace: str, *, buckets: str | None = "coarse",
                      cluster: str | None = None, gpu_only: bool = True) -> pl.DataFrame:
    """Jobs and GPU time per size: per bucket (``buckets='coarse'``/``'helios'``) or per exact GPU count
    (``buckets=None``, key formatted like ``'8'`` or ``'0.5'``): ``key, jobs, job_share, gpu_s, gpu_time_share``."""
    _need(con, trace, cluster)
    base, params = _base(trace, cluster, gpu_only)
    if buckets is None:
        key, rank = "num_gpus", "num_gpus"
    else:
        key, rank = size_buckets(buckets).sql()
    df = frame(con, f"SELECT {key} AS key, min({rank}) AS rank, count(*) AS jobs, coalesce(sum(gpu_s), 0) AS gpu_s "
                    f"{base} GROUP BY 1 ORDER BY 2", params)
    if buckets is None:
        df = df.with_columns(pl.col("key").map_elements(lambda g: f"{g:g}", return_dtype=pl.String))
    return _shares(df, None).select("key", "jobs", "job_share", "gpu_s", "gpu_time_share")


def _entity_gpu_s(con, trace, by: str, cluster, gpu_only) -> np.ndarray:
    if by not in ("user", "group"):
        raise ValueError(f"concentration is by 'user' or 'group' (VC), not {by!r}")
    _need(con, trace, cluster, by)
    key = VC_LABEL if by == "group" else '"user"'
    base, params = _base(trace, cluster, gpu_only)
    gpu_s = arrays(con, f"SELECT coalesce(sum(gpu_s), 0) AS s FROM (SELECT {key} AS e, gpu_s {base}) "
                        "WHERE e IS NOT NULL GROUP BY e", params)["s"]
    gpu_s = np.sort(np.asarray(gpu_s, dtype=np.float64))[::-1]
    if gpu_s.size == 0 or gpu_s.sum() <= 0:
        raise NotAvailable(f"{trace}: no GPU time is attributed to any {by}")
    return gpu_s


def lorenz_top(gpu_s: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Share of GPU time held by the top ``fractions`` of entities: the piecewise-linear curve through
    ``(k/n, share of the k largest)``, ``k = 0..n`` (a fraction between two entities gets that part of
    the next entity's time)."""
    n = gpu_s.size
    x = np.arange(n + 1) / n
    y = np.concatenate([[0.0], np.cumsum(gpu_s) / gpu_s.sum()])
    return np.interp(fractions, x, y)


def concentration(con: duckdb.DuckDBPyConnection, trace: str, *, by: str = "user", points: int = 101,
                  cluster: str | None = None, gpu_only: bool = True) -> pl.DataFrame:
    """Concentration curve of GPU time over users (``by='user'``) or VCs (``by='group'``): the share of
    all GPU time held by the top ``top_frac`` of entities, at ``points`` evenly spaced fractions in
    [0, 1]: ``top_frac, gpu_time_share``. Every user (VC) with a GPU job is an entity, including those
    whose jobs have no known run time (they hold 0)."""
    gpu_s = _entity_gpu_s(con, trace, by, cluster, gpu_only)
    x = np.linspace(0.0, 1.0, points)
    return pl.DataFrame({"top_frac": x, "gpu_time_share": lorenz_top(gpu_s, x)})


def top_shares(con: duckdb.DuckDBPyConnection, trace: str, *, by: str = "user",
               fractions: tuple[float, ...] = TOP_FRACTIONS, cluster: str | None = None,
               gpu_only: bool = True) -> dict:
    """``{'entities': n, 'top_1': share of the largest, 'top_1pct': ..., 'top_5pct': ..., 'top_10pct': ...}``:
    GPU-time shares of the top users or VCs (same curve as :func:`concentration`)."""
    gpu_s = _entity_gpu_s(con, trace, by, cluster, gpu_only)
    out = {"entities": int(gpu_s.size), "top_1": float(gpu_s[0] / gpu_s.sum())}
    for f, share in zip(fractions, lorenz_top(gpu_s, np.asarray(fractions, dtype=np.float64))):
        out[f"top_{f * 100:g}pct"] = float(share)
    return out


def user_completion_ratio(con: duckdb.DuckDBPyConnection, trace: str, *, min_jobs: int = 1,
                          quantiles: tuple[float, ...] = QUANTILES, cluster: str | None = None,
                          gpu_only: bool = True) -> pl.DataFrame:
    """Distribution over users of each user's completion ratio (completed / finished jobs, finished =
    completed, failed, killed or cancelled), for users with at least ``min_jobs`` finished jobs:
    ``p, completion_ratio, users, mean, share_all_completed, share_none_completed``."""
    have = _need(con, trace, cluster, "user")
    if have["status_known"] == 0:
        raise NotAvailable(f"{trace}: upstream records no final status (every job is 'unknown')")
    base, params = _base(trace, cluster, gpu_only)
    finals = ", ".join(f"'{s}'" for s in FINAL_STATUSES)
    row = one(con, f"SELECT count(*), avg(r), avg((r = 1)::INT), avg((r = 0)::INT), "
                   f"quantile_cont(r, {quantile_sql(quantiles)}) FROM (SELECT \"user\", "
                   f"avg((status = 'completed')::INT::DOUBLE) AS r {base} AND \"user\" IS NOT NULL "
                   f"AND status IN ({finals}) GROUP BY 1 HAVING count(*) >= ?)", [*params, min_jobs])
    users, mean, all_done, none_done, qs = row
    if not users:
        raise NotAvailable(f"{trace}: no user has {min_jobs} or more finished jobs")
    n = len(quantiles)
    return pl.DataFrame({"p": [float(q) for q in quantiles], "completion_ratio": qs, "users": [users] * n,
                         "mean": [mean] * n, "share_all_completed": [all_done] * n,
                         "share_none_completed": [none_done] * n})


# ----------------------------------------------------------------------------------------- summary

def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NotAvailable as exc:
        return not_available(exc)


def _quantile_dict(df: pl.DataFrame) -> dict:
    first = df.row(0, named=True)
    out = {"jobs": first["jobs"], "mean": first["mean_s"]}
    out.update({f"p{round(p * 100):d}": v for p, v in zip(df["p"], df["value_s"])})
    return out


def characterize_jobs(con: duckdb.DuckDBPyConnection, trace: str, *, cluster: str | None = None) -> dict:
    """The key numbers of a job trace as a JSON-able dict (GPU jobs only, see the module docstring).

    Each part that the trace cannot support is the string ``'not available: <reason>'``.
    """
    require_view(con, "jobs", trace)
    base, params = _base(trace, cluster, gpu_only=False)
    (jobs, gpu_jobs, clusters, span_s, gpu_s, users, vcs) = one(
        con, f"SELECT count(*), count(*) FILTER (num_gpus > 0), count(DISTINCT cluster), max(submit_s) - min(submit_s), "
             f"sum(gpu_s), count(DISTINCT \"user\"), count(DISTINCT ({VC_LABEL})) {base}", params)
    if jobs == 0:
        raise NotAvailable(f"{trace}: no jobs" + (f" in cluster {cluster!r}" if cluster else ""))
    have = job_columns(con, trace, cluster)
    out: dict = {
        "trace": trace, "cluster": cluster, "jobs": jobs, "gpu_jobs": gpu_jobs, "cpu_only_jobs": jobs - gpu_jobs,
        "clusters": clusters, "submit_span_days": span_s / 86400 if span_s is not None else None,
        "gpu_hours": gpu_s / 3600 if gpu_s is not None else None, "users": users or None, "vcs": vcs or None,
        "columns_present": {k: v > 0 for k, v in have.items() if k != "jobs"},
    }
    dur = _try(duration_cdf, con, trace, cluster=cluster)
    out["duration_s"] = dur if isinstance(dur, str) else _quantile_dict(dur)
    queue = _try(queue_cdf, con, trace, cluster=cluster)
    out["queue_s"] = queue if isinstance(queue, str) else _quantile_dict(queue)
    status = _try(status_shares, con, trace, cluster=cluster)
    out["status"] = status if isinstance(status, str) else {
        "by_jobs": dict(zip(status["status"], status["job_share"])),
        "by_gpu_time": dict(zip(status["status"], status["gpu_time_share"]))}
    sizes = size_distribution(con, trace, cluster=cluster, buckets="coarse") if gpu_jobs else None
    out["size"] = "not available: no GPU jobs" if sizes is None else {
        k: {"job_share": j, "gpu_time_share": g} for k, j, g in zip(sizes["key"], sizes["job_share"],
                                                                   sizes["gpu_time_share"])}
    out["user_concentration"] = _try(top_shares, con, trace, by="user", cluster=cluster)
    out["vc_concentration"] = _try(top_shares, con, trace, by="group", cluster=cluster)
    ratio = _try(user_completion_ratio, con, trace, cluster=cluster)
    out["user_completion_ratio"] = ratio if isinstance(ratio, str) else {
        "users": ratio["users"][0], "mean": ratio["mean"][0], "median": ratio.filter(pl.col("p") == 0.5)["completion_ratio"][0]
        if 0.5 in ratio["p"] else None, "share_all_completed": ratio["share_all_completed"][0],
        "share_none_completed": ratio["share_none_completed"][0]}
    return out
