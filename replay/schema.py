"""Arrow schemas of a replay's outputs: one row per request (`REQUEST_METRICS`), one per step (`STEP_LOG`).

Like :mod:`ingest.schema`: every field carries a one-line ``doc`` in its metadata, units are in the
column names, and every schema records ``tracelab.results_schema_version``. Times (``*_s``) are
seconds of replay time (virtual for the simulated executor, wall for the GPU one), with 0 at the
workload's window start. Nullable float columns are null where the quantity does not exist (a
rejected request has no TTFT); in the numpy dicts the harness hands over, such values are NaN.
"""

from __future__ import annotations

import pyarrow as pa

RESULTS_SCHEMA_VERSION = "1"
"""Bumped whenever a results schema changes incompatibly; stored in every results Parquet file."""

REQUEST_STATUSES = ("finished", "rejected", "unfinished")
"""Final request states: served to its true end, refused by admission, or still in flight when the run stopped."""


def _f(name: str, typ: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc})


def _schema(doc: str, *fields: pa.Field) -> pa.Schema:
    return pa.schema(list(fields), metadata={"tracelab.results_schema_version": RESULTS_SCHEMA_VERSION, "doc": doc})


RUN_ID = _f("run_id", pa.string(), "the run: a hash of its canonical config (replay.sinks.run_id)", False)
REPLICA = _f("replica", pa.int64(), "serving replica (0 for a single replica)", False)

REQUEST_METRICS = _schema(
    "one replayed request",
    RUN_ID,
    REPLICA,
    _f("request_id", pa.string(), "the workload's request id", False),
    _f("arrival_s", pa.float64(), "arrival, replay seconds", False),
    _f("prompt_tokens", pa.int64(), "prompt length", False),
    _f("output_tokens", pa.int64(), "true output length (from the trace)", False),
    _f("predicted_output_tokens", pa.float64(), "output length the policy's predictor gave; null if none"),
    _f("status", pa.string(), "final state: " + "/".join(REQUEST_STATUSES), False),
    _f("reject_reason", pa.string(), "why admission refused the request; null unless rejected"),
    _f("first_scheduled_s", pa.float64(), "first step that computed any of its tokens; null if never"),
    _f("first_token_s", pa.float64(), "end of the step that produced its first output token; null if none"),
    _f("finish_s", pa.float64(), "end of the step that produced its last output token; null unless finished"),
    _f("num_generated_tokens", pa.int64(), "output tokens produced (equals output_tokens when finished)", False),
    _f("num_preemptions", pa.int64(), "times the request was preempted", False),
    _f("prefix_hit_tokens", pa.int64(), "prompt tokens served from the prefix cache at admission", False),
    _f("ttft_s", pa.float64(), "time to first token: first_token_s - arrival_s"),
    _f("e2e_s", pa.float64(), "end to end latency: finish_s - arrival_s"),
    _f("queue_s", pa.float64(), "waiting before the first step: first_scheduled_s - arrival_s"),
    _f("tpot_s", pa.float64(), "time per output token: (finish_s - first_token_s) / (num_generated_tokens - 1); null if < 2 tokens"),
    _f("tbt_p50_s", pa.float64(), "median gap between consecutive output tokens; null if < 2 tokens"),
    _f("tbt_p90_s", pa.float64(), "90th percentile gap between consecutive output tokens; null if < 2 tokens"),
    _f("tbt_p99_s", pa.float64(), "99th percentile gap between consecutive output tokens; null if < 2 tokens"),
    _f("tbt_max_s", pa.float64(), "largest gap between consecutive output tokens; null if < 2 tokens"),
)
"""One row per request of a run (percentiles: numpy's default linear interpolation)."""

STEP_LOG = _schema(
    "one scheduler step (or one step of a fast-forwarded decode run)",
    RUN_ID,
    REPLICA,
    _f("step", pa.int64(), "0-based step number within the replica", False),
    _f("start_s", pa.float64(), "step start, replay seconds", False),
    _f("duration_s", pa.float64(), "step duration", False),
    _f("num_seqs", pa.int64(), "requests computed in the step (batch size)", False),
    _f("num_decodes", pa.int64(), "of which pure decodes (one token on a non-empty context)", False),
    _f("num_prefill_tokens", pa.int64(), "prompt (or recompute) tokens computed in the step", False),
    _f("num_tokens", pa.int64(), "all tokens computed in the step: decodes + prefill tokens", False),
    _f("kv_blocks_used", pa.int64(), "KV blocks allocated during the step", False),
    _f("kv_blocks_total", pa.int64(), "KV blocks in the pool", False),
    _f("num_waiting", pa.int64(), "requests waiting at the step's scheduling decision", False),
    _f("num_preempted", pa.int64(), "requests preempted while planning this step", False),
)
"""One row per executed step of a run."""

SCHEMAS: dict[str, pa.Schema] = {"requests": REQUEST_METRICS, "steps": STEP_LOG}
"""Results schemas by the file stem they are written under (``<run dir>/<stem>.parquet``)."""


def field_docs(schema: pa.Schema) -> dict[str, str]:
    """Column name -> its one-line doc."""
    return {f.name: (f.metadata or {}).get(b"doc", b"").decode() for f in schema}
