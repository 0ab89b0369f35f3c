"""The DuckDB catalog: views over the lake's Parquet, plus the ingest reports as tables.

The catalog holds no data of its own: :func:`rebuild` recreates it from the lake (a new file
written beside the old one, then renamed over it, under the lake lock), so it can always be thrown
away. Views: one per canonical table (all traces), ``jobs_derived`` (queue_s, run_s, gpu_s),
``traces`` (one row per trace with its source and row counts) and ``quarantine_summary``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from ingest.errors import CatalogError
from ingest.lake import PART_GLOB, read_reports
from ingest.paths import DataPaths
from ingest.schema import TABLES

DERIVED_VIEWS = {
    "jobs_derived": """
        SELECT *,
               start_s - submit_s AS queue_s,
               coalesce(end_s - start_s, duration_s) AS run_s,
               coalesce(end_s - start_s, duration_s) * num_gpus AS gpu_s
        FROM jobs""",
    "quarantine_summary": """
        SELECT trace, dataset, reason, count(*) AS rows
        FROM quarantine GROUP BY ALL ORDER BY trace, dataset, rows DESC""",
}


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rebuild(paths: DataPaths) -> Path:
    """Recreate ``catalog.duckdb`` from the lake. Call under the lake lock."""
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.catalog.with_name(f".catalog.duckdb.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            present = []
            for name in TABLES:
                files = sorted((paths.lake / name).glob(f"trace=*/{PART_GLOB}"))
                if not files:
                    continue
                present.append(name)
                # every part of every trace; DuckDB expands the glob in name order (traces, then parts)
                glob = _sql_str(str(paths.lake / name / f"trace=*/{PART_GLOB}"))
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet({glob}, hive_partitioning = false)')
            for view, sql in DERIVED_VIEWS.items():
                needs = "jobs" if "FROM jobs" in sql else "quarantine"
                if needs in present:
                    con.execute(f'CREATE VIEW "{view}" AS {sql}')
            _write_reports(con, paths)
        finally:
            con.close()
        os.replace(tmp, paths.catalog)
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        raise CatalogError(f"{paths.catalog}: could not rebuild the catalog: {exc}") from exc
    return paths.catalog


def _write_reports(con: duckdb.DuckDBPyConnection, paths: DataPaths) -> None:
    con.execute(
        """CREATE TABLE traces (trace VARCHAR PRIMARY KEY, source VARCHAR, derived BOOLEAN, tables VARCHAR,
           rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, origin_epoch_us BIGINT,
           time_zone VARCHAR, epoch VARCHAR, inputs VARCHAR, report VARCHAR)"""
    )
    for trace, rep in read_reports(paths).items():
        con.execute(
            "INSERT INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                trace, rep["source"], rep.get("derived", False), ",".join(sorted(rep["tables"])),
                rep["rows_in"], rep["rows_out"], rep["rows_quarantined"], rep.get("origin_epoch_us"),
                rep["time_zone"], rep["epoch"], ",".join(i["file"] for i in rep["inputs"]),
                json.dumps(rep, sort_keys=True),
            ],
        )


def connect(paths: DataPaths, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the catalog; CatalogError with the command that creates it if there is none."""
    if not paths.catalog.exists():
        raise CatalogError(f"{paths.catalog}: no catalog yet; run 'ingest run SOURCE' first (see 'ingest list')")
    return duckdb.connect(str(paths.catalog), read_only=read_only)
