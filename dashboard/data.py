"""Catalog and trace loaders for the dashboard: pure functions of a data root, the work done in DuckDB.

Every loader opens the catalog read-only (:func:`analysis.catalog.open_catalog`), runs a few grouped
queries and returns a small polars DataFrame or dict: at most one row per trace, per time bin (at most
:data:`MAX_BINS`) or per quantile point, so nothing the size of a trace ever reaches the browser.
A missing catalog raises ``ingest.errors.CatalogError`` (the pages turn it into the command to run).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from analysis.catalog import frame, has_view, one, open_catalog, rows
from ingest.schema import TABLES

MAX_BINS = 400
"""Most time bins an arrival-rate series gets (the bin width is rounded up to a readable size)."""
BIN_SIZES_S = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
"""Readable bin widths, seconds."""
CDF_POINTS = 101
"""Quantile points per CDF (0, 0.01, ..., 1)."""
MAX_OPTIONS = 200
"""Most VCs / users offered as filter choices (the most frequent ones)."""
KINDS = ("requests", "jobs")
"""Trace kinds the explorer handles, by canonical table."""


@contextmanager
def catalog(root: str | Path | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The read-only catalog of ``root``, closed on exit (CatalogError when there is none)."""
    con = open_catalog(root)
    try:
        yield con
    finally:
        con.close()


def reason_class(reason: str) -> str:
    """A quarantine reason without its per-row detail: 'duplicate row (identical to line 7)' -> 'duplicate row'."""
    return re.sub(r"\s*[(:].*$", "", reason).strip() or reason


def trace_kind(tables: str) -> str:
    """'requests', 'jobs', or the first table of a trace that has neither (a comma-separated table list)."""
    names = [t for t in tables.split(",") if t]
    return next((k for k in KINDS if k in names), names[0] if names else "none")


