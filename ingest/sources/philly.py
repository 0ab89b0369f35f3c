"""Microsoft Philly 2017 (Jeon et al., ATC'19): job log, per-minute utilization, machine list (FORMATS.md §5).

Upstream is one Git LFS archive, ``trace-data.tar.gz``, holding ``trace-data/`` with five files
without extensions. Every input is optional, so a folder with only ``cluster_machine_list`` (the
offline copy) ingests just the machines. Everything goes to the trace ``philly``.

Policies (the upstream data leaves these open):

* Times are US-Pacific wall clock. Job-log times carry no zone: they are localized to
  ``America/Los_Angeles``. The hour 2017-11-05 01:00-01:59 happens twice; an ambiguous time resolves
  to its first occurrence (PDT), except where that would put a job event before the job's previous
  event (submission, then each attempt's start and end, in order) while the second occurrence (PST)
  would not: then the second occurrence. Times in the DST gap (spring forward) are rejected.
  Utilization times end in `` PDT``/`` PST``, which fixes the offset exactly (UTC-7 / UTC-8); a
  suffix that is not in force at that wall-clock time in America/Los_Angeles rejects the row.
* ``"None"``, JSON null and ``""`` are missing times. A missing last attempt end means the job was
  still running at snapshot time: status ``running`` (raw_status keeps the upstream value).
* Jobs with ``attempts: []`` are kept: no start/end, ``num_gpus`` 0, ``num_nodes`` null.
* ``num_gpus``/``num_nodes`` come from the first attempt (the official notebook's definition).
* A job is rejected for: a missing/unknown status, a missing or unparseable submitted_time, an
  unparseable attempt time, an attempt that ends before it starts (zero-length attempts are kept),
  a first start before submission, a malformed attempt/placement, and a jobid already taken by an
  earlier good job. Attempts (a derived table) exist only for good jobs.
* Utilization values are not range-checked (only parsed); ``NA`` and empty fields are null.
  Duplicate (machine, minute) rows are not looked for: that would not stream. A good mem_util line
  gives two rows (mem_used_frac, mem_total_kb), so the utilization ``rows_in`` counts rows, not lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import polars as pl

from ingest.checks import parse_number, reject_duplicates, reject_if, require
from ingest.inputs import InputSet, InputSpec, ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON, check_header, scan_lines, split_fields
from ingest.records import clip, iter_json_array
from ingest.schema import ATTEMPTS, JOBS, MACHINES, UTILIZATION
from ingest.sources.base import RemoteFile, Source, TablePlan, TimeBase

ZONE = "America/Los_Angeles"
TRACE = "philly"
ARCHIVE = "trace-data.tar.gz"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_EXPECTED = "YYYY-MM-DD HH:MM:SS"
STATUS_MAP = {"Pass": "completed", "Killed": "killed", "Failed": "failed"}
"""Upstream job status -> canonical status."""
_HOUR_US = 3_600_000_000
LIST_SEP = "\x1f"
"""Joins list cells (machines, GPUs) while rows are built in Python; never occurs in the trace."""
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")


class Rejected(Exception):
    """A record fails a check; the message is its quarantine reason."""


class BadTime(ValueError):
    """A time value that cannot be read; :meth:`reason` phrases it for one field."""

    def __init__(self, value: object, nonexistent: bool = False) -> None:
        super().__init__(value)
        self.value, self.nonexistent = value, nonexistent

    def reason(self, field: str) -> str:
        """The quarantine reason, naming ``field`` and the value."""
        if self.nonexistent:
            return f"nonexistent local time {field} '{self.value}' (skipped by the DST change in {ZONE})"
        return f"unparseable {field} '{str(self.value)[:60]}' (expected {TIME_EXPECTED})"


_TAIL_S = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}
"""':MM:SS' -> seconds into the hour: validates and converts the tail of a time in one lookup."""


class LocalClock:
    """Naive ``YYYY-MM-DD HH:MM:SS`` wall-clock strings of one IANA zone -> epoch microseconds.

    Offsets are cached per wall-clock hour (zone transitions fall on whole hours), so a time costs
    two dict lookups and a few integer operations.
    """

    def __init__(self, zone: str = ZONE) -> None:
        self._zone = ZoneInfo(zone)
        self._hours: dict[str, tuple[int, int]] = {}

    def _slow(self, value: object) -> tuple[tuple[int, int], int]:
        """Validate a value the fast path could not read; cache its hour; BadTime if invalid."""
        text = value.strip() if isinstance(value, str) else ""
        if not _TIME_RE.fullmatch(text) or text[13:] not in _TAIL_S:
            raise BadTime(value)
        try:
            naive = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]))
        except ValueError:
            raise BadTime(value) from None
        first = naive.replace(tzinfo=self._zone, fold=0)
        if first.astimezone(UTC).astimezone(self._zone).replace(tzinfo=None) != naive:
            raise BadTime(text, nonexistent=True)
        hour = int(first.timestamp()), int(naive.replace(tzinfo=self._zone, fold=1).timestamp())
        self._hours[text[:13]] = hour
        return hour, _TAIL_S[text[13:]]

    def epoch_us(self, value: object, not_before_us: int | None = None) -> int | None:
        """Epoch microseconds of ``value``; None if missing (``"None"``, null, ``""``); BadTime if invalid.

        An ambiguous time takes its first occurrence unless that is before ``not_before_us`` and the
        second occurrence is not.
        """
        if value is None or value == "" or value == "None":
            return None
        try:
            hour, tail_s = self._hours[value[:13]], _TAIL_S[value[13:]]  # type: ignore[index]
        except (KeyError, TypeError):
            hour, tail_s = self._slow(value)
        early_us = (hour[0] + tail_s) * 1_000_000
        if not_before_us is not None and early_us < not_before_us:
            late_us = (hour[1] + tail_s) * 1_000_000
            if late_us >= not_before_us:
                return late_us
        return early_us


def _placement(detail: object, index: int) -> tuple[int, int, str, str]:
    """(GPUs, machines, machines joined, '<machine>/<gpu>' joined) of one attempt's ``detail``."""
    if type(detail) is not list:
        raise Rejected(f"attempts[{index}].detail is not a list (found {type(detail).__name__})")
    machines: list[str] = []
    gpus: list[str] = []
    num_gpus = 0
    for j, part in enumerate(detail):
        try:
            ip, devices = part["ip"], part.get("gpus", [])
        except (TypeError, KeyError):
            ip = devices = None
        if type(ip) is not str or not ip or type(devices) is not list:
            raise Rejected(f"attempts[{index}].detail[{j}] is not {{\"ip\": machine, \"gpus\": [...]}}")
        if ip not in machines:
            machines.append(ip)
        if devices:  # one join per machine, not one string per GPU
            num_gpus += len(devices)
            gpus.append(ip + "/" + (LIST_SEP + ip + "/").join(map(str, devices)))
    return num_gpus, len(machines), LIST_SEP.join(machines), LIST_SEP.join(gpus)


