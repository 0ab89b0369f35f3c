"""Derived Philly tables from third-party repositories (FORMATS.md §10), each its own derived trace.

These are not the upstream Philly files: each is a table some paper's artifact derived from the
Philly job log or utilization data, with its own schema. They are ingested as separate traces whose
names say where they come from, and the catalog marks them ``derived``. No ``ingest fetch``: the
upstream raw URLs (at the commits checked in FORMATS.md) are

* ``philly_sia_jobs`` <- https://raw.githubusercontent.com/siasosp23/artifacts/aaf7a0de/sia-simulator/traces/philly.csv
  (staged as ``philly_jobs_sia.csv``): ``timestamp,duration,num_gpus,gpu_time,cluster``. Rows are
  not sorted. Exact duplicate lines are quarantined as ``duplicate row`` (the file has no job ids,
  so a second identical line cannot be told apart from a copy); the trailing blank line is
  quarantined by the framework. ``job_id`` is ``sia-<line>``; status ``unknown`` (no status column).
  ``gpu_time`` must equal duration x num_gpus (it is not stored).
* ``philly_rfold_jobs`` <- https://raw.githubusercontent.com/shuoshuc/RFold/b9814553/WorkloadGen/data/philly_trace.csv
  (staged as ``philly_jobs_rfold.csv``): header ``#job id,arrival time (sec),topology,shape,size,duration (sec)``,
  CRLF. ``arrival`` counts wall-clock seconds from 2017-08-14 23:27:00 (the last arrival lands
  exactly on the last Philly submission, 2017-12-22 08:02:11, only if read as wall-clock time), so
  submit = that naive time + arrival, localized like the job log. ``shape`` (GPUs per node, ``+``
  separated) must add up to ``size``; its part count is ``num_nodes``. ``topology`` is always CLOS
  and not stored. Status ``unknown``.
* ``philly_multigpu_pass`` <- https://raw.githubusercontent.com/marwage/philly-traces/b7416164/analysis/jobs.json
  (staged as ``jobs_multigpu_pass.json``): near-original job objects (``id``, ``num_gpus``,
  ``runtime`` in minutes, ``attempts`` without ``detail``, ``submitted_time``) of Pass jobs only,
  so status ``completed``, raw_status null. Read with the Philly job-log rules (same time policy,
  same checks); ``runtime`` is redundant (last end - first start) and not stored. Attempts are derived.
* ``philly_node_sequence`` <- https://raw.githubusercontent.com/S-Lab-System-Group/HeliosArtifact/bdaae109/framework/CES%20Service/data/philly_node_sequence.csv:
  ``time,active,total`` per minute -> utilization metrics ``active_nodes`` and ``total_nodes``
  (entity_kind ``cluster``, entity ``philly``). Naive local times; 2017-11-05 01:xx appears once and
  resolves to its first occurrence (PDT), like every ambiguous time here. ``active`` > ``total`` is rejected.
  Each good line gives two rows, so the trace's ``rows_in`` is twice the line count.
* ``philly_vc`` <- https://raw.githubusercontent.com/S-Lab-System-Group/HeliosArtifact/bdaae109/framework/QSSF%20Service/data/philly_vc.csv:
  ``vc,node num`` -> utilization metric ``vc_nodes`` (entity_kind ``vc``). A static configuration
  with no time: it is stored at the Unix epoch, so ``time_s`` is 0 and the trace origin is 0.

Skipped: ``philly_runtime.csv`` (https://raw.githubusercontent.com/alibaba/clusterdata/7a6c496e/cluster-trace-gpu-v2020/analysis/philly_runtime.csv),
a single ``runtime`` column with no job id and no submit time: no canonical table fits it (jobs
needs both), and as a bare CDF sample it is better read directly.
"""

from __future__ import annotations

import polars as pl

from ingest.checks import parse_number, parse_time, reject_duplicates, reject_if
from ingest.inputs import InputSet, InputSpec, ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON, check_header, scan_lines, split_fields
from ingest.schema import JOBS, UTILIZATION
from ingest.sources.base import Source, TablePlan, TimeBase
from ingest.sources.philly import (
    TIME_EXPECTED, TIME_FORMAT, ZONE, LocalClock, Rejected, json_job_plans, parse_attempts, submitted_us,
)

RFOLD_EPOCH = "2017-08-14 23:27:00"
"""Local wall-clock time that RFold's arrival seconds count from."""


def _lines(inp: ResolvedInput, columns: tuple[str, ...]) -> pl.LazyFrame:
    check_header(inp.path, inp.display, columns)
    return split_fields(scan_lines(inp.path, inp.display, skip_header=True), columns, strip=True)


def _missing(column: str) -> tuple[pl.Expr, str]:
    return pl.col(column).is_null() | (pl.col(column) == ""), f"missing {column}"


