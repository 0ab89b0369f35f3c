"""Running one source end to end: resolve inputs, stage tables, rebase times, commit, rebuild the catalog.

Stages (all output goes to a private staging folder until the commit):

1. a trace's origin (the minimum of jobs.submit_s / requests.arrival_s) is guessed from the first
   rows of each input;
2. every table plan is one Parquet *part* (a table built from several plans, e.g. one per input
   file, lands as several parts, in plan order), produced on its own by streaming the plan once:
   good rows straight into the part (times rebased to seconds since the guessed origin), rejected rows
   to a staging file, input rows counted, and the exact minimum time computed on the way. The origin
   tables' parts of every trace come first; if a trace's guess was wrong (an input not sorted by time)
   its origin tables' parts are written again with the exact origin; then the other tables' parts.
   Parts are produced one after the other here (``backend="local"``) or as Ray tasks
   (``backend="ray"``); either way the driver then assembles each trace (its quarantine file, row
   counts and report) from the parts, so both give the same bytes;
3. plans are first built with the fast parsers; if anything was rejected, everything is redone with
   the general ones (see :mod:`ingest.lines`), so results never depend on the fast path;
4. under the lake lock, partitions are swapped in and the catalog is rebuilt.

``rows_in == rows_out + rows_quarantined`` is checked for every part and every table plan that reads
input rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ingest import catalog
from ingest.checks import FAST_REJECTED
from ingest.errors import BackendError, CatalogError, InputNotFoundError, QuarantineError
from ingest.inputs import InputSet, resolve_inputs
from ingest.lake import commit, lake_lock
from ingest.lines import RAW, REASON, explain_column_count, fast_path
from ingest.parts import BACKENDS, Part, Progress, Runner, Written, group_plans, local_runner, min_expr, runner_for
from ingest.paths import DataPaths, data_paths, traces_dir
from ingest.schema import QUARANTINE, SCHEMA_VERSION
from ingest.sources import get_source
from ingest.sources.base import Source, TablePlan
from ingest.writer import ROW_GROUP_ROWS, copy_canonical


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


HEAD_ROWS = 10_000
"""Rows per input read ahead to guess the trace origin (exact for inputs sorted by time)."""


class _RepeatedKeys(Exception):
    """A fast plan's ``unique_on`` keys repeat among good rows (see :attr:`TablePlan.unique_on`)."""


