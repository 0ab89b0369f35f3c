"""Alibaba PAI GPU 2020: one pure LazyFrame plan per canonical table (see :mod:`ingest.sources.alibaba_pai`).

Every upstream CSV is headerless; its columns are fixed in :data:`COLUMNS` (identical to the upstream
``.header`` files). Times are float seconds minus a secret constant; ``0`` and an empty field both mean
"missing" and become null. Times are staged as absolute microseconds of those shifted seconds; the
pipeline rebases them to seconds since the first job submission.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from ingest import checks
from ingest.checks import (
    is_blank, parse_number, reject_duplicates, reject_duplicates_prepass, reject_if, reject_order, require, seconds_to_us,
)
from ingest.inputs import ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON, check_headerless, in_fast_path, scan_lines, split_fields
from ingest.schema import JOBS, MACHINES, PAI_INSTANCE_USAGE, PAI_INSTANCES, PAI_MACHINE_METRIC, PAI_TASKS
from ingest.sources.base import TablePlan

TRACE = "alibaba_pai_2020"

COLUMNS: dict[str, tuple[str, ...]] = {
    "pai_job_table": ("job_name", "inst_id", "user", "status", "start_time", "end_time"),
    "pai_task_table": ("job_name", "task_name", "inst_num", "status", "start_time", "end_time",
                       "plan_cpu", "plan_mem", "plan_gpu", "gpu_type"),
    "pai_instance_table": ("job_name", "task_name", "inst_name", "worker_name", "inst_id", "status",
                           "start_time", "end_time", "machine"),
    "pai_sensor_table": ("job_name", "task_name", "worker_name", "inst_id", "machine", "gpu_name", "cpu_usage",
                         "gpu_wrk_util", "avg_mem", "max_mem", "avg_gpu_wrk_mem", "max_gpu_wrk_mem",
                         "read", "write", "read_count", "write_count"),
    "pai_group_tag_table": ("inst_id", "user", "gpu_type_spec", "group", "workload"),
    "pai_machine_spec": ("machine", "gpu_type", "cap_cpu", "cap_mem", "cap_gpu"),
    "pai_machine_metric": ("worker_name", "machine", "start_time", "end_time", "machine_cpu_iowait",
                           "machine_cpu_kernel", "machine_cpu_usr", "machine_gpu", "machine_load_1",
                           "machine_net_receive", "machine_num_worker", "machine_cpu"),
}
"""Upstream column names of each table, in file order (byte-identical to ``<table>.header``)."""

STATUSES = {"Terminated": "completed", "Failed": "failed", "Running": "running", "Waiting": "pending"}
"""Upstream status -> canonical status (README: only ``Terminated`` means success). Used for all tables."""

# ------------------------------------------------------------------------------------------- helpers


def read_table(inp: ResolvedInput, table: str) -> pl.LazyFrame:
    """Lines of a headerless PAI CSV split into its upstream columns (FormatError if line 1 is a header)."""
    columns = COLUMNS[table]
    check_headerless(inp.path, inp.display, columns)
    return split_fields(scan_lines(inp.path, inp.display, skip_header=False), columns)


def _text(col: str) -> pl.Expr:
    """A text field with the empty string read as null."""
    return pl.when(is_blank(col)).then(None).otherwise(pl.col(col))


def map_status(lf: pl.LazyFrame, raw: str = "status", out: str = "_status") -> pl.LazyFrame:
    """Upstream status -> canonical (:data:`STATUSES`); missing or unknown values reject the row."""
    return checks.map_status(lf, raw, out, STATUSES)


def parse_seconds(lf: pl.LazyFrame, raw: str, out: str, *, required: bool = False) -> pl.LazyFrame:
    """Shifted float seconds -> absolute microseconds in ``out``; empty or ``0`` -> null ("missing").

    ``_<raw>_f`` keeps the parsed float as written (0 stays 0, empty is null): the instance dedup sorts on it.
    """
    num = f"_{raw}_f"
    lf = parse_number(lf, raw, num, required=False, min_value=0)
    lf = lf.with_columns(
        pl.when(pl.col(num) == 0).then(None).otherwise(seconds_to_us(pl.col(num))).alias(out)
    )
    if required:
        lf = reject_if(lf, (pl.col(out).is_null(), f"missing {raw} (empty or 0)"))
    return lf


def parse_floats(lf: pl.LazyFrame, pairs: dict[str, str], *, min_value: float | None = None) -> pl.LazyFrame:
    """Optional float columns ``raw -> out`` (empty -> null)."""
    for raw, out in pairs.items():
        lf = parse_number(lf, raw, out, required=False, min_value=min_value)
    return lf


def _finish(lf: pl.LazyFrame, table, exprs: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Select the canonical columns of ``table`` (``exprs`` by name, else a typed null) plus bookkeeping.

    ``_raw`` is kept only for rejected rows, as a copy: a row filtered out of a string-view column
    pins the column's whole buffer until the quarantine sink flushes a row group, which on the 10 M-row
    instance table with 1 % rejected rows held ~2 GB (peak 3.0 GB instead of 0.8 GB).
    """
    schema = pl.Schema(pl.from_arrow(table.schema.empty_table()).schema)
    cols = []
    for name in table.columns:
        expr = exprs.get(name, pl.lit(None))
        cols.append(expr.cast(schema[name]).alias(name))
    raw = pl.when(pl.col(REASON).is_not_null()).then(pl.concat_str([pl.col(RAW), pl.lit("")])).alias(RAW)
    return lf.select(*cols, FILE, LINE, raw, REASON)


