"""Cluster GPU utilization from job allocations, plus the resource-usage views only some traces have
(PAI requested vs used, Philly measured GPU utilization per job).

**Allocation series.** The GPUs held by running jobs, per time bin (default one minute), computed with
interval arithmetic on the job columns and no per-job loop: a job holding ``g`` GPUs over ``[s, e)``
adds ``+g`` to a difference array at the first bin it covers fully and ``-g`` after the last one, a
cumulative sum turns that into the full-bin totals, and the two partial bins at its ends receive
``g x (covered seconds / bin_s)`` through ``numpy.bincount`` (``mode='prorate'``, the default). So a
bin's value is the *mean* number of GPUs allocated during that bin and its integral over time is
exactly the jobs' GPU time. ``mode='touch'`` reproduces the Helios artifact's ``parse_sequence``
instead: a job counts fully in every minute from ``floor(start)`` to ``floor(end)`` inclusive
(a 10-second job fills a whole minute; a job from 00:00:50 to 00:01:10 fills two).

Bins are aligned to whole wall-clock minutes (hours, ...) of the absolute time where the trace's
origin is known (the catalog's ``origin_epoch_us``), so bin boundaries stay minute boundaries for
traces whose origin is not on one (Philly's derived lists start at 10:30:41).

Which jobs count: GPU jobs (``num_gpus > 0``) with a start time. A job with a start and no end is still
running and counts until the last event of the trace, or of the cluster when one is selected (the
latest submit/start/end). "Single-GPU" means ``num_gpus <= 1`` (PAI's fractional requests included),
"multi-GPU" ``num_gpus > 1``, as in the artifact. Traces without start times (ITP, the derived
Philly lists) have no allocation series unless ``start_fallback='submit'``: each job is then placed
at ``[submit, submit + duration]``, as if it had not queued at all; that shifts work earlier and
removes the smoothing queues provide (peaks may be overstated), so say so wherever it is shown.

**Capacity** comes from, in order: ``capacity_gpus=`` (a constant); the trace's (or
``capacity_trace``'s) daily ``vc_gpus`` cluster totals in the ``utilization`` table (Helios
``cluster_gpu_number.csv``: each day's total holds from its local midnight to the next row, the last
one indefinitely); the ``machines`` table's GPU sum
(Philly's machine list, PAI's machine spec). Utilization is ``allocated / capacity`` and is not
clipped at 1 (the Helios artifact clips with ``min(running, total)``; values above 1 are worth seeing).
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl

from analysis.catalog import (NotAvailable, TraceInfo, arrays, has_view, not_available, one, require_view, rows,
                              trace_filter, trace_info)
from analysis.jobs import QUANTILES, quantile_sql, queue_cdf, size_buckets

MODES = ("prorate", "touch")
"""Allocation series modes (see the module docstring)."""
MAX_BINS = 50_000_000
"""Refuse series longer than this (95 years of minutes): a stray timestamp, not a workload."""


# ------------------------------------------------------------------------------ interval arithmetic

def interval_bins(start_s: np.ndarray, end_s: np.ndarray, weights: dict[str, np.ndarray], *, bin_s: float = 60.0,
                  offset_s: float = 0.0, mode: str = "prorate") -> tuple[int, dict[str, np.ndarray]]:
    """Per-bin sums of interval weights, vectorized (difference array + ``bincount``, no per-interval loop).

    Bin ``b`` covers ``[b * bin_s - offset_s, (b + 1) * bin_s - offset_s)`` of the input clock. Returns
    ``(first bin index, {name: values})``: one value array per weight array, covering every bin from the
    first interval's start to the last one's end. ``prorate``: the mean of the weights active during the
    bin (partial bins get ``weight x covered fraction``). ``touch``: the full weight in every bin from
    ``floor(start)`` to ``floor(end)`` inclusive. Requires ``end_s >= start_s``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    if not bin_s > 0:
        raise ValueError(f"bin_s must be positive, got {bin_s}")
    u0 = np.asarray(start_s, dtype=np.float64) + offset_s
    u1 = np.asarray(end_s, dtype=np.float64) + offset_s
    if u0.size == 0:
        return 0, {k: np.zeros(0) for k in weights}
    if np.any(u1 < u0):
        raise ValueError("interval_bins: an interval ends before it starts")
    b0 = np.floor(u0 / bin_s).astype(np.int64)
    if mode == "touch":
        b1 = np.floor(u1 / bin_s).astype(np.int64)
    else:  # the bin holding the interval's last instant: an end on a bin edge does not open the next bin
        b1 = np.maximum(b0, np.ceil(u1 / bin_s).astype(np.int64) - 1)
    first = int(b0.min())
    n = int(b1.max()) - first + 1
    if n > MAX_BINS:
        raise ValueError(f"interval_bins: {n:,} bins of {bin_s:g} s; use a larger bin_s or a window")
    i0, i1 = b0 - first, b1 - first
    out: dict[str, np.ndarray] = {}
    if mode == "touch":
        for name, w in weights.items():
            diff = np.bincount(i0, w, n + 1) - np.bincount(i1 + 1, w, n + 1)
            out[name] = np.cumsum(diff)[:n]
        return first, out
    same = i0 == i1
    head = np.where(same, u1 - u0, (b0 + 1) * bin_s - u0) / bin_s  # covered fraction of the first bin
    tail = np.where(same, 0.0, u1 - b1 * bin_s) / bin_s  # covered fraction of the last bin
    span = ~same  # bins i0 + 1 .. i1 - 1 are covered fully (none when i1 == i0 + 1: the +/- cancel)
    j0, j1 = i0[span] + 1, i1[span]
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float64)
        ws = w[span]
        full = np.cumsum(np.bincount(j0, ws, n + 1) - np.bincount(j1, ws, n + 1))[:n]
        out[name] = full + np.bincount(i0, w * head, n) + np.bincount(i1, w * tail, n)
    return first, out