def _guess_origin(groups: dict[str, list[TablePlan]]) -> int | None:
    """The minimum time over the first rows of every input of the origin tables: a cheap guess that
    is exact whenever each input is sorted by time (then no second pass is needed)."""
    values = []
    for plans in groups.values():
        for plan in plans:
            frame = plan.frame if plan.origin_hint is None else plan.origin_hint
            got = frame.head(HEAD_ROWS).filter(pl.col(REASON).is_null()).select(min_expr(plan.table)).collect()
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
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
) -> RunResult:
    """Ingest source ``name`` from ``from_path`` (default: raw downloads, then the offline copies).

    ``strict``: refuse to commit if any row would be quarantined (QuarantineError lists the reasons).
    ``backend``: ``"local"`` produces the parts (one per table plan) one after the other in this
    process; ``"ray"`` produces each part as a Ray task, on the cluster at ``ray_address`` or on a local
    Ray with ``workers`` CPUs (default: all cores), started here. Both give the same lake, byte for byte.
    Raises an :class:`~ingest.errors.IngestError` subclass on bad input; the lake and catalog are then
    exactly as they were.
    """
    say = progress or (lambda _msg: None)
    if backend not in BACKENDS:
        raise BackendError(f"unknown ingest backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise BackendError(f"--workers must be at least 1, got {workers}")
    if backend == "ray":
        from ingest.ray_support import RayNotInstalledError, import_ray

        try:
            import_ray(ray_address)  # fail before any work if Ray is missing
        except RayNotInstalledError as exc:
            raise BackendError(f"ingest run --backend ray: {exc}") from exc
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
        try:
            staged = _stage_all(source, plans, inputs, work / "fast", say, result,
                                runner_for(backend, source, inputs, True, say, workers, ray_address))
            # A fast parser failed on rows the general one may read: redo everything on the robust path.
            redo = attempt.used and any(FAST_REJECTED in r["quarantine_by_reason"] for r in result.reports.values())
        except _RepeatedKeys as exc:  # the fast plans left out a duplicate check that has work to do
            say(str(exc))
            redo = True
        if redo:
            say("some rows need the general parsers or the duplicate checks: re-reading")
            result = RunResult(source.name, input_path, missing_inputs=list(inputs.missing))
            staged = _stage_all(source, source.plan(inputs), inputs, work / "robust", say, result,
                                runner_for(backend, source, inputs, False, say, workers, ray_address))
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


def _meta(source: Source, trace: str, origin_us: int | None) -> dict[str, str]:
    return {
        "tracelab.trace": trace,
        "tracelab.source": source.name,
        "tracelab.origin_epoch_us": "" if origin_us is None else str(origin_us),
        "tracelab.time_zone": source.time_base.time_zone,
        "tracelab.epoch": source.time_base.epoch,
    }


def _stage_all(
    source: Source, plans: list[TablePlan], inputs: InputSet, work: Path, say: Progress, result: RunResult,
    runner: Runner | None = None,
) -> dict[tuple[str, str], list[Path]]:
    """Write every part of every table of every trace into ``work``; fills ``result``; returns
    (table, trace) -> its part files in order.

    Each table plan is one part. Parts are produced in two rounds through ``runner`` (default: one
    after the other here): first the origin tables' parts of every trace with the guessed origin (again,
    with the exact origin, for a trace whose guess was wrong), then the other tables' parts.
    """
    work.mkdir(parents=True, exist_ok=True)
    groups = group_plans(plans)
    run = runner or local_runner(groups, say)
    by_trace: dict[str, dict[str, list[TablePlan]]] = defaultdict(dict)
    for (tname, trace), group in groups.items():
        by_trace[trace][tname] = group
    origin_tables: dict[str, set[str]] = {}
    origins: dict[str, int | None] = {}
    for trace, tgroups in sorted(by_trace.items()):
        chosen = {t: g for t, g in tgroups.items() if g[0].table.origin_column} or {
            t: g for t, g in tgroups.items() if g[0].table.time_columns}
        origin_tables[trace] = set(chosen)
        origins[trace] = _guess_origin(chosen)

    def parts_of(trace: str, tables: list[str]) -> list[Part]:
        return [
            Part(tname, trace, k, work / f"{tname}__{trace}__{k}.parquet", _meta(source, trace, origins[trace]), origins[trace])
            for tname in sorted(tables) for k in range(len(by_trace[trace][tname]))
        ]

    written: dict[tuple[str, str, int], Written] = {}

    def produce(parts: list[Part]) -> None:
        for part, w in zip(parts, run(parts), strict=True):
            if w.repeated_keys:
                raise _RepeatedKeys(f"{part.table} for {part.trace}: some keys repeat")
            written[(part.table, part.trace, part.k)] = w

    produce([p for trace in sorted(by_trace) for p in parts_of(trace, sorted(origin_tables[trace]))])
    wrong = []
    for trace in sorted(by_trace):
        mins = [w.min_us for (t, tr, _), w in written.items() if tr == trace and t in origin_tables[trace] and w.min_us is not None]
        exact = min(mins) if mins else None
        if exact != origins[trace]:
            say(f"{trace} is not sorted by time: rewriting {', '.join(sorted(origin_tables[trace]))} with the exact origin")
            origins[trace] = exact
            wrong.append(trace)
    if wrong:
        produce([p for trace in wrong for p in parts_of(trace, sorted(origin_tables[trace]))])
    produce([p for trace in sorted(by_trace) for p in parts_of(trace, sorted(set(by_trace[trace]) - origin_tables[trace]))])

    staged: dict[tuple[str, str], list[Path]] = {}
    for trace, tgroups in sorted(by_trace.items()):
        staged.update(_finish_trace(source, trace, tgroups, written, inputs, work, origins[trace], result))
    return staged


def _finish_trace(
    source: Source, trace: str, groups: dict[str, list[TablePlan]], written: dict[tuple[str, str, int], Written],
    inputs: InputSet, work: Path, origin: int | None, result: RunResult,
) -> dict[tuple[str, str], list[Path]]:
    """Assemble one trace from its produced parts: the quarantine file, row counts and the report."""
    meta = _meta(source, trace, origin)
    parts = {tname: [written[(tname, trace, k)] for k in range(len(group))] for tname, group in sorted(groups.items())}
    staged = {(tname, trace): [work / f"{tname}__{trace}__{k}.parquet" for k in range(len(group))]
              for tname, group in groups.items()}
    q_dest = work / f"quarantine__{trace}.parquet"
    bad_files = [(tname, w.bad) for tname, ws in parts.items() for w in ws if w.bad is not None]
    q_stage = work / f"quarantine__{trace}.stage.parquet"
    _quarantine_frame([
        pl.scan_parquet(path).select(pl.lit(trace).alias("trace"), pl.lit(tname).alias("dataset"), pl.all())
        for tname, path in bad_files
    ]).select(QUARANTINE.columns).sink_parquet(q_stage, row_group_size=ROW_GROUP_ROWS)
    copy_canonical(q_stage, q_dest, QUARANTINE, meta)
    staged[("quarantine", trace)] = [q_dest]
    table_rows: dict[str, dict] = {}
    for tname, ws in parts.items():
        derived = all(w.rows_in is None for w in ws)
        rows_in = None if derived else sum(w.rows_in or 0 for w in ws)
        rows_out = sum(w.rows_out for w in ws)
        q = sum(pl.scan_parquet(w.bad).select(pl.len()).collect().item() for w in ws if w.bad is not None)
        if rows_in is not None and rows_in != rows_out + q:
            raise CatalogError(f"internal error: {trace}/{tname}: {rows_in} rows in but {rows_out} out + {q} quarantined")
        table_rows[tname] = {"rows_in": rows_in, "rows_out": rows_out, "rows_quarantined": q}
        result.tables.append(TableResult(tname, trace, rows_in, rows_out, q))
    files = set().union(*(w.files for ws in parts.values() for w in ws))
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