# --------------------------------------------------------------------------------------------- tasks


def tasks_frame(inp: ResolvedInput) -> pl.LazyFrame:
    """The task table parsed and checked; good rows are unique per (job_name, task_name)."""
    attempt = in_fast_path()
    if attempt is not None:  # no dedup pass: the tasks plan's writer checks the keys (TablePlan.unique_on)
        attempt.used = True
        return _checked_tasks(read_table(inp, "pai_task_table"))
    keys = {"job_name": pl.col("job_name"), "task_name": pl.col("task_name")}
    return reject_duplicates_prepass(read_table(inp, "pai_task_table"), _checked_tasks, keys, "job_name/task_name")


def _checked_tasks(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Every task row check but the duplicate one."""
    lf = require(lf, "job_name", "task_name")
    lf = parse_number(lf, "inst_num", "_inst_num", dtype=pl.Int32, min_value=0)
    lf = map_status(lf)
    lf = parse_seconds(lf, "start_time", "start_s")
    lf = parse_seconds(lf, "end_time", "end_s")
    lf = parse_floats(lf, {"plan_cpu": "_plan_cpu", "plan_mem": "plan_mem_gb", "plan_gpu": "_plan_gpu"}, min_value=0)
    return reject_order(lf, "start_s", "end_s", "end_time before start_time")


def tasks_plan(tasks: pl.LazyFrame) -> TablePlan:
    """``pai_tasks``: one row per task; plan_cpu/plan_gpu are percent, divided by 100."""
    frame = _finish(tasks, PAI_TASKS, {
        "trace": pl.lit(TRACE),
        "job_id": pl.col("job_name"),
        "task_name": pl.col("task_name"),
        "num_instances": pl.col("_inst_num"),
        "status": pl.col("_status"),
        "raw_status": pl.col("status"),
        "start_s": pl.col("start_s"),
        "end_s": pl.col("end_s"),
        "plan_cpus": pl.col("_plan_cpu") / 100,
        "plan_mem_gb": pl.col("plan_mem_gb"),
        "plan_gpus": pl.col("_plan_gpu") / 100,
        "gpu_type": _text("gpu_type"),
    })
    # On the fast path tasks_frame has no dedup, and the jobs plan's resources come from it too: a
    # repeated (job, task) sends the whole source to the robust path, so no result uses such sums.
    return TablePlan(PAI_TASKS, TRACE, frame, unique_on=("job_id", "task_name") if in_fast_path() is not None else ())


def good_tasks(tasks: pl.LazyFrame) -> pl.LazyFrame:
    """The accepted task rows with the columns other tables join on (unique per job_name, task_name)."""
    return tasks.filter(pl.col(REASON).is_null()).select(
        "job_name", "task_name", "_inst_num", "start_s", "_plan_cpu", "plan_mem_gb", "_plan_gpu",
        _text("gpu_type").alias("gpu_type"),
    )


def job_resources(tasks: pl.LazyFrame) -> pl.LazyFrame:
    """Per job_name: earliest task start, GPUs and CPUs requested (sum of inst_num * plan / 100), GPU type.

    The GPU type is the one of the task requesting the most GPUs (inst_num * plan_gpu); ties go to the
    alphabetically first type; tasks without a type only count when no task has one.
    """
    gpu_pct = pl.col("_inst_num") * pl.col("_plan_gpu").fill_null(0)
    cpu_pct = pl.col("_inst_num") * pl.col("_plan_cpu").fill_null(0)
    pick = pl.col("gpu_type").sort_by([pl.col("gpu_type").is_null(), -gpu_pct, pl.col("gpu_type")]).first()
    return good_tasks(tasks).group_by("job_name").agg(
        pl.col("start_s").min().alias("_first_task_start"),
        (gpu_pct.sum() / 100).alias("_num_gpus"),
        (cpu_pct.sum() / 100).alias("_num_cpus"),
        pick.alias("_gpu_type"),
    )


# ---------------------------------------------------------------------------------------------- jobs


def group_tags(inp: ResolvedInput) -> pl.LazyFrame:
    """inst_id -> group (null where empty). Rows with a wrong field count or no inst_id are ignored;
    if an inst_id repeats, its first row wins."""
    lf = read_table(inp, "pai_group_tag_table")
    return (
        lf.filter(pl.col(REASON).is_null() & ~is_blank("inst_id"))
        .select("inst_id", _text("group").alias("_tag_group"))
        .unique(subset="inst_id", keep="first", maintain_order=True)
    )


def jobs_plan(inp: ResolvedInput, tasks: pl.LazyFrame | None, tags: pl.LazyFrame | None) -> TablePlan:
    """``jobs``: the job table joined with its tasks (resources, first start) and group tags.

    submit_s = job start_time (the submission time); start_s = earliest task start_time (README's wait
    time is start_s - submit_s); end_s = job end_time. A job row without submission time is rejected
    (``jobs.submit_s`` cannot be null). A job with no accepted task keeps num_gpus 0 (the column is not
    nullable) with num_cpus, gpu_type and start_s null.
    """
    lf = require(read_table(inp, "pai_job_table"), "job_name")
    lf = map_status(lf)
    lf = parse_seconds(lf, "start_time", "submit_s", required=True)
    lf = parse_seconds(lf, "end_time", "end_s")
    lf = reject_order(lf, "submit_s", "end_s", "end_time before start_time (submission)")
    # The origin guess: the earliest submission over the job rows alone (one streaming pass), not the
    # first rows of the sorted frame below, which would join and sort everything in memory first.
    hint = lf.filter(pl.col(REASON).is_null()).select(pl.col("submit_s").min(), pl.lit(None, pl.String).alias(REASON))
    if tasks is not None:
        lf = lf.join(job_resources(tasks), on="job_name", how="left", maintain_order="left")
    else:
        lf = lf.with_columns(
            pl.lit(None, pl.Int64).alias("_first_task_start"), pl.lit(None, pl.Float64).alias("_num_gpus"),
            pl.lit(None, pl.Float64).alias("_num_cpus"), pl.lit(None, pl.String).alias("_gpu_type"),
        )
    lf = reject_order(lf, "_first_task_start", "end_s", "end_time before the earliest task start_time")
    if tags is not None:
        lf = lf.join(tags, on="inst_id", how="left", maintain_order="left")
        group = pl.coalesce(pl.col("_tag_group"), _text("user"))  # official utils: empty group -> user
    else:
        group = pl.lit(None, pl.String)
    lf = reject_duplicates(lf, ["job_name"], "job_name")
    # Accepted jobs in submission order, then rejected ones in line order. Upstream promises no order;
    # sorted output makes the pipeline's origin guess (the minimum of the first rows) exact, which saves
    # a second pass over every table of the trace (18 M-row benchmark: 168 s -> 74 s).
    bad = pl.col(REASON).is_not_null()
    lf = lf.sort([bad, pl.when(~bad).then(pl.col("submit_s")), pl.col(LINE)], nulls_last=True)
    frame = _finish(lf, JOBS, {
        "trace": pl.lit(TRACE),
        "job_id": pl.col("job_name"),
        "user": _text("user"),
        "group": group,
        "submit_s": pl.col("submit_s"),
        "start_s": pl.col("_first_task_start"),
        "end_s": pl.col("end_s"),
        "num_gpus": pl.col("_num_gpus").fill_null(0.0),
        "num_cpus": pl.col("_num_cpus"),
        "gpu_type": pl.col("_gpu_type"),
        "status": pl.col("_status"),
        "raw_status": pl.col("status"),
    })
    return TablePlan(JOBS, TRACE, frame, origin_hint=hint)


# ----------------------------------------------------------------------------------------- instances


def duplicate_workers(base: pl.LazyFrame, checked: Callable[[pl.LazyFrame], pl.LazyFrame]) -> pl.DataFrame:
    """``_line`` and reason of every accepted instance row (``checked(base)``) that loses the
    per-worker_name dedup.

    The official ``get_dfiw`` sorts by (status, start_time, end_time) (stable; empty times last, 0 as 0)
    and keeps the last row per worker_name; ties go to the later line.

    This is the one eager step of the source, run when the plan is built, in two streaming passes.
    Pass 1 hashes worker_name on every line with the field present (split, nothing parsed) and keeps
    the line numbers whose hash occurs more than once: a superset of the accepted rows that repeat a
    name. Pass 2 reads the lines again but splits, parses and checks only those (the line filter
    sits right after the read) and sorts them (a collision merely adds candidates: the sort and the
    comparison use the full name). Done
    lazily inside the staging query instead, the dedup's memory adds to the main pass's (3.5 GB
    instead of 1.3 GB peak on 10 M rows); parsing every line in both passes cost 24 CPU s on 10 M rows.
    """
    hashed = pl.col("worker_name").hash(0)
    keyed = base.filter(pl.col("worker_name").is_not_null()).select(LINE, hashed.alias("_h")).collect(engine="streaming")
    lines = keyed.filter(pl.col("_h").is_duplicated()).get_column(LINE)
    del keyed  # 16 bytes a row, gone before the main pass
    inf = float("inf")
    candidates = checked(base.filter(pl.col(LINE).is_in(lines.implode()))).filter(pl.col(REASON).is_null()).select(
        "worker_name", "status",
        pl.col("_start_time_f").fill_null(inf).alias("_k_start"),
        pl.col("_end_time_f").fill_null(inf).alias("_k_end"),
        LINE,
    ).collect(engine="streaming")
    ordered = candidates.sort(["worker_name", "status", "_k_start", "_k_end", LINE])
    kept = pl.col(LINE).last().over("worker_name")
    return (
        ordered.with_columns(kept.alias("_kept"))
        .filter(pl.col(LINE) != pl.col("_kept"))
        .select(LINE, pl.format("duplicate worker_name '{}' (line {} kept)", "worker_name", "_kept").alias("_dup"))
    )


def _checked_instances(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Every instance row check but the per-worker dedup."""
    lf = require(lf, "job_name", "worker_name")
    lf = map_status(lf)
    lf = parse_seconds(lf, "start_time", "start_s")
    lf = parse_seconds(lf, "end_time", "end_s")
    return reject_order(lf, "start_s", "end_s", "end_time before start_time")


def instances_plan(inp: ResolvedInput) -> TablePlan:
    """``pai_instances``: one row per worker_name (duplicates quarantined, see :func:`duplicate_workers`).

    The losers are rejected by a join on the line number (Polars streams it; replace_strict would
    make it run the whole plan in memory).
    """
    base = read_table(inp, "pai_instance_table")
    dups = duplicate_workers(base, _checked_instances)
    lf = _checked_instances(base)
    if not dups.is_empty():
        lf = lf.join(dups.lazy(), on=LINE, how="left", maintain_order="left").with_columns(pl.coalesce(REASON, "_dup").alias(REASON))
    frame = _finish(lf, PAI_INSTANCES, {
        "trace": pl.lit(TRACE),
        "job_id": pl.col("job_name"),
        "task_name": _text("task_name"),
        "inst_name": _text("inst_name"),
        "worker_name": pl.col("worker_name"),
        "inst_id": _text("inst_id"),
        "status": pl.col("_status"),
        "raw_status": pl.col("status"),
        "start_s": pl.col("start_s"),
        "end_s": pl.col("end_s"),
        "machine": _text("machine"),
    })
    return TablePlan(PAI_INSTANCES, TRACE, frame)


# ------------------------------------------------------------------------------------ sensor, metric

SENSOR_VALUES = {
    "cpu_usage": "_cpu_usage", "gpu_wrk_util": "_gpu_wrk_util", "avg_mem": "avg_mem_gb", "max_mem": "max_mem_gb",
    "avg_gpu_wrk_mem": "avg_gpu_mem_gb", "max_gpu_wrk_mem": "max_gpu_mem_gb", "read": "read_bytes",
    "write": "write_bytes", "read_count": "read_count_", "write_count": "write_count_",
}


def usage_plan(inp: ResolvedInput, tasks: pl.LazyFrame | None) -> TablePlan:
    """``pai_instance_usage``: sensor rows (one per row, no dedup) with the task plan joined on
    (job_name, task_name); plan columns are null where no accepted task matches."""
    lf = require(read_table(inp, "pai_sensor_table"), "job_name", "worker_name")
    lf = parse_floats(lf, SENSOR_VALUES)
    if tasks is not None:
        plans = good_tasks(tasks).select("job_name", "task_name", "_plan_cpu", pl.col("plan_mem_gb").alias("_plan_mem"), "_plan_gpu")
        lf = lf.join(plans, on=["job_name", "task_name"], how="left", maintain_order="left")
    else:
        lf = lf.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("_plan_cpu", "_plan_mem", "_plan_gpu"))
    frame = _finish(lf, PAI_INSTANCE_USAGE, {
        "trace": pl.lit(TRACE),
        "job_id": pl.col("job_name"),
        "task_name": _text("task_name"),
        "worker_name": pl.col("worker_name"),
        "inst_id": _text("inst_id"),
        "machine": _text("machine"),
        "gpu_name": _text("gpu_name"),
        "plan_cpus": pl.col("_plan_cpu") / 100,
        "plan_mem_gb": pl.col("_plan_mem"),
        "plan_gpus": pl.col("_plan_gpu") / 100,
        "used_cpus": pl.col("_cpu_usage") / 100,
        "used_gpus": pl.col("_gpu_wrk_util") / 100,
        **{out: pl.col(out) for out in ("avg_mem_gb", "max_mem_gb", "avg_gpu_mem_gb", "max_gpu_mem_gb", "read_bytes", "write_bytes")},
        "read_count": pl.col("read_count_"),
        "write_count": pl.col("write_count_"),
    })
    return TablePlan(PAI_INSTANCE_USAGE, TRACE, frame)


