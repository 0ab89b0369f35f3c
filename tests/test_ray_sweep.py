"""`replay sweep --backend ray` on a real local Ray cluster (2 workers, on loopback, started here).

The same small sweep (generated workload, 200 requests a run) runs on the local process pool and as Ray
tasks, and must give the same rows and byte-identical tables; a run whose worker process dies is
retried by Ray and counted once; an exception in a run is not retried and propagates; a missing Ray
is one clear error. Skipped (except the missing-Ray error) when ray is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import local_ray

from replay.harness import ServeConfig
from ingest.ray_support import RayNotInstalledError
from replay.sources import WorkloadSpec
from replay.sweep import _run_one, expand_grid, sweep, sweep_id
from tests.cli_helpers import flat, replay

SMALL = ["--num-requests", "200", "--model", "llama-3-8b"]
SWEEP = ["sweep", *SMALL, "--policies", "fcfs,sjf", "--rate-scales", "1,2,4", "--oracle-lengths"]
"""Six runs of 200 generated requests each (the same grid as :func:`_configs`)."""
VICTIM = ("sjf", 4.0)
"""(policy, rate scale) of the run whose worker dies on its first attempt."""


def _configs() -> list[ServeConfig]:
    base = ServeConfig(workload=WorkloadSpec(num_requests=200), model="llama-3-8b")
    return expand_grid(base, oracle=True, policy=["fcfs", "sjf"], rate_scale=[1.0, 2.0, 4.0])


def _dies_once(config: ServeConfig, unit_workload, data_root: Path):
    """``_run_one``, except that the VICTIM run kills its worker process the first time (a marker file
    in the data root records that it did: Ray workers do not see the test's monkeypatching)."""
    marker = Path(data_root) / "victim-died"
    if (config.policy, config.workload.rate_scale) == VICTIM and not marker.exists():
        marker.touch()
        os._exit(1)
    return _run_one(config, unit_workload, data_root)


def _fails(config: ServeConfig, unit_workload, data_root: Path):
    """A run that raises (an application error): every attempt leaves a file, so retries would show."""
    (Path(data_root) / f"attempt-{os.getpid()}-{len(list(Path(data_root).glob('attempt-*')))}").touch()
    raise ValueError("boom in a run")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray on loopback for this module (conftest's :func:`local_ray`)."""
    with local_ray(sys.modules[__name__]) as info:
        yield info


def _table(root: Path, configs: list[ServeConfig]) -> Path:
    return root / "results" / "sweeps" / f"{sweep_id(configs)}.parquet"


def test_ray_rows_and_table_bytes_equal_the_local_pool(ray_cluster, tmp_path: Path) -> None:
    assert ray_cluster["gcs_address"].startswith("127.0.0.1:")
    configs = _configs()
    local_seen: list[int] = []
    ray_seen: list[int] = []
    local = sweep(configs, workers=2, data_root=tmp_path / "local", on_result=lambda i, r: local_seen.append(i))
    on_ray = sweep(configs, backend="ray", data_root=tmp_path / "ray", on_result=lambda i, r: ray_seen.append(i))
    assert on_ray == local and len(local) == 6 and len({r["run_id"] for r in local}) == 6
    assert sorted(ray_seen) == sorted(local_seen) == list(range(6))
    for suffix in (".parquet", ".json"):
        a = _table(tmp_path / "local", configs).with_suffix(suffix)
        b = _table(tmp_path / "ray", configs).with_suffix(suffix)
        assert a.read_bytes() == b.read_bytes()
    for r in local:  # each run folder, written by a Ray worker, holds the same summary
        a = tmp_path / "local" / "results" / r["run_id"] / "summary.json"
        assert a.read_bytes() == (tmp_path / "ray" / "results" / r["run_id"] / "summary.json").read_bytes()
    import ray

    assert ray.is_initialized()  # a Ray the sweep did not start is left running


def test_a_killed_worker_is_retried_and_its_row_counted_once(ray_cluster, tmp_path: Path) -> None:
    configs = _configs()
    seen: list[int] = []
    rows = sweep(configs, backend="ray", data_root=tmp_path / "ray", run_one=_dies_once,
                 on_result=lambda i, r: seen.append(i))
    assert (tmp_path / "ray" / "victim-died").is_file()  # the worker really died once
    assert sorted(seen) == list(range(len(configs)))  # every row reported exactly once
    local = sweep(configs, workers=1, data_root=tmp_path / "local")
    assert rows == local
    assert [(r["policy"], r["rate_scale"]) for r in rows].count(VICTIM) == 1
    assert _table(tmp_path / "ray", configs).read_bytes() == _table(tmp_path / "local", configs).read_bytes()


def test_an_exception_in_a_run_is_not_retried(ray_cluster, tmp_path: Path) -> None:
    configs = _configs()[:1]
    with pytest.raises(ValueError, match="boom in a run"):
        sweep(configs, backend="ray", data_root=tmp_path, run_one=_fails)
    assert len(list(tmp_path.glob("attempt-*"))) == 1
    assert not (tmp_path / "results" / "sweeps").exists()


def test_cli_backend_ray_writes_the_same_table(ray_cluster, tmp_path: Path) -> None:
    a = replay(*SWEEP, "--workers", "2", "--data", str(tmp_path / "local"))
    assert a.exit_code == 0, a.output
    b = replay(*SWEEP, "--backend", "ray", "--data", str(tmp_path / "ray"))
    assert b.exit_code == 0, b.output
    table = _table(tmp_path / "ray", _configs())
    assert table.read_bytes() == _table(tmp_path / "local", _configs()).read_bytes()
    assert f"sweep {sweep_id(_configs())}: 6 runs" in flat(b.stdout)


def test_cli_joins_a_running_cluster_by_address(ray_cluster, tmp_path: Path) -> None:
    """Another process (as on another node) runs the sweep on this cluster: ``--ray-address host:port``."""
    cmd = [str(Path(sys.executable).parent / "tracelab"), "replay", *SWEEP, "--backend", "ray",
           "--ray-address", ray_cluster["gcs_address"], "--data", str(tmp_path / "ray"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    local = sweep(_configs(), workers=1, data_root=tmp_path / "local")
    assert _table(tmp_path / "ray", _configs()).read_bytes() == _table(tmp_path / "local", _configs()).read_bytes()
    assert '"rows"' in done.stdout and all(r["run_id"] in done.stdout for r in local)
    import ray

    assert ray.cluster_resources().get("CPU") == 2  # the sweep disconnected; the cluster is still up


def test_backend_errors_are_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    bad = replay(*SWEEP, "--backend", "spark", "--data", str(tmp_path))
    assert bad.exit_code == 2 and "unknown sweep backend 'spark'" in flat(bad.stderr)
    addr = replay(*SWEEP, "--ray-address", "auto", "--data", str(tmp_path))
    assert addr.exit_code == 2 and "ray_address is for backend='ray'" in flat(addr.stderr)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    missing = replay(*SWEEP, "--backend", "ray", "--data", str(tmp_path))
    assert missing.exit_code == 2 and "pip install 'tracelab[ray]'" in flat(missing.stderr)
    assert not (tmp_path / "results").exists()
    with pytest.raises(RayNotInstalledError, match=r"tracelab\[ray\]"):
        sweep(_configs(), backend="ray", data_root=tmp_path)
