"""Running one source end to end: resolve inputs, stage tables, rebase times, commit, rebuild the catalog.

Stages (all output goes to a private staging folder until the commit):

1. every table plan is streamed once: good rows to a staging Parquet (times as absolute epoch
   microseconds), rejected rows to a quarantine Parquet, and the input rows counted;
2. each trace's origin is the minimum of its origin column (jobs.submit_s, requests.arrival_s);
   every time column is rebased to seconds since it and written in the canonical Arrow schema, in
   fixed-size row groups, so the same input always gives the same bytes;
3. under the lake lock, partitions are swapped in and the catalog is rebuilt.

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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest import catalog
from ingest.errors import CatalogError, InputNotFoundError, QuarantineError
from ingest.inputs import InputSet, resolve_inputs
from ingest.lake import commit, lake_lock
from ingest.lines import FILE, LINE, RAW, REASON, explain_column_count
from ingest.paths import DataPaths, data_paths, traces_dir
from ingest.schema import QUARANTINE, SCHEMA_VERSION, Table
from ingest.sources import get_source
from ingest.sources.base import Source, TablePlan

ROW_GROUP_ROWS = 1 << 20
"""Rows per Parquet row group (fixed, so output bytes do not depend on thread timing)."""

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


def _stage_group(table: Table, plans: list[TablePlan], out: Path) -> tuple[Path, Path | None, int | None, set[str]]:
    """Stream one (table, trace): good rows, quarantined rows, the number of input rows, the input files."""
    frame = pl.concat([p.frame for p in plans], how="vertical") if len(plans) > 1 else plans[0].frame
    derived = all(p.derived for p in plans)
    good_path, bad_path = out.with_suffix(".good.parquet"), out.with_suffix(".bad.parquet")
    good = frame.filter(pl.col(REASON).is_null()).select(table.columns)
    queries = [good.sink_parquet(good_path, lazy=True, row_group_size=ROW_GROUP_ROWS)]
    if not derived:
        bad = frame.filter(pl.col(REASON).is_not_null()).select(
            pl.col(FILE).alias("source_file"), pl.col(LINE).alias("line"), pl.col(REASON).alias("reason"), pl.col(RAW).alias("raw")
        )
        queries.append(bad.sink_parquet(bad_path, lazy=True))
        queries.append(frame.select(pl.len().alias("n")))
    queries.append(frame.select(pl.col(FILE).unique()))
    results = pl.collect_all(queries, engine="streaming")
    rows_in = int(results[-2]["n"][0]) if not derived else None
    return good_path, (bad_path if not derived else None), rows_in, set(results[-1][FILE].to_list())


def _origin_us(tables: dict[str, Path], schema_of: dict[str, Table]) -> int | None:
    """The trace origin: min of the origin column(s); without one, min of every time column."""
    exprs = [
        (path, schema_of[name].origin_column) for name, path in tables.items() if schema_of[name].origin_column
    ] or [(path, c) for name, path in tables.items() for c in schema_of[name].time_columns]
    values = [pl.scan_parquet(path).select(pl.col(col).min()).collect().item() for path, col in exprs]
    values = [v for v in values if v is not None]
    return int(min(values)) if values else None


def _write_canonical(
    src: Path, table: Table, dest: Path, metadata: dict[str, str], origin_us: int | None = None
) -> int:
    """Rewrite staged Parquet ``src`` as ``dest`` in exactly ``table.schema``; returns the row count.

    Reads one batch at a time (memory is bounded by the row-group size), rebases the time columns
    to seconds since ``origin_us``, and writes fixed-size row groups, so the bytes depend only on
    the data.
    """
    meta = dict(table.schema.metadata or {})
    meta.update({k.encode(): v.encode() for k, v in metadata.items()})
    schema = table.schema.with_metadata(meta)
    rows = 0
    with pq.ParquetWriter(dest, schema, compression="zstd", write_statistics=True) as writer:
        pending: list[pa.Table] = []
        pending_rows = 0
        for batch in pq.ParquetFile(src).iter_batches(batch_size=ROW_GROUP_ROWS, columns=table.columns):
            pending.append(_rebase(pa.Table.from_batches([batch]), table, origin_us).cast(schema))
            pending_rows += batch.num_rows
            while pending_rows >= ROW_GROUP_ROWS:
                full = pa.concat_tables(pending)
                writer.write_table(full.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                rest = full.slice(ROW_GROUP_ROWS)
                pending, pending_rows = [rest], rest.num_rows
                rows += ROW_GROUP_ROWS
        if pending_rows:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
            rows += pending_rows
    return rows


def _rebase(tbl: pa.Table, table: Table, origin_us: int | None) -> pa.Table:
    """Staged epoch microseconds -> float seconds since the origin (as they are, if there is none)."""
    for col in table.time_columns:
        values = tbl.column(col)
        if origin_us is not None:
            values = pc.divide(pc.cast(pc.subtract(values, origin_us), pa.float64()), 1e6)
        tbl = tbl.set_column(tbl.schema.get_field_index(col), col, values)
    return tbl


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
        plans = source.plan(inputs)
        if not plans:
            raise InputNotFoundError(f"{input_path}: no table could be built from the inputs found")
        result = RunResult(source.name, input_path, missing_inputs=list(inputs.missing))
        staged = _stage_all(source, plans, inputs, work, say, result)
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
    groups = _group(plans)
    stage1: dict[str, dict[str, Path]] = defaultdict(dict)  # trace -> table -> good file
    bad_files: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    counts: dict[tuple[str, str], int | None] = {}
    files: dict[str, set[str]] = defaultdict(set)  # trace -> input display names that fed it
    schema_of = {t: plans_[0].table for (t, _), plans_ in groups.items()}
    for (tname, trace), group in groups.items():
        say(f"reading {tname} for {trace}")
        good, bad, rows_in, used = _stage_group(group[0].table, group, work / f"s1__{tname}__{trace}")
        files[trace] |= used
        stage1[trace][tname] = good
        if bad is not None:
            bad_files[trace].append((tname, bad))
        counts[(tname, trace)] = rows_in

    staged: dict[tuple[str, str], Path] = {}
    for trace, tables in sorted(stage1.items()):
        origin = _origin_us(tables, schema_of)
        meta = {
            "tracelab.trace": trace,
            "tracelab.source": source.name,
            "tracelab.origin_epoch_us": "" if origin is None else str(origin),
            "tracelab.time_zone": source.time_base.time_zone,
            "tracelab.epoch": source.time_base.epoch,
        }
        table_rows: dict[str, dict] = {}
        quarantined: dict[str, int] = {}
        for tname, good in sorted(tables.items()):
            say(f"writing {tname} for {trace}")
            table = schema_of[tname]
            dest = work / f"final__{tname}__{trace}.parquet"
            rows_out = _write_canonical(good, table, dest, meta, origin)
            staged[(tname, trace)] = dest
            table_rows[tname] = {"rows_out": rows_out}
        q_dest = work / f"final__quarantine__{trace}.parquet"
        q_frames = [
            pl.scan_parquet(path).select(pl.lit(trace).alias("trace"), pl.lit(tname).alias("dataset"), pl.all())
            for tname, path in bad_files.get(trace, [])
        ]
        q_lf = _quarantine_frame(q_frames)
        q_stage = work / f"s1__quarantine__{trace}.parquet"
        q_lf.select(QUARANTINE.columns).sink_parquet(q_stage, row_group_size=ROW_GROUP_ROWS)
        _write_canonical(q_stage, QUARANTINE, q_dest, meta)
        staged[("quarantine", trace)] = q_dest
        for tname, path in bad_files.get(trace, []):
            quarantined[tname] = pl.scan_parquet(path).select(pl.len()).collect().item()
        for tname, info in table_rows.items():
            rows_in = counts[(tname, trace)]
            q = quarantined.get(tname, 0)
            if rows_in is not None and rows_in != info["rows_out"] + q:
                raise CatalogError(
                    f"internal error: {trace}/{tname}: {rows_in} rows in but {info['rows_out']} out + {q} quarantined"
                )
            info.update(rows_in=rows_in, rows_quarantined=q)
            result.tables.append(TableResult(tname, trace, rows_in, info["rows_out"], q))
        result.reports[trace] = _report(source, trace, table_rows, inputs, files[trace], origin, q_dest)
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

