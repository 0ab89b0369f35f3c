"""Cluster replays end to end: the CLI on ingested traces, the Philly ordering, the ITP traces, the time-stepped baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.cluster_timestep import simulate_fifo_timestep
from ingest.paths import traces_dir
from replay.cluster.admission import admit
from replay.cluster.cluster import uniform
from replay.cluster.harness import ClusterConfig, load_workload, run_cluster
from replay.cluster.placement import PLACEMENTS
from replay.cluster.policies import POLICIES, JobsView
from replay.cluster.simulate import simulate
from tests.cli_helpers import flat, replay
from tests.conftest import ingested_root

OCT_1 = 2_294_959.0
"""2017-10-01 00:00 in philly_sia_jobs seconds (its origin is the first submission, 2017-09-04 10:30:41)."""
TWO_WEEKS_S = 14 * 86400.0


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root with the derived Philly tables (jobs, VC configuration) and the ITP traces ingested."""
    return ingested_root(tmp_path_factory, ("philly_derived", "philly"), ("microsoft_itp", "microsoft_itp"),
                         ("philly", "philly"), ("alibaba_pai_2020", "alibaba_pai_2020"))




def test_cli_cluster_on_philly_with_vcs(root):
    res = replay("cluster", "--trace", "philly_sia_jobs", "--vc-config", "philly", "--policy", "qssf", "--oracle",
                 "--max-jobs", "3000", "--data", str(root), "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    s = got["summary"]
    assert s["num_jobs"] == 3000 and s["num_finished"] + s["num_rejected"] == 3000
    assert s["cluster_spec"]["num_nodes"] == 352 and s["cluster_spec"]["total_gpus"] == 2816
    assert s["oracle"] is True
    path = Path(got["path"])
    assert path.resolve() == (root / "results" / "cluster" / got["run_id"]).resolve()
    jobs = pq.read_table(path / "jobs.parquet")
    assert jobs.num_rows == 3000 and set(jobs.column("status").to_pylist()) <= {"finished", "rejected"}
    config = json.loads((path / "config.json").read_text())
    assert config["oracle"] is True and config["predictor"] == "oracle"
    # the same VC configuration read from the staged CSV gives the same schedule
    csv = traces_dir() / "philly" / "philly_vc.csv"
    res2 = replay("cluster", "--trace", "philly_sia_jobs", "--vc-config", str(csv), "--policy", "qssf", "--oracle",
                  "--max-jobs", "3000", "--data", str(root), "--json")
    s2 = json.loads(res2.output)["summary"]
    assert s2["jct_mean_s"] == s["jct_mean_s"] and s2["cluster_spec"]["vcs"] == s["cluster_spec"]["vcs"]


def test_cli_table_and_errors(root):
    res = replay("cluster", "--trace", "microsoft_itp", "--cluster", "cluster10", "--policy", "las", "--data", str(root))
    assert res.exit_code == 0, res.output
    assert "JCT" in res.output and "by size" in res.output
    res = replay("cluster", "--trace", "nope", "--data", str(root))
    assert res.exit_code == 3 and "philly_sia_jobs" in flat(res.output)
    res = replay("cluster", "--trace", "microsoft_itp", "--policy", "sjf", "--data", str(root))
    assert res.exit_code == 2 and "--oracle" in flat(res.output)
    res = replay("cluster", "--trace", "microsoft_itp", "--cluster", "cluster99", "--data", str(root))
    assert res.exit_code == 2 and "cluster04" in flat(res.output)
    res = replay("cluster", "--policy", "fifo", "--placement", "nowhere", "--data", str(root))
    assert res.exit_code == 2 and "consolidate" in flat(res.output)
    res = replay("cluster", "--trace", "microsoft_itp", "--vc-config", "philly", "--max-jobs", "10", "--data", str(root))
    assert res.exit_code == 2 and "no VC per job" in flat(res.output)


def test_cli_sweep(root):
    res = replay("cluster-sweep", "--num-jobs", "300", "--num-nodes", "8", "--policies", "fifo,sjf,las",
                 "--placements", "consolidate,spread", "--oracle", "--workers", "1", "--data", str(root), "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    assert [(r["policy"], r["placement"]) for r in rows] == [(p, q) for p in ("fifo", "sjf", "las") for q in ("consolidate", "spread")]
    assert [r["oracle"] for r in rows] == [False, False, True, True, False, False]
    assert all(r["num_finished"] == 300 for r in rows)
    sweeps = list((root / "results" / "cluster" / "sweeps").glob("*.json"))
    assert len(sweeps) == 1


def test_philly_ordering_with_the_philly_vcs(root):
    """FIFO > LAS > SJF >= SRTF in average JCT on the real Philly jobs (two weeks from 2017-10-01, offered 4x).

    The derived philly_sia_jobs table carries far less load than the job log the Helios artifact used
    (13% mean utilization of Philly's 2,816 GPUs at the original rate), so the window's submissions are
    compressed 4x to get the queueing the published comparison is about.
    """
    base = dict(trace="philly_sia_jobs", vc_config="philly", start_s=OCT_1, duration_s=TWO_WEEKS_S, rate_scale=4.0)
    workload = load_workload(ClusterConfig(**base), root)
    jct = {}
    for policy in ("fifo", "sjf", "srtf", "las", "qssf"):
        oracle = {"predictor": "oracle", "oracle": True} if policy in ("sjf", "srtf", "qssf") else {}
        s = run_cluster(ClusterConfig(**base, policy=policy, **oracle), data_root=root, workload=workload, write=False).summary
        # the only refusals: jobs of the 4 VCs the Helios artifact drops too (not in philly_vc.csv)
        assert all(k.endswith("not in the cluster configuration") for k in s["rejected_by_reason"])
        jct[policy] = s["jct_mean_s"]
    assert jct["fifo"] > jct["las"] > jct["srtf"]
    assert jct["fifo"] > jct["sjf"] >= jct["srtf"]
    assert jct["fifo"] > 1.05 * jct["qssf"]


def test_itp_fifo_and_sjf(root):
    """Every ITP cluster: SJF (oracle) never has a larger average JCT than FIFO on the demand-sized cluster."""
    for k in (1, 4, 6):
        base = dict(trace="microsoft_itp", cluster=f"cluster{k:02d}")
        w = load_workload(ClusterConfig(**base), root)
        fifo = run_cluster(ClusterConfig(**base), data_root=root, workload=w, write=False).summary
        sjf = run_cluster(ClusterConfig(**base, policy="sjf", predictor="oracle", oracle=True), data_root=root,
                          workload=w, write=False).summary
        assert fifo["num_finished"] == sjf["num_finished"] == len(w) > 0
        assert sjf["jct_mean_s"] < fifo["jct_mean_s"]
        assert "of peak demand" in fifo["cluster_spec"]["source"]


def test_time_stepped_baseline_agrees():
    """With 1 s steps and whole-second times the time-stepped baseline gives the event-driven schedule exactly;
    with 60 s steps JCTs only grow, by less than a few steps on average."""
    rng = np.random.default_rng(7)
    n = 400
    submit = np.cumsum(rng.integers(0, 40, n)).astype(np.float64)
    duration = rng.integers(1, 3000, n).astype(np.float64)
    gpus = rng.choice([1, 2, 4, 8, 12, 16], n, p=[0.5, 0.15, 0.15, 0.1, 0.05, 0.05]).astype(np.int64)
    spec = uniform(4, 8)
    partition, _ = admit(gpus, None, spec)
    event = simulate(JobsView(submit, gpus), duration, partition, spec, POLICIES.create("fifo"), PLACEMENTS.create("consolidate"))
    start1, end1 = simulate_fifo_timestep(submit, duration, gpus, 4, 8, step_s=1.0)
    np.testing.assert_array_equal(start1, event.start_s)
    np.testing.assert_array_equal(end1, event.end_s)
    start60, end60 = simulate_fifo_timestep(submit, duration, gpus, 4, 8, step_s=60.0)
    assert np.all(start60 >= submit)
    assert np.mean(end60 - submit) >= np.mean(event.end_s - submit)


def test_cluster_from_an_ingested_machine_list(root):
    """``--vc-config machines:TRACE``: one node per GPU machine of the real Philly machine list
    (552 machines, 2,490 GPUs) or PAI machine spec (1,814 GPU machines of 1,897, 6,742 GPUs)."""
    from replay.cluster.cluster import machines_from_lake

    philly = machines_from_lake("philly", root)
    assert (philly.num_nodes, philly.total_gpus) == (552, 2490)
    pai = machines_from_lake("alibaba_pai_2020", root)
    assert (pai.num_nodes, pai.total_gpus) == (1814, 6742) and "P100" in pai.source
    res = replay("cluster", "--trace", "philly_sia_jobs", "--vc-config", "machines:philly", "--max-jobs", "2000",
                 "--data", str(root), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["summary"]["cluster_spec"]["total_gpus"] == 2490
    bad = replay("cluster", "--trace", "philly_sia_jobs", "--vc-config", "machines:nope", "--data", str(root))
    assert bad.exit_code == 2 and "alibaba_pai_2020, philly" in flat(bad.output)
