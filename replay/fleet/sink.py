"""Fleet run folders: ``<data root>/results/fleet/<run id>/`` with ``requests.parquet``, ``steps.parquet``,
``config.json`` and ``summary.json`` (the fleet summary with the energy and cost figures under ``energy``).

Written like a serving run (:func:`replay.sinks.write_tables`): atomically, byte-deterministically, every
field documented. The schemas extend the serving ones: requests add `FLEET_REQUEST_COLUMNS` (where each
request was prefilled and decoded, its KV copy and migrations); steps carry the instance, its pool role,
GPU and tensor parallelism instead of a replica number.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from replay import sinks
from replay.fleet.harness import FLEET_REQUEST_COLUMNS, FLEET_STEP_COLUMNS, FleetResult
from replay.fleet.topology import FleetConfig
from replay.schema import REQUEST_METRICS, RESULTS_SCHEMA_VERSION, STEP_LOG

_REQUEST_TYPES = {
    "prefill_instance": pa.int64(), "decode_instance": pa.int64(), "transfer_start_s": pa.float64(),
    "transfer_end_s": pa.float64(), "kv_transfer_bytes": pa.int64(), "decode_admit_s": pa.float64(),
    "num_migrations": pa.int64(), "migration_bytes": pa.int64(), "migration_s": pa.float64(),
}
_STEP_TYPES = {"instance": pa.int64(), "step": pa.int64(), "role": pa.string(), "gpu": pa.string(),
               "tensor_parallel": pa.int64(), "kv_blocks_total": pa.int64()}


def _field(name: str, typ: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, typ, nullable=pa.types.is_floating(typ), metadata={"doc": doc})


def _schema(doc: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"tracelab.results_schema_version": RESULTS_SCHEMA_VERSION, "doc": doc})


FLEET_REQUESTS = _schema(
    "one request replayed through a serving fleet",
    [*REQUEST_METRICS] + [_field(n, _REQUEST_TYPES[n], doc) for n, doc in FLEET_REQUEST_COLUMNS.items()],
)
"""REQUEST_METRICS (``replica``: the instance that produced the last token) plus the fleet columns."""
FLEET_STEPS = _schema(
    "one step of one fleet instance",
    [STEP_LOG.field("run_id")] + [_field(n, _STEP_TYPES[n], doc) for n, doc in FLEET_STEP_COLUMNS.items()]
    + [f for f in STEP_LOG if f.name not in ("run_id", "replica", *FLEET_STEP_COLUMNS)],
)
"""STEP_LOG with the instance, its role, GPU, tensor parallelism and KV pool instead of a replica number."""
FLEET_SCHEMAS = {"requests": FLEET_REQUESTS, "steps": FLEET_STEPS}


def fleet_results_dir(data_root: str | Path | None = None) -> Path:
    """``<data root>/results/fleet``."""
    return sinks.results_root(data_root) / "fleet"


def write_fleet_run(config: FleetConfig, result: FleetResult, energy: dict | None = None, *,
                    data_root: str | Path | None = None) -> Path:
    """Write ``results/fleet/<run id>/`` (the energy summary, if given, goes to ``summary.json`` under
    ``energy``); returns the folder. Everything is validated before the first byte is written."""
    rid = result.run_id
    tables = {"requests": sinks.to_arrow(FLEET_REQUESTS, result.requests, rid),
              "steps": sinks.to_arrow(FLEET_STEPS, result.steps, rid)}
    summary = {**result.summary, "energy": energy}
    return sinks.write_tables(fleet_results_dir(data_root), rid, config, tables, summary)


def read_fleet_run(path: str | Path) -> tuple[dict, dict, dict[str, pa.Table]]:
    """(config, summary, {"requests", "steps"}) of a fleet run folder (checks the schema version)."""
    return sinks.read_tables(path, FLEET_SCHEMAS)