METRIC_VALUES = {f"machine_{c}": f"_m_{c}" for c in ("cpu_iowait", "cpu_kernel", "cpu_usr", "gpu", "load_1",
                                                      "net_receive", "num_worker", "cpu")}


def machine_metric_plan(inp: ResolvedInput) -> TablePlan:
    """``pai_machine_metric``: machine-level metrics over one worker's life (no dedup)."""
    lf = require(read_table(inp, "pai_machine_metric"), "worker_name")
    lf = parse_seconds(lf, "start_time", "start_s")
    lf = parse_seconds(lf, "end_time", "end_s")
    lf = parse_floats(lf, METRIC_VALUES)
    lf = reject_order(lf, "start_s", "end_s", "end_time before start_time")
    names = {"num_worker": "num_workers"}
    frame = _finish(lf, PAI_MACHINE_METRIC, {
        "trace": pl.lit(TRACE),
        "worker_name": pl.col("worker_name"),
        "machine": _text("machine"),
        "start_s": pl.col("start_s"),
        "end_s": pl.col("end_s"),
        **{names.get(raw[8:], raw[8:]): pl.col(out) for raw, out in METRIC_VALUES.items()},
    })
    return TablePlan(PAI_MACHINE_METRIC, TRACE, frame)


# ------------------------------------------------------------------------------------------ machines


def machines_plan(inp: ResolvedInput) -> TablePlan:
    """``machines``: the machine spec (cap_cpu -> num_cpus, cap_mem GB -> mem_gb, cap_gpu -> num_gpus)."""
    lf = require(read_table(inp, "pai_machine_spec"), "machine")
    lf = parse_number(lf, "cap_gpu", "_num_gpus", dtype=pl.Int32, min_value=0)
    lf = parse_floats(lf, {"cap_cpu": "_num_cpus", "cap_mem": "_mem_gb"}, min_value=0)
    lf = reject_duplicates(lf, ["machine"], "machine")
    frame = _finish(lf, MACHINES, {
        "trace": pl.lit(TRACE),
        "machine_id": pl.col("machine"),
        "gpu_type": _text("gpu_type"),
        "num_gpus": pl.col("_num_gpus"),
        "num_cpus": pl.col("_num_cpus"),
        "mem_gb": pl.col("_mem_gb"),
    })
    return TablePlan(MACHINES, TRACE, frame)