def parse_attempts(clock: LocalClock, attempts: object, submit_us: int, submit_text: str, *,
                   detail: bool = True) -> list[tuple]:
    """Per attempt ``(start_us, end_us, num_gpus, num_machines, machines, gpus)`` (placement None without ``detail``).

    Rejected on a bad time, an end before its start, a first start before submission, or a
    malformed attempt/placement. Each time is read no earlier than the job's previous event (DST fold).
    """
    if not isinstance(attempts, list):
        raise Rejected(f"attempts is not a list (found {type(attempts).__name__})")
    out, last_us = [], submit_us
    for i, att in enumerate(attempts):
        if not isinstance(att, dict):
            raise Rejected(f"attempts[{i}] is not an object (found {type(att).__name__})")
        try:
            start = clock.epoch_us(att.get("start_time"), last_us)
        except BadTime as exc:
            raise Rejected(exc.reason(f"attempts[{i}].start_time")) from None
        try:
            end = clock.epoch_us(att.get("end_time"), last_us if start is None else start)
        except BadTime as exc:
            raise Rejected(exc.reason(f"attempts[{i}].end_time")) from None
        if start is not None:
            if end is not None and end < start:
                raise Rejected(f"end before start: attempts[{i}].end_time '{att['end_time']}' "
                               f"< start_time '{att['start_time']}'")
            if i == 0 and start < submit_us:
                raise Rejected(f"start before submit: attempts[0].start_time '{att['start_time']}' "
                               f"< submitted_time '{submit_text}'")
            last_us = start
        if end is not None:
            last_us = end
        out.append((start, end, *(_placement(att.get("detail", []), i) if detail else (None,) * 4)))
    return out


