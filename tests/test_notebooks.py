"""The notebooks in notebooks/: stored without outputs, and each one executed top to bottom against the
real traces (ingested into a temporary data root), with one key number per notebook read back."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ingest.paths import REPO_ROOT, traces_dir
from ingest.pipeline import run_source

NOTEBOOKS = REPO_ROOT / "notebooks"
KERNEL = "tracelab-tests"
SOURCES = {"azure_llm_2023": "azure_llm_2023", "philly_derived": "philly", "mooncake_fast25": "mooncake",
           "microsoft_itp": "microsoft_itp"}
"""Ingest source -> folder under the offline traces: what the notebooks read."""

# The number each notebook prints as JSON from its cell tagged "key-numbers".
EXPECTED = {
    "azure_llm_2023.ipynb": {"conversation_cv": 1.09, "coding_cv": 13.2, "conversation_prompt_mean": 1155,
                             "coding_output_median": 13.0},
    "philly.ipynb": {"sia_jobs": 82_182, "rfold_jobs": 111_549, "sia_single_gpu_job_share": 0.9317,
                     "sia_over_8_gpu_time_share": 0.1356},
    "mooncake.ipynb": {
        "mooncake_conversation": {"reuse_fraction": round(1 - 182_790 / 288_500, 4), "distinct_blocks": 182_790,
                                  "curve_top": 0.3664},
        "mooncake_synthetic": {"reuse_fraction": 0.6396, "distinct_blocks": 43_924, "curve_top": 0.6396},
    },
    "microsoft_itp.ipynb": {"jobs": 69_351, "gpu_hours": 1_632_719.7, "median_run_s": 10_537.0, "clusters": 10},
}


def _notebooks() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec that runs ipykernel on this interpreter, whatever other kernels the machine has."""
    folder = tmp_path_factory.mktemp("kernels")
    (folder / KERNEL).mkdir()
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "tracelab tests", "language": "python"}
    (folder / KERNEL / "kernel.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """The real traces the notebooks read, ingested once into a module-wide data root."""
    found = traces_dir()
    if found is None or not all((found / folder).is_dir() for folder in SOURCES.values()):
        pytest.skip("real traces not available: set TRACELAB_TRACES or put shared/traces beside the checkout")
    root = tmp_path_factory.mktemp("notebook-data")
    for source, folder in SOURCES.items():
        run_source(source, found / folder, data_root=root)
    return root


def _execute(name: str, root: Path, kernel_dir: Path) -> nbformat.NotebookNode:
    """Run every cell of notebooks/``name`` in a fresh kernel started in notebooks/ with TRACELAB_DATA=root."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = NotebookClient(nb, km=km, timeout=120, startup_timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env={**os.environ, "TRACELAB_DATA": str(root)})
    return nb


def _key_numbers(nb: nbformat.NotebookNode) -> dict:
    cells = [c for c in nb.cells if "key-numbers" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook has exactly one cell tagged 'key-numbers'"
    text = "".join(o.text for o in cells[0].outputs if o.output_type == "stream" and o.name == "stdout")
    return json.loads(text)


def test_every_notebook_is_checked_and_stored_without_outputs() -> None:
    assert _notebooks() == sorted(EXPECTED)
    for name in _notebooks():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown"  # says which paper and figures it reproduces
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_reproduces_its_key_numbers(name: str, data_root: Path, kernel_dir: Path) -> None:
    nb = _execute(name, data_root, kernel_dir)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert _key_numbers(nb) == EXPECTED[name]
    figures = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                  for o in c.outputs)
    assert figures >= 1


def test_missing_trace_names_the_ingest_command(data_root: Path, kernel_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CellExecutionError, match="run `ingest run azure_llm_2023` first"):
        _execute("azure_llm_2023.ipynb", tmp_path / "no-catalog", kernel_dir)
    itp_only = tmp_path / "itp-only"
    run_source("microsoft_itp", traces_dir() / "microsoft_itp", data_root=itp_only)
    with pytest.raises(CellExecutionError, match=r"'mooncake_conversation'.*run `ingest run mooncake_fast25` first"):
        _execute("mooncake.ipynb", itp_only, kernel_dir)
