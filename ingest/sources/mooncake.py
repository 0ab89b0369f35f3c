"""Mooncake FAST'25 request traces (Kimi): conversation, tool&agent and synthetic, one trace per file.

Each file is JSON Lines, one object per request with the keys ``timestamp`` (int ms since the first
request), ``input_length``, ``output_length`` and ``hash_ids`` (ids of 512-token prefix blocks; the
id namespace is per file). See FORMATS.md §7.

* ``request_id`` is the 0-based line position (upstream has no ids), so requests that share a
  quantized timestamp (the conversation trace has only 1,180 distinct values) keep their line order.
* ``arrival_s`` is staged as microseconds on the upstream relative clock (ms * 1000).
* Rejected lines: blank, malformed JSON, not an object, a missing key, a value of the wrong type
  (integers must be JSON integers or integral floats; ``hash_ids`` a list of integers), negative
  values. Extra keys are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from ingest.inputs import InputSet, InputSpec, ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON
from ingest.records import clip, iter_jsonl, records_frame
from ingest.schema import REQUESTS
from ingest.sources.base import RemoteFile, Source, TablePlan, TimeBase

RELEASE_URL = "https://raw.githubusercontent.com/kvcache-ai/Mooncake/main/FAST25-release/traces/"
FILES = {
    "conversation_trace.jsonl": "mooncake_conversation",
    "toolagent_trace.jsonl": "mooncake_toolagent",
    "synthetic_trace.jsonl": "mooncake_synthetic",
}
"""Input file -> trace name."""
INT_KEYS = (("timestamp", "arrival_s"), ("input_length", "prompt_tokens"), ("output_length", "output_tokens"))
"""Integer keys in file order and the canonical column each becomes."""
US_PER_MS = 1000
_INT64_MAX = 2**63 - 1
_STAGED = {
    "trace": pl.String,
    "request_id": pl.Int64,
    "arrival_s": pl.Int64,
    "prompt_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "prefix_block_hashes": pl.List(pl.Int64),
}


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is a JSON integer (or an integral float) within Int64, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return value
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_record(obj: dict) -> tuple[dict, str | None]:
    """Validate one upstream object; return (canonical values, None) or ({}, reason)."""
    values: dict[str, Any] = {}
    for key, column in INT_KEYS:
        if key not in obj:
            return {}, f"missing key '{key}'"
        number = _as_int(obj[key])
        if number is None:
            return {}, f"wrong type {key}: expected an integer, found {type(obj[key]).__name__} {_show(obj[key])}"
        if number < 0:
            return {}, f"negative {key} '{number}'"
        values[column] = number
    if "hash_ids" not in obj:
        return {}, "missing key 'hash_ids'"
    raw_ids = obj["hash_ids"]
    if not isinstance(raw_ids, list):
        return {}, f"wrong type hash_ids: expected a list of integers, found {type(raw_ids).__name__} {_show(raw_ids)}"
    ids = [_as_int(h) for h in raw_ids]
    for position, (raw_id, hash_id) in enumerate(zip(raw_ids, ids, strict=True)):
        if hash_id is None:
            return {}, f"wrong type hash_ids[{position}]: expected an integer, found {_show(raw_id)}"
        if hash_id < 0:
            return {}, f"negative hash_ids[{position}] '{hash_id}'"
    if values["arrival_s"] > _INT64_MAX // US_PER_MS:
        return {}, f"timestamp out of range '{values['arrival_s']}'"
    values["arrival_s"] *= US_PER_MS
    values["prefix_block_hashes"] = ids
    return values, None


def iter_requests(inp: ResolvedInput, trace: str) -> Iterator[dict]:
    """One record dict per line: canonical values for a good line, ``_raw``/``_reason`` for a bad one."""
    for line, raw, obj, reason in iter_jsonl(inp.path, inp.display):
        values: dict[str, Any] = {}
        if reason is None:
            values, reason = check_record(obj)
        record = {"trace": trace, "request_id": line - 1, LINE: line, REASON: reason, **values}
        if reason is not None:  # the raw text only matters for the quarantine
            record[RAW] = None if raw is None else clip(raw)
        yield record


def requests_plan(inp: ResolvedInput, trace: str) -> TablePlan:
    """Plan one Mooncake JSONL file as a requests table (reads the file now: JSON has no lazy reader)."""
    lf = records_frame(iter_requests(inp, trace), _STAGED, inp.display).select(
        "trace",
        "request_id",
        "arrival_s",
        "prompt_tokens",
        "output_tokens",
        pl.lit(None, pl.String).alias("session_id"),
        "prefix_block_hashes",
        pl.lit(None, pl.Int32).alias("num_images"),
        pl.lit(None, pl.Int32).alias("priority"),
        FILE, LINE, RAW, REASON,
    )
    return TablePlan(REQUESTS, trace, lf)


class MooncakeFast25(Source):
    """Mooncake FAST'25: three request traces with prefix-block hashes."""

    name = "mooncake_fast25"
    title = "Mooncake FAST'25 traces (Kimi): conversation, tool&agent (1 hour of traffic) and synthetic requests"
    local_dir = "mooncake"
    inputs = tuple(InputSpec(f, required=False) for f in FILES)
    # Upstream publishes no checksums; these are the sha256 of the blobs at commit 3b5a5941 (FORMATS.md §10).
    downloads = (
        RemoteFile("conversation_trace.jsonl", RELEASE_URL + "conversation_trace.jsonl",
                   "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df", 3_029_533),
        RemoteFile("toolagent_trace.jsonl", RELEASE_URL + "toolagent_trace.jsonl"),
        RemoteFile("synthetic_trace.jsonl", RELEASE_URL + "synthetic_trace.jsonl",
                   "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131", 1_136_313),
    )
    time_base = TimeBase("UTC", "ms since the first request")

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """One requests plan per trace file found."""
        return [requests_plan(inp, trace) for key, trace in FILES.items() if (inp := inputs.get(key)) is not None]


SOURCES = (MooncakeFast25(),)
"""Mooncake: conversation and synthetic real files offline; tool&agent on fixtures."""
