"""``tracelab quickstart``: real data when a copy is reachable, a loudly labelled generated workload otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _quickstart(tmp_path: Path, env_traces: str | None, *extra: str) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_traces is None:
        env.pop("TRACELAB_TRACES", None)
    else:
        env["TRACELAB_TRACES"] = env_traces
    return subprocess.run(
        [sys.executable, "-c", "from tracelab.cli import main; main()", "quickstart", "--main-only", "--data", str(tmp_path / "data"), *extra],
        capture_output=True, text=True, timeout=300, env=env,
    )


def test_quickstart_uses_the_real_trace(traces: Path, tmp_path: Path) -> None:
    res = _quickstart(tmp_path, str(traces))
    assert res.returncode == 0, res.stderr
    assert "main trace from offline copy" in res.stdout
    assert "19,366" in res.stdout and "8,819" in res.stdout
    assert "GENERATED" not in res.stdout
    out = " ".join(res.stdout.split())
    assert "serving replay of the held-out part of azure_llm_2023_conv" in out and "srpt (oracle)" in out
    assert "sjf (predicted)" in out and "Kendall tau" in out
    runs = [p for p in (tmp_path / "data" / "results").iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 4, runs
    model = tmp_path / "data" / "models" / "response_length-azure_llm_2023_conv"
    assert (model / "card.json").is_file() and (model / "evaluation.html").is_file()
    assert (tmp_path / "data" / "reports" / "azure_llm_2023_conv.html").is_file()


def test_quickstart_without_any_trace_generates_and_says_so(tmp_path: Path) -> None:
    res = _quickstart(tmp_path, str(tmp_path / "no-traces-here"), "--offline")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "NO REAL TRACE AVAILABLE" in out and "synthetic_llm" in out and "20,000" in out
    assert "figures are not real" in out
