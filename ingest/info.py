"""Summaries of ingested traces for ``ingest list`` and ``ingest info`` (computed by DuckDB on the lake)."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb

from ingest.errors import UnknownSourceError
from ingest.lake import partition_parts, read_reports
from ingest.paths import DataPaths
from ingest.schema import TABLES


def trace_info(paths: DataPaths, trace: str) -> dict:
    """The ingest report of ``trace`` plus per-table time spans and a few distribution figures."""
    reports = read_reports(paths)
    if trace not in reports:
        known = ", ".join(sorted(reports)) or "none yet"
        raise UnknownSourceError(f"no ingested trace {trace!r}; ingested traces: {known}")
    rep = dict(reports[trace])
    con = duckdb.connect()
    stats: dict[str, dict] = {}
    for name in rep["tables"]:
        parts = ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in partition_parts(paths, name, trace))
        src = f"read_parquet([{parts}])"
        cols = TABLES[name].time_columns
        entry: dict = {}
        if cols:
            lo = ", ".join(f"min({c})" for c in cols)
            hi = ", ".join(f"max({c})" for c in cols)
            row = con.execute(f"SELECT least({lo}), greatest({hi}) FROM {src}").fetchone()
            entry["span_s"] = [row[0], row[1]]
        if name == "requests":
            row = con.execute(
                f"SELECT median(prompt_tokens), avg(prompt_tokens), median(output_tokens), avg(output_tokens) FROM {src}"
            ).fetchone()
            entry.update(prompt_tokens_median=row[0], prompt_tokens_mean=row[1], output_tokens_median=row[2], output_tokens_mean=row[3])
        if name == "jobs":
            entry["status"] = dict(con.execute(f"SELECT status, count(*) FROM {src} GROUP BY 1 ORDER BY 2 DESC").fetchall())
            entry["gpu_jobs"] = con.execute(f"SELECT count(*) FROM {src} WHERE num_gpus > 0").fetchone()[0]
        stats[name] = entry
    rep["stats"] = stats
    origin = rep.get("origin_epoch_us")
    if origin is not None and rep.get("epoch") == "unix":
        rep["origin"] = datetime.fromtimestamp(origin / 1e6, tz=timezone.utc).isoformat()
    return rep
