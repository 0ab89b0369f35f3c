"""The guarantees every source gets from the pipeline: quarantine accounting, atomic commits,
identical bytes on re-runs, clear failures that leave the lake untouched, safe parallel ingests."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ingest import errors
from ingest.lake import read_reports
from ingest.pipeline import run_source
from ingest.validate import validate_lake

from tests.test_azure_llm import AZ2024

GOOD_2024 = "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00.5+00:00,10,20\n2024-05-12 00:00:01+00:00,30,40\n"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under the data root, staging excluded."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".staging" not in p.parts and p.name != ".lake.lock"
    }


@pytest.fixture
def ingested(tmp_path: Path, data_root) -> Path:
    """A data root that already holds the azure_llm_2024_conv trace from the AZ2024 fixture."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "AzureLLMInferenceTrace_conv_1week.csv").write_text(AZ2024)
    run_source("azure_llm_2024", src, data_root=data_root.root)
    return src


def test_rerun_gives_identical_bytes(ingested: Path, data_root) -> None:
    lake_before = {k: v for k, v in snapshot(data_root.root).items() if k.endswith(".parquet")}
    run_source("azure_llm_2024", ingested, data_root=data_root.root)
    lake_after = {k: v for k, v in snapshot(data_root.root).items() if k.endswith(".parquet")}
    assert lake_before == lake_after
    assert len(lake_after) == 2  # requests + quarantine


def test_reingest_replaces_the_trace(ingested: Path, data_root, query) -> None:
    (ingested / "AzureLLMInferenceTrace_conv_1week.csv").write_text(GOOD_2024)
    run_source("azure_llm_2024", ingested, data_root=data_root.root)
    assert query("SELECT count(*) FROM requests") == [(2,)]
    assert query("SELECT count(*) FROM quarantine") == [(0,)]
    assert read_reports(data_root)["azure_llm_2024_conv"]["rows_in"] == 2


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", errors.FormatError, "the file is empty"),
        (b"TIMESTAMP,ContextTokens,GeneratedTokens\n", errors.FormatError, "no data rows"),
        (b"time,prompt,output\n2024-05-12 00:00:00+00:00,1,2\n", errors.FormatError,
         "line 1: expected header 'TIMESTAMP,ContextTokens,GeneratedTokens', found 'time,prompt,output'"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n", errors.FormatError, "Git LFS pointer"),
    ],
)
def test_bad_file_fails_clearly_and_changes_nothing(ingested: Path, data_root, content, error, message) -> None:
    before = snapshot(data_root.root)
    bad = ingested.parent / "bad"
    bad.mkdir()
    (bad / "AzureLLMInferenceTrace_conv_1week.csv").write_bytes(content)
    with pytest.raises(error, match=message) as info:
        run_source("azure_llm_2024", bad, data_root=data_root.root)
    assert "AzureLLMInferenceTrace_conv_1week.csv" in str(info.value)  # the message names the file
    assert snapshot(data_root.root) == before
    assert not any(data_root.staging.iterdir())  # no leftovers


