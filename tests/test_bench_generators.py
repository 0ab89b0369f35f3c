"""The benchmark's full-scale generators, at a small scale: their files must be exactly what our
sources accept (same row counts, nothing quarantined but PAI's deliberate duplicate instances),
so the benchmark measures real ingests, not error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.gen_upstream import generate
from ingest.pipeline import run_source

PRIMARY = {  # family -> (table, generated files whose rows feed it)
    "azure_llm_2024": ("requests", ["AzureLLMInferenceTrace_conv_1week.csv"]),
    "alibaba_pai_2020": ("jobs", ["pai_job_table.csv"]),
    "philly": ("jobs", ["trace-data/cluster_job_log"]),
    "helios_2020": ("jobs", [f"data/{c}/cluster_log.csv" for c in ("Venus", "Earth", "Saturn", "Uranus")]),
}


@pytest.mark.parametrize("family", sorted(PRIMARY))
def test_generated_upstream_files_ingest_cleanly(family: str, tmp_path: Path, data_root) -> None:
    manifest = generate(family, tmp_path / "gen", rows=3000, seed=7)
    result = run_source(family, tmp_path / "gen", data_root=data_root.root, verify=False)
    table, files = PRIMARY[family]
    expected = sum(manifest["files"][f] for f in files)
    assert expected > 0
    assert sum(t.rows_in for t in result.tables if t.table == table) == expected
    for rep in result.reports.values():
        reasons = set(rep["quarantine_by_reason"])
        assert reasons <= ({"duplicate worker_name"} if family == "alibaba_pai_2020" else set()), reasons