def _jobs_select(lf: pl.LazyFrame, trace: str, job_id: pl.Expr, cluster: pl.Expr, num_nodes: pl.Expr) -> TablePlan:
    """A jobs plan for a CSV with submit_s, duration_s and _num_gpus parsed; status unknown."""
    lf = lf.select(
        pl.lit(trace).alias("trace"), cluster.alias("cluster"), job_id.alias("job_id"), pl.lit(None, pl.String).alias("user"),
        cluster.alias("group"), "submit_s", pl.lit(None, pl.Int64).alias("start_s"), pl.lit(None, pl.Int64).alias("end_s"),
        "duration_s", pl.col("_num_gpus").cast(pl.Float64).alias("num_gpus"), pl.lit(None, pl.Float64).alias("num_cpus"),
        num_nodes.cast(pl.Int32).alias("num_nodes"), pl.lit(None, pl.String).alias("gpu_type"),
        pl.lit("unknown").alias("status"), pl.lit(None, pl.String).alias("raw_status"), FILE, LINE, RAW, REASON,
    )
    return TablePlan(JOBS, trace, lf)


def reject_duplicate_lines(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Reject every good line identical to an earlier good line, naming the first one."""
    first = pl.when(pl.col(REASON).is_null()).then(pl.col(LINE)).min().over(RAW)
    return reject_if(lf, (pl.col(LINE) != first, pl.format("duplicate row (identical to line {})", first)))


def sia_plan(inp: ResolvedInput, trace: str = "philly_sia_jobs") -> TablePlan:
    """Sia's ``philly.csv``: one finished job per line, submit time and VC, no id or status."""
    lf = _lines(inp, ("timestamp", "duration", "num_gpus", "gpu_time", "cluster"))
    lf = parse_time(lf, "timestamp", "submit_s", fmt=TIME_FORMAT, expected=TIME_EXPECTED, time_zone=ZONE)
    lf = parse_number(lf, "duration", "duration_s", min_value=0)
    lf = parse_number(lf, "num_gpus", "_num_gpus", dtype=pl.Int64, min_value=0)
    lf = parse_number(lf, "gpu_time", "_gpu_time", min_value=0)
    expected = pl.col("duration_s") * pl.col("_num_gpus")
    lf = reject_if(
        lf,
        _missing("cluster"),
        ((pl.col("_gpu_time") - expected).abs() > 1e-6 * expected.abs().clip(lower_bound=1.0),
         pl.format("gpu_time '{}' is not duration x num_gpus ({})", pl.col("gpu_time"), expected)),
    )
    lf = reject_duplicate_lines(lf)
    return _jobs_select(lf, trace, pl.format("sia-{}", pl.col(LINE)), pl.col("cluster"), pl.lit(None, pl.Int32))


def rfold_plan(inp: ResolvedInput, trace: str = "philly_rfold_jobs") -> TablePlan:
    """RFold's ``philly_trace.csv``: arrival seconds since :data:`RFOLD_EPOCH`, GPUs per node, duration."""
    lf = _lines(inp, ("#job id", "arrival time (sec)", "topology", "shape", "size", "duration (sec)"))
    lf = parse_number(lf, "#job id", "_id", dtype=pl.Int64, min_value=0)
    lf = parse_number(lf, "arrival time (sec)", "_arrival_s", min_value=0)
    lf = parse_number(lf, "size", "_num_gpus", dtype=pl.Int64, min_value=0)
    lf = parse_number(lf, "duration (sec)", "duration_s", min_value=0)
    epoch = pl.lit(RFOLD_EPOCH).str.to_datetime(TIME_FORMAT, time_unit="us")
    wall = epoch + pl.duration(microseconds=(pl.col("_arrival_s") * 1e6).round(0).cast(pl.Int64))
    local = wall.dt.replace_time_zone(ZONE, ambiguous="earliest", non_existent="null")
    parts = pl.col("shape").str.split("+").list.eval(pl.element().str.strip_chars().cast(pl.Int64, strict=False))
    lf = lf.with_columns(local.dt.epoch("us").alias("submit_s"), parts.alias("_parts"))
    shape = pl.col("shape").str.slice(0, 60)
    lf = reject_if(
        lf,
        (pl.col("submit_s").is_null(), pl.format("nonexistent local time: arrival time (sec) '{}' after "
                                                 f"{RFOLD_EPOCH} falls in the DST gap of {ZONE}", pl.col("arrival time (sec)"))),
        _missing("shape"),
        (pl.col("_parts").list.eval(pl.element().is_null() | (pl.element() < 0)).list.any(),
         pl.format("unparseable shape '{}' (expected GPUs per node joined by '+', e.g. 4+4)", shape)),
        (pl.col("_parts").list.sum() != pl.col("_num_gpus"), pl.format("shape '{}' does not add up to size '{}'", shape,
                                                                      pl.col("size"))),
    )
    lf = reject_duplicates(lf, ["_id"], "job id")
    return _jobs_select(lf, trace, pl.col("_id").cast(pl.String), pl.lit(None, pl.String), pl.col("_parts").list.len())


def _multigpu_row(clock: LocalClock, item: object) -> tuple[tuple, list[tuple]]:
    """One ``jobs_multigpu_pass.json`` object (no vc/user/status/detail) -> job row and attempt rows."""
    if not isinstance(item, dict):
        raise Rejected(f"expected a JSON object, found {type(item).__name__}")
    job_id, num_gpus = item.get("id"), item.get("num_gpus")
    if not isinstance(job_id, str) or not job_id:
        raise Rejected("missing id" if job_id in (None, "") else f"unparseable id '{str(job_id)[:60]}' (expected a string)")
    if num_gpus is None:
        raise Rejected("missing num_gpus")
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int | float) or not 0 <= num_gpus < float("inf"):
        raise Rejected(f"unparseable num_gpus '{str(num_gpus)[:60]}' (expected a number >= 0)")
    submit = submitted_us(clock, item)
    atts = parse_attempts(clock, item.get("attempts"), submit, item["submitted_time"], detail=False)
    status = "running" if atts and atts[-1][1] is None else "completed"
    job = (job_id, None, None, submit, atts[0][0] if atts else None, atts[-1][1] if atts else None,
           float(num_gpus), None, status, None)
    return job, [(job_id, None, i, a[0], a[1], None, None, None) for i, a in enumerate(atts)]


