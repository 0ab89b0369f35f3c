"""Running one source end to end: resolve inputs, stage tables, rebase times, commit, rebuild the catalog.

Stages (all output goes to a private staging folder until the commit):

1. a trace's origin (the minimum of jobs.submit_s / requests.arrival_s) is guessed from the first
   rows of each input;
2. every table plan is streamed once: good rows straight into the canonical Parquet file (times
   rebased to seconds since the guessed origin), rejected rows to a staging file, input rows
   counted, and the exact minimum time computed on the way; if the guess was wrong (an input not
   sorted by time) the trace is written again with the exact origin;
3. plans are first built with the fast parsers; if anything was rejected, everything is redone with
   the general ones (see :mod:`ingest.lines`), so results never depend on the fast path;
4. under the lake lock, partitions are swapped in and the catalog is rebuilt.

``rows_in == rows_out + rows_quarantined`` is checked for every table plan that reads input rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ingest import catalog
from ingest.checks import FAST_REJECTED
from ingest.errors import CatalogError, InputNotFoundError, QuarantineError
from ingest.inputs import InputSet, resolve_inputs
from ingest.lake import commit, lake_lock
from ingest.lines import FILE, LINE, RAW, REASON, explain_column_count, fast_path
from ingest.paths import DataPaths, data_paths, traces_dir
from ingest.schema import QUARANTINE, SCHEMA_VERSION, Table
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.writer import ROW_GROUP_ROWS, CanonicalWriter, copy_canonical
from ingest.sources import get_source
from ingest.sources.base import Source, TablePlan

Progress = Callable[[str], None]


@dataclass
class TableResult:
    """What one (table, trace) produced."""

    table: str
    trace: str
    rows_in: int | None
    rows_out: int
    rows_quarantined: int


@dataclass
class RunResult:
    """The outcome of :func:`run_source`."""

    source: str
    input_path: Path
    tables: list[TableResult] = field(default_factory=list)
    reports: dict[str, dict] = field(default_factory=dict)
    missing_inputs: list[str] = field(default_factory=list)

    @property
    def rows_quarantined(self) -> int:
        """Rejected rows over all tables."""
        return sum(t.rows_quarantined for t in self.tables)


def default_input_path(source: Source, paths: DataPaths) -> Path:
    """Where a source's inputs are looked for without ``--from``: ``data/raw/<source>``, then the offline traces."""
    raw = paths.raw / source.name
    if raw.is_dir() and any(raw.iterdir()):
        return raw
    offline = traces_dir()
    if offline is not None and (offline / source.local_dir).is_dir():
        return offline / source.local_dir
    raise InputNotFoundError(
        f"no input for {source.name}: nothing in {raw} and no offline copy"
        f"{' in ' + str(offline / source.local_dir) if offline else ' (set TRACELAB_TRACES)'}; "
        f"run 'ingest fetch {source.name}' or pass --from PATH"
    )


def _group(plans: list[TablePlan]) -> dict[tuple[str, str], list[TablePlan]]:
    groups: dict[tuple[str, str], list[TablePlan]] = defaultdict(list)
    for plan in plans:
        groups[(plan.table.name, plan.trace)].append(plan)
    return dict(sorted(groups.items()))


BATCH_ROWS = 1 << 18
"""Rows per batch handed from Polars to the writer (measured: 256 K beat 128 K, 512 K and 1 M)."""
HEAD_ROWS = 10_000
"""Rows per input read ahead to guess the trace origin (exact for inputs sorted by time)."""


@dataclass
class _Written:
    """What writing one (table, trace) produced."""

    rows_in: int | None
    rows_out: int
    bad: Path | None
    files: set[str]
    min_us: int | None
    """Minimum of the table's origin column (or of all its time columns), staged microseconds."""


def _origin_columns(table: Table) -> list[str]:
    return [table.origin_column] if table.origin_column else list(table.time_columns)


def _min_expr(table: Table) -> pl.Expr:
    return pl.min_horizontal([pl.col(c).min() for c in _origin_columns(table)]).alias("m")


