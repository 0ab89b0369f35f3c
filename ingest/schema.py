"""Canonical Arrow schemas: the one place where every table's columns, types and units are defined.

Each table is a :class:`Table`: a versioned ``pyarrow.Schema`` whose fields carry a one-line ``doc``
in their metadata. Units are in the column names (``_s``, ``_tokens``, ``_gb``).

Time columns (``*_s``) hold seconds since the trace's origin (its first arrival or submission). The
origin itself is kept in the Parquet file metadata (``tracelab.origin_epoch_us``, ``tracelab.time_zone``)
so that absolute wall-clock analyses (diurnal patterns) stay possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = "1"
"""Bumped whenever a canonical schema changes incompatibly; stored in every Parquet file."""

JOB_STATUSES = ("completed", "failed", "killed", "cancelled", "running", "pending", "unknown")
"""The canonical job status vocabulary; each source maps its raw values onto it."""


def _f(name: str, typ: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc})


@dataclass(frozen=True)
class Table:
    """A canonical table: its name, Arrow schema and which columns are times relative to the origin."""

    name: str
    """Dataset name; the lake folder is ``lake/<name>/trace=<trace>/``."""
    schema: pa.Schema
    """The Arrow schema every Parquet file of this table has, field for field."""
    time_columns: tuple[str, ...] = ()
    """Columns holding seconds since the trace origin (staged as absolute epoch microseconds)."""
    origin_column: str | None = None
    """The column whose minimum defines the trace origin, if this table defines it."""
    doc: str = ""
    """One line on what a row is."""

    def __post_init__(self) -> None:
        names = set(self.schema.names)
        missing = [c for c in (*self.time_columns, self.origin_column) if c and c not in names]
        if missing:
            raise ValueError(f"table {self.name}: time columns {missing} are not in the schema")
        if "trace" not in names:
            raise ValueError(f"table {self.name}: every table needs a 'trace' column")

    @property
    def columns(self) -> list[str]:
        """Column names in schema order."""
        return list(self.schema.names)


def _schema(*fields: pa.Field) -> pa.Schema:
    return pa.schema(list(fields), metadata={"tracelab.schema_version": SCHEMA_VERSION})


TRACE = _f("trace", pa.string(), "trace name, e.g. azure_llm_2023_conv", nullable=False)

REQUESTS = Table(
    "requests",
    _schema(
        TRACE,
        _f("request_id", pa.int64(), "0-based position in the upstream file (upstream has no ids)", False),
        _f("arrival_s", pa.float64(), "seconds since the trace's first arrival", False),
        _f("prompt_tokens", pa.int64(), "input (context) tokens", False),
        _f("output_tokens", pa.int64(), "generated tokens", False),
        _f("session_id", pa.string(), "conversation/session id where upstream has one"),
        _f("prefix_block_hashes", pa.list_(pa.int64()), "Mooncake hash_ids: one id per 512-token prefix block"),
        _f("num_images", pa.int32(), "images attached to the request (multimodal traces)"),
        _f("priority", pa.int32(), "request priority where upstream has one"),
    ),
    time_columns=("arrival_s",),
    origin_column="arrival_s",
    doc="one LLM inference request",
)

JOBS = Table(
    "jobs",
    _schema(
        TRACE,
        _f("cluster", pa.string(), "cluster within the trace (Helios: Venus/Earth/...; ITP: cluster01...)"),
        _f("job_id", pa.string(), "upstream job id, unique within (trace, cluster)", False),
        _f("user", pa.string(), "hashed user"),
        _f("group", pa.string(), "virtual cluster or group tag"),
        _f("submit_s", pa.float64(), "submission time, seconds since the trace origin", False),
        _f("start_s", pa.float64(), "first start, seconds since the trace origin; null if never started"),
        _f("end_s", pa.float64(), "end, seconds since the trace origin; null if still running"),
        _f("duration_s", pa.float64(), "run time as upstream reports it, only where start/end are unknown (ITP, derived Philly)"),
        _f("num_gpus", pa.float64(), "GPUs requested (fractional for PAI)", False),
        _f("num_cpus", pa.float64(), "CPU cores requested"),
        _f("num_nodes", pa.int32(), "nodes"),
        _f("gpu_type", pa.string(), "GPU model or class"),
        _f("status", pa.string(), "canonical status: " + "/".join(JOB_STATUSES), False),
        _f("raw_status", pa.string(), "status as upstream spells it"),
    ),
    time_columns=("submit_s", "start_s", "end_s"),
    origin_column="submit_s",
    doc="one GPU-cluster job",
)

ATTEMPTS = Table(
    "attempts",
    _schema(
        TRACE,
        _f("cluster", pa.string(), "cluster (Philly: the VC)"),
        _f("job_id", pa.string(), "the job this attempt belongs to", False),
        _f("attempt", pa.int32(), "0-based attempt number in upstream order", False),
        _f("start_s", pa.float64(), "attempt start, seconds since the trace origin; null if missing upstream"),
        _f("end_s", pa.float64(), "attempt end; null if missing upstream (still running)"),
        _f("num_gpus", pa.int32(), "GPUs placed in this attempt"),
        _f("machines", pa.list_(pa.string()), "machine ids this attempt ran on"),
        _f("gpus", pa.list_(pa.string()), "GPUs as '<machine>/<gpu>'"),
    ),
    time_columns=("start_s", "end_s"),
    doc="one scheduling attempt of a job (Philly)",
)

UTILIZATION = Table(
    "utilization",
    _schema(
        TRACE,
        _f("cluster", pa.string(), "cluster"),
        _f("entity_kind", pa.string(), "machine, vc or cluster", False),
        _f("entity", pa.string(), "machine id, VC id or cluster name", False),
        _f("time_s", pa.float64(), "sample time, seconds since the trace origin", False),
        _f("metric", pa.string(), "e.g. gpu_util_pct, cpu_util_pct, mem_used_frac, mem_total_kb, vc_gpus", False),
        _f("value", pa.float64(), "the value (for per-device metrics: the mean over reporting devices)"),
        _f("device_values", pa.list_(pa.float64()), "per-device values in device order (null: device offline)"),
    ),
    time_columns=("time_s",),
    doc="one sample of a utilization or capacity series",
)

MACHINES = Table(
    "machines",
    _schema(
        TRACE,
        _f("cluster", pa.string(), "cluster"),
        _f("machine_id", pa.string(), "machine id", False),
        _f("gpu_type", pa.string(), "GPU model or class (CPU for CPU-only machines)"),
        _f("num_gpus", pa.int32(), "GPUs in the machine", False),
        _f("gpu_mem_gb", pa.float64(), "memory of one GPU in GB"),
        _f("num_cpus", pa.float64(), "CPU cores"),
        _f("mem_gb", pa.float64(), "host memory in GB"),
    ),
    doc="one machine of a cluster inventory",
)

PAI_TASKS = Table(
    "pai_tasks",
    _schema(
        TRACE,
        _f("job_id", pa.string(), "PAI job_name", False),
        _f("task_name", pa.string(), "task role (tensorflow, ps, worker, ...)", False),
        _f("num_instances", pa.int32(), "instances of this task", False),
        _f("status", pa.string(), "canonical status", False),
        _f("raw_status", pa.string(), "upstream status"),
        _f("start_s", pa.float64(), "task launch, seconds since the trace origin; null if 0/empty upstream"),
        _f("end_s", pa.float64(), "task completion; null if 0/empty upstream"),
        _f("plan_cpus", pa.float64(), "requested CPU cores per instance (plan_cpu / 100)"),
        _f("plan_mem_gb", pa.float64(), "requested memory per instance, GB"),
        _f("plan_gpus", pa.float64(), "requested GPUs per instance (plan_gpu / 100)"),
        _f("gpu_type", pa.string(), "GPU type requested (MISC, T4, P100, V100, V100M32)"),
    ),
    time_columns=("start_s", "end_s"),
    doc="one task (role) of a PAI job",
)

PAI_INSTANCES = Table(
    "pai_instances",
    _schema(
        TRACE,
        _f("job_id", pa.string(), "PAI job_name", False),
        _f("task_name", pa.string(), "task role"),
        _f("inst_name", pa.string(), "instance within the task"),
        _f("worker_name", pa.string(), "finest instance key (joins sensor and machine metric)", False),
        _f("inst_id", pa.string(), "the job's inst_id"),
        _f("status", pa.string(), "canonical status", False),
        _f("raw_status", pa.string(), "upstream status"),
        _f("start_s", pa.float64(), "instance launch; null if 0/empty upstream"),
        _f("end_s", pa.float64(), "instance completion; null if 0/empty upstream"),
        _f("machine", pa.string(), "machine id"),
    ),
    time_columns=("start_s", "end_s"),
    doc="one instance (worker) of a PAI task, deduplicated per worker_name",
)

PAI_INSTANCE_USAGE = Table(
    "pai_instance_usage",
    _schema(
        TRACE,
        _f("job_id", pa.string(), "PAI job_name", False),
        _f("task_name", pa.string(), "task role"),
        _f("worker_name", pa.string(), "instance key", False),
        _f("inst_id", pa.string(), "the job's inst_id"),
        _f("machine", pa.string(), "machine id"),
        _f("gpu_name", pa.string(), "device path, e.g. /dev/nvidia0"),
        _f("plan_cpus", pa.float64(), "requested CPU cores (task plan)"),
        _f("plan_mem_gb", pa.float64(), "requested memory GB (task plan)"),
        _f("plan_gpus", pa.float64(), "requested GPUs (task plan)"),
        _f("used_cpus", pa.float64(), "mean CPU cores used (cpu_usage / 100)"),
        _f("used_gpus", pa.float64(), "mean GPU fraction used (gpu_wrk_util / 100)"),
        _f("avg_mem_gb", pa.float64(), "mean host memory used, GB"),
        _f("max_mem_gb", pa.float64(), "max host memory used, GB"),
        _f("avg_gpu_mem_gb", pa.float64(), "mean GPU memory used, GB"),
        _f("max_gpu_mem_gb", pa.float64(), "max GPU memory used, GB"),
        _f("read_bytes", pa.float64(), "network bytes in"),
        _f("write_bytes", pa.float64(), "network bytes out"),
        _f("read_count", pa.float64(), "network read operations"),
        _f("write_count", pa.float64(), "network write operations"),
    ),
    doc="requested vs used resources of one PAI instance (sensor table joined with the task plan)",
)

PAI_MACHINE_METRIC = Table(
    "pai_machine_metric",
    _schema(
        TRACE,
        _f("worker_name", pa.string(), "instance key", False),
        _f("machine", pa.string(), "machine id"),
        _f("start_s", pa.float64(), "instance launch"),
        _f("end_s", pa.float64(), "instance completion"),
        _f("cpu_iowait", pa.float64(), "machine CPU iowait over the instance's life"),
        _f("cpu_kernel", pa.float64(), "machine CPU kernel time"),
        _f("cpu_usr", pa.float64(), "machine CPU user time"),
        _f("gpu", pa.float64(), "machine GPU utilization"),
        _f("load_1", pa.float64(), "1-minute load"),
        _f("net_receive", pa.float64(), "received network bytes"),
        _f("num_workers", pa.float64(), "mean co-located workers"),
        _f("cpu", pa.float64(), "overall machine CPU"),
    ),
    time_columns=("start_s", "end_s"),
    doc="machine-level metrics averaged over one PAI instance's life",
)

QUARANTINE = Table(
    "quarantine",
    _schema(
        TRACE,
        _f("dataset", pa.string(), "the table the row was meant for", False),
        _f("source_file", pa.string(), "input file (archive:member for archives)", False),
        _f("line", pa.int64(), "1-based line in the source file (JSON: 1-based record index)", False),
        _f("reason", pa.string(), "why the row was rejected", False),
        _f("raw", pa.string(), "the rejected line, as read"),
    ),
    doc="one rejected input row",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        REQUESTS, JOBS, ATTEMPTS, UTILIZATION, MACHINES,
        PAI_TASKS, PAI_INSTANCES, PAI_INSTANCE_USAGE, PAI_MACHINE_METRIC, QUARANTINE,
    )
}
"""Every canonical table by name."""


def table(name: str) -> Table:
    """The canonical table called ``name``; KeyError names the known ones."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}") from None
