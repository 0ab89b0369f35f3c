"""SenseTime Helios 2020 (SC'21): four GPU clusters, their Slurm job logs and daily VC GPU counts.

Upstream ships ``data.zip`` laid out as ``data/<Cluster>/{cluster_log.csv,cluster_gpu_number.csv}``
for Venus, Earth, Saturn and Uranus (FORMATS.md §6). Everything is one trace, ``helios``; the
``cluster`` column tells the clusters apart, because job ids and VC ids are only unique per cluster.

* ``cluster_log.csv`` -> ``jobs``. Times are naive China wall-clock (no DST since 1991) and are
  localized to Asia/Shanghai. Empty ``start_time``/``end_time`` (jobs cancelled before they started)
  become null. Rejected: unknown ``state``, bad counts or times, end before start, start before
  submit, duplicate ``job_id`` within a cluster. Upstream ``duration``/``queue`` are redundant with
  the times and are not stored (``jobs_derived`` recomputes them): a value that is missing,
  unparseable or more than 1 s off the times never rejects the row; the times win and
  :func:`upstream_disagreements` counts such rows.
* ``cluster_gpu_number.csv`` -> ``utilization``: metric ``vc_gpus``, one row per (day, VC) with
  ``entity_kind='vc'`` plus one per day with ``entity_kind='cluster'`` for the ``total`` column, at the
  day's local midnight. The VC columns differ per cluster and are read from each file's header.
  A line whose ``total`` is not the sum of its VC columns is rejected.

Status mapping: TIMEOUT and NODE_FAIL count as ``failed`` (as in the paper); RUNNING -> ``running``;
SUSPENDED (once, in Uranus) -> ``unknown``: a suspended Slurm job holds its allocation but neither
runs nor has finished, and the trace does not say what became of it. ``raw_status`` keeps the value.
"""

from __future__ import annotations

import polars as pl

from ingest.checks import is_blank, map_status, parse_number, parse_time, reject_duplicates_prepass, reject_if, require
from ingest.errors import FormatError
from ingest.inputs import InputSet, InputSpec, ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON, check_header, first_line, in_fast_path, scan_lines, split_fields
from ingest.schema import JOBS, UTILIZATION
from ingest.sources.base import RemoteFile, Source, TablePlan, TimeBase

TRACE = "helios"
CLUSTERS = ("Venus", "Earth", "Saturn", "Uranus")
"""The four released clusters, in the order their inputs are planned."""
LOG_FILE = "cluster_log.csv"
CAPACITY_FILE = "cluster_gpu_number.csv"
LOG_COLUMNS = (
    "job_id", "user", "vc", "gpu_num", "cpu_num", "node_num", "state",
    "submit_time", "start_time", "end_time", "duration", "queue",
)
"""The 12 columns of ``cluster_log.csv``, in file order."""
TIME_ZONE = "Asia/Shanghai"
TIME_FMT = "%Y-%m-%d %H:%M:%S"
TIME_EXPECTED = "YYYY-MM-DD HH:MM:SS"
NULL_TIMES = ("NaT", "None", "Unknown")
"""Tokens read as a missing start/end time besides the empty field (pandas and Slurm spellings)."""
STATUS = {
    "COMPLETED": "completed",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "TIMEOUT": "failed",
    "NODE_FAIL": "failed",
    "RUNNING": "running",
    "SUSPENDED": "unknown",
}
"""Upstream ``state`` -> canonical status (see the module docstring for the choices)."""
DISAGREE_TOLERANCE_S = 1
"""Upstream duration/queue differing from the recomputed value by more than this count as disagreements."""
METRIC = "vc_gpus"
"""Utilization metric: GPUs assigned to a VC that day (for entity_kind 'cluster': the upstream total)."""
_RESERVED = {FILE, LINE, RAW, REASON, "time_s"}


def _text_or_null(col: str) -> pl.Expr:
    return pl.when(is_blank(col)).then(None).otherwise(pl.col(col).str.strip_chars())


def _parse_int(lf: pl.LazyFrame, raw: str, out: str, *, required: bool = True, dtype: pl.DataType = pl.Int64) -> pl.LazyFrame:
    """A non-negative integer (parse_number rejects values beyond ``dtype``)."""
    return parse_number(lf, raw, out, dtype=dtype, required=required, min_value=0)


def _parse_log_time(lf: pl.LazyFrame, raw: str, out: str, *, required: bool) -> pl.LazyFrame:
    return parse_time(lf, raw, out, fmt=TIME_FMT, expected=TIME_EXPECTED, time_zone=TIME_ZONE,
                      required=required, null_values=() if required else NULL_TIMES)


def _reject_before(lf: pl.LazyFrame, first: str, second: str) -> pl.LazyFrame:
    """Reject rows whose ``second`` time (raw column name) is before ``first``, quoting both values."""
    out = {"submit_time": "submit_s", "start_time": "start_s", "end_time": "end_s"}
    return reject_if(lf, (
        pl.col(out[second]) < pl.col(out[first]),
        pl.format(f"{second} '{{}}' before {first} '{{}}'", pl.col(second).str.strip_chars(), pl.col(first).str.strip_chars()),
    ))


