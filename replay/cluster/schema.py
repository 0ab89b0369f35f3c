"""Arrow schemas of a cluster replay's outputs: one row per job (`JOB_METRICS`), one per minute (`UTILIZATION`).

Written by ``replay.sinks.write_tables`` under ``<results>/cluster/<run id>/`` (``jobs.parquet``,
``utilization.parquet``, ``summary.json``, ``config.json``). Times (``*_s``) are seconds of replay time,
0 at the workload's window start. Nullable float columns are null where the quantity does not exist
(a rejected job has no start).
"""

from __future__ import annotations

import pyarrow as pa

from replay.schema import RESULTS_SCHEMA_VERSION, RUN_ID

JOB_STATUSES = ("finished", "rejected")
"""Final job states: ran to its true end, or refused by admission (it can never fit)."""


def _f(name: str, typ: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc})


def _schema(doc: str, *fields: pa.Field) -> pa.Schema:
    return pa.schema(list(fields), metadata={"tracelab.results_schema_version": RESULTS_SCHEMA_VERSION, "doc": doc})


JOB_METRICS = _schema(
    "one replayed job",
    RUN_ID,
    _f("job_id", pa.string(), "the workload's job id", False),
    _f("vc", pa.string(), "the job's VC (group) in the trace; null if none"),
    _f("user", pa.string(), "the job's user; null if none"),
    _f("submit_s", pa.float64(), "submission, replay seconds", False),
    _f("duration_s", pa.float64(), "true run time (from the trace)", False),
    _f("num_gpus", pa.int64(), "GPUs the job needs", False),
    _f("predicted_duration_s", pa.float64(), "run time the policy was given (prediction or oracle); null if none"),
    _f("status", pa.string(), "final state: " + "/".join(JOB_STATUSES), False),
    _f("reject_reason", pa.string(), "why admission refused the job; null unless rejected"),
    _f("start_s", pa.float64(), "first start; null if rejected"),
    _f("end_s", pa.float64(), "completion; null if rejected"),
    _f("queue_s", pa.float64(), "time waiting in all: jct_s - duration_s (includes waits after preemptions)"),
    _f("jct_s", pa.float64(), "job completion time: end_s - submit_s"),
    _f("slowdown", pa.float64(), "max(jct_s / max(duration_s, slowdown floor), 1) (bounded slowdown)"),
    _f("num_preemptions", pa.int64(), "times the job was preempted", False),
    _f("num_nodes_placed", pa.int64(), "nodes of its first placement (0 if rejected)", False),
)
"""One row per job of a run, in workload (submit) order."""

UTILIZATION = _schema(
    "allocated GPUs, one row per minute of replay time",
    RUN_ID,
    _f("time_s", pa.float64(), "bin start, replay seconds (bins of 60 s from 0)", False),
    _f("allocated_gpus", pa.float64(), "GPUs allocated, averaged over the bin", False),
    _f("total_gpus", pa.int64(), "GPUs in the cluster", False),
)
"""Cluster GPU allocation over time."""

SCHEMAS: dict[str, pa.Schema] = {"jobs": JOB_METRICS, "utilization": UTILIZATION}
"""Cluster results schemas by the file stem they are written under."""