# ------------------------------------------------------------------------------ allocation and capacity

def _local_time(info: TraceInfo, time_s: pl.Expr) -> pl.Expr:
    micros = ((time_s + info.origin_s) * 1e6).round().cast(pl.Int64)
    return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC").dt.convert_time_zone(info.time_zone)


def allocation_series(con: duckdb.DuckDBPyConnection, trace: str, *, cluster: str | None = None,
                      bin_s: float = 60.0, mode: str = "prorate", start_fallback: str | None = None,
                      window_s: tuple[float, float] | None = None) -> pl.DataFrame:
    """GPUs allocated to running jobs per bin: ``time_s`` (bin start, seconds since the trace origin),
    ``bin_s``, ``gpus``, ``single_gpus`` (jobs with ``num_gpus <= 1``), ``multi_gpus`` (``> 1``), ``jobs``
    (running GPU jobs), and ``time`` (the bin start in the trace's local time zone) where the trace has a
    wall clock. ``window_s=(t0, t1)`` clips the jobs to ``[t0, t1)`` first. See the module docstring."""
    require_view(con, "jobs", trace)
    if start_fallback not in (None, "submit"):
        raise ValueError(f"start_fallback is None or 'submit', not {start_fallback!r}")
    info = trace_info(con, trace)
    where, params = trace_filter(trace, cluster)
    fallback = "CASE WHEN duration_s IS NOT NULL THEN submit_s END" if start_fallback else "NULL"
    got = arrays(con, f"""
        WITH j AS (SELECT * FROM jobs WHERE {where}),
             t AS (SELECT max(greatest(submit_s, coalesce(start_s, submit_s), coalesce(end_s, submit_s))) AS last FROM j)
        SELECT s, coalesce(e, t.last) AS e, g FROM (
            SELECT coalesce(start_s, {fallback}) AS s, coalesce(end_s, coalesce(start_s, {fallback}) + duration_s) AS e,
                   num_gpus AS g FROM j WHERE num_gpus > 0) CROSS JOIN t WHERE s IS NOT NULL""", params)
    s, e, g = (np.asarray(got[c], dtype=np.float64) for c in ("s", "e", "g"))
    if s.size == 0:
        (n,) = one(con, f"SELECT count(*) FROM jobs WHERE {where} AND num_gpus > 0", params)
        why = ("no GPU jobs" + (f" in cluster {cluster!r}" if cluster else "") if n == 0 else "no GPU job has a start time"
               + ("" if start_fallback else " (start_fallback='submit' places jobs at their submission)"))
        raise NotAvailable(f"{trace}: {why}")
    if window_s is not None:
        s, e = np.maximum(s, window_s[0]), np.minimum(e, window_s[1])
        keep = e > s if mode == "prorate" else e >= s
        s, e, g = s[keep], e[keep], g[keep]
        if s.size == 0:
            raise NotAvailable(f"{trace}: no GPU job runs inside the window {window_s}")
    offset = info.origin_s % bin_s if info.origin_epoch_us is not None else 0.0
    single = np.where(g <= 1, g, 0.0)
    first, v = interval_bins(s, e, {"gpus": g, "single_gpus": single, "multi_gpus": g - single,
                                    "jobs": np.ones_like(g)}, bin_s=bin_s, offset_s=offset, mode=mode)
    time_s = (first + np.arange(v["gpus"].size)) * bin_s - offset
    df = pl.DataFrame({"time_s": time_s, "bin_s": np.full(time_s.size, float(bin_s)), **v})
    if info.wall_clock:
        df = df.with_columns(time=_local_time(info, pl.col("time_s")))
    return df


