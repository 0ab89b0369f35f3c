"""The notebooks in notebooks/: stored without outputs, and each one executed top to bottom against the
real traces (ingested into a temporary data root), with one key number per notebook read back.

Helios and PAI job logs are not offline, so their notebooks run on files generated in the exact upstream
format (``benchmarks.gen_upstream``, plus a PAI sensor table written here, which that generator lacks);
their key numbers are checked against values computed here from the generated CSVs with plain polars
and numpy, without the ingest or analysis code."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import numpy as np
import polars as pl
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from benchmarks.gen_upstream import generate
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


GENERATED_ROWS = {"helios_2020": 20_000, "alibaba_pai_2020": 4_000, "philly": 2_000}
"""Generated families (Helios jobs, PAI task rows, Philly jobs) behind the helios and alibaba_pai notebooks."""


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
    assert _notebooks() == sorted([*EXPECTED, *GENERATED])
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


# ------------------------------------------------------------------ notebooks on generated upstream files

PAI_COLUMNS = {
    "pai_job_table": "job_name,inst_id,user,status,start_time,end_time",
    "pai_task_table": "job_name,task_name,inst_num,status,start_time,end_time,plan_cpu,plan_mem,plan_gpu,gpu_type",
    "pai_instance_table": "job_name,task_name,inst_name,worker_name,inst_id,status,start_time,end_time,machine",
    "pai_sensor_table": "job_name,task_name,worker_name,inst_id,machine,gpu_name,cpu_usage,gpu_wrk_util,avg_mem,"
                        "max_mem,avg_gpu_wrk_mem,max_gpu_wrk_mem,read,write,read_count,write_count",
}
PAI_NUMBERS = ("inst_num", "start_time", "end_time", "plan_cpu", "plan_mem", "plan_gpu", "cpu_usage", "gpu_wrk_util")


def _pai(folder: Path, table: str) -> pl.DataFrame:
    """A headerless PAI CSV read with plain polars (empty fields null; numbers as floats, 0 kept)."""
    df = pl.read_csv(folder / f"{table}.csv", has_header=False, new_columns=PAI_COLUMNS[table].split(","),
                     infer_schema=False)
    return df.with_columns(pl.col(c).cast(pl.Float64) for c in PAI_NUMBERS if c in df.columns)


def _write_pai_sensor(folder: Path, seed: int) -> None:
    """``pai_sensor_table.csv`` for the generated instances (headerless, upstream column order): one row per
    started worker, none for ~10% of them, no GPU reading on ~5% of the GPU rows; use drawn around the plan."""
    rng = np.random.default_rng(seed)
    tasks = _pai(folder, "pai_task_table").select("job_name", "task_name", "plan_cpu", "plan_mem", "plan_gpu")
    workers = (_pai(folder, "pai_instance_table").filter(pl.col("status") != "Waiting")
               .unique("worker_name", keep="last", maintain_order=True).join(tasks, on=["job_name", "task_name"]))
    n = workers.height
    u = lambda lo, hi: pl.Series(rng.uniform(lo, hi, n))  # noqa: E731
    gpu = (pl.col("plan_gpu") * u(0.0, 1.3)).round(2)
    sensor = workers.with_columns(
        gpu_name=pl.lit("/dev/nvidia0"), cpu_usage=(pl.col("plan_cpu") * u(0.05, 1.6)).round(2),
        gpu_wrk_util=pl.when(pl.Series(rng.random(n)) >= 0.05).then(gpu),
        avg_mem=(pl.col("plan_mem") * u(0.1, 1.4)).round(3), max_mem=(pl.col("plan_mem") * u(1.4, 2.0)).round(3),
        avg_gpu_wrk_mem=u(0.0, 8.0).round(3), max_gpu_wrk_mem=u(8.0, 16.0).round(3), read=u(0, 1e9).round(0),
        write=u(0, 1e9).round(0), read_count=u(0, 1e5).round(0), write_count=u(0, 1e5).round(0),
    ).filter(pl.Series(rng.random(n)) >= 0.1)
    sensor.select(PAI_COLUMNS["pai_sensor_table"].split(",")).write_csv(
        folder / "pai_sensor_table.csv", include_header=False, null_value="")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, folder of the generated files): Helios, PAI (with a sensor table) and Philly, ingested."""
    gen = tmp_path_factory.mktemp("generated")
    for family, n in GENERATED_ROWS.items():
        generate(family, gen / family, rows=n, seed=11)
    _write_pai_sensor(gen / "alibaba_pai_2020", seed=11)
    for family in GENERATED_ROWS:
        run_source(family, gen / family, data_root=gen / "data", verify=False)
    return gen / "data", gen


def _top_share(gpu_s: np.ndarray, fraction: float) -> float:
    """Share of the total held by the top ``fraction`` of entities (linear between whole entities)."""
    y = np.concatenate([[0.0], np.cumsum(np.sort(gpu_s)[::-1])]) / gpu_s.sum()
    return float(np.interp(fraction, np.arange(gpu_s.size + 1) / gpu_s.size, y))


