"""`tracelab analyze`: HTML + JSON reports on real traces, comparisons, clear errors, deterministic bytes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.report import Section, cdf_figure, render_html, write_report
from ingest.paths import traces_dir
from ingest.pipeline import run_source
from tracelab.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    found = traces_dir()
    if found is None or not (found / "azure_llm_2023").is_dir() or not (found / "microsoft_itp").is_dir():
        pytest.skip("real traces not found (set TRACELAB_TRACES)")
    root = tmp_path_factory.mktemp("analysis-report")
    run_source("azure_llm_2023", found / "azure_llm_2023", data_root=root)
    run_source("microsoft_itp", found / "microsoft_itp", data_root=root)
    return root


def _analyze(*args: str):
    return runner.invoke(app, ["analyze", *args])


def test_request_trace_report_has_the_published_numbers(data_root: Path, tmp_path: Path) -> None:
    res = _analyze("azure_llm_2023_conv", "--data", str(data_root), "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    numbers = json.loads((tmp_path / "azure_llm_2023_conv.json").read_text())
    assert round(numbers["prompt_tokens"]["mean"]) == 1155 and numbers["output_tokens"]["max"] == 1000
    assert numbers["interarrival"]["cv"] == pytest.approx(1.09, abs=0.01)
    page = (tmp_path / "azure_llm_2023_conv.html").read_text()
    assert page.count("<h2") == 3 and page.count('id="fig') == 4  # arrivals, dispersion, token CDFs, tokens/min
    assert "plotly" in page and "span too short" in page  # one hour: no invented diurnal pattern
    assert stat.S_IMODE(os.stat(tmp_path / "azure_llm_2023_conv.html").st_mode) == 0o644


def test_job_trace_report_says_what_it_cannot_show(data_root: Path, tmp_path: Path) -> None:
    res = _analyze("microsoft_itp", "--data", str(data_root), "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    numbers = json.loads((tmp_path / "microsoft_itp.json").read_text())
    assert numbers["jobs"]["jobs"] == 69_351
    assert numbers["jobs"]["gpu_hours"] == pytest.approx(1_632_719.7, abs=0.1)
    page = (tmp_path / "microsoft_itp.html").read_text()
    assert "not available" in page  # ITP has no queueing times: a note, not an empty figure
    assert page.count('id="fig') >= 3


def test_compare_and_determinism(data_root: Path, tmp_path: Path) -> None:
    args = ["azure_llm_2023_code", "azure_llm_2023_conv", "--compare", "--data", str(data_root)]
    first, second = tmp_path / "a", tmp_path / "b"
    assert _analyze(*args, "--out", str(first)).exit_code == 0
    assert _analyze(*args, "--out", str(second)).exit_code == 0
    name = "compare_azure_llm_2023_code_vs_azure_llm_2023_conv"
    for ext in ("html", "json"):
        assert (first / f"{name}.{ext}").read_bytes() == (second / f"{name}.{ext}").read_bytes()
    numbers = json.loads((first / f"{name}.json").read_text())
    assert numbers["azure_llm_2023_code"]["interarrival"]["cv"] > 10 > numbers["azure_llm_2023_conv"]["interarrival"]["cv"]


def test_errors_are_one_line_with_exit_code_2(data_root: Path, tmp_path: Path) -> None:
    res = _analyze("no_such_trace", "--data", str(data_root), "--out", str(tmp_path))
    assert res.exit_code == 2 and "azure_llm_2023_conv" in res.output  # lists what is ingested
    mixed = _analyze("azure_llm_2023_conv", "microsoft_itp", "--compare", "--data", str(data_root))
    assert mixed.exit_code == 2 and "one kind" in mixed.output
    empty = _analyze("x", "--data", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "ingest run" in empty.output


def test_write_report_replaces_atomically(tmp_path: Path) -> None:
    html_text = render_html("t", [Section("s", {"a": 1.0}, [cdf_figure({"x": ([1, 2], [0.5, 1.0])}, "c", "v")])])
    write_report(tmp_path, "r", html_text, {"a": 1})
    write_report(tmp_path, "r", html_text, {"a": 2})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]  # no temp files left