def _wall_clock(origin_us: int | None, epoch: str | None, offset_s: float | None) -> str | None:
    if origin_us is None or epoch != "unix" or offset_s is None or not math.isfinite(offset_s):
        return None
    return datetime.fromtimestamp(origin_us / 1e6 + offset_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _spans(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[float, float]]:
    """Trace -> (first, last) time over every table it has, one grouped query per table."""
    spans: dict[str, tuple[float, float]] = {}
    for name, table in TABLES.items():
        if not table.time_columns or not has_view(con, name):
            continue
        lo = ", ".join(f'min("{c}")' for c in table.time_columns)
        hi = ", ".join(f'max("{c}")' for c in table.time_columns)
        for trace, a, b in rows(con, f'SELECT trace, least({lo}), greatest({hi}) FROM "{name}" GROUP BY trace'):
            if a is None:
                continue
            old = spans.get(trace, (a, b))
            spans[trace] = (min(old[0], a), max(old[1], b))
    return spans


def catalog_overview(root: str | Path | None) -> dict[str, pl.DataFrame]:
    """``traces``: one row per ingested trace (source, kind, rows per table, quarantined, time span, wall-clock
    start); ``quarantine``: quarantined rows per (trace, reason class), from the ingest reports."""
    with catalog(root) as con:
        spans = _spans(con)
        got = rows(con, "SELECT trace, source, tables, rows_out, rows_quarantined, origin_epoch_us, epoch, time_zone, "
                        "report FROM traces ORDER BY trace")
    table_rows, quarantine = [], []
    for trace, source, tables, rows_out, quarantined, origin, epoch, zone, report in got:
        rep = json.loads(report)
        lo, hi = spans.get(trace, (None, None))
        per_table = {t: (v or {}).get("rows_out") for t, v in sorted(rep.get("tables", {}).items())}
        table_rows.append({
            "trace": trace, "source": source, "kind": trace_kind(tables),
            "rows": ", ".join(f"{t}: {n:,}" for t, n in per_table.items() if n is not None),
            "rows_out": rows_out, "rows_quarantined": quarantined,
            "start": _wall_clock(origin, epoch, lo), "span_days": None if lo is None else (hi - lo) / 86400,
            "time_zone": zone})
        classes: dict[str, int] = {}
        for reason, n in rep.get("quarantine_by_reason", {}).items():
            classes[reason_class(reason)] = classes.get(reason_class(reason), 0) + int(n)
        quarantine += [{"trace": trace, "reason": r, "rows": n} for r, n in sorted(classes.items(), key=lambda kv: -kv[1])]
    schema = {"trace": pl.String, "reason": pl.String, "rows": pl.Int64}
    return {"traces": pl.DataFrame(table_rows, infer_schema_length=None), "quarantine": pl.DataFrame(quarantine, schema=schema)}


def explorable(root: str | Path | None) -> dict[str, str]:
    """Traces with requests or jobs, name -> kind."""
    with catalog(root) as con:
        got = rows(con, "SELECT trace, tables FROM traces ORDER BY trace")
    return {t: trace_kind(tables) for t, tables in got if trace_kind(tables) in KINDS}


TIME_COLUMN = {"requests": "arrival_s", "jobs": "submit_s"}
"""The arrival time of a row, by kind."""
VIEW = {"requests": "requests", "jobs": "jobs_derived"}
"""What the explorer reads, by kind (``jobs_derived`` adds queue_s, run_s, gpu_s)."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs to keep (an empty tuple or None keeps all)."""

    vcs: tuple[str, ...] = ()
    """Keep jobs of these VCs (``group``)."""
    users: tuple[str, ...] = ()
    """Keep jobs of these users."""
    min_gpus: float | None = None
    """Keep jobs with at least this many GPUs."""
    max_gpus: float | None = None
    """Keep jobs with at most this many GPUs."""
    statuses: tuple[str, ...] = ()
    """Keep jobs with these canonical statuses."""


def where(kind: str, trace: str, window_s: tuple[float, float] | None = None,
          jobs: JobFilter | None = None) -> tuple[str, list]:
    """SQL ``WHERE`` text and parameters for one trace, a ``[lo, hi]`` window of arrival seconds and job filters."""
    t = TIME_COLUMN[kind]
    parts, params = ["trace = ?"], [trace]
    if window_s is not None:
        parts.append(f"{t} BETWEEN ? AND ?")
        params += [float(window_s[0]), float(window_s[1])]
    if kind == "jobs" and jobs is not None:
        for col, values in (('"group"', jobs.vcs), ('"user"', jobs.users), ("status", jobs.statuses)):
            if values:
                parts.append(f"{col} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if jobs.min_gpus is not None:
            parts.append("num_gpus >= ?")
            params.append(float(jobs.min_gpus))
        if jobs.max_gpus is not None:
            parts.append("num_gpus <= ?")
            params.append(float(jobs.max_gpus))
    return " AND ".join(parts), params


def trace_span(root: str | Path | None, trace: str, kind: str) -> tuple[float, float, int]:
    """(first, last arrival second, rows) of a trace."""
    t = TIME_COLUMN[kind]
    with catalog(root) as con:
        lo, hi, n = one(con, f"SELECT min({t}), max({t}), count(*) FROM {kind} WHERE trace = ?", [trace])
    return float(lo or 0.0), float(hi or 0.0), int(n)


def job_options(root: str | Path | None, trace: str) -> dict[str, list]:
    """Filter choices of a jobs trace: the most frequent VCs and users, statuses and GPU counts present."""
    with catalog(root) as con:
        out = {}
        for key, col in (("vcs", '"group"'), ("users", '"user"')):
            out[key] = [r[0] for r in rows(con, f"SELECT {col} FROM jobs WHERE trace = ? AND {col} IS NOT NULL "
                                                f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {MAX_OPTIONS}", [trace])]
        out["statuses"] = [r[0] for r in rows(con, "SELECT status FROM jobs WHERE trace = ? GROUP BY 1 ORDER BY count(*) DESC",
                                               [trace])]
        lo, hi = one(con, "SELECT min(num_gpus), max(num_gpus) FROM jobs WHERE trace = ?", [trace])
        out["gpus"] = [float(lo or 0.0), float(hi or 0.0)]
    return out


def window_from_hours(lo_s: float, hi_s: float, start_h: float, end_h: float, max_h: float) -> tuple[float, float]:
    """The ``[lo, hi]`` seconds of a slider window in hours since ``lo_s``; the slider's ends (``0`` and
    ``max_h``, a rounded span) map to the trace's exact first and last arrival, so no row is cut off."""
    start = lo_s if start_h <= 0 else lo_s + start_h * 3600
    end = hi_s if end_h >= max_h else lo_s + end_h * 3600
    return start, max(start, end)


def bin_width_s(span_s: float, max_bins: int = MAX_BINS) -> float:
    """The smallest readable bin width that cuts ``span_s`` into at most ``max_bins`` bins."""
    for width in BIN_SIZES_S:
        if span_s / width <= max_bins:
            return float(width)
    return float(math.ceil(span_s / max_bins / BIN_SIZES_S[-1]) * BIN_SIZES_S[-1])


def arrival_series(root: str | Path | None, trace: str, kind: str, window_s: tuple[float, float],
                   jobs: JobFilter | None = None) -> pl.DataFrame:
    """Arrivals per bin in the window: ``time_s`` (bin start), ``count``, ``per_s``; empty bins are 0."""
    t, (w, params) = TIME_COLUMN[kind], where(kind, trace, window_s, jobs)
    width = bin_width_s(max(window_s[1] - window_s[0], 1.0))
    sql = (f"SELECT floor(({t} - ?) / ?)::BIGINT AS b, count(*) AS n FROM {VIEW[kind]} WHERE {w} GROUP BY 1")
    with catalog(root) as con:
        got = dict(rows(con, sql, [window_s[0], width, *params]))
    num = int((window_s[1] - window_s[0]) // width) + 1
    counts = [got.get(b, 0) for b in range(num)]
    return pl.DataFrame({"time_s": [window_s[0] + b * width for b in range(num)], "count": counts,
                         "per_s": [c / width for c in counts]})


def value_cdf(root: str | Path | None, trace: str, kind: str, column: str, window_s: tuple[float, float] | None = None,
              jobs: JobFilter | None = None, points: int = CDF_POINTS) -> pl.DataFrame:
    """``value``/``quantile`` pairs of ``column`` over the selected rows (non-null values; empty if none)."""
    w, params = where(kind, trace, window_s, jobs)
    qs = [k / (points - 1) for k in range(points)]
    with catalog(root) as con:
        got = one(con, f'SELECT quantile_cont("{column}", {qs!r}) FROM {VIEW[kind]} WHERE {w} AND "{column}" IS NOT NULL',
                  params)
    values = got[0] if got and got[0] is not None else []
    return pl.DataFrame({"value": [float(v) for v in values], "quantile": qs[: len(values)]},
                        schema={"value": pl.Float64, "quantile": pl.Float64})


def window_summary(root: str | Path | None, trace: str, kind: str, window_s: tuple[float, float],
                   jobs: JobFilter | None = None) -> dict:
    """Row count and a few means of the selected rows."""
    w, params = where(kind, trace, window_s, jobs)
    if kind == "requests":
        sql = f"SELECT count(*), avg(prompt_tokens), avg(output_tokens) FROM requests WHERE {w}"
        keys = ("rows", "prompt_tokens_mean", "output_tokens_mean")
    else:
        sql = f"SELECT count(*), avg(run_s), avg(queue_s), sum(gpu_s) / 3600 FROM jobs_derived WHERE {w}"
        keys = ("rows", "run_s_mean", "queue_s_mean", "gpu_hours")
    with catalog(root) as con:
        return dict(zip(keys, one(con, sql, params)))


def job_breakdown(root: str | Path | None, trace: str, window_s: tuple[float, float],
                  jobs: JobFilter | None = None) -> dict[str, pl.DataFrame]:
    """``gpus``: jobs per GPU count; ``status``: jobs and GPU hours per status (selected jobs)."""
    w, params = where("jobs", trace, window_s, jobs)
    with catalog(root) as con:
        gpus = frame(con, f"SELECT num_gpus, count(*) AS jobs FROM jobs_derived WHERE {w} GROUP BY 1 ORDER BY 1 LIMIT 200",
                     params)
        status = frame(con, f"SELECT status, count(*) AS jobs, coalesce(sum(gpu_s), 0) / 3600 AS gpu_hours "
                            f"FROM jobs_derived WHERE {w} GROUP BY 1 ORDER BY 2 DESC", params)
    return {"gpus": gpus, "status": status}
