"""Checking the lake against the canonical schemas and the ingest reports (``ingest validate``)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.lake import PART_GLOB, partition_parts, read_reports
from ingest.paths import DataPaths
from ingest.schema import SCHEMA_VERSION, TABLES


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the lake."""

    where: str
    """File or trace concerned."""
    what: str
    """What is wrong and what was expected."""


def _type_name(typ: pa.DataType) -> str:
    # Parquet names list items 'element', Arrow 'item': compare the value types only.
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return f"list<{_type_name(typ.value_type)}>"
    return str(typ)


def _types(schema: pa.Schema) -> list[tuple[str, str, bool]]:
    return [(f.name, _type_name(f.type), f.nullable) for f in schema]


def validate_lake(paths: DataPaths, traces: list[str] | None = None) -> tuple[list[Problem], int]:
    """All problems found, and the number of Parquet files checked."""
    problems: list[Problem] = []
    reports = read_reports(paths)
    wanted = set(traces) if traces else None
    if wanted:
        for t in sorted(wanted - set(reports)):
            problems.append(Problem(t, "no such ingested trace (see 'ingest list')"))
    checked = 0
    for name, table in TABLES.items():
        for folder in sorted(d for d in (paths.lake / name).glob("trace=*") if d.is_dir()):
            trace = folder.name.removeprefix("trace=")
            if wanted and trace not in wanted:
                continue
            rows = 0
            parts = sorted(folder.glob(PART_GLOB))
            for part in parts:
                checked += 1
                try:
                    meta = pq.read_metadata(part)
                    schema = pq.read_schema(part)
                except Exception as exc:  # noqa: BLE001 - any unreadable file is a problem to report
                    problems.append(Problem(str(part), f"unreadable Parquet: {exc}"))
                    rows = None
                    continue
                if rows is not None:
                    rows += meta.num_rows
                if _types(schema) != _types(table.schema):
                    problems.append(Problem(str(part), f"schema differs from canonical {name} (expected {_types(table.schema)})"))
                version = (schema.metadata or {}).get(b"tracelab.schema_version", b"").decode()
                if version != SCHEMA_VERSION:
                    problems.append(Problem(str(part), f"schema version {version!r}, expected {SCHEMA_VERSION!r}; re-run the ingest"))
            if not parts:
                continue
            where = str(parts[0]) if len(parts) == 1 else f"{folder}/{PART_GLOB} ({len(parts)} parts)"
            rep = reports.get(trace)
            if rep is None:
                problems.append(Problem(where, "no ingest report for this trace"))
                continue
            expected_rows = rep["rows_quarantined"] if name == "quarantine" else rep["tables"].get(name, {}).get("rows_out")
            if expected_rows is None:
                problems.append(Problem(where, f"table {name} is not in the trace's ingest report"))
            elif rows is not None and rows != expected_rows:
                problems.append(Problem(where, f"{rows} rows, but the ingest report says {expected_rows}"))
    for trace, rep in sorted(reports.items()):
        if wanted and trace not in wanted:
            continue
        if rep["rows_in"] != rep["rows_out"] + rep["rows_quarantined"]:
            problems.append(Problem(trace, f"rows_in {rep['rows_in']} != rows_out {rep['rows_out']} + quarantined {rep['rows_quarantined']}"))
        for tname in rep["tables"]:
            if not partition_parts(paths, tname, trace):
                problems.append(Problem(trace, f"the report lists table {tname} but its Parquet file is missing"))
    return problems, checked
