"""Opening the catalog for analysis, and what one trace offers (its clock, which job columns hold data).

Every analysis function takes a read-only ``duckdb.DuckDBPyConnection`` on ``data/catalog.duckdb``
(:func:`open_catalog`) and a trace name, and returns a small polars DataFrame or a JSON-able dict.
When a trace lacks what an analysis needs (start times for queueing delay, users for concentration,
a wall clock for diurnal patterns) the function raises :class:`NotAvailable` with a one-line reason;
the ``characterize_*`` summaries turn that into the string ``"not available: <reason>"``.

Query through :func:`rows`, :func:`one`, :func:`frame` and :func:`arrays`: DuckDB 2 refuses any
``con.sql`` on a connection whose last ``execute()`` result was not read to the end (``fetchone`` on
a one-row result leaves it open), so these helpers always drain what they execute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from ingest.catalog import connect
from ingest.paths import data_paths


class NotAvailable(LookupError):
    """The trace lacks the data an analysis needs; the message says what is missing."""


def not_available(exc: NotAvailable) -> str:
    """The summary string for a missing analysis: ``'not available: <reason>'``."""
    return f"not available: {exc}"


def open_catalog(data_root: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the catalog of ``data_root`` (default ``$TRACELAB_DATA`` or ``./data``).

    Raises ``ingest.errors.CatalogError`` (naming the command that creates it) if there is no catalog.
    Runs single-threaded so that every figure is reproducible to the last bit.
    """
    con = connect(data_paths(data_root), read_only=True)
    # One thread: DuckDB's parallel float aggregates (sums, averages, variances) add in a thread-dependent
    # order, so two runs could differ in the last digits; reports must be the same bytes on every run.
    con.execute("SET threads TO 1")
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """All rows of a query (the result is drained, so the connection stays usable)."""
    return con.execute(sql, params or []).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """The first row of a query that returns at most a few rows, or None."""
    got = rows(con, sql, params)
    return got[0] if got else None


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """A query's result as a polars DataFrame."""
    return con.sql(sql, params=params or None).pl()


def arrays(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> dict[str, np.ndarray]:
    """A query's columns as numpy arrays (NULLs become masked arrays: fill them in SQL first)."""
    return con.execute(sql, params or []).fetchnumpy()


@dataclass(frozen=True)
class TraceInfo:
    """One row of the catalog's ``traces`` table: where a trace's clock starts and in which zone."""

    trace: str
    """Trace name."""
    source: str
    """Ingest source that produced it."""
    origin_epoch_us: int | None
    """The absolute time of ``*_s == 0`` in microseconds (Unix epoch only when ``epoch == 'unix'``)."""
    time_zone: str | None
    """IANA zone of the upstream wall clock (``naive`` when upstream had none)."""
    epoch: str | None
    """What ``origin_epoch_us`` counts from: ``unix``, or a sentence for shifted/relative clocks."""

    @property
    def wall_clock(self) -> bool:
        """True when times map to real local wall-clock time (needed for hour-of-day and month)."""
        return (self.epoch == "unix" and self.origin_epoch_us is not None
                and self.time_zone not in (None, "", "naive"))

    @property
    def origin_s(self) -> float:
        """``origin_epoch_us`` in seconds (0 when unknown): used to align bins to whole minutes."""
        return (self.origin_epoch_us or 0) / 1e6


def trace_info(con: duckdb.DuckDBPyConnection, trace: str) -> TraceInfo:
    """The catalog's record of ``trace``; NotAvailable if the catalog has no such trace."""
    row = one(con, "SELECT trace, source, origin_epoch_us, time_zone, epoch FROM traces WHERE trace = ?", [trace])
    if row is None:
        known = [r[0] for r in rows(con, "SELECT trace FROM traces ORDER BY 1")]
        raise NotAvailable(f"no trace {trace!r} in the catalog (known: {', '.join(known) or 'none'})")
    return TraceInfo(*row)


def has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the catalog has a view or table called ``name`` (a table with no Parquet has none)."""
    return one(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])[0] > 0


def require_view(con: duckdb.DuckDBPyConnection, name: str, trace: str) -> None:
    """NotAvailable unless the catalog has the view ``name``."""
    if not has_view(con, name):
        raise NotAvailable(f"{trace}: the catalog has no {name!r} table (no trace ingested one)")


JOB_COLUMNS = ("user", "group", "start_s", "end_s", "duration_s", "num_cpus", "num_nodes", "gpu_type", "cluster")
"""The nullable ``jobs`` columns whose presence decides which job analyses a trace supports."""


def job_columns(con: duckdb.DuckDBPyConnection, trace: str, cluster: str | None = None) -> dict[str, int]:
    """Non-null counts of the nullable job columns, plus ``jobs`` (rows) and ``status_known`` (status
    other than ``unknown``) and ``run_known`` (a run time from start/end or upstream duration)."""
    require_view(con, "jobs", trace)
    cols = ", ".join(f'count("{c}") AS "{c}"' for c in JOB_COLUMNS)
    where, params = trace_filter(trace, cluster)
    row = one(con, f"SELECT count(*) AS jobs, {cols}, count(*) FILTER (status <> 'unknown') AS status_known, "
              f"count(coalesce(end_s - start_s, duration_s)) AS run_known FROM jobs WHERE {where}", params)
    names = ["jobs", *JOB_COLUMNS, "status_known", "run_known"]
    return dict(zip(names, row))


def trace_filter(trace: str, cluster: str | None = None) -> tuple[str, list]:
    """SQL ``WHERE`` text and parameters selecting one trace (and optionally one cluster)."""
    if cluster is None:
        return "trace = ?", [trace]
    return "trace = ? AND cluster = ?", [trace, cluster]
