"""Job workload models: fit on real Philly (Sia) and ITP job traces, regenerate, and check what the model claims to keep.

Bounds come from 20 seeds per trace (module doc of analysis.job_workload_model): each is the worst value seen
plus a margin, and the tests use seed 0 (and a few more where a claim is about seeds).
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from conftest import ingested_root

from analysis.catalog import open_catalog, rows
from analysis.arrival_families import FAMILIES, select_gap_family
from analysis.job_workload_compare import compare, comparison_figures
from analysis.job_workload_model import JobWorkloadModel, trace_jobs, write_trace
from ingest.schema import JOBS

PHILLY, ITP, ITP_CLUSTER = "philly_sia_jobs", "microsoft_itp", "cluster04"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Philly derived traces and ITP ingested once into a module-wide data root; the catalog opened read-only."""
    con = open_catalog(ingested_root(tmp_path_factory, ("philly_derived", "philly"), ("microsoft_itp", "microsoft_itp")))
    yield con
    con.close()


@pytest.fixture(scope="module")
def real(catalog) -> dict:
    """trace -> (original jobs table, fitted model) for Philly Sia and ITP cluster04."""
    out = {}
    for trace, cluster in ((PHILLY, None), (ITP, ITP_CLUSTER)):
        original = trace_jobs(catalog, trace, cluster)
        out[trace] = (original, JobWorkloadModel().fit_table(original, trace=trace))
    return out


def _bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_philly_regenerated_matches(real) -> None:
    original, model = real[PHILLY]
    assert model.num_jobs_ == original.num_rows == 82182 and model.num_unknown_run_ == 0
    regen = model.generate(seed=0)
    assert regen.schema.equals(JOBS.schema) and regen["trace"][0].as_py() == "synthetic_jobs"
    got = compare(original, regen)
    # 20 seeds: gaps KS 0.077-0.085 (Philly has a spike of 600 s gaps no family has), durations 0.002-0.006,
    # GPUs <= 0.002; daily counts off by 3.4-4.7 % (L1), correlation >= 0.997; hourly correlation >= 0.99
    assert got["interarrival"]["ks"] < 0.11
    assert got["duration"]["ks"] < 0.02 and got["num_gpus"]["ks"] < 0.01
    assert got["num_jobs"]["ratio"] == pytest.approx(1, abs=0.03)  # the fitted span, count 0.988-1.008
    assert got["daily_rate"]["rel_l1_error"] < 0.07 and got["daily_rate"]["corr"] > 0.99
    assert got["rate"]["corr"] > 0.98
    # GPU time is held by a few 64-128-GPU jobs, so its share by size moves most (20 seeds: max diff 0.015-0.079)
    assert got["gpu_time_share_max_abs_diff"] < 0.1
    assert got["job_share"]["1"]["regenerated"] == pytest.approx(got["job_share"]["1"]["original"], abs=0.01)
    # VCs are drawn with the size: the top 10 % of VCs keep their GPU time (20 seeds: -0.066 .. +0.020)
    assert got["top10pct_group_share"]["regenerated"] == pytest.approx(got["top10pct_group_share"]["original"], abs=0.08)
    assert got["top10pct_user_share"] is None  # the Sia table has no users
    json.dumps(got)


def test_family_choice_beats_poisson_on_philly(real) -> None:
    original, model = real[PHILLY]
    summary = model.summary()
    shares = summary["family_shares"]
    assert summary["windows_own_fit"] > 1000 and all(shares[f] > 0.15 for f in FAMILIES)  # all three are chosen
    assert summary["median_shape"]["weibull"] < 1 and summary["pooled"]["family"] == "weibull"
    poisson = JobWorkloadModel(families=("exponential",)).fit_table(original)
    # measured: exponential-only gaps KS 0.193-0.200 vs 0.077-0.085 with the choice
    assert compare(original, poisson.generate(seed=0))["interarrival"]["ks"] > 0.15


def test_itp_cluster_regenerated_matches(real) -> None:
    original, model = real[ITP]
    assert model.num_jobs_ == 15802 and model.summary()["num_users"] == 0 and model.summary()["num_groups"] == 0
    regen = model.generate(seed=0)
    got = compare(original, regen)
    # 20 seeds: gaps KS 0.076-0.102, durations 0.003-0.010, GPUs <= 0.008, daily L1 0.089-0.157 (corr >= 0.958),
    # hourly corr >= 0.927, GPU-time share by size within 0.064, job count 0.952-1.049
    assert got["interarrival"]["ks"] < 0.12
    assert got["duration"]["ks"] < 0.02 and got["num_gpus"]["ks"] < 0.015
    assert got["daily_rate"]["rel_l1_error"] < 0.2 and got["daily_rate"]["corr"] > 0.95 and got["rate"]["corr"] > 0.9
    assert got["gpu_time_share_max_abs_diff"] < 0.1 and got["num_jobs"]["ratio"] == pytest.approx(1, abs=0.07)
    # tied submits (ITP's whole-second clock, 17.5 % of gaps) come back as tied submits
    assert got["interarrival"]["zero_gap_fraction"]["regenerated"] > 0.08
    assert got["top10pct_user_share"] is None and got["top10pct_group_share"] is None
    assert regen["user"].null_count == regen.num_rows and set(regen["status"].to_pylist()) == {"unknown"}