_BAD_SCHEMA = pa.schema([("source_file", pa.string()), ("line", pa.int64()), ("reason", pa.string()), ("raw", pa.string())])


class _RowSink:
    """Receives every row of a table plan once, in input order, and sends it to exactly one place:
    good rows to the canonical writer, rejected rows to the quarantine staging file. On the way it
    counts the rows and notes the input files and the minimum time (doing this in one callback, not
    as extra queries, keeps Polars from parsing the input twice or caching it in memory)."""

    def __init__(self, writer: CanonicalWriter, bad_path: Path | None) -> None:
        self.writer = writer
        self.bad_path = bad_path
        self.rows_in = 0
        self.rows_bad = 0
        self.files: set[str] = set()
        self.min_us: int | None = None
        self._cols = _origin_columns(writer.table) if writer.table.time_columns else []
        self._bad: pq.ParquetWriter | None = None

    def __call__(self, df: pl.DataFrame) -> None:
        tbl = df.to_arrow()
        self.rows_in += tbl.num_rows
        self.files.update(pc.unique(tbl.column(FILE)).to_pylist())
        ok = pc.is_null(tbl.column(REASON))
        if pc.all(ok).as_py():
            good = tbl  # the usual case: no copy
        else:
            good = tbl.filter(ok)
            self._reject(tbl.filter(pc.invert(ok)))
        for col in self._cols:
            low = pc.min(good.column(col)).as_py()
            if low is not None and (self.min_us is None or low < self.min_us):
                self.min_us = low
        self.writer.add(good)

    def _reject(self, bad: pa.Table) -> None:
        if self.bad_path is None:
            raise CatalogError(f"internal error: derived table {self.writer.table.name} has rejected rows")
        if self._bad is None:
            self._bad = pq.ParquetWriter(self.bad_path, _BAD_SCHEMA)
        rows = pa.table([bad.column(FILE), bad.column(LINE), bad.column(REASON), bad.column(RAW)], schema=_BAD_SCHEMA)
        self._bad.write_table(rows)
        self.rows_bad += bad.num_rows

    def close(self) -> int:
        """Close both files; returns the number of good rows written."""
        if self._bad is not None:
            self._bad.close()
        elif self.bad_path is not None:
            pq.write_table(_BAD_SCHEMA.empty_table(), self.bad_path)
        return self.writer.close()


def _write_group(plans: list[TablePlan], dest: Path, meta: dict[str, str], origin_us: int | None) -> _Written:
    """Stream one (table, trace) once, through a :class:`_RowSink`."""
    table = plans[0].table
    derived = all(p.derived for p in plans)
    sink = _RowSink(CanonicalWriter(dest, table, meta, origin_us), None if derived else dest.with_suffix(".bad.parquet"))
    rejected = pl.col(REASON).is_not_null()
    try:
        for plan in plans:  # one after the other into the same sink: the order of a concat, less memory
            rows = plan.frame.select(
                *table.columns, FILE, LINE, REASON, pl.when(rejected).then(pl.col(RAW)).alias(RAW)  # raw of bad rows only
            )
            rows.sink_batches(sink, chunk_size=BATCH_ROWS, engine="streaming")
    finally:
        rows_out = sink.close()
    if rows_out + sink.rows_bad != sink.rows_in:
        raise CatalogError(f"internal error: {table.name}: {sink.rows_in} rows in, {rows_out} written + {sink.rows_bad} rejected")
    return _Written(
        rows_in=None if derived else sink.rows_in,
        rows_out=rows_out,
        bad=sink.bad_path,
        files=sink.files,
        min_us=sink.min_us,
    )


def _guess_origin(groups: dict[str, list[TablePlan]]) -> int | None:
    """The minimum time over the first rows of every input of the origin tables: a cheap guess that
    is exact whenever each input is sorted by time (then no second pass is needed)."""
    values = []
    for plans in groups.values():
        for plan in plans:
            got = plan.frame.head(HEAD_ROWS).filter(pl.col(REASON).is_null()).select(_min_expr(plan.table)).collect()
            values.append(got["m"][0])
    values = [int(v) for v in values if v is not None]
    return min(values) if values else None