def _helios_expected(gen: Path) -> dict:
    logs = {c: pl.read_csv(gen / "helios_2020" / "data" / c / "cluster_log.csv", infer_schema=False)
            for c in ("Earth", "Saturn", "Uranus", "Venus")}
    t = lambda c: pl.col(c).str.to_datetime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    jobs = pl.concat(df for df in logs.values()).select(
        "user", "state", gpus=pl.col("gpu_num").cast(pl.Int64),
        run_s=(t("end_time") - t("start_time")).dt.total_seconds(),
        queue_s=(t("start_time") - t("submit_time")).dt.total_seconds())
    gpu = jobs.filter(pl.col("gpus") > 0).with_columns(gpu_s=pl.col("run_s") * pl.col("gpus"))
    done = gpu.filter(pl.col("state") == "COMPLETED")
    philly = json.loads((gen / "philly" / "trace-data" / "cluster_job_log").read_text())
    per_user = gpu.group_by("user").agg(pl.col("gpu_s").sum())["gpu_s"].to_numpy()
    return {"jobs": jobs.height, "gpu_jobs": gpu.height, "jobs_by_cluster": {c: df.height for c, df in logs.items()},
            "gpu_hours": gpu["gpu_s"].sum() / 3600, "allocated_gpu_hours": gpu["gpu_s"].sum() / 3600,
            "median_duration_s": gpu["run_s"].median(), "median_queue_s": gpu["queue_s"].median(),
            "completed_job_share": done.height / gpu.height,
            "completed_gpu_time_share": done["gpu_s"].sum() / gpu["gpu_s"].sum(),
            "top_10pct_users_gpu_time_share": _top_share(per_user, 0.1), "philly_jobs": len(philly)}


def _pai_expected(gen: Path) -> dict:
    folder = gen / "alibaba_pai_2020"
    jobs, tasks = _pai(folder, "pai_job_table"), _pai(folder, "pai_task_table")
    started = lambda c: pl.when(pl.col(c) > 0).then(pl.col(c))  # noqa: E731  0 and empty both mean missing
    per_job = tasks.group_by("job_name").agg(first_start=started("start_time").min(),
                                             gpus=(pl.col("inst_num") * pl.col("plan_gpu").fill_null(0)).sum())
    jobs = jobs.join(per_job, on="job_name", how="left").with_columns(
        wait_s=pl.col("first_start") - pl.col("start_time"))
    gpu_jobs = jobs.filter(pl.col("gpus") > 0)
    gpu_tasks = tasks.filter(pl.col("plan_gpu") > 0)
    # the official get_dfiw dedup: stable sort by (status, start, end), empty last; keep the last row per worker
    inst = (_pai(folder, "pai_instance_table")
            .sort(["status", "start_time", "end_time"], nulls_last=True, maintain_order=True)
            .unique("worker_name", keep="last").group_by("job_name", "task_name").agg(first=started("start_time").min()))
    inst_wait = (gpu_tasks.join(inst, on=["job_name", "task_name"])
                 .select(pl.col("first") - started("start_time")).drop_nulls().to_series())
    usage = _pai(folder, "pai_sensor_table").join(tasks, on=["job_name", "task_name"], suffix="_task")
    cpu = usage.filter((pl.col("plan_cpu") > 0) & pl.col("cpu_usage").is_not_null())
    gpu = usage.filter((pl.col("plan_gpu") > 0) & pl.col("gpu_wrk_util").is_not_null())
    return {"jobs": jobs.height, "gpu_jobs": gpu_jobs.height,
            "completed_job_share": (jobs["status"] == "Terminated").mean(),
            "fractional_gpu_instance_share": (gpu_tasks.filter(pl.col("plan_gpu") < 100)["inst_num"].sum()
                                              / gpu_tasks["inst_num"].sum()),
            "median_job_wait_s": gpu_jobs["wait_s"].median(), "median_instance_wait_s": inst_wait.median(),
            "cpu_share_below_request": (cpu["cpu_usage"] < cpu["plan_cpu"]).mean(),
            "gpu_share_below_request": (gpu["gpu_wrk_util"] < gpu["plan_gpu"]).mean(),
            "median_gpu_used_over_requested": (gpu["gpu_wrk_util"] / gpu["plan_gpu"]).median()}


GENERATED = {"helios.ipynb": _helios_expected, "alibaba_pai.ipynb": _pai_expected}
"""Notebooks run on generated upstream-format files -> their key numbers, computed from those files."""


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_notebook_on_generated_files_matches_the_files(name: str, generated, kernel_dir: Path) -> None:
    root, gen = generated
    nb = _execute(name, root, kernel_dir)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    first = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "GENERATED upstream-format files" in first and "NOT the real" in first  # the data caveat is printed
    got, expected = _key_numbers(nb), GENERATED[name](gen)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == (value if isinstance(value, dict) else pytest.approx(value, rel=1e-9)), key
    figures = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                  for o in c.outputs)
    assert figures >= 8


def test_generated_notebooks_without_a_job_log_name_the_command(generated, kernel_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CellExecutionError, match="run `ingest run helios_2020` first"):
        _execute("helios.ipynb", tmp_path / "no-catalog", kernel_dir)
    spec_only = tmp_path / "spec"  # what `ingest run alibaba_pai_2020` gives offline: the machine spec, no jobs
    spec_only.mkdir()
    spec = generated[1] / "alibaba_pai_2020" / "pai_machine_spec.csv"
    (spec_only / "pai_machine_spec.csv").write_bytes(spec.read_bytes())
    run_source("alibaba_pai_2020", spec_only, data_root=tmp_path / "spec-data", verify=False)
    with pytest.raises(CellExecutionError, match="no PAI job table.*run `ingest run alibaba_pai_2020` first"):
        _execute("alibaba_pai.ipynb", tmp_path / "spec-data", kernel_dir)