class FrameBuilder:
    """Rows (tuples in ``schema`` order) -> one DataFrame, converted in chunks to bound Python memory."""

    def __init__(self, schema: dict[str, pl.DataType], chunk_rows: int = 50_000) -> None:
        self.schema, self.chunk_rows = schema, chunk_rows
        self._rows: list[tuple] = []
        self._frames: list[pl.DataFrame] = []

    def add(self, row: tuple) -> None:
        """Append one row."""
        self._rows.append(row)
        if len(self._rows) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        self._frames.append(pl.DataFrame(self._rows, schema=self.schema, orient="row"))
        self._rows = []

    def frame(self) -> pl.DataFrame:
        """Every row added so far."""
        if self._rows or not self._frames:
            self._flush()
        return pl.concat(self._frames) if len(self._frames) > 1 else self._frames[0]


JOB_ROW = {"job_id": pl.String, "cluster": pl.String, "user": pl.String, "submit_s": pl.Int64, "start_s": pl.Int64,
           "end_s": pl.Int64, "num_gpus": pl.Float64, "num_nodes": pl.Int32, "status": pl.String,
           "raw_status": pl.String, LINE: pl.Int64, RAW: pl.String, REASON: pl.String}
"""Columns a JSON job source fills per record (times as epoch microseconds)."""
ATTEMPT_ROW = {"job_id": pl.String, "cluster": pl.String, "attempt": pl.Int32, "start_s": pl.Int64,
               "end_s": pl.Int64, "num_gpus": pl.Int32, "machines": pl.String, "gpus": pl.String}
"""Columns of one attempt row; machines and gpus are joined with :data:`LIST_SEP` (building list cells
row by row costs polars one Series per cell: 10x slower), and split back in :func:`attempts_plan`."""


def jobs_plan(df: pl.DataFrame, trace: str, display: str) -> TablePlan:
    """A jobs plan from a :data:`JOB_ROW` frame (group = cluster = the VC)."""
    lf = df.lazy().select(
        pl.lit(trace).alias("trace"), "cluster", "job_id", "user", pl.col("cluster").alias("group"),
        "submit_s", "start_s", "end_s", pl.lit(None, pl.Float64).alias("duration_s"), "num_gpus",
        pl.lit(None, pl.Float64).alias("num_cpus"), "num_nodes", pl.lit(None, pl.String).alias("gpu_type"),
        "status", "raw_status", pl.lit(display).alias(FILE), LINE, RAW, REASON,
    )
    return TablePlan(JOBS, trace, lf)


def attempts_plan(df: pl.DataFrame, trace: str, display: str) -> TablePlan:
    """A derived attempts plan from an :data:`ATTEMPT_ROW` frame (all rows good)."""

    def split(col: str) -> pl.Expr:
        empty = pl.lit([], pl.List(pl.String))
        return pl.when(pl.col(col) == "").then(empty).otherwise(pl.col(col).str.split(LIST_SEP)).alias(col)

    lf = df.lazy().select(
        pl.lit(trace).alias("trace"), "cluster", "job_id", "attempt", "start_s", "end_s", "num_gpus", split("machines"),
        split("gpus"), pl.lit(display).alias(FILE), pl.lit(None, pl.Int64).alias(LINE), pl.lit(None, pl.String).alias(RAW),
        pl.lit(None, pl.String).alias(REASON),
    )
    return TablePlan(ATTEMPTS, trace, lf, derived=True)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def submitted_us(clock: LocalClock, item: dict) -> int:
    """A job object's ``submitted_time`` in epoch microseconds; Rejected if missing or unparseable."""
    try:
        submit = clock.epoch_us(item.get("submitted_time"))
    except BadTime as exc:
        raise Rejected(exc.reason("submitted_time")) from None
    if submit is None:
        raise Rejected("missing submitted_time")
    return submit