def run_source(
    name: str,
    from_path: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    verify: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Ingest source ``name`` from ``from_path`` (default: raw downloads, then the offline copies).

    ``strict``: refuse to commit if any row would be quarantined (QuarantineError lists the reasons).
    Raises an :class:`~ingest.errors.IngestError` subclass on bad input; the lake and catalog are then
    exactly as they were.
    """
    say = progress or (lambda _msg: None)
    source = get_source(name)
    paths = data_paths(data_root)
    input_path = Path(from_path).resolve() if from_path else default_input_path(source, paths)
    work = paths.staging / f"{source.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        say(f"resolving inputs in {input_path}")
        inputs = resolve_inputs(
            source.inputs, input_path, work / "inputs", checksums=source.checksums, verify=verify, exclude=paths.root
        )
        with fast_path() as attempt:
            plans = source.plan(inputs)
        if not plans:
            raise InputNotFoundError(f"{input_path}: no table could be built from the inputs found")
        result = RunResult(source.name, input_path, missing_inputs=list(inputs.missing))
        staged = _stage_all(source, plans, inputs, work / "fast", say, result)
        if attempt.used and any(FAST_REJECTED in r["quarantine_by_reason"] for r in result.reports.values()):
            # A fast parser failed on rows the general one may read: redo everything on the robust path.
            say("some rows need the general parsers: re-reading")
            result = RunResult(source.name, input_path, missing_inputs=list(inputs.missing))
            staged = _stage_all(source, source.plan(inputs), inputs, work / "robust", say, result)
        if strict and result.rows_quarantined:
            reasons = {r: n for rep in result.reports.values() for r, n in rep["quarantine_by_reason"].items()}
            raise QuarantineError(
                f"{input_path}: {result.rows_quarantined} row(s) would be quarantined ("
                + ", ".join(f"{r}: {n}" for r, n in reasons.items()) + "); nothing was committed (--strict)"
            )
        say("committing")
        with lake_lock(paths):
            commit(paths, staged, result.reports, work)
            catalog.rebuild(paths)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stage_all(
    source: Source, plans: list[TablePlan], inputs: InputSet, work: Path, say: Progress, result: RunResult
) -> dict[tuple[str, str], Path]:
    """Write every table of every trace into ``work``; fills ``result``; returns (table, trace) -> file."""
    work.mkdir(parents=True, exist_ok=True)
    by_trace: dict[str, dict[str, list[TablePlan]]] = defaultdict(dict)
    for (tname, trace), group in _group(plans).items():
        by_trace[trace][tname] = group
    staged: dict[tuple[str, str], Path] = {}
    for trace, groups in sorted(by_trace.items()):
        staged.update(_stage_trace(source, trace, groups, inputs, work, say, result))
    return staged


def _stage_trace(
    source: Source, trace: str, groups: dict[str, list[TablePlan]], inputs: InputSet, work: Path, say: Progress,
    result: RunResult,
) -> dict[tuple[str, str], Path]:
    origin_groups = {t: g for t, g in groups.items() if g[0].table.origin_column} or {
        t: g for t, g in groups.items() if g[0].table.time_columns}
    origin = _guess_origin(origin_groups)

    def meta_for(origin_us: int | None) -> dict[str, str]:
        return {
            "tracelab.trace": trace,
            "tracelab.source": source.name,
            "tracelab.origin_epoch_us": "" if origin_us is None else str(origin_us),
            "tracelab.time_zone": source.time_base.time_zone,
            "tracelab.epoch": source.time_base.epoch,
        }

    written: dict[str, _Written] = {}
    for _attempt in ("guess", "exact"):  # the origin tables first; again only if the guess was wrong
        for tname, group in sorted(origin_groups.items()):
            say(f"reading {tname} for {trace}")
            written[tname] = _write_group(group, work / f"{tname}__{trace}.parquet", meta_for(origin), origin)
        mins = [written[t].min_us for t in origin_groups if written[t].min_us is not None]
        exact = min(mins) if mins else None
        if exact == origin:
            break
        say(f"{trace} is not sorted by time: rewriting {', '.join(sorted(origin_groups))} with the exact origin")
        origin = exact
    meta = meta_for(origin)
    for tname, group in sorted(groups.items()):
        if tname not in origin_groups:
            say(f"reading {tname} for {trace}")
            written[tname] = _write_group(group, work / f"{tname}__{trace}.parquet", meta, origin)
    staged = {(tname, trace): work / f"{tname}__{trace}.parquet" for tname in groups}
    q_dest = work / f"quarantine__{trace}.parquet"
    bad_files = [(t, w.bad) for t, w in sorted(written.items()) if w.bad is not None]
    q_stage = work / f"quarantine__{trace}.stage.parquet"
    _quarantine_frame([
        pl.scan_parquet(path).select(pl.lit(trace).alias("trace"), pl.lit(tname).alias("dataset"), pl.all())
        for tname, path in bad_files
    ]).select(QUARANTINE.columns).sink_parquet(q_stage, row_group_size=ROW_GROUP_ROWS)
    copy_canonical(q_stage, q_dest, QUARANTINE, meta)
    staged[("quarantine", trace)] = q_dest
    table_rows: dict[str, dict] = {}
    for tname, w in sorted(written.items()):
        q = 0 if w.bad is None else pl.scan_parquet(w.bad).select(pl.len()).collect().item()
        if w.rows_in is not None and w.rows_in != w.rows_out + q:
            raise CatalogError(f"internal error: {trace}/{tname}: {w.rows_in} rows in but {w.rows_out} out + {q} quarantined")
        table_rows[tname] = {"rows_in": w.rows_in, "rows_out": w.rows_out, "rows_quarantined": q}
        result.tables.append(TableResult(tname, trace, w.rows_in, w.rows_out, q))
    files = set().union(*(w.files for w in written.values()))
    result.reports[trace] = _report(source, trace, table_rows, inputs, files, origin, q_dest)
    return staged


def _quarantine_frame(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    """All rejected rows of a trace, with column-count reasons spelled out."""
    if not frames:
        return pl.LazyFrame(schema={c: (pl.Int64 if c == "line" else pl.String) for c in QUARANTINE.columns})
    renamed = pl.concat(frames).rename({"raw": RAW, "reason": REASON})
    return explain_column_count(renamed).rename({RAW: "raw", REASON: "reason"})


def _report(
    source: Source, trace: str, table_rows: dict[str, dict], inputs: InputSet, used: set[str], origin: int | None, q_file: Path
) -> dict:
    by_reason = (
        pl.scan_parquet(q_file)
        .with_columns(pl.col("reason").str.replace(r" '.*$", "").str.replace(r": expected .*$", ""))
        .group_by("reason")
        .len()
        .sort(["len", "reason"], descending=[True, False])
        .collect()
    )
    counted = [t for t in table_rows.values() if t["rows_in"] is not None]
    return {
        "trace": trace,
        "source": source.name,
        "derived": source.derived,
        "schema_version": SCHEMA_VERSION,
        "tables": table_rows,
        "rows_in": sum(t["rows_in"] for t in counted),
        "rows_out": sum(t["rows_out"] for t in counted),
        "rows_quarantined": sum(t["rows_quarantined"] for t in counted),
        "quarantine_by_reason": {r: n for r, n in by_reason.iter_rows()},
        "origin_epoch_us": origin,
        "time_zone": source.time_base.time_zone,
        "epoch": source.time_base.epoch,
        "inputs": [
            {"file": i.display, "bytes": i.path.stat().st_size, "sha256_verified": inputs.verified.get(i.display)}
            for i in sorted(inputs.found.values(), key=lambda i: i.display)
            if i.display in used
        ],
        "missing_inputs": sorted(inputs.missing),
    }

