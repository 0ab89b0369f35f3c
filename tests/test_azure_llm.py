"""Azure LLM 2023 on the real files; 2024 and 2025 on fixtures in the exact upstream format."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.lake import partition_dir
from ingest.pipeline import run_source


def test_azure_2023_real_counts_and_medians(traces: Path, data_root, query) -> None:
    result = run_source("azure_llm_2023", traces / "azure_llm_2023", data_root=data_root.root)
    assert {(t.trace, t.rows_out, t.rows_quarantined) for t in result.tables} == {
        ("azure_llm_2023_code", 8819, 0),
        ("azure_llm_2023_conv", 19366, 0),
    }
    rows = dict(
        (r[0], r[1:])
        for r in query(
            "SELECT trace, median(prompt_tokens), median(output_tokens), avg(output_tokens), min(arrival_s) "
            "FROM requests GROUP BY trace"
        )
    )
    assert rows["azure_llm_2023_conv"][:2] == (1020, 129)
    assert rows["azure_llm_2023_code"][:2] == (1469, 13)
    assert rows["azure_llm_2023_conv"][2] == pytest.approx(211.126, abs=1e-3)
    assert rows["azure_llm_2023_conv"][3] == 0.0


def test_azure_2023_subsecond_precision_survives(traces: Path, data_root, query) -> None:
    run_source("azure_llm_2023", traces / "azure_llm_2023", data_root=data_root.root)
    # code trace: first 18:17:03.9799600, second 18:17:04.0319600 (line 3 of the file)
    first_lines = (traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv").read_text().splitlines()[1:4]
    stamps = [line.split(",")[0] for line in first_lines]
    secs = [int(s[17:19]) + int(s[20:26]) / 1e6 for s in stamps]
    got = [r[0] for r in query("SELECT arrival_s FROM requests WHERE trace='azure_llm_2023_code' ORDER BY request_id LIMIT 3")]
    assert got == pytest.approx([s - secs[0] for s in secs], abs=1e-9)
    assert got[1] != round(got[1])  # a fractional second, not truncated to whole seconds
    meta = pq.read_schema(partition_dir(data_root, "requests", "azure_llm_2023_code") / "part-0.parquet").metadata
    assert meta[b"tracelab.origin_epoch_us"] == b"1700158623979960"  # 2023-11-16 18:17:03.979960 (naive, read as UTC)


AZ2024 = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2024-05-12 00:00:00.001163+00:00,374,44\n"
    "2024-05-12 00:00:01+00:00,396,109\n"  # whole second: no fractional part
    "2024-05-12 00:00:01.5+00:00,879,1\n"  # short fraction
    "2024-05-12 00:00:02.123456789+00:00,12,7\n"  # nanosecond digits
    "2024-05-12 00:00:03.000001+00:00,-5,7\n"  # negative tokens
    "2024-05-12 00:00:04.000001+00:00,12\n"  # too few fields
    "2024-05-12 00:00:05.000001+00:00,12,7,9\n"  # too many fields
    "2024-05-12 25:00:05+00:00,12,7\n"  # bad time
    "\n"  # blank line
    "2024-05-12 00:00:06+00:00,abc,7\n"  # unparseable number
    "2024-05-12 00:00:07+00:00,,7\n"  # empty required field
    "2024-05-12 00:00:08+00:00,NaN,7\n"
    "2024-05-12 00:00:09+00:00,12.5,7\n"
)


def test_azure_2024_mixed_precision_and_quarantine(tmp_path: Path, data_root, query) -> None:
    (tmp_path / "AzureLLMInferenceTrace_conv_1week.csv").write_text(AZ2024)
    result = run_source("azure_llm_2024", tmp_path, data_root=data_root.root)
    (table,) = [t for t in result.tables if t.table == "requests"]
    assert (table.rows_in, table.rows_out, table.rows_quarantined) == (13, 4, 9)
    got = [r[0] for r in query("SELECT arrival_s FROM requests ORDER BY request_id")]
    assert got == pytest.approx([0.0, 0.998837, 1.498837, 2.122293], abs=1e-9)
    reasons = query("SELECT line, reason FROM quarantine ORDER BY line")
    assert reasons == [
        (6, "negative ContextTokens '-5'"),
        (7, "wrong column count: expected 3 fields, found 2"),
        (8, "wrong column count: expected 3 fields, found 4"),
        (9, "unparseable TIMESTAMP '2024-05-12 25:00:05+00:00' (expected YYYY-MM-DD HH:MM:SS[.ffffff]+00:00)"),
        (10, "blank line"),
        (11, "unparseable ContextTokens 'abc'"),
        (12, "missing ContextTokens"),
        (13, "NaN or infinite ContextTokens"),
        (14, "non-integer ContextTokens '12.5'"),
    ]
    (report,) = query("SELECT rows_in, rows_out, rows_quarantined FROM traces WHERE trace = 'azure_llm_2024_conv'")
    assert report == (13, 4, 9)


def test_azure_2025_multimodal_gz(tmp_path: Path, data_root, query) -> None:
    import gzip

    text = (
        "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
        "2024-10-15T12:00:00.269Z,0,1200,80\n"
        "2024-10-15T12:00:01.000Z,3,4000,120\n"
        "2024-10-15T12:00:02Z,1,900,10\n"  # whole second without .000: tolerated
    )
    (tmp_path / "AzureLMMInferenceTrace_multimodal.csv.gz").write_bytes(gzip.compress(text.encode()))
    run_source("azure_lmm_2025", tmp_path / "AzureLMMInferenceTrace_multimodal.csv.gz", data_root=data_root.root)
    rows = query("SELECT arrival_s, num_images, prompt_tokens, output_tokens FROM requests ORDER BY request_id")
    assert rows == [(0.0, 0, 1200, 80), (0.731, 3, 4000, 120), (1.731, 1, 900, 10)]


def test_layout_outside_the_fast_parser_is_still_read(tmp_path: Path, data_root, query) -> None:
    """A +01:00 offset is valid for the format but not for the fast parser: the run falls back, loses nothing."""
    (tmp_path / "AzureLLMInferenceTrace_code_1week.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-12 00:00:00+00:00,1,2\n"
        "2024-05-12 01:00:00.25+01:00,3,4\n"
    )
    result = run_source("azure_llm_2024", tmp_path, data_root=data_root.root)
    assert result.rows_quarantined == 0
    assert query("SELECT arrival_s FROM requests ORDER BY request_id") == [(0.0,), (0.25,)]
