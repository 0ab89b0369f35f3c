"""Azure LLM inference traces 2023 (Splitwise) and 2024 (DynamoLLM), and the 2025 multimodal trace (ModServe).

Three timestamp formats in one upstream repository (FORMATS.md §1-3):

* 2023: naive ``2023-11-16 18:17:03.9799600`` (7 fractional digits, the last always 0);
* 2024: ``2024-05-12 00:00:00.001163+00:00`` or, on whole seconds, ``2024-05-12 00:00:00+00:00``;
* 2025: ISO-8601 ``2024-10-15T12:00:00.269Z``.

Each file is one service and becomes its own trace (``azure_llm_2023_code`` ...); the upstream files
have no request ids, so ``request_id`` is the row's position among the data lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ingest.checks import parse_number, parse_time
from ingest.inputs import InputSet, InputSpec, ResolvedInput
from ingest.lines import FILE, LINE, RAW, REASON, check_header, scan_lines, split_fields
from ingest.schema import REQUESTS
from ingest.sources.base import RemoteFile, Source, TablePlan, TimeBase

GITHUB_RAW = "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/"
BLOB_2024 = "https://azurepublicdatasettraces.blob.core.windows.net/azurellminfererencetrace/"


@dataclass(frozen=True)
class TimestampFormat:
    """A timestamp layout: the chrono format and how to describe it in error messages."""

    fmt: str
    """chrono format; ``%.f`` takes 0-9 fractional digits."""
    expected: str
    """Human description quoted in rejection reasons."""
    time_zone: str | None = None
    """Zone naive values are localized to (None: keep naive, treated as UTC)."""


TS_2023 = TimestampFormat("%Y-%m-%d %H:%M:%S%.f", "YYYY-MM-DD HH:MM:SS.fffffff")
TS_2024 = TimestampFormat("%Y-%m-%d %H:%M:%S%.f%:z", "YYYY-MM-DD HH:MM:SS[.ffffff]+00:00")
TS_2025 = TimestampFormat("%Y-%m-%dT%H:%M:%S%.fZ", "YYYY-MM-DDTHH:MM:SS.fffZ")


def requests_plan(inp: ResolvedInput, trace: str, ts: TimestampFormat, *, with_images: bool = False) -> TablePlan:
    """Plan one Azure CSV (``TIMESTAMP[,NumImages],ContextTokens,GeneratedTokens``) as a requests table."""
    columns = ("TIMESTAMP", "NumImages", "ContextTokens", "GeneratedTokens") if with_images else (
        "TIMESTAMP", "ContextTokens", "GeneratedTokens")
    check_header(inp.path, inp.display, columns)
    lf = split_fields(scan_lines(inp.path, inp.display, skip_header=True), columns)
    lf = parse_time(lf, "TIMESTAMP", "arrival_s", fmt=ts.fmt, expected=ts.expected, time_zone=ts.time_zone)
    lf = parse_number(lf, "ContextTokens", "prompt_tokens", dtype=pl.Int64, min_value=0)
    lf = parse_number(lf, "GeneratedTokens", "output_tokens", dtype=pl.Int64, min_value=0)
    if with_images:
        lf = parse_number(lf, "NumImages", "num_images", dtype=pl.Int32, min_value=0)
    else:
        lf = lf.with_columns(pl.lit(None, pl.Int32).alias("num_images"))
    lf = lf.select(
        pl.lit(trace).alias("trace"),
        (pl.col(LINE) - 2).alias("request_id"),
        "arrival_s",
        "prompt_tokens",
        "output_tokens",
        pl.lit(None, pl.String).alias("session_id"),
        pl.lit(None, pl.List(pl.Int64)).alias("prefix_block_hashes"),
        "num_images",
        pl.lit(None, pl.Int32).alias("priority"),
        FILE, LINE, RAW, REASON,
    )
    return TablePlan(REQUESTS, trace, lf)


class _AzureSource(Source):
    """An Azure requests family: one file per service, one trace per file."""

    files: dict[str, str]
    """input key -> trace name."""
    ts: TimestampFormat
    with_images = False

    def plan(self, inputs: InputSet) -> list[TablePlan]:
        return [
            requests_plan(inp, self.files[key], self.ts, with_images=self.with_images)
            for key in self.files
            if (inp := inputs.get(key)) is not None
        ]


class Azure2023(_AzureSource):
    name = "azure_llm_2023"
    title = "Azure LLM inference trace 2023 (Splitwise, ISCA'24): code and conversation services, 1 hour"
    local_dir = "azure_llm_2023"
    files = {"AzureLLMInferenceTrace_code.csv": "azure_llm_2023_code", "AzureLLMInferenceTrace_conv.csv": "azure_llm_2023_conv"}
    inputs = tuple(InputSpec(k, required=False) for k in files)
    # Upstream publishes no checksums; these are the sha256 of the files at commit b469a113 (FORMATS.md §1).
    downloads = (
        RemoteFile("AzureLLMInferenceTrace_code.csv", GITHUB_RAW + "AzureLLMInferenceTrace_code.csv",
                   "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6", 320_117),
        RemoteFile("AzureLLMInferenceTrace_conv.csv", GITHUB_RAW + "AzureLLMInferenceTrace_conv.csv",
                   "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8", 719_188),
    )
    ts = TS_2023
    time_base = TimeBase("naive", "unix")


class Azure2024(_AzureSource):
    name = "azure_llm_2024"
    title = "Azure LLM inference trace 2024 (DynamoLLM, HPCA'25): code and conversation, one week each"
    local_dir = "azure_llm_2024"
    files = {"AzureLLMInferenceTrace_code_1week.csv": "azure_llm_2024_code",
             "AzureLLMInferenceTrace_conv_1week.csv": "azure_llm_2024_conv"}
    inputs = tuple(InputSpec(k, required=False) for k in files)
    downloads = tuple(RemoteFile(k, BLOB_2024 + k) for k in files)
    ts = TS_2024
    time_base = TimeBase("UTC", "unix")


class AzureMultimodal2025(_AzureSource):
    name = "azure_lmm_2025"
    title = "Azure LMM inference trace 2025, multimodal (ModServe, SoCC'25): 1 M requests over 7 days"
    local_dir = "azure_lmm_2025"
    files = {"AzureLMMInferenceTrace_multimodal.csv": "azure_lmm_2025_multimodal"}
    inputs = tuple(InputSpec(k) for k in files)
    downloads = (RemoteFile("AzureLMMInferenceTrace_multimodal.csv.gz",
                            "https://github.com/Azure/AzurePublicDataset/raw/master/data/AzureLMMInferenceTrace_multimodal.csv.gz"),)
    ts = TS_2025
    time_base = TimeBase("UTC", "unix")
    with_images = True


class SyntheticRequests(_AzureSource):
    """A generated workload in the Azure 2023 format (see :mod:`ingest.synth`); never a real trace."""

    name = "synthetic_llm"
    title = "Generated LLM requests in the Azure 2023 format (Poisson arrivals, lognormal lengths): not real data"
    local_dir = "synthetic_llm"
    files = {"synthetic_requests.csv": "synthetic_llm"}
    inputs = tuple(InputSpec(k) for k in files)
    ts = TS_2023
    time_base = TimeBase("naive", "unix")
    derived = True


SOURCES = (Azure2023(), Azure2024(), AzureMultimodal2025(), SyntheticRequests())
