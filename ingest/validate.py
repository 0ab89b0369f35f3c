"""Checking the lake against the canonical schemas and the ingest reports (``ingest validate``)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.lake import PART_NAME, read_reports
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
        for part in sorted((paths.lake / name).glob(f"trace=*/{PART_NAME}")):
            trace = part.parent.name.removeprefix("trace=")
            if wanted and trace not in wanted:
                continue
            checked += 1
            try:
                meta = pq.read_metadata(part)
                schema = pq.read_schema(part)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is a problem to report
                problems.append(Problem(str(part), f"unreadable Parquet: {exc}"))
                continue
            if _types(schema) != _types(table.schema):
                problems.append(Problem(str(part), f"schema differs from canonical {name} (expected {_types(table.schema)})"))
            version = (schema.metadata or {}).get(b"tracelab.schema_version", b"").decode()
            if version != SCHEMA_VERSION:
                problems.append(Problem(str(part), f"schema version {version!r}, expected {SCHEMA_VERSION!r}; re-run the ingest"))
            rep = reports.get(trace)
            if rep is None:
                problems.append(Problem(str(part), "no ingest report for this trace"))
                continue
            expected_rows = rep["rows_quarantined"] if name == "quarantine" else rep["tables"].get(name, {}).get("rows_out")
            if expected_rows is None:
                problems.append(Problem(str(part), f"table {name} is not in the trace's ingest report"))
            elif meta.num_rows != expected_rows:
                problems.append(Problem(str(part), f"{meta.num_rows} rows, but the ingest report says {expected_rows}"))
    for trace, rep in sorted(reports.items()):
        if wanted and trace not in wanted:
            continue
        if rep["rows_in"] != rep["rows_out"] + rep["rows_quarantined"]:
            problems.append(Problem(trace, f"rows_in {rep['rows_in']} != rows_out {rep['rows_out']} + quarantined {rep['rows_quarantined']}"))
        for tname in rep["tables"]:
            if not (paths.lake / tname / f"trace={trace}" / PART_NAME).exists():
                problems.append(Problem(trace, f"the report lists table {tname} but its Parquet file is missing"))
    return problems, checked