def _job_row(clock: LocalClock, item: object) -> tuple[tuple, list[tuple]]:
    """One cluster_job_log object -> (job row without bookkeeping, attempt rows); Rejected if bad."""
    if not isinstance(item, dict):
        raise Rejected(f"expected a JSON object, found {type(item).__name__}")
    job_id, vc, raw_status = item.get("jobid"), _text(item.get("vc")), item.get("status")
    if job_id in (None, ""):
        raise Rejected("missing jobid")
    if not isinstance(job_id, str):
        raise Rejected(f"unparseable jobid '{str(job_id)[:60]}' (expected a string)")
    if raw_status in (None, ""):
        raise Rejected("missing status")
    if not isinstance(raw_status, str) or raw_status not in STATUS_MAP:
        raise Rejected(f"unknown status '{str(raw_status)[:60]}' (expected one of {', '.join(STATUS_MAP)})")
    submit = submitted_us(clock, item)
    atts = parse_attempts(clock, item.get("attempts"), submit, item["submitted_time"])
    status = STATUS_MAP[raw_status]
    if atts and atts[-1][1] is None:
        status = "running"
    job = (job_id, vc, _text(item.get("user")), submit, atts[0][0] if atts else None, atts[-1][1] if atts else None,
           float(atts[0][2]) if atts else 0.0, atts[0][3] if atts else None, status, raw_status)
    return job, [(job_id, vc, i, a[0], a[1], a[2], a[4], a[5]) for i, a in enumerate(atts)]


RowParser = Callable[[LocalClock, object], tuple[tuple, list[tuple]]]
"""One JSON job object -> (:data:`JOB_ROW` values without bookkeeping, :data:`ATTEMPT_ROW` tuples); Rejected if bad."""


def json_job_plans(inp: ResolvedInput, trace: str, parse_row: RowParser, id_key: str) -> list[TablePlan]:
    """Stream a JSON array of jobs into a jobs plan and a derived attempts plan (good jobs only).

    A job whose ``id_key`` an earlier good job already took is rejected (the first one wins).
    """
    clock = LocalClock()
    jobs, attempts = FrameBuilder(JOB_ROW), FrameBuilder(ATTEMPT_ROW)
    seen: set[str] = set()
    for index, item in iter_json_array(inp.path, inp.display):
        try:
            job, rows = parse_row(clock, item)
            if job[0] in seen:
                raise Rejected(f"duplicate {id_key} '{job[0]}'")
        except Rejected as why:
            jobs.add((None,) * 10 + (index, clip(json.dumps(item, default=str)), str(why)))
            continue
        seen.add(job[0])
        jobs.add(job + (index, None, None))
        for row in rows:
            attempts.add(row)
    return [jobs_plan(jobs.frame(), trace, inp.display), attempts_plan(attempts.frame(), trace, inp.display)]