def test_deterministic_json_round_trip_rate_scale_and_length(real) -> None:
    original, model = real[PHILLY]
    first = model.generate(seed=3)
    assert _bytes(first) == _bytes(model.generate(seed=3))
    assert not first.equals(model.generate(seed=4))
    shipped = JobWorkloadModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert shipped.summary() == model.summary()
    for kwargs in ({"seed": 3}, {"duration_s": 5 * 86400.0, "rate_scale": 2.0, "seed": 7}, {"num_jobs": 1000, "seed": 1}):
        assert _bytes(model.generate(**kwargs)) == _bytes(shipped.generate(**kwargs)), kwargs
    # twice the rate: twice the jobs over the same span and half the mean gap (measured 1.991-2.009)
    double = model.generate(seed=3, rate_scale=2.0)
    assert double.num_rows / first.num_rows == pytest.approx(2, abs=0.05)
    gap = [np.diff(t["submit_s"].to_numpy()).mean() for t in (first, double)]
    assert gap[1] / gap[0] == pytest.approx(0.5, abs=0.02)
    # past the fitted span the profile repeats (measured 1.998); num_jobs gives exactly that many
    longer = model.generate(duration_s=2 * model.span_s_, seed=1)
    assert longer.num_rows / model.num_jobs_ == pytest.approx(2, abs=0.05)
    t = longer["submit_s"].to_numpy()
    assert t[0] == 0 and np.all(np.diff(t) >= 0) and t[-1] < 2 * model.span_s_ and np.all(t == np.floor(t))
    assert model.generate(num_jobs=1000, seed=1).num_rows == 1000


def test_write_trace_reads_like_a_real_trace(real, tmp_path) -> None:
    from analysis.jobs import duration_cdf, top_shares
    from replay.cluster.jobs import load_jobs

    _, model = real[PHILLY]
    jobs = model.generate(num_jobs=500, seed=0)
    result = write_trace(jobs, tmp_path / "data")
    assert result.rows_quarantined == 0
    con = open_catalog(tmp_path / "data")
    try:
        assert rows(con, "SELECT derived, rows_out FROM traces WHERE trace = 'synthetic_jobs'") == [(True, 500)]
        back = trace_jobs(con, "synthetic_jobs")
        for col in ("submit_s", "duration_s", "num_gpus", "group"):
            assert back[col].to_pylist() == jobs[col].to_pylist(), col
        assert duration_cdf(con, "synthetic_jobs").height > 0
        assert top_shares(con, "synthetic_jobs", by="group")["entities"] > 1
    finally:
        con.close()
    replayable = load_jobs("synthetic_jobs", data_root=tmp_path / "data")
    assert len(replayable) == 500 and replayable.group is not None


def test_comparison_figures(real) -> None:
    original, model = real[ITP]
    figs = comparison_figures(original, model.generate(seed=0))
    assert len(figs) == 3 and all(len(f.data) == 2 for f in figs)
    assert figs[0].layout.xaxis.type == "log" and [d.name for d in figs[2].data] == ["original", "regenerated"]


@pytest.mark.parametrize("family, draw, shape", [
    ("exponential", lambda rng, n: rng.exponential(30.0, n), 1.0),
    ("gamma", lambda rng, n: rng.gamma(0.4, 50.0, n), 0.4),
    ("weibull", lambda rng, n: 7.0 * rng.weibull(0.6, n), 0.6),
])
def test_family_selection_on_known_draws(family, draw, shape) -> None:
    gaps = draw(np.random.default_rng(11), 20_000)
    chosen, fitted_shape = select_gap_family(gaps)
    assert fitted_shape == pytest.approx(shape, rel=0.05)
    # exponential is gamma and Weibull at shape 1: on exponential draws AIC may still prefer a one-parameter
    # family (with probability P(chi2_1 > 2) = 16 %), but only at a shape of about 1
    assert chosen == family or (family == "exponential" and abs(fitted_shape - 1) < 0.03)
    # the same through the model: one window spanning everything, continuous times
    t = np.concatenate([[0.0], np.cumsum(gaps)])
    model = JobWorkloadModel(window_s=1e12).fit(t, np.full(len(t), 60.0), np.ones(len(t)))
    assert model.window_own_fit_.tolist() == [True] and FAMILIES[model.window_family_[0]] == chosen
    assert model.window_shape_[0] == pytest.approx(fitted_shape, rel=0.01) and model.submit_resolution_s_ == 0.0