def _disagrees(raw: str, recomputed_us: pl.Expr) -> pl.Expr:
    """True where the times give a value and upstream ``raw`` is missing, unparseable or off by > 1 s."""
    upstream_us = pl.col(raw).str.strip_chars().cast(pl.Float64, strict=False) * 1_000_000
    off = (recomputed_us - upstream_us).abs() > DISAGREE_TOLERANCE_S * 1_000_000
    return pl.when(recomputed_us.is_null()).then(None).otherwise(off.fill_null(True))


def parse_cluster_log(inp: ResolvedInput, cluster: str, fields: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Parse one ``cluster_log.csv`` (header checked) into typed columns plus the bookkeeping columns.

    Besides the canonical job columns it keeps ``duration_disagrees`` and ``queue_disagrees``
    (booleans: upstream value vs. recomputed from the times; null where the times are missing).
    """
    return reject_duplicates_prepass(
        log_fields(inp) if fields is None else fields, lambda lf: _checked_log(lf, cluster), {"job_id": pl.col("job_id").str.strip_chars()}, "job_id"
    )


def log_fields(inp: ResolvedInput) -> pl.LazyFrame:
    """The lines of one ``cluster_log.csv`` (header checked) split into its upstream fields."""
    check_header(inp.path, inp.display, LOG_COLUMNS)
    return split_fields(scan_lines(inp.path, inp.display, skip_header=True), LOG_COLUMNS)


def _checked_log(lf: pl.LazyFrame, cluster: str) -> pl.LazyFrame:
    """Every row check but the duplicate one (see :func:`parse_cluster_log`)."""
    lf = require(lf, "job_id")
    lf = _parse_int(lf, "gpu_num", "num_gpus")
    lf = _parse_int(lf, "cpu_num", "num_cpus")
    lf = _parse_int(lf, "node_num", "num_nodes", dtype=pl.Int32)
    lf = map_status(lf.with_columns(pl.col("state").str.strip_chars()), "state", "status", STATUS)
    lf = _parse_log_time(lf, "submit_time", "submit_s", required=True)
    lf = _parse_log_time(lf, "start_time", "start_s", required=False)
    lf = _parse_log_time(lf, "end_time", "end_s", required=False)
    lf = _reject_before(lf, "start_time", "end_time")
    lf = _reject_before(lf, "submit_time", "start_time")
    return lf.with_columns(
        _disagrees("duration", pl.col("end_s") - pl.col("start_s")).alias("duration_disagrees"),
        _disagrees("queue", pl.col("start_s") - pl.col("submit_s")).alias("queue_disagrees"),
        pl.lit(cluster).alias("cluster"),
        pl.col("job_id").str.strip_chars(),
    )


def jobs_plan(inp: ResolvedInput, cluster: str) -> TablePlan:
    """Plan one cluster's ``cluster_log.csv`` as rows of the ``jobs`` table."""
    fields = log_fields(inp)
    attempt = in_fast_path()
    if attempt is not None:  # no dedup pass: the writer checks that job ids do not repeat (TablePlan.unique_on)
        attempt.used = True
        parsed = _checked_log(fields, cluster)
    else:
        parsed = parse_cluster_log(inp, cluster, fields)
    lf = parsed.select(
        pl.lit(TRACE).alias("trace"),
        "cluster",
        "job_id",
        _text_or_null("user").alias("user"),
        _text_or_null("vc").alias("group"),
        "submit_s",
        "start_s",
        "end_s",
        pl.lit(None, pl.Float64).alias("duration_s"),  # start/end are known: run_s = end_s - start_s
        pl.col("num_gpus").cast(pl.Float64),
        pl.col("num_cpus").cast(pl.Float64),
        pl.col("num_nodes").cast(pl.Int32, strict=False),
        pl.lit(None, pl.String).alias("gpu_type"),
        "status",
        pl.col("state").alias("raw_status"),
        FILE, LINE, RAW, REASON,
    )
    return TablePlan(JOBS, TRACE, lf, origin_hint=_checked_log(fields, cluster),
                     unique_on=("job_id",) if attempt is not None else ())


def upstream_disagreements(inp: ResolvedInput, cluster: str) -> dict[str, int]:
    """Count good rows whose upstream ``duration``/``queue`` is missing, unparseable or > 1 s off the times.

    Only rows whose times allow the recomputation count. The ingest keeps such rows (the times are
    the primary data); this is the number to report. Returns ``{"duration", "queue", "rows"}``.
    """
    counts = (
        parse_cluster_log(inp, cluster)
        .filter(pl.col(REASON).is_null())
        .select(
            pl.col("duration_disagrees").sum().alias("duration"),
            pl.col("queue_disagrees").sum().alias("queue"),
            pl.len().alias("rows"),
        )
        .collect()
    )
    return {k: int(v) for k, v in counts.row(0, named=True).items()}


def capacity_columns(inp: ResolvedInput) -> tuple[str, ...]:
    """The header of a ``cluster_gpu_number.csv``: ``date``, the cluster's VC ids, ``total``.

    FormatError (naming the file) unless line 1 is such a header with unique, non-empty VC ids.
    """
    names = tuple(f.strip() for f in first_line(inp.path, inp.display).split(","))
    vcs = names[1:-1]
    problem = None
    if len(names) < 3 or names[0] != "date" or names[-1] != "total":
        problem = "expected 'date', one column per VC, then 'total'"
    elif any(not v or v in _RESERVED or v in ("date", "total") for v in vcs):
        problem = "a VC column name is empty or reserved"
    elif len(set(vcs)) != len(vcs):
        problem = "a VC column appears twice"
    if problem:
        raise FormatError(f"{inp.display}: line 1: {problem}; found {','.join(names)[:200]!r}")
    return names


def capacity_plan(inp: ResolvedInput, cluster: str) -> TablePlan:
    """Plan one ``cluster_gpu_number.csv`` as ``utilization`` rows (metric ``vc_gpus``).

    Each good line becomes one row per VC plus one cluster row (``total``); a rejected line stays
    one quarantine row. So this plan's rows-in count is samples out + lines rejected.
    """
    columns = capacity_columns(inp)
    vcs = columns[1:-1]
    values = [f"_v{i}" for i in range(len(vcs))] + ["_total"]
    lf = split_fields(scan_lines(inp.path, inp.display, skip_header=True), columns)
    lf = parse_time(lf, "date", "time_s", fmt="%Y-%m-%d", expected="YYYY-MM-DD", time_zone=TIME_ZONE)
    for raw, out in zip((*vcs, "total"), values, strict=True):
        lf = _parse_int(lf, raw, out)
    vc_sum = pl.sum_horizontal([pl.col(v) for v in values[:-1]])
    lf = reject_if(lf, (
        pl.col("_total") != vc_sum,
        pl.format("total '{}' differs from the sum of the VC columns ({})", pl.col("total").str.strip_chars(), vc_sum),
    ))
    entity = dict(zip(values, (*vcs, cluster), strict=True))
    order = {v: i for i, v in enumerate(values)}
    long = (
        lf.select(FILE, LINE, RAW, REASON, "time_s", *values)
        .unpivot(on=values, index=[FILE, LINE, RAW, REASON, "time_s"], variable_name="_var", value_name="_value")
        # a rejected line is quarantined once (with its first column), not once per VC
        .filter(pl.col(REASON).is_null() | (pl.col("_var") == values[0]))
        .with_columns(pl.col("_var").replace_strict(order, return_dtype=pl.Int32).alias("_pos"))
        .sort([LINE, "_pos"])
    )
    lf = long.select(
        pl.lit(TRACE).alias("trace"),
        pl.lit(cluster).alias("cluster"),
        pl.when(pl.col("_var") == "_total").then(pl.lit("cluster")).otherwise(pl.lit("vc")).alias("entity_kind"),
        pl.col("_var").replace_strict(entity, return_dtype=pl.String).alias("entity"),
        "time_s",
        pl.lit(METRIC).alias("metric"),
        pl.col("_value").cast(pl.Float64).alias("value"),
        pl.lit(None, pl.List(pl.Float64)).alias("device_values"),
        FILE, LINE, RAW, REASON,
    )
    return TablePlan(UTILIZATION, TRACE, lf)


class Helios2020(Source):
    """SenseTime Helios: jobs and daily VC GPU counts of Venus, Earth, Saturn and Uranus."""

    name = "helios_2020"
    title = "SenseTime Helios (SC'21): 4 GPU clusters, Apr-Sep 2020, 3.36 M Slurm jobs and daily VC GPU counts"
    local_dir = "helios"
    inputs = tuple(
        InputSpec(f"{cluster}/{file}", containers=("data.zip",), required=False)
        for cluster in CLUSTERS
        for file in (LOG_FILE, CAPACITY_FILE)
    )
    # A plain git blob at the repo root; upstream publishes no checksum (FORMATS.md §6.1).
    downloads = (RemoteFile("data.zip", "https://github.com/S-Lab-System-Group/HeliosData/raw/master/data.zip"),)
    time_base = TimeBase(TIME_ZONE, "unix")

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """One jobs plan per cluster_log.csv and one utilization plan per cluster_gpu_number.csv found."""
        plans: list[TablePlan] = []
        for cluster in CLUSTERS:
            if (log := inputs.get(f"{cluster}/{LOG_FILE}")) is not None:
                plans.append(jobs_plan(log, cluster))
            if (capacity := inputs.get(f"{cluster}/{CAPACITY_FILE}")) is not None:
                plans.append(capacity_plan(capacity, cluster))
        return plans


SOURCES = (Helios2020(),)
"""Helios: real daily VC GPU counts of Venus and Earth offline; job logs tested on fixtures."""
