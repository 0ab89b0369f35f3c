"""The harness's output side: one folder per run under ``data/results``, written atomically and byte-deterministically.

A serving run folder ``<results_dir>/<run_id>/`` holds ``requests.parquet`` (:data:`replay.schema.REQUEST_METRICS`),
``steps.parquet`` (:data:`replay.schema.STEP_LOG`), ``summary.json`` and ``config.json``. It is built in a
hidden temp folder beside it and renamed into place, so a reader never sees a partial run. The files
carry no timestamps: the same inputs give the same bytes (with the same pyarrow version).
:func:`write_tables` writes any set of tables the same way (the cluster core's ``jobs`` and ``utilization``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.paths import data_paths
from replay.schema import REQUEST_METRICS, REQUEST_STATUSES, RESULTS_SCHEMA_VERSION, SCHEMAS, STEP_LOG

RUN_ID_CHARS = 12
"""Hex digits of the config hash used as the run id."""
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd", "compression_level": 3, "use_dictionary": True, "write_statistics": True,
    "version": "2.6", "data_page_version": "1.0", "row_group_size": 1 << 20,
}
"""Fixed Parquet writer settings (part of what makes the files byte-deterministic)."""


class RunRecord(NamedTuple):
    """A run as read back by :func:`read_run`."""

    config: dict
    summary: dict
    requests: pa.Table
    steps: pa.Table


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON data: dataclasses become dicts, tuples lists, numpy scalars and arrays Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"config/summary keys must be str, got {sorted(map(repr, obj))[:5]}")
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"not JSON-able: {type(obj).__name__} {obj!r}")


def canonical_json(obj: Any) -> str:
    """The canonical JSON of ``obj``: sorted keys, no spaces, ASCII, NaN refused."""
    return json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def run_id(config: Any) -> str:
    """A short stable id for a run: the first 12 hex digits of the sha256 of the config's canonical JSON."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:RUN_ID_CHARS]


def results_root(data_root: str | Path | None = None) -> Path:
    """``<data root>/results`` (data root: ``data_root``, else $TRACELAB_DATA, else ./data)."""
    return data_paths(data_root).root / "results"


def to_arrow(schema: pa.Schema, columns: dict[str, np.ndarray], run: str) -> pa.Table:
    """Numpy columns as a table of exactly ``schema``.

    ``run_id`` is filled with ``run`` and ``replica`` with 0 when absent; any other nullable column may be
    left out (all null). Float NaN becomes null; a null in a non-nullable column is an error.
    """
    unknown = sorted(set(columns) - set(schema.names))
    lengths = {k: len(v) for k, v in columns.items()}
    if unknown or len(set(lengths.values())) > 1:
        raise ValueError(f"{schema.metadata[b'doc'].decode()}: unknown columns {unknown} or unequal lengths {lengths}")
    n = next(iter(lengths.values()), 0)
    defaults = {"run_id": np.full(n, run, dtype=object), "replica": np.zeros(n, np.int64)}
    arrays = []
    for field in schema:
        values = columns.get(field.name, defaults.get(field.name))
        if values is None:
            if not field.nullable:
                raise ValueError(f"missing column {field.name!r} ({field.metadata[b'doc'].decode()})")
            arrays.append(pa.nulls(n, field.type))
            continue
        values = np.asarray(values)
        if pa.types.is_floating(field.type):
            arr = pa.array(values.astype(np.float64), pa.float64(), from_pandas=True)
        elif pa.types.is_integer(field.type) and values.dtype.kind == "f":
            raise ValueError(f"column {field.name!r} must be integers, got {values.dtype}")
        else:
            arr = pa.array(values, field.type)
        if not field.nullable and arr.null_count:
            raise ValueError(f"column {field.name!r} has {arr.null_count} null/NaN value(s) but may not")
        arrays.append(arr)
    table = pa.Table.from_arrays(arrays, schema=schema)
    if "run_id" in columns and n and set(table.column("run_id").unique().to_pylist()) != {run}:
        raise ValueError(f"column 'run_id' disagrees with the run id {run!r}")
    return table


def write_run(results_dir: str | Path, run_id: str, config: Any, requests: dict[str, np.ndarray],
              steps: dict[str, np.ndarray], summary: dict) -> Path:
    """Write the serving run folder ``<results_dir>/<run_id>/`` atomically and return its path.

    Everything is validated before the first byte is written (see :func:`write_tables`).
    """
    _check_run_id(run_id)
    tables = {"requests": to_arrow(REQUEST_METRICS, requests, run_id), "steps": to_arrow(STEP_LOG, steps, run_id)}
    bad = set(tables["requests"].column("status").unique().to_pylist()) - set(REQUEST_STATUSES)
    if bad:
        raise ValueError(f"request status must be one of {REQUEST_STATUSES}, got {sorted(bad)}")
    return write_tables(results_dir, run_id, config, tables, summary)


def write_tables(results_dir: str | Path, run_id: str, config: Any, tables: dict[str, pa.Table], summary: dict) -> Path:
    """Write ``<results_dir>/<run_id>/`` with ``<name>.parquet`` per table, ``config.json`` and ``summary.json``.

    The folder is built beside its final place and swapped in: an existing folder of the same id is
    replaced only once the new one is complete (a reader sees the old run or the new one, never a
    mix). On any failure the temp folder is removed and an old run is kept.
    """
    _check_run_id(run_id)
    texts = {name: json.dumps(plain(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"
             for name, obj in (("config.json", config), ("summary.json", summary))}
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / run_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.tmp-", dir=root))
    try:
        os.chmod(tmp, 0o755)
        for name, table in tables.items():
            pq.write_table(table, tmp / f"{name}.parquet", **PARQUET_OPTIONS)
        for name, text in texts.items():
            (tmp / name).write_text(text)
        for path in tmp.iterdir():
            _fsync(path)
        _fsync(tmp)
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(root)
    return final


def _check_run_id(run_id: str) -> None:
    if not run_id or run_id.startswith(".") or "/" in run_id or os.sep in run_id:
        raise ValueError(f"run_id must be a plain folder name, got {run_id!r}")


def read_run(path: str | Path) -> RunRecord:
    """Read a serving run folder written by :func:`write_run` (checks the results schema version)."""
    config, summary, tables = read_tables(path, SCHEMAS)
    return RunRecord(config, summary, tables["requests"], tables["steps"])


def read_tables(path: str | Path, schemas: dict[str, pa.Schema]) -> tuple[dict, dict, dict[str, pa.Table]]:
    """(config, summary, tables by stem) of a run folder; checks each table's results schema version."""
    path = Path(path)
    tables = {}
    for stem in schemas:
        table = pq.read_table(path / f"{stem}.parquet")
        version = (table.schema.metadata or {}).get(b"tracelab.results_schema_version", b"").decode()
        if version != RESULTS_SCHEMA_VERSION:
            raise ValueError(f"{path / stem}.parquet: results schema version {version!r}, expected {RESULTS_SCHEMA_VERSION!r}")
        tables[stem] = table
    config = json.loads((path / "config.json").read_text())
    summary = json.loads((path / "summary.json").read_text())
    return config, summary, tables


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``, moving an existing ``final`` aside first and removing it after."""
    if not final.exists():
        os.rename(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