def test_sparse_windows_no_labels_and_zero_durations() -> None:
    # hour 0: 40 jobs a second apart; hours 1-2 empty; hour 3: one job; hour 5: the last job
    t = np.r_[np.arange(40.0), 3 * 3600.0 + 5, 5 * 3600.0 + 7]
    gpus = np.r_[np.ones(20), np.full(20, 8.0), 2.0, 16.0]
    run = np.r_[np.zeros(10), np.full(30, 100.0), 0.0, 7.0]
    model = JobWorkloadModel(min_gaps=10).fit(t, run, gpus)
    assert model.window_counts_.tolist() == [40, 0, 0, 1, 0, 1]
    assert model.window_family_.tolist()[1:3] == [-1, -1] and model.window_own_fit_.tolist() == [True] + [False] * 5
    assert model.window_family_[3] == model.pooled_family_  # a one-job window borrows the pooled fit
    for seed in range(5):
        regen = model.generate(seed=seed)
        hours = (regen["submit_s"].to_numpy() // 3600).astype(int)
        assert set(hours.tolist()) <= {0, 3, 5}  # nothing where the trace had nothing
    big = model.generate(num_jobs=2000, seed=0)
    gpus_out, dur_out = big["num_gpus"].to_numpy(), big["duration_s"].to_numpy()
    assert set(dur_out[gpus_out == 1].tolist()) == {0.0, 100.0}  # run times come from the job's own size class
    assert set(dur_out[gpus_out == 8].tolist()) == {100.0}
    assert big["user"].null_count == big["group"].null_count == big["cluster"].null_count == 2000
    logn = JobWorkloadModel(duration="lognormal").fit(t, run, gpus).generate(num_jobs=2000, seed=0)
    share_zero = np.mean(logn["duration_s"].to_numpy()[logn["num_gpus"].to_numpy() == 1] == 0)
    assert share_zero == pytest.approx(0.5, abs=0.06)  # the class's zero run times are kept as a point mass
    assert json.loads(json.dumps(model.to_dict()))["fitted"]["window_family"][1] == -1


def test_users_and_statuses_drawn_with_the_size() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    user = np.where(np.arange(n) % 10 == 0, "heavy", np.array([f"u{i % 50}" for i in range(n)], object))
    gpus = np.where(user == "heavy", 8.0, 1.0)
    status = np.where(user == "heavy", "failed", "completed")
    t = np.cumsum(rng.exponential(60.0, n))
    original = pa.table({"submit_s": t, "duration_s": rng.exponential(600.0, n), "num_gpus": gpus,
                         "user": user.tolist(), "group": ["vc"] * n, "status": status.tolist()})
    model = JobWorkloadModel().fit_table(original)
    regen = model.generate(num_jobs=n, seed=0)
    pairs = set(zip(regen["user"].to_pylist(), regen["num_gpus"].to_pylist(), regen["status"].to_pylist()))
    assert {p for p in pairs if p[0] == "heavy"} == {("heavy", 8.0, "failed")}
    got = compare(original, regen)
    assert got["top10pct_user_share"]["regenerated"] == pytest.approx(got["top10pct_user_share"]["original"], abs=0.05)


def test_errors(catalog) -> None:
    with pytest.raises(ValueError, match="empty trace"):
        JobWorkloadModel().fit([], [], [])
    with pytest.raises(ValueError, match="differ in length"):
        JobWorkloadModel().fit([0.0, 1.0], [1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="run times must be >= 0"):
        JobWorkloadModel().fit([0.0, 1.0], [1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="unknown statuses"):
        JobWorkloadModel().fit([0.0, 1.0], [1.0, 1.0], [1.0, 1.0], status=["done", "completed"])
    with pytest.raises(ValueError, match="two jobs at distinct times"):
        JobWorkloadModel().fit([0.0, 1.0], [1.0, 1.0], [0.0, 1.0])  # gpu_only leaves one job
    with pytest.raises(ValueError, match="no job .* has a run time"):
        JobWorkloadModel().fit([0.0, 1.0], [math.nan, math.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="submit_s must be finite"):
        JobWorkloadModel().fit([0.0, math.nan], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="families"):
        JobWorkloadModel(families=("lognormal",))
    with pytest.raises(ValueError, match="unknown duration model"):
        JobWorkloadModel(duration="pareto")
    with pytest.raises(RuntimeError, match="not fitted"):
        JobWorkloadModel().generate()
    fitted = JobWorkloadModel().fit([0.0, 5.0, 9.0], [1.0, 2.0, 3.0], [1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="not both"):
        fitted.generate(num_jobs=3, duration_s=1.0)
    with pytest.raises(ValueError, match="rate_scale"):
        fitted.generate(rate_scale=0.0)
    with pytest.raises(ValueError, match="format"):
        JobWorkloadModel.from_dict({"format": "tracelab.request_workload_model", "version": 1})
    with pytest.raises(ValueError, match="gaps must be"):
        select_gap_family([1.0, 0.0])
    with pytest.raises(ValueError, match="known: microsoft_itp, philly"):
        JobWorkloadModel().fit_trace(catalog, "no_such_trace")