def capacity(con: duckdb.DuckDBPyConnection, trace: str, *, cluster: str | None = None,
             capacity_trace: str | None = None) -> pl.DataFrame | None:
    """Cluster GPU capacity as a step function on ``trace``'s clock: ``time_s`` (from when; ``-inf`` for a
    constant), ``capacity_gpus``. None when neither a ``vc_gpus`` series covering every cluster with GPU
    jobs nor a machine inventory is in the catalog."""
    src = capacity_trace or trace
    where, params = trace_filter(src, cluster)
    if has_view(con, "utilization"):
        df = pl.DataFrame(rows(con, f"SELECT time_s, sum(value), list(DISTINCT cluster) FROM utilization WHERE {where} "
                                    "AND metric = 'vc_gpus' AND entity_kind = 'cluster' GROUP BY 1 ORDER BY 1", params),
                          schema=["time_s", "capacity_gpus", "clusters"], orient="row")
        if df.height:
            covered = set().union(*df["clusters"].to_list())
            needed = _gpu_clusters(con, trace, cluster)
            if needed <= covered and df["clusters"].list.len().n_unique() == 1:
                shift = _clock_shift(con, src, trace)
                return df.select(pl.col("time_s") + shift, pl.col("capacity_gpus").cast(pl.Float64))
    if has_view(con, "machines"):
        (gpus,) = one(con, f"SELECT sum(num_gpus) FROM machines WHERE {where}", params)
        if gpus:
            return pl.DataFrame({"time_s": [-math.inf], "capacity_gpus": [float(gpus)]})
    return None


def _gpu_clusters(con, trace: str, cluster: str | None) -> set:
    if cluster is not None:
        return {cluster}
    if not has_view(con, "jobs"):
        return set()
    return {r[0] for r in rows(con, "SELECT DISTINCT cluster FROM jobs WHERE trace = ? AND num_gpus > 0", [trace])}


def _clock_shift(con, src: str, trace: str) -> float:
    """Seconds to add to ``src``'s times to put them on ``trace``'s clock."""
    if src == trace:
        return 0.0
    a, b = trace_info(con, src), trace_info(con, trace)
    if a.epoch != "unix" or b.epoch != "unix" or a.origin_epoch_us is None or b.origin_epoch_us is None:
        raise NotAvailable(f"cannot put {src}'s capacity series on {trace}'s clock: an origin is not Unix time")
    return (a.origin_epoch_us - b.origin_epoch_us) / 1e6