def parse_pacific_time(lf: pl.LazyFrame, raw: str, out: str) -> pl.LazyFrame:
    """Parse ``YYYY-MM-DD HH:MM:SS PDT|PST`` into epoch microseconds; the suffix fixes the UTC offset."""
    text = pl.col(raw).str.strip_chars()
    offset_h = pl.when(text.str.ends_with(" PDT")).then(7).when(text.str.ends_with(" PST")).then(8)
    naive_us = text.str.head(-4).str.to_datetime(TIME_FORMAT, strict=False, time_unit="us").dt.epoch("us")
    lf = lf.with_columns(naive_us.alias("_naive_us"), (naive_us + offset_h * _HOUR_US).alias(out))
    wall_us = (pl.from_epoch(pl.col(out), "us").dt.replace_time_zone("UTC").dt.convert_time_zone(ZONE)
               .dt.replace_time_zone(None).dt.epoch("us"))
    quoted = text.str.slice(0, 60)
    lf = reject_if(
        lf,
        (pl.col(raw).is_null() | (text == ""), f"missing {raw}"),
        (pl.col(out).is_null(), pl.format(f"unparseable {raw} '{{}}' (expected {TIME_EXPECTED} PDT or PST)", quoted)),
        (wall_us != pl.col("_naive_us"), pl.format(f"{raw} '{{}}': the zone suffix is not in force then in {ZONE}", quoted)),
    )
    return lf.drop("_naive_us")


def _util_frame(lf: pl.LazyFrame, machine: str, metric: pl.Expr, value: pl.Expr, devices: pl.Expr) -> pl.LazyFrame:
    return lf.select(
        pl.lit(TRACE).alias("trace"), pl.lit(None, pl.String).alias("cluster"), pl.lit("machine").alias("entity_kind"),
        pl.col(machine).str.strip_chars().alias("entity"), "time_s", metric.alias("metric"), value.alias("value"),
        devices.alias("device_values"), FILE, LINE, RAW, REASON,
    )


def _util_lines(inp: ResolvedInput, columns: tuple[str, ...], *, trailing: bool = False) -> pl.LazyFrame:
    """Header check, field split, time parse and machine check shared by the utilization files."""
    check_header(inp.path, inp.display, columns)
    lf = split_fields(scan_lines(inp.path, inp.display, skip_header=True), columns, trailing_separator=trailing)
    lf = parse_pacific_time(lf, "time", "time_s")
    return require(lf, columns[1])


GPU_COLUMNS = tuple(f"gpu{k}_util" for k in range(8))


def gpu_util_plan(inp: ResolvedInput) -> TablePlan:
    """``cluster_gpu_util`` -> metric gpu_util_pct: mean over reporting GPUs, plus the 8 per-GPU values."""
    lf = _util_lines(inp, ("time", "machineId", *GPU_COLUMNS), trailing=True)
    for k, col in enumerate(GPU_COLUMNS):
        lf = parse_number(lf, col, f"_gpu{k}", required=False, null_values=("NA",))
    devices = [pl.col(f"_gpu{k}") for k in range(8)]
    return TablePlan(UTILIZATION, TRACE, _util_frame(lf, "machineId", pl.lit("gpu_util_pct"), pl.mean_horizontal(devices),
                                                     pl.concat_list(devices)))


def cpu_util_plan(inp: ResolvedInput) -> TablePlan:
    """``cluster_cpu_util`` -> metric cpu_util_pct."""
    lf = parse_number(_util_lines(inp, ("time", "machine_id", "cpu_util")), "cpu_util", "_cpu", required=False,
                      null_values=("NA",))
    return TablePlan(UTILIZATION, TRACE, _util_frame(lf, "machine_id", pl.lit("cpu_util_pct"), pl.col("_cpu"),
                                                     pl.lit(None, pl.List(pl.Float64))))


def mem_util_plan(inp: ResolvedInput) -> TablePlan:
    """``cluster_mem_util`` -> two rows per good line: mem_used_frac ((total-free)/total; null when total is 0)
    and mem_total_kb. A rejected line stays one row, so it is quarantined once."""
    lf = _util_lines(inp, ("time", "machine_id", "mem_total", "mem_free"))
    lf = parse_number(lf, "mem_total", "_total", required=False, null_values=("NA",))
    lf = parse_number(lf, "mem_free", "_free", required=False, null_values=("NA",))
    frac = pl.when(pl.col("_total") != 0).then((pl.col("_total") - pl.col("_free")) / pl.col("_total"))
    good = pl.col(REASON).is_null()
    lf = lf.with_columns(
        pl.when(good).then(pl.lit(["mem_used_frac", "mem_total_kb"])).otherwise(pl.lit(["mem_used_frac"])).alias("_metric"),
        pl.when(good).then(pl.concat_list(frac, pl.col("_total"))).otherwise(pl.concat_list(frac)).alias("_value"),
    ).explode(["_metric", "_value"])
    return TablePlan(UTILIZATION, TRACE, _util_frame(lf, "machine_id", pl.col("_metric"), pl.col("_value"),
                                                     pl.lit(None, pl.List(pl.Float64))))


