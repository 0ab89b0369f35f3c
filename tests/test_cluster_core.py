"""The cluster core: golden small cases by hand, placement, admission, invariants on generated workloads, determinism."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from replay.cluster import metrics
from replay.cluster.admission import admit
from replay.cluster.cluster import AllocationError, ClusterState, from_vc_nodes, read_helios_vc_gpus, uniform
from replay.cluster.harness import ClusterConfig, run_cluster
from replay.cluster.jobs import JobWorkload, generate_jobs
from replay.cluster.placement import PLACEMENTS
from replay.cluster.policies import POLICIES, JobsView
from replay.cluster.simulate import simulate


def _run(submit, duration, gpus, spec, policy, placement="consolidate", predicted="oracle", group=None, **params):
    submit, duration, gpus = (np.asarray(x, dt) for x, dt in ((submit, float), (duration, float), (gpus, np.int64)))
    pred = duration.copy() if isinstance(predicted, str) else predicted
    partition, _ = admit(gpus, None if group is None else np.asarray(group, object), spec)
    return simulate(JobsView(submit, gpus, pred), duration, partition, spec, POLICIES.create(policy, **params),
                    PLACEMENTS.create(placement))


# -- golden cases, computed by hand ------------------------------------------------------------------

def test_fifo_vs_sjf_three_jobs_on_one_node():
    # A (100 s) takes the whole node at 0; B (50 s) and C (10 s) arrive while it runs.
    args = ([0, 1, 2], [100, 50, 10], [8, 8, 8], uniform(1, 8))
    fifo, sjf = _run(*args, "fifo"), _run(*args, "sjf")
    assert fifo.start_s.tolist() == [0, 100, 150] and fifo.end_s.tolist() == [100, 150, 160]
    assert sjf.start_s.tolist() == [0, 110, 100] and sjf.end_s.tolist() == [100, 160, 110]
    submit = np.array([0, 1, 2.0])
    assert np.mean(fifo.end_s - submit) == pytest.approx((100 + 149 + 158) / 3)
    assert np.mean(sjf.end_s - submit) == pytest.approx((100 + 159 + 108) / 3)


def test_easy_backfill_does_not_delay_the_head():
    # A holds 4 of 8 GPUs until 100; head B needs 8 (reservation at 100). C (4 GPUs, ends at 52) backfills;
    # D (4 GPUs, 200 s) would run past 100 and the head needs every GPU then, so D waits.
    args = ([0, 1, 2, 3], [100, 10, 50, 200], [4, 8, 4, 4], uniform(1, 8))
    fifo, easy = _run(*args, "fifo"), _run(*args, "easy")
    assert fifo.start_s.tolist() == [0, 100, 110, 110]
    assert easy.start_s.tolist() == [0, 100, 2, 110]
    assert easy.start_s[1] == fifo.start_s[1]  # the head starts exactly at its reservation


def test_easy_backfill_uses_gpus_the_head_leaves_spare():
    # 2 nodes x 8: A holds 12 GPUs until 100; head B needs 8 -> at 100 it gets 8 of 16, leaving 8 spare.
    # C (4 GPUs, 500 s) runs past the reservation but fits in the spare GPUs, so it backfills.
    out = _run([0, 1, 2], [100, 10, 500], [12, 8, 4], uniform(2, 8), "easy", placement="first-fit")
    assert out.start_s.tolist() == [0, 100, 2]


def test_las_preempts_a_job_that_crosses_a_threshold():
    # One GPU. A runs from 0; B arrives at 10; both in queue 0, A (earlier) keeps the GPU until its attained
    # service reaches 100 GPU-s at t=100, drops to queue 1, and B preempts it; A resumes when B ends.
    out = _run([0, 10], [300, 50], [1, 1], uniform(1, 1), "las", las_thresholds_gpu_s=(100.0,))
    assert out.start_s.tolist() == [0, 100] and out.end_s.tolist() == [350, 150]
    assert out.num_preemptions.tolist() == [1, 0]
    segs = sorted(zip(out.seg_job.tolist(), out.seg_start_s.tolist(), out.seg_end_s.tolist()))
    assert segs == [(0, 0, 100), (0, 150, 350), (1, 100, 150)]


def test_las_attained_service_counts_gpus():
    # 2 GPUs. A (2 GPUs) reaches 100 GPU-s after 50 s; B (1 GPU, at 10) then preempts it.
    out = _run([0, 10], [300, 20], [2, 1], uniform(1, 2), "las", las_thresholds_gpu_s=(100.0,))
    assert out.start_s.tolist() == [0, 50] and out.end_s.tolist() == [320, 70]


def test_las_starvation_promotion():
    # One GPU, threshold 10 GPU-s. A (1000 s) drops to queue 1 at t=10 when B arrives... B (long) holds queue 0
    # until it too crosses at 20 s of service; with promotion after 15 s of waiting A returns to queue 0.
    plain = _run([0, 10], [1000, 1000], [1, 1], uniform(1, 1), "las", las_thresholds_gpu_s=(10.0,))
    promoted = _run([0, 10], [1000, 1000], [1, 1], uniform(1, 1), "las", las_thresholds_gpu_s=(10.0,),
                    las_promote_after_s=15.0)
    assert plain.num_preemptions.sum() >= 1
    assert promoted.num_preemptions.sum() > plain.num_preemptions.sum()
    for out in (plain, promoted):
        run = np.bincount(out.seg_job, weights=out.seg_end_s - out.seg_start_s)
        assert run.tolist() == [1000, 1000]


def test_srtf_preempts_for_a_shorter_job():
    out = _run([0, 10], [100, 20], [1, 1], uniform(1, 1), "srtf")
    assert out.start_s.tolist() == [0, 10] and out.end_s.tolist() == [120, 30]
    assert out.num_preemptions.tolist() == [1, 0]


def test_qssf_orders_by_predicted_gpu_time():
    # After A, B (8 GPUs x 10 s = 80) and C (1 GPU x 50 s = 50): QSSF runs C first, SJF runs B first.
    args = ([0, 1, 2], [100, 10, 50], [8, 8, 1], uniform(1, 8))
    assert _run(*args, "qssf").start_s.tolist() == [0, 150, 100]
    assert _run(*args, "sjf").start_s.tolist() == [0, 100, 110]


def test_qssf_reads_predictions_not_truth():
    # Wrong predictions reorder the queue: the scheduler never sees the true durations.
    args = ([0, 1, 2], [100, 50, 10], [8, 8, 8], uniform(1, 8))
    out = _run(*args, "qssf", predicted=np.array([1.0, 5.0, 500.0]))
    assert out.start_s.tolist() == [0, 100, 150]


# -- placement ---------------------------------------------------------------------------------------

def _place(name, free, capacity, g):
    state = ClusterState(np.asarray(capacity, np.int64), np.asarray(free, np.int64).copy())
    got = PLACEMENTS.create(name).place(state.view, g)
    return None if got is None else (got[0].tolist(), got[1].tolist())


def test_consolidate_vs_spread_vs_first_fit_node_counts():
    cap = [8, 8, 8, 8]
    assert _place("consolidate", cap, cap, 8) == ([0], [8])
    assert _place("first-fit", cap, cap, 8) == ([0], [8])
    assert _place("spread", cap, cap, 8) == ([0, 1, 2, 3], [2, 2, 2, 2])
    assert _place("consolidate", cap, cap, 12) == ([0, 1], [8, 4])
    out = _run([0], [10], [8], uniform(4, 8), "fifo", placement="spread")
    assert out.num_nodes_placed.tolist() == [4]


def test_consolidate_best_fit_and_strictness():
    cap = [8, 8, 8]
    assert _place("consolidate", [8, 3, 5], cap, 3) == ([1], [3])  # fewest free GPUs that fit
    assert _place("consolidate", [4, 4, 4], cap, 8) is None  # 8 GPUs free in all, but not on one node: wait
    assert _place("first-fit", [4, 4, 4], cap, 8) == ([0, 1], [4, 4])
    assert _place("consolidate", [8, 2, 8], cap, 12) == ([0, 2], [8, 4])
    assert _place("spread", [1, 0, 3], cap, 3) == ([2, 0], [2, 1])


def test_cluster_state_refuses_overallocation():
    state = ClusterState.of(uniform(2, 4))
    state.allocate(np.array([0]), np.array([4]))
    with pytest.raises(AllocationError):
        state.allocate(np.array([0]), np.array([1]))
    with pytest.raises(AllocationError):
        state.allocate(np.array([0, 1]), np.array([1, 1]))
    with pytest.raises(AllocationError):
        state.release(np.array([1]), np.array([1]))
    state.release(np.array([0]), np.array([4]))
    state.check_integrity()
    assert state.total_free == 8
    with pytest.raises(ValueError):
        state.view.free[0] = 3  # policies get a read-only view


# -- admission and cluster specs ---------------------------------------------------------------------

def test_admission_counts_every_refused_job():
    spec = from_vc_nodes({"a": 1, "b": 2}, 8)
    part, reason = admit(np.array([8, 9, 16, 17, 1, 1]), np.array(["a", "a", "b", "b", "zz", None], object), spec)
    assert part.tolist() == [0, -1, 1, -1, -1, -1]
    assert reason.tolist() == [None, "needs more GPUs than its VC has (8)", None, "needs more GPUs than its VC has (16)",
                               "VC zz not in the cluster configuration", "no VC"]
    part, reason = admit(np.array([1, 100]), None, uniform(2, 8))
    assert part.tolist() == [0, -1] and "cluster has (16)" in reason[1]


def test_rejected_jobs_are_in_the_results_with_a_reason():
    w = JobWorkload("t", np.array(["a", "b"], object), np.array([0.0, 1.0]), np.array([10.0, 10.0]), np.array([8, 64]))
    res = run_cluster(ClusterConfig(num_nodes=2, policy="fifo"), workload=w, write=False)
    assert res.jobs["status"].tolist() == ["finished", "rejected"]
    assert res.summary["num_rejected"] == 1
    assert res.summary["rejected_by_reason"] == {"needs more GPUs than the cluster has (16)": 1}


def test_vc_scheduling_is_independent():
    # VC a is busy; a job of VC b starts at once on b's node even though a's queue is long.
    spec = from_vc_nodes({"a": 1, "b": 1}, 8)
    out = _run([0, 1, 2], [100, 100, 100], [8, 8, 8], spec, "fifo", group=["a", "a", "b"])
    assert out.start_s.tolist() == [0, 100, 2]
    assert set(out.seg_partition.tolist()) == {0, 1}


def test_helios_vc_gpus_file(tmp_path):
    path = tmp_path / "cluster_gpu_number.csv"
    path.write_text("date,vcA,vcB,vcC,total\n2020-04-01,16,8,0,24\n2020-04-02,24,8,0,32\n")
    assert read_helios_vc_gpus(path) == {"vcA": 24, "vcB": 8}
    assert read_helios_vc_gpus(path, "2020-04-01") == {"vcA": 16, "vcB": 8}


# -- invariants on generated workloads ---------------------------------------------------------------

def _check_invariants(w, spec, out, partition):
    admitted = partition >= 0
    assert np.all(np.isfinite(out.end_s[admitted])) and np.all(np.isnan(out.end_s[~admitted]))
    assert np.all(out.start_s[admitted] >= w.submit_s[admitted])  # no start before submit
    # every admitted job ran exactly its duration, in non-overlapping segments, and finished once
    order = np.lexsort((out.seg_start_s, out.seg_job))
    job, s, e = out.seg_job[order], out.seg_start_s[order], out.seg_end_s[order]
    assert np.all(e >= s)
    same = job[1:] == job[:-1]
    assert np.all(s[1:][same] >= e[:-1][same])
    ran = np.bincount(job, weights=e - s, minlength=len(w))
    np.testing.assert_allclose(ran[admitted], w.duration_s[admitted], rtol=1e-9, atol=1e-6)
    counts = np.bincount(job, minlength=len(w))
    assert np.array_equal(counts[admitted], out.num_preemptions[admitted] + 1)
    last_end = np.full(len(w), np.nan)
    last_end[job] = e  # sorted by start within a job: the last write is the last segment
    np.testing.assert_array_equal(last_end[admitted], out.end_s[admitted])
    # never more GPUs allocated than exist, in the whole cluster and in each partition
    assert metrics.peak_allocated(out.seg_start_s, out.seg_end_s, out.seg_gpus) <= spec.total_gpus
    for p, (_, nodes) in enumerate(spec.partitions()):
        m = out.seg_partition == p
        assert metrics.peak_allocated(out.seg_start_s[m], out.seg_end_s[m], out.seg_gpus[m]) <= int(spec.node_gpus[nodes].sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("policy", ["fifo", "sjf", "qssf", "easy", "srtf", "las"])
def test_invariants_on_generated_workloads(seed, policy):
    w = generate_jobs(400, seed, rate_per_s=0.05, num_vcs=2)
    placement = ["consolidate", "first-fit", "spread"][seed]
    spec = from_vc_nodes({"vc0": 3, "vc1": 5}, 8) if seed != 1 else uniform(6, 8)
    group = w.group if spec.vcs else None
    partition, _ = admit(w.num_gpus, group, spec)
    pol = POLICIES.create(policy, las_thresholds_gpu_s=(600.0, 6000.0), las_promote_after_s=7200.0 if seed == 2 else None)
    out = simulate(JobsView(w.submit_s, w.num_gpus, w.duration_s * 1.5), w.duration_s, partition, spec, pol,
                   PLACEMENTS.create(placement))
    _check_invariants(w, spec, out, partition)


def test_simultaneous_events_and_zero_durations():
    w = JobWorkload("t", np.array(list("abcdef"), object), np.array([0, 0, 0, 5, 5, 5.0]),
                    np.array([0, 10, 0, 5, 0, 10.0]), np.array([8, 4, 4, 8, 1, 8]))
    for policy in ("fifo", "sjf", "srtf", "las", "easy"):
        spec = uniform(1, 8)
        partition, _ = admit(w.num_gpus, None, spec)
        out = simulate(JobsView(w.submit_s, w.num_gpus, w.duration_s), w.duration_s, partition, spec,
                       POLICIES.create(policy), PLACEMENTS.create("consolidate"))
        _check_invariants(w, spec, out, partition)


# -- utilization and metrics -------------------------------------------------------------------------

def test_utilization_series_by_hand():
    # 4 GPUs over [30, 90) and 2 GPUs over [60, 150): minute 0 -> 4*30/60 = 2, minute 1 -> (4*30 + 2*60)/60 = 4,
    # minute 2 -> 2*30/60 = 1.
    times, alloc = metrics.utilization_series(np.array([30.0, 60.0]), np.array([90.0, 150.0]), np.array([4, 2]))
    assert times.tolist() == [0, 60, 120]
    np.testing.assert_allclose(alloc, [2.0, 4.0, 1.0])
    assert metrics.peak_allocated(np.array([0.0, 10.0]), np.array([10.0, 20.0]), np.array([8, 8])) == 8


def test_summary_figures():
    w = JobWorkload("t", np.array(list("abc"), object), np.array([0, 1, 2.0]), np.array([100, 50, 5.0]),
                    np.array([8, 8, 8]), group=np.array(["x", "y", "x"], object), user=np.array(["u", "u", "v"], object))
    s = run_cluster(ClusterConfig(num_nodes=1, policy="fifo"), workload=w, write=False).summary
    jct = np.array([100, 149, 153.0])
    assert s["jct_mean_s"] == pytest.approx(jct.mean())
    assert s["queue_mean_s"] == pytest.approx(np.mean([0, 99, 148]))
    assert s["slowdown_mean"] == pytest.approx(np.mean([1, 149 / 50, 153 / 10]))  # 5 s job: floor of 10 s
    assert s["by_size"]["5-8"]["num_jobs"] == 3 and s["by_size"]["1"]["num_jobs"] == 0
    assert s["fairness"]["num_vcs"] == 2 and 0 < s["fairness"]["jain_vc_slowdown"] <= 1
    assert s["jct_mean_over_vcs_s"] == pytest.approx(np.mean([np.mean([100, 153]), 149]))
    assert s["utilization_mean"] == pytest.approx((100 + 50 + 5) * 8 / (8 * 155))


# -- configs, predictions, determinism ---------------------------------------------------------------

def test_config_validation():
    with pytest.raises(ValueError, match="needs predicted durations"):
        ClusterConfig(policy="qssf")
    with pytest.raises(ValueError, match="oracle=True"):
        ClusterConfig(policy="sjf", predictor="oracle")
    with pytest.raises(ValueError, match="unknown placement"):
        ClusterConfig(placement="best")
    with pytest.raises(ValueError, match="las thresholds"):
        ClusterConfig(policy="las", las_thresholds_gpu_s=(10.0, 5.0))
    with pytest.raises(ValueError, match="either vc_config or num_nodes"):
        ClusterConfig(vc_config="philly", num_nodes=3)
    assert ClusterConfig(policy="sjf", predictor="oracle", oracle=True).needs_predictions


def test_predictor_runtime_is_used_lazily(monkeypatch):
    seen = {}

    class Stub:
        def predict_jobs(self, workload):
            seen["n"] = len(workload)
            return workload.duration_s[::-1].copy()  # deliberately wrong

    fake = types.ModuleType("predictors.runtime")
    fake.load_duration_predictor = lambda path: seen.setdefault("path", path) and Stub()
    monkeypatch.setitem(sys.modules, "predictors.runtime", fake)
    w = JobWorkload("t", np.array(list("abc"), object), np.array([0, 1, 2.0]), np.array([100, 50, 10.0]), np.array([8, 8, 8]))
    res = run_cluster(ClusterConfig(num_nodes=1, policy="qssf", predictor="model.json"), workload=w, write=False)
    assert seen == {"path": "model.json", "n": 3}
    assert res.jobs["predicted_duration_s"].tolist() == [10, 50, 100]
    assert res.jobs["start_s"].tolist() == [0, 100, 150]  # B predicted 50 before C predicted 100


def test_determinism_same_bytes(tmp_path):
    config = ClusterConfig(num_jobs=300, policy="las", placement="first-fit", seed=3)
    a = run_cluster(config, data_root=tmp_path / "a")
    b = run_cluster(config, data_root=tmp_path / "b")
    assert a.run_id == b.run_id and a.path.parent.name == "cluster"
    for name in ("jobs.parquet", "utilization.parquet", "summary.json", "config.json"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    assert run_cluster(ClusterConfig(num_jobs=300, policy="las", seed=4), write=False).run_id != a.run_id