def test_truncated_archive_fails_and_changes_nothing(ingested: Path, data_root, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = (GOOD_2024 * 2000).encode()
        info = tarfile.TarInfo("AzureLLMInferenceTrace_conv_1week.csv")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    archive = tmp_path / "azure2024.tar.gz"
    archive.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    before = snapshot(data_root.root)
    with pytest.raises(errors.ArchiveError, match="azure2024.tar.gz: truncated or corrupt archive"):
        run_source("azure_llm_2024", archive, data_root=data_root.root)
    assert snapshot(data_root.root) == before


def test_whole_archive_is_read_directly(tmp_path: Path, data_root, query) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = GOOD_2024.encode()
        info = tarfile.TarInfo("week/AzureLLMInferenceTrace_conv_1week.csv")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    archive = tmp_path / "azure2024.tar.gz"
    archive.write_bytes(buf.getvalue())
    run_source("azure_llm_2024", archive, data_root=data_root.root)
    assert query("SELECT source_file FROM quarantine") == []
    assert query("SELECT arrival_s, prompt_tokens FROM requests ORDER BY request_id") == [(0.0, 10), (0.5, 30)]
    assert read_reports(data_root)["azure_llm_2024_conv"]["inputs"][0]["file"] == (
        "azure2024.tar.gz:week/AzureLLMInferenceTrace_conv_1week.csv"
    )


def test_checksum_mismatch_fails_unless_disabled(traces: Path, tmp_path: Path, data_root, query) -> None:
    copy = tmp_path / "AzureLLMInferenceTrace_code.csv"
    text = (traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv").read_bytes()
    copy.write_bytes(text.replace(b",4808,10", b",4808,11", 1))
    with pytest.raises(errors.ChecksumError, match="AzureLLMInferenceTrace_code.csv: checksum mismatch: expected sha256 54e9a6d2"):
        run_source("azure_llm_2023", copy, data_root=data_root.root)
    assert not data_root.lake.exists()
    run_source("azure_llm_2023", copy, data_root=data_root.root, verify=False)
    assert query("SELECT count(*) FROM requests") == [(8819,)]


def test_strict_commits_nothing_when_rows_would_be_quarantined(ingested: Path, data_root) -> None:
    before = snapshot(data_root.root)
    with pytest.raises(errors.QuarantineError, match=r"9 row\(s\) would be quarantined"):
        run_source("azure_llm_2024", ingested, data_root=data_root.root, strict=True)
    assert snapshot(data_root.root) == before


def test_validate_finds_a_tampered_file(ingested: Path, data_root) -> None:
    assert validate_lake(data_root) == ([], 2)
    part = data_root.lake / "requests" / "trace=azure_llm_2024_conv" / "part-0.parquet"
    quarantine = data_root.lake / "quarantine" / "trace=azure_llm_2024_conv" / "part-0.parquet"
    part.write_bytes(quarantine.read_bytes())
    problems, _ = validate_lake(data_root)
    assert [p.what.split(" (")[0] for p in problems] == [
        "schema differs from canonical requests",
        "9 rows, but the ingest report says 4",
    ]


def _cli(*args: str, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest", *args, "--data", str(data)], capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_one_line_reasons(tmp_path: Path, data_root) -> None:
    res = _cli("run", "no_such_source", data=data_root.root)
    assert res.returncode == errors.UnknownSourceError.exit_code
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("error: unknown source 'no_such_source'; known sources:")
    res = _cli("run", "azure_llm_2024", "--from", str(tmp_path / "missing"), data=data_root.root)
    assert (res.returncode, res.stderr.strip()) == (errors.InputNotFoundError.exit_code, f"error: {tmp_path / 'missing'}: no such file or folder")
    empty = tmp_path / "AzureLLMInferenceTrace_code_1week.csv"
    empty.write_text("")
    res = _cli("run", "azure_llm_2024", "--from", str(empty), data=data_root.root)
    assert res.returncode == errors.FormatError.exit_code
    assert res.stderr.strip() == f"error: {empty}: the file is empty (expected a header or data rows)"


def test_parallel_ingests_of_two_sources(traces: Path, tmp_path: Path, data_root, query) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "AzureLLMInferenceTrace_conv_1week.csv").write_text(AZ2024)
    for _ in range(3):
        procs = [
            subprocess.Popen([sys.executable, "-m", "ingest", "run", "azure_llm_2023", "--data", str(data_root.root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            subprocess.Popen([sys.executable, "-m", "ingest", "run", "azure_llm_2024", "--from", str(src), "--data", str(data_root.root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        ]
        for p in procs:
            _, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr.decode()
        assert query("SELECT trace, count(*) FROM requests GROUP BY trace ORDER BY trace") == [
            ("azure_llm_2023_code", 8819), ("azure_llm_2023_conv", 19366), ("azure_llm_2024_conv", 4)]
        assert validate_lake(data_root)[0] == []


def test_unsorted_input_gets_the_exact_origin(tmp_path: Path, data_root, query, monkeypatch) -> None:
    """The origin guessed from the first rows is wrong for an unsorted file: the trace is rewritten, and the
    bytes are those of a run whose guess was right."""
    import ingest.pipeline as pipeline

    (tmp_path / "AzureLLMInferenceTrace_conv_1week.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-12 00:00:05+00:00,1,1\n2024-05-12 00:00:01.5+00:00,2,2\n2024-05-12 00:00:09+00:00,3,3\n"
    )
    run_source("azure_llm_2024", tmp_path, data_root=data_root.root)
    right_guess = snapshot(data_root.root)
    monkeypatch.setattr(pipeline, "HEAD_ROWS", 1)
    messages: list[str] = []
    run_source("azure_llm_2024", tmp_path, data_root=data_root.root, progress=messages.append)
    assert any("not sorted by time" in m for m in messages)
    assert query("SELECT arrival_s FROM requests ORDER BY request_id") == [(3.5,), (0.0,), (7.5,)]
    assert {k: v for k, v in snapshot(data_root.root).items() if k.endswith(".parquet")} == {
        k: v for k, v in right_guess.items() if k.endswith(".parquet")}


def test_fast_path_reruns_only_when_a_fast_parser_failed(tmp_path: Path, data_root, query) -> None:
    (tmp_path / "AzureLLMInferenceTrace_conv_1week.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00+00:00,1,2\n2024-05-12 00:00:01+00:00,-3,4\n"
    )
    messages: list[str] = []
    run_source("azure_llm_2024", tmp_path, data_root=data_root.root, progress=messages.append)
    assert not any("re-reading" in m for m in messages)  # a negative count is rejected alike on both paths
    assert query("SELECT line, reason FROM quarantine") == [(3, "negative ContextTokens '-3'")]
    (tmp_path / "AzureLLMInferenceTrace_conv_1week.csv").write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-12 00:00:00+00:00,1,2\n2024-05-12 00:00:01+00:00,9007199254740993,4\n"
    )
    messages.clear()
    run_source("azure_llm_2024", tmp_path, data_root=data_root.root, progress=messages.append)
    assert any("re-reading" in m for m in messages)  # above 2**53: only the general parser reads it exactly
    assert query("SELECT prompt_tokens FROM requests ORDER BY request_id") == [(1,), (9007199254740993,)]


def test_fast_and_robust_paths_give_the_same_bytes_on_real_files(traces: Path, tmp_path: Path, monkeypatch) -> None:
    """The real Azure 2023 files (CRLF, no final newline, 7-digit fractions) through the fast path
    (fixed-layout timestamps, float-cast integers) and through the robust path."""
    from contextlib import contextmanager

    import ingest.pipeline as pipeline
    from ingest.lines import FastPath

    fast_root, robust_root = tmp_path / "fast", tmp_path / "robust"
    run_source("azure_llm_2023", traces / "azure_llm_2023", data_root=fast_root)

    @contextmanager
    def robust_only():
        yield FastPath()  # plans see no fast-path attempt

    monkeypatch.setattr(pipeline, "fast_path", robust_only)
    run_source("azure_llm_2023", traces / "azure_llm_2023", data_root=robust_root)
    fast = {k: v for k, v in snapshot(fast_root).items() if k.endswith(".parquet")}
    robust = {k: v for k, v in snapshot(robust_root).items() if k.endswith(".parquet")}
    assert fast == robust and len(fast) == 4