def utilization_series(con: duckdb.DuckDBPyConnection, trace: str, *, cluster: str | None = None,
                       bin_s: float = 60.0, mode: str = "prorate", start_fallback: str | None = None,
                       window_s: tuple[float, float] | None = None, capacity_gpus: float | None = None,
                       capacity_trace: str | None = None) -> pl.DataFrame:
    """:func:`allocation_series` plus ``capacity_gpus`` and ``utilization`` (``gpus / capacity_gpus``;
    null where the capacity is unknown or zero), ``single_utilization`` and ``multi_utilization``."""
    df = allocation_series(con, trace, cluster=cluster, bin_s=bin_s, mode=mode, start_fallback=start_fallback,
                           window_s=window_s)
    if capacity_gpus is not None:
        cap = pl.DataFrame({"time_s": [-math.inf], "capacity_gpus": [float(capacity_gpus)]})
    else:
        cap = capacity(con, trace, cluster=cluster, capacity_trace=capacity_trace)
    if cap is None:
        values = np.full(df.height, np.nan)
    else:
        idx = np.searchsorted(cap["time_s"].to_numpy(), df["time_s"].to_numpy(), side="right") - 1
        values = np.where(idx >= 0, cap["capacity_gpus"].to_numpy()[np.maximum(idx, 0)], np.nan)
    df = df.with_columns(capacity_gpus=pl.Series(values).fill_nan(None))
    ok = pl.col("capacity_gpus") > 0
    return df.with_columns(**{f"{p}utilization": pl.when(ok).then(pl.col(f"{p}gpus") / pl.col("capacity_gpus"))
                              for p in ("", "single_", "multi_")})


def _need_clock(series: pl.DataFrame) -> None:
    if "time" not in series.columns:
        raise NotAvailable("the trace has no wall clock (origin not in Unix time or time zone unknown)")


def diurnal_profile(series: pl.DataFrame) -> pl.DataFrame:
    """Mean per local hour of day (0-23) of a :func:`utilization_series`: ``hour, bins, gpus, utilization``
    (every bin weighs the same; bins longer than an hour are attributed to the hour they start in)."""
    _need_clock(series)
    util = [pl.col("utilization").mean()] if "utilization" in series.columns else []
    return (series.group_by(hour=pl.col("time").dt.hour()).agg(bins=pl.len(), gpus=pl.col("gpus").mean(), *util)
            .sort("hour"))


def monthly_trend(series: pl.DataFrame) -> pl.DataFrame:
    """Per local calendar month of a :func:`utilization_series`: ``month`` ('YYYY-MM'), ``bins``,
    ``gpu_hours`` (allocated), ``gpus`` and ``utilization`` (means). First and last months may be partial."""
    _need_clock(series)
    util = [pl.col("utilization").mean()] if "utilization" in series.columns else []
    return (series.group_by(month=pl.col("time").dt.strftime("%Y-%m"))
            .agg(bins=pl.len(), gpu_hours=(pl.col("gpus") * pl.col("bin_s")).sum() / 3600, gpus=pl.col("gpus").mean(),
                 *util).sort("month"))


def single_multi_share(series: pl.DataFrame, *, every_s: float = 86400.0) -> pl.DataFrame:
    """Share of allocated GPU time from single-GPU (``num_gpus <= 1``) and multi-GPU jobs per period:
    ``period`` (local day start where the trace has a wall clock and ``every_s`` is a day, else seconds
    since the origin), ``gpu_hours``, ``single_share``, ``multi_share`` (null in periods with no GPU time)."""
    if "time" in series.columns and every_s == 86400.0:
        period = pl.col("time").dt.truncate("1d")
    else:
        period = (pl.col("time_s") / every_s).floor() * every_s
    hours = lambda c: (pl.col(c) * pl.col("bin_s")).sum() / 3600  # noqa: E731
    out = series.group_by(period=period).agg(gpu_hours=hours("gpus"), single=hours("single_gpus"),
                                             multi=hours("multi_gpus")).sort("period")
    ok = pl.col("gpu_hours") > 0
    return out.select("period", "gpu_hours", single_share=pl.when(ok).then(pl.col("single") / pl.col("gpu_hours")),
                      multi_share=pl.when(ok).then(pl.col("multi") / pl.col("gpu_hours")))