def machine_list_plan(inp: ResolvedInput) -> TablePlan:
    """``cluster_machine_list`` (``m31,8, 24GB``; spaces after commas) -> machines."""
    columns = ("machineId", "number of GPUs", "single GPU mem")
    check_header(inp.path, inp.display, columns)
    lf = split_fields(scan_lines(inp.path, inp.display, skip_header=True), columns, strip=True)
    mem = pl.col("single GPU mem")
    mem_gb = pl.when(mem.str.ends_with("GB")).then(mem.str.head(-2).str.strip_chars().cast(pl.Float64, strict=False))
    lf = reject_if(lf, (pl.col("machineId").is_null() | (pl.col("machineId") == ""), "missing machineId"))
    lf = parse_number(lf, "number of GPUs", "num_gpus", dtype=pl.Int32, min_value=0)
    lf = lf.with_columns(mem_gb.alias("gpu_mem_gb"))
    lf = reject_if(
        lf,
        (mem.is_null() | (mem == ""), "missing single GPU mem"),
        (pl.col("gpu_mem_gb").is_null() | ~pl.col("gpu_mem_gb").is_finite() | (pl.col("gpu_mem_gb") < 0),
         pl.format("unparseable single GPU mem '{}' (expected <number>GB, e.g. 24GB)", mem.str.slice(0, 60))),
    )
    lf = reject_duplicates(lf, ["machineId"], "machineId")
    lf = lf.select(
        pl.lit(TRACE).alias("trace"), pl.lit(None, pl.String).alias("cluster"), pl.col("machineId").alias("machine_id"),
        pl.lit(None, pl.String).alias("gpu_type"), "num_gpus", "gpu_mem_gb", pl.lit(None, pl.Float64).alias("num_cpus"),
        pl.lit(None, pl.Float64).alias("mem_gb"), FILE, LINE, RAW, REASON,
    )
    return TablePlan(MACHINES, TRACE, lf)


class Philly(Source):
    """The five upstream Philly files, from ``trace-data/`` or straight from ``trace-data.tar.gz``."""

    name = "philly"
    title = "Microsoft Philly 2017 (ATC'19): job log, per-minute GPU/CPU/memory utilization, machine list"
    local_dir = "philly"
    files = ("cluster_job_log", "cluster_gpu_util", "cluster_cpu_util", "cluster_mem_util", "cluster_machine_list")
    inputs = tuple(InputSpec(k, containers=(ARCHIVE,), required=False) for k in files)
    downloads = (
        RemoteFile(ARCHIVE, "https://media.githubusercontent.com/media/msr-fiddle/philly-traces/master/trace-data.tar.gz",
                   "2037ccf63a725a02be718b0e1aeee6142c90b7f62d0d849295120e9f6ba13d2c", 1_055_988_361),
    )
    time_base = TimeBase(ZONE, "unix")

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """Plans for the Philly files found; the job log is streamed (read) here, the CSVs stay lazy."""
        plans: list[TablePlan] = []
        if (inp := inputs.get("cluster_job_log")) is not None:
            plans += json_job_plans(inp, TRACE, _job_row, "jobid")
        for key, build in (("cluster_gpu_util", gpu_util_plan), ("cluster_cpu_util", cpu_util_plan),
                           ("cluster_mem_util", mem_util_plan), ("cluster_machine_list", machine_list_plan)):
            if (inp := inputs.get(key)) is not None:
                plans.append(build(inp))
        return plans


SOURCES = (Philly(),)
"""Philly: the machine list on the real file; the job log and utilization on format-faithful fixtures."""