def _series(lf: pl.LazyFrame, trace: str, kind: str, entity: pl.Expr, metrics: dict[str, str]) -> TablePlan:
    """Utilization rows: one per (good line, metric); a rejected line stays one row (quarantined once)."""
    names = list(metrics)
    good = pl.col(REASON).is_null()
    lf = lf.with_columns(
        pl.when(good).then(pl.lit(names)).otherwise(pl.lit(names[:1])).alias("_metric"),
        pl.when(good).then(pl.concat_list([pl.col(c).cast(pl.Float64) for c in metrics.values()]))
        .otherwise(pl.concat_list(pl.col(metrics[names[0]]).cast(pl.Float64))).alias("_value"),
    ).explode(["_metric", "_value"])
    lf = lf.select(
        pl.lit(trace).alias("trace"), pl.lit(None, pl.String).alias("cluster"), pl.lit(kind).alias("entity_kind"),
        entity.alias("entity"), "time_s", pl.col("_metric").alias("metric"), pl.col("_value").alias("value"),
        pl.lit(None, pl.List(pl.Float64)).alias("device_values"), FILE, LINE, RAW, REASON,
    )
    return TablePlan(UTILIZATION, trace, lf)


def node_sequence_plan(inp: ResolvedInput, trace: str = "philly_node_sequence") -> TablePlan:
    """Helios' ``philly_node_sequence.csv``: active and total nodes per minute."""
    lf = _lines(inp, ("time", "active", "total"))
    lf = parse_time(lf, "time", "time_s", fmt=TIME_FORMAT, expected=TIME_EXPECTED, time_zone=ZONE)
    lf = parse_number(lf, "active", "_active", dtype=pl.Int64, min_value=0)
    lf = parse_number(lf, "total", "_total", dtype=pl.Int64, min_value=0)
    lf = reject_if(lf, (pl.col("_active") > pl.col("_total"),
                        pl.format("active '{}' exceeds total '{}'", pl.col("active"), pl.col("total"))))
    return _series(lf, trace, "cluster", pl.lit("philly"), {"active_nodes": "_active", "total_nodes": "_total"})


def vc_plan(inp: ResolvedInput, trace: str = "philly_vc") -> TablePlan:
    """Helios' ``philly_vc.csv``: nodes per VC, a timeless configuration stored at time 0."""
    lf = reject_if(_lines(inp, ("vc", "node num")), _missing("vc"))
    lf = parse_number(lf, "node num", "_nodes", dtype=pl.Int64, min_value=0)
    lf = reject_duplicates(lf, ["vc"], "vc").with_columns(pl.lit(0, pl.Int64).alias("time_s"))
    return _series(lf, trace, "vc", pl.col("vc"), {"vc_nodes": "_nodes"})


class PhillyDerived(Source):
    """The derived Philly tables staged beside the machine list; each file becomes its own trace."""

    name = "philly_derived"
    title = "Derived Philly tables from third-party artifacts (Sia, RFold, marwage, Helios): one derived trace each"
    local_dir = "philly"
    files = {
        "philly_jobs_sia.csv": sia_plan,
        "philly_jobs_rfold.csv": rfold_plan,
        "philly_node_sequence.csv": node_sequence_plan,
        "philly_vc.csv": vc_plan,
    }
    inputs = tuple(InputSpec(k, required=False) for k in (*files, "jobs_multigpu_pass.json"))
    time_base = TimeBase(ZONE, "unix")
    derived = True

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """One plan per derived file found (two for the JSON: jobs and attempts)."""
        plans = [build(inp) for key, build in self.files.items() if (inp := inputs.get(key)) is not None]
        if (inp := inputs.get("jobs_multigpu_pass.json")) is not None:
            plans += json_job_plans(inp, "philly_multigpu_pass", _multigpu_row, "id")
        return plans


SOURCES = (PhillyDerived(),)
"""The derived Philly tables staged in shared/traces/philly (philly_runtime.csv is skipped, see above)."""