def characterize_utilization(con: duckdb.DuckDBPyConnection, trace: str, *, cluster: str | None = None,
                             capacity_gpus: float | None = None, capacity_trace: str | None = None,
                             start_fallback: str | None = None) -> dict:
    """Key utilization numbers as a JSON-able dict; missing parts are ``'not available: <reason>'``."""
    try:
        s = utilization_series(con, trace, cluster=cluster, start_fallback=start_fallback,
                               capacity_gpus=capacity_gpus, capacity_trace=capacity_trace)
    except NotAvailable as exc:
        return {"trace": trace, "cluster": cluster, "allocation": not_available(exc)}
    gpu_h = float((s["gpus"] * s["bin_s"]).sum() / 3600)
    out: dict = {"trace": trace, "cluster": cluster, "bins": s.height, "bin_s": float(s["bin_s"][0]),
                 "start_fallback": start_fallback, "gpu_hours": gpu_h, "mean_gpus": float(s["gpus"].mean()),
                 "peak_gpus": float(s["gpus"].max()),
                 "single_gpu_share": float((s["single_gpus"] * s["bin_s"]).sum() / 3600 / gpu_h) if gpu_h else None}
    util = s["utilization"].drop_nulls()
    out["utilization"] = "not available: no cluster capacity in the catalog" if util.is_empty() else {
        "mean": float(util.mean()), "p50": float(util.quantile(0.5, "linear")),
        "p95": float(util.quantile(0.95, "linear")), "share_of_bins_above_1": float((util > 1).mean()),
        "capacity_gpus_mean": float(s["capacity_gpus"].mean())}
    try:
        d = diurnal_profile(s)
        col = "utilization" if "utilization" in d.columns and d["utilization"].null_count() < d.height else "gpus"
        top, low = d.sort(col, descending=True)["hour"][0], d.sort(col)["hour"][0]
        out["diurnal"] = {"by": col, "peak_hour": int(top), "trough_hour": int(low),
                          "peak_over_trough": float(d[col].max() / d[col].min()) if d[col].min() else None}
        m = monthly_trend(s)
        util_m = m["utilization"].to_list() if "utilization" in m.columns else [None] * m.height
        out["monthly"] = {mo: {"gpu_hours": gh, "utilization": u} for mo, gh, u in zip(m["month"], m["gpu_hours"], util_m)}
    except NotAvailable as exc:
        out["diurnal"] = out["monthly"] = not_available(exc)
    return out


# ------------------------------------------------------------------------------ PAI: requested vs used

PAI_RESOURCES = {"cpu": ("plan_cpus", "used_cpus"), "gpu": ("plan_gpus", "used_gpus"),
                 "mem": ("plan_mem_gb", "avg_mem_gb"), "mem_peak": ("plan_mem_gb", "max_mem_gb")}
"""resource -> (requested column, used column) in ``pai_instance_usage``."""


def pai_request_vs_usage(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020") -> pl.DataFrame:
    """Per resource (cpu, gpu, mem = mean host memory, mem_peak = max host memory), over instances with a
    positive request and a measured use: ``resource, instances, share_below_request`` (used < requested),
    ``requested_mean, used_mean`` and quantiles ``ratio_p10 .. ratio_p90`` of used / requested."""
    require_view(con, "pai_instance_usage", trace)
    parts = []
    for res, (plan, used) in PAI_RESOURCES.items():
        parts.append(f"""SELECT '{res}' AS resource, count(*) AS instances, avg(({used} < {plan})::INT) AS share_below_request,
            avg({plan}) AS requested_mean, avg({used}) AS used_mean,
            quantile_cont({used} / {plan}, [0.1, 0.25, 0.5, 0.75, 0.9]) AS q
            FROM pai_instance_usage WHERE trace = ? AND {plan} > 0 AND {used} IS NOT NULL""")
    got = rows(con, " UNION ALL ".join(parts), [trace] * len(parts))
    if not any(r[1] for r in got):
        raise NotAvailable(f"{trace}: no instance has both a request and a measured use")
    cols = {"resource": [], "instances": [], "share_below_request": [], "requested_mean": [], "used_mean": []}
    qcols = {f"ratio_p{p}": [] for p in (10, 25, 50, 75, 90)}
    for res, n, below, req, used, q in got:
        for k, v in zip(cols, (res, n, below, req, used)):
            cols[k].append(v)
        for k, v in zip(qcols, q or [None] * 5):
            qcols[k].append(v)
    return pl.DataFrame({**cols, **qcols}, schema_overrides={k: pl.Float64 for k in (*list(cols)[2:], *qcols)})


def wait_by_request(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020", *, by: str = "size",
                    buckets: str = "coarse", quantiles: tuple[float, ...] = QUANTILES) -> pl.DataFrame:
    """Queueing delay quantiles by GPU request bucket (``by='size'``; fractional requests are ``<1``) or by
    requested ``gpu_type``: :func:`analysis.jobs.queue_cdf` with these groupings."""
    if by not in ("size", "gpu_type"):
        raise ValueError(f"wait_by_request groups by 'size' or 'gpu_type', not {by!r}")
    return queue_cdf(con, trace, by=by, buckets=buckets, quantiles=quantiles)


# ------------------------------------------------------------------------------ Philly: measured GPU use

def gpu_util_by_job(con: duckdb.DuckDBPyConnection, trace: str = "philly", *, by: str = "status",
                    buckets: str = "coarse", quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)) -> pl.DataFrame:
    """Measured GPU utilization of jobs, grouped by final ``status`` or ``size`` bucket.

    Joins each attempt's GPUs (``attempts.gpus``: ``'<machine>/gpu<k>'``) with the per-minute
    ``gpu_util_pct`` samples of that machine's device ``k`` taken while the attempt ran (an attempt
    without an end runs to the last sample). A job's utilization is the mean over all its
    (GPU, minute) samples. Returns ``key, jobs, samples, mean_util_pct`` (mean of the job means),
    ``sample_mean_util_pct`` (mean over all samples) and job-mean quantiles ``util_p10 ..``.
    """
    for view in ("attempts", "utilization", "jobs"):
        require_view(con, view, trace)
    if by == "status":
        key = "j.status"
    elif by == "size":
        key = size_buckets(buckets).sql("j.num_gpus")[0]
    else:
        raise ValueError(f"gpu_util_by_job groups by 'status' or 'size', not {by!r}")
    got = rows(con, f"""
        WITH last AS (SELECT max(time_s) AS t FROM utilization WHERE trace = ? AND metric = 'gpu_util_pct'),
        g AS (SELECT job_id, start_s, end_s, split_part(x, '/', 1) AS machine,
                     TRY_CAST(regexp_extract(split_part(x, '/', 2), '([0-9]+)$', 1) AS INTEGER) AS gpu
              FROM (SELECT job_id, start_s, coalesce(end_s, (SELECT t FROM last)) AS end_s, unnest(gpus) AS x
                    FROM attempts WHERE trace = ? AND start_s IS NOT NULL)),
        s AS (SELECT g.job_id, u.device_values[g.gpu + 1] AS v FROM g JOIN utilization u
              ON u.trace = ? AND u.metric = 'gpu_util_pct' AND u.entity = g.machine
              AND u.time_s >= g.start_s AND u.time_s <= g.end_s),
        per_job AS (SELECT job_id, avg(v) AS util, count(v) AS n, sum(v) AS total FROM s GROUP BY 1 HAVING count(v) > 0)
        SELECT {key} AS key, count(*) AS jobs, sum(p.n) AS samples, avg(p.util), sum(p.total) / sum(p.n),
               quantile_cont(p.util, {quantile_sql(quantiles)})
        FROM per_job p JOIN jobs j ON j.trace = ? AND j.job_id = p.job_id GROUP BY 1 ORDER BY 1""",
                [trace] * 4)
    if not got:
        raise NotAvailable(f"{trace}: no attempt's GPUs have utilization samples while it ran")
    out = {"key": [r[0] for r in got], "jobs": [r[1] for r in got], "samples": [int(r[2]) for r in got],
           "mean_util_pct": [r[3] for r in got], "sample_mean_util_pct": [r[4] for r in got]}
    for i, q in enumerate(quantiles):
        out[f"util_p{round(q * 100):d}"] = [r[5][i] for r in got]
    return pl.DataFrame(out)
