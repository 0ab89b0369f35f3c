"""Job and utilization analyses: real offline traces checked against numbers computed independently from
the same Parquet (pyarrow + plain Python/numpy), and upstream-format fixtures with hand-computed results
(partial minutes, a job spanning midnight, a job still running, concentration curves, PAI usage, Philly
measured GPU utilization)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import jobs as J
from analysis import utilization as U
from analysis.catalog import NotAvailable, open_catalog, trace_info
from ingest.pipeline import run_source


@pytest.fixture
def con(data_root):
    """A read-only catalog connection, opened after the test has ingested what it needs."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def get() -> duckdb.DuckDBPyConnection:
        opened.append(open_catalog(data_root.root))
        return opened[-1]

    yield get
    for c in opened:
        c.close()


def lake_rows(data_root, trace: str, table: str = "jobs") -> dict[str, list]:
    """The trace's canonical Parquet (every part, in name order), read with pyarrow (no DuckDB, no polars)."""
    parts = sorted((data_root.lake / table / f"trace={trace}").glob("part-*.parquet"))
    assert parts, f"no Parquet for {trace}"
    return pa.concat_tables(pq.read_table(p) for p in parts).to_pydict()


def brute_prorated(jobs: list[tuple[float, float, float]], t0: float, bin_s: float = 60.0) -> float:
    """Mean GPUs allocated during [t0, t0 + bin_s): the overlap of every job with the bin, one by one."""
    return sum(g * max(0.0, min(e, t0 + bin_s) - max(s, t0)) for s, e, g in jobs) / bin_s


# ------------------------------------------------------------------------------ interval arithmetic

def test_interval_bins_by_hand() -> None:
    s, e, g = np.array([30.0, 60.0, 125.0]), np.array([135.0, 100.0, 125.0]), np.array([1.0, 4.0, 2.0])
    first, v = U.interval_bins(s, e, {"g": g})
    assert first == 0
    assert v["g"] == pytest.approx([0.5, 1.0 + 4 * 40 / 60, 0.25], abs=1e-12)  # the zero-length job adds nothing
    first, v = U.interval_bins(s, e, {"g": g}, mode="touch")
    assert (first, v["g"].tolist()) == (0, [1.0, 5.0, 3.0])  # Helios artifact: minutes 0-2, 1, 2
    first, v = U.interval_bins(np.array([59.0]), np.array([181.0]), {"g": np.array([3.0])}, offset_s=1.0)
    assert first == 1 and v["g"] == pytest.approx([3.0, 3.0, 0.1], abs=1e-12)  # bins [59, 119), [119, 179), [179, 239)
    with pytest.raises(ValueError, match="ends before it starts"):
        U.interval_bins(np.array([5.0]), np.array([4.0]), {"g": np.array([1.0])})


def test_interval_bins_match_brute_force_on_random_jobs() -> None:
    rng = np.random.default_rng(7)
    s = rng.uniform(0, 5000, 400)
    e = s + np.where(rng.random(400) < 0.2, rng.uniform(0, 50, 400), rng.exponential(600, 400))
    g = rng.choice([0.25, 1.0, 2.0, 8.0], 400)
    first, v = U.interval_bins(s, e, {"g": g}, bin_s=60.0, offset_s=17.0)
    jobs = list(zip(s.tolist(), e.tolist(), g.tolist()))
    for k in range(v["g"].size):
        t0 = (first + k) * 60.0 - 17.0
        assert v["g"][k] == pytest.approx(brute_prorated(jobs, t0), abs=1e-9)
    assert (v["g"].sum() * 60.0) == pytest.approx(float(((e - s) * g).sum()), rel=1e-12)  # GPU time is conserved
    first, v = U.interval_bins(s, e, {"g": g}, bin_s=60.0, offset_s=17.0, mode="touch")
    for k in range(v["g"].size):
        b = first + k
        want = sum(gj for sj, ej, gj in jobs if math.floor((sj + 17) / 60) <= b <= math.floor((ej + 17) / 60))
        assert v["g"][k] == pytest.approx(want, abs=1e-9)


# ------------------------------------------------------------------------------ real offline traces

def test_real_itp_sizes_durations_and_missing_columns(traces: Path, data_root, con) -> None:
    run_source("microsoft_itp", traces / "microsoft_itp", data_root=data_root.root)
    c = con()
    raw = lake_rows(data_root, "microsoft_itp")
    gpus, dur = raw["num_gpus"], raw["duration_s"]
    bucket = ["1" if g <= 1 else "2-4" if g <= 4 else "5-8" if g <= 8 else ">8" for g in gpus]
    sizes = J.size_distribution(c, "microsoft_itp")
    assert dict(zip(sizes["key"], sizes["jobs"])) == {k: bucket.count(k) for k in ("1", "2-4", "5-8", ">8")}
    assert dict(zip(sizes["key"], sizes["jobs"])) == {"1": 57682, "2-4": 3854, "5-8": 7009, ">8": 806}
    gpu_s = {k: sum(d * g for d, g, b in zip(dur, gpus, bucket) if b == k) for k in set(bucket)}
    assert dict(zip(sizes["key"], sizes["gpu_time_share"])) == pytest.approx(
        {k: v / sum(gpu_s.values()) for k, v in gpu_s.items()}, rel=1e-12)
    exact = J.size_distribution(c, "microsoft_itp", buckets=None)
    assert exact["key"].to_list() == ["1", "2", "4", "8", "16", "32", "64"]
    cdf = J.duration_cdf(c, "microsoft_itp", by="size")
    for key in ("1", ">8"):
        got = cdf.filter(cdf["key"] == key)
        mine = np.quantile([d for d, b in zip(dur, bucket) if b == key], got["p"].to_numpy())
        assert got["value_s"].to_numpy() == pytest.approx(mine, rel=1e-12)
    summary = J.characterize_jobs(c, "microsoft_itp")
    assert summary["gpu_hours"] == pytest.approx(1_632_719.7, abs=0.05)
    assert summary["duration_s"]["p50"] == float(np.median(dur)) == 10537.0
    for part in ("queue_s", "status", "user_concentration", "vc_concentration", "user_completion_ratio"):
        assert summary[part].startswith("not available: microsoft_itp: ")
    json.dumps(summary)
    with pytest.raises(NotAvailable, match="no job has a 'start_s' value"):
        J.queue_cdf(c, "microsoft_itp")
    with pytest.raises(NotAvailable, match="no GPU job has a start time"):
        U.allocation_series(c, "microsoft_itp")
    # placed at submission (no queueing): cluster10's allocation at a chosen minute, job by job
    series = U.allocation_series(c, "microsoft_itp", cluster="cluster10", start_fallback="submit")
    assert trace_info(c, "microsoft_itp").wall_clock is False and "time" not in series.columns
    c10 = [(s, s + d, g) for s, d, g, cl in zip(raw["submit_s"], dur, gpus, raw["cluster"]) if cl == "cluster10"]
    # the origin is 1,999 s after collection start; bins stay on whole minutes of that clock: pick the
    # minute 5,108,160 s after collection start, one hour into the 2-GPU job of test_itp (submitted at 5,104,565 s)
    t0 = 5_108_160 - 1999.0
    row = series.filter(series["time_s"] == t0)
    assert row["gpus"][0] == pytest.approx(brute_prorated(c10, t0), abs=1e-9) and row["gpus"][0] >= 2
    assert float(series["gpus"].sum() * 60) == pytest.approx(sum((e - s) * g for s, e, g in c10), rel=1e-12)


def test_real_philly_derived(traces: Path, data_root, con) -> None:
    run_source("philly_derived", traces / "philly", data_root=data_root.root)
    run_source("philly", traces / "philly", data_root=data_root.root)  # the machine list: 2,490 GPUs
    c = con()
    raw = lake_rows(data_root, "philly_multigpu_pass")
    jobs = list(zip(raw["start_s"], raw["end_s"], raw["num_gpus"]))
    queue = [st - su for st, su in zip(raw["start_s"], raw["submit_s"])]
    q = J.queue_cdf(c, "philly_multigpu_pass")
    assert q["value_s"].to_numpy() == pytest.approx(np.quantile(queue, q["p"].to_numpy()), rel=1e-12)
    assert q["jobs"][0] == 3034 and q["mean_s"][0] == pytest.approx(sum(queue) / 3034, rel=1e-12)
    status = J.status_shares(c, "philly_multigpu_pass")
    assert status.rows() == [("all", "completed", 3034, 1.0, pytest.approx(776749.8236111 * 3600), 1.0)]

    series = U.utilization_series(c, "philly_multigpu_pass", capacity_trace="philly")
    origin_s = trace_info(c, "philly_multigpu_pass").origin_s
    assert origin_s % 60 == 41  # 10:30:41 PDT: bins are shifted to whole wall-clock minutes
    assert all((origin_s + t) % 60 == 0 for t in series["time_s"].head(3))
    for t0 in (series["time_s"][series["gpus"].arg_max()], 2_000_000 - (origin_s + 2_000_000) % 60):
        row = series.filter(series["time_s"] == t0).row(0, named=True)
        assert row["gpus"] == pytest.approx(brute_prorated(jobs, t0), abs=1e-9)
        assert row["utilization"] == pytest.approx(row["gpus"] / 2490, rel=1e-12)
    assert series["gpus"].max() == 852.0
    gpu_h = sum((e - s) * g for s, e, g in jobs) / 3600
    assert float(series["gpus"].sum() / 60) == pytest.approx(gpu_h, rel=1e-12)
    daily = U.single_multi_share(series)
    assert daily["single_share"].drop_nulls().max() == 0.0  # multi-GPU jobs only
    assert daily["period"].dtype.time_zone == "America/Los_Angeles"
    hours = U.diurnal_profile(series)
    assert hours["hour"].to_list() == list(range(24)) and hours["bins"].sum() == series.height

    sia = lake_rows(data_root, "philly_sia_jobs")
    by_vc = J.duration_cdf(c, "philly_sia_jobs", by="group", quantiles=(0.5,))
    counts = {vc: sia["group"].count(vc) for vc in set(sia["group"])}
    assert dict(zip(by_vc["key"], by_vc["jobs"])) == counts
    assert by_vc["key"][0] == max(counts, key=counts.get) == "6214e9"  # largest VC first; labels are bare VC ids
    assert by_vc["value_s"][0] == float(np.median([d for d, vc in zip(sia["duration_s"], sia["group"]) if vc == "6214e9"]))
    per_vc = {}
    for d, g, vc in zip(sia["duration_s"], sia["num_gpus"], sia["group"]):
        per_vc[vc] = per_vc.get(vc, 0.0) + d * g
    top = J.top_shares(c, "philly_sia_jobs", by="group")
    assert top["entities"] == 15 and top["top_1"] == pytest.approx(max(per_vc.values()) / sum(per_vc.values()))
    helios_sizes = J.size_distribution(c, "philly_rfold_jobs", buckets="helios")
    rfold = lake_rows(data_root, "philly_rfold_jobs")["num_gpus"]
    assert dict(zip(helios_sizes["key"], helios_sizes["jobs"]))["3-4"] == sum(2 < g <= 4 for g in rfold) == 5487


def test_real_helios_capacity_only(traces: Path, data_root, con) -> None:
    run_source("helios_2020", traces / "helios", data_root=data_root.root)
    c = con()
    sept1 = 153 * 86400.0  # 2020-09-01 00:00 China time, 153 days after the origin
    venus = U.capacity(c, "helios", cluster="Venus")
    both = U.capacity(c, "helios")
    assert venus.filter(venus["time_s"] == sept1)["capacity_gpus"].to_list() == [1064.0]
    assert both.filter(both["time_s"] == sept1)["capacity_gpus"].to_list() == [1064.0 + 1144.0]
    with pytest.raises(NotAvailable, match="no 'jobs' table"):
        U.allocation_series(c, "helios")
    assert U.characterize_utilization(c, "helios")["allocation"].startswith("not available")


# ------------------------------------------------------------------------------ Helios fixture

HELIOS_HEADER = "job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue"
VENUS_LOG = [
    "1,uA,vcA,1,4,1,COMPLETED,2020-04-01 00:00:00,2020-04-01 00:00:30,2020-04-01 00:02:15,105,30",
    "2,uA,vcA,4,16,1,FAILED,2020-04-01 00:00:10,2020-04-01 00:01:00,2020-04-01 00:01:40,40,50",
    "3,uB,vcB,8,32,1,COMPLETED,2020-04-01 23:58:00,2020-04-01 23:59:00,2020-04-02 00:01:30,150,60",  # spans midnight
    "4,uB,vcB,0,8,1,COMPLETED,2020-04-01 12:00:00,2020-04-01 12:00:00,2020-04-01 13:00:00,3600,0",  # CPU-only
    "5,uC,vcA,2,8,1,CANCELLED,2020-04-01 00:05:00,,,,",  # cancelled before it started
    "6,uC,vcB,2,8,1,RUNNING,2020-04-02 00:00:00,2020-04-02 00:00:20,,,20",  # runs to the last event (00:01:30)
]
EARTH_LOG = [f"{10 + k},u{'DEFGHIJ'[k]},vcA,1,4,1,COMPLETED,2020-04-01 10:00:00,2020-04-01 10:00:00,"
             "2020-04-01 10:01:00,60,0" for k in range(7)]  # vcA again: another VC with the same id
VENUS_CAPACITY = "date,vcA,vcB,total\n2020-04-01,8,8,16\n2020-04-02,8,16,24\n"


@pytest.fixture
def helios(tmp_path: Path, data_root, con):
    for cluster, lines in (("Venus", VENUS_LOG), ("Earth", EARTH_LOG)):
        (tmp_path / "helios" / cluster).mkdir(parents=True)
        (tmp_path / "helios" / cluster / "cluster_log.csv").write_text("\n".join([HELIOS_HEADER, *lines]) + "\n")
    (tmp_path / "helios" / "Venus" / "cluster_gpu_number.csv").write_text(VENUS_CAPACITY)
    run_source("helios_2020", tmp_path / "helios", data_root=data_root.root)
    return con()


def test_helios_fixture_series(helios) -> None:
    s = U.utilization_series(helios, "helios", cluster="Venus")
    assert s.height == 1442 and s["time_s"][0] == 0.0 and s["time_s"][-1] == 1441 * 60.0
    nonzero = {int(t // 60): g for t, g in zip(s["time_s"], s["gpus"]) if g}
    assert nonzero == pytest.approx({
        0: 0.5,  # job 1 from 00:00:30
        1: 1 + 4 * 40 / 60,  # job 1, and job 2 for 40 s
        2: 0.25,  # job 1 until 00:02:15
        1439: 8.0,  # job 3 from 23:59
        1440: 8 + 2 * 40 / 60,  # job 3; job 6 from 00:00:20 (the next day)
        1441: 8 / 2 + 2 * 30 / 60,  # job 3 until 00:01:30, which is also the last event: job 6 stops there
    }, abs=1e-12)
    caps = dict(zip((s["time_s"] // 60).cast(int), s["capacity_gpus"]))
    assert (caps[0], caps[1439], caps[1440], caps[1441]) == (16.0, 16.0, 24.0, 24.0)  # the day's total from midnight
    assert s.filter(s["time_s"] == 60.0)["utilization"][0] == pytest.approx((1 + 4 * 40 / 60) / 16)
    assert s.filter(s["time_s"] == 1440 * 60.0)["utilization"][0] == pytest.approx((8 + 80 / 60) / 24)
    assert s["time"][1440].isoformat() == "2020-04-02T00:00:00+08:00"
    touch = U.allocation_series(helios, "helios", cluster="Venus", mode="touch")
    assert {int(t // 60): g for t, g in zip(touch["time_s"], touch["gpus"]) if g} == {
        0: 1, 1: 5, 2: 1, 1439: 8, 1440: 10, 1441: 10}

    hours = U.diurnal_profile(s)
    h0, h23 = hours.row(0, named=True), hours.row(23, named=True)
    assert (h0["bins"], h23["bins"]) == (62, 60)  # 60 minutes of April 1 + 2 of April 2
    assert h0["gpus"] == pytest.approx((0.5 + 1 + 8 / 3 + 0.25 + 8 + 4 / 3 + 5) / 62)
    assert h23["gpus"] == pytest.approx(8 / 60) and h23["utilization"] == pytest.approx(8 / 60 / 16)
    month = U.monthly_trend(s).row(0, named=True)
    assert (month["month"], month["bins"]) == ("2020-04", 1442)
    assert month["gpu_hours"] == pytest.approx((105 + 160 + 1200 + 2 * 70) / 3600)
    days = U.single_multi_share(s)
    assert [d.isoformat() for d in days["period"]] == ["2020-04-01T00:00:00+08:00", "2020-04-02T00:00:00+08:00"]
    assert days["single_share"].to_list() == pytest.approx([105 / (105 + 160 + 480), 0.0])

    both = U.utilization_series(helios, "helios")  # Earth has no capacity file: no utilization for the pair
    assert both["utilization"].null_count() == both.height
    assert both.filter(both["time_s"] == 600 * 60.0)["gpus"][0] == 7.0  # the seven Earth jobs at 10:00
    summary = U.characterize_utilization(helios, "helios", cluster="Venus")
    assert summary["gpu_hours"] == pytest.approx((105 + 160 + 1200 + 140) / 3600)
    assert summary["diurnal"] == {"by": "utilization", "peak_hour": 0, "trough_hour": 1, "peak_over_trough": None}
    assert summary["utilization"]["share_of_bins_above_1"] == 0.0
    json.dumps(summary)


def test_helios_fixture_jobs(helios) -> None:
    status = J.status_shares(helios, "helios", cluster="Venus")
    total = 105 + 160 + 1200  # GPU-seconds of jobs with a run time (6 is still running, 5 never ran)
    assert {r[1]: r[2:] for r in status.rows()} == {
        "completed": (2, 0.4, 1305.0, pytest.approx(1305 / total)), "failed": (1, 0.2, 160.0, pytest.approx(160 / total)),
        "running": (1, 0.2, 0.0, 0.0), "cancelled": (1, 0.2, 0.0, 0.0)}
    assert status["status"].to_list() == ["completed", "failed", "cancelled", "running"]
    assert J.status_shares(helios, "helios", cluster="Venus", gpu_only=False)["jobs"].sum() == 6

    queue = J.queue_cdf(helios, "helios", by="group", quantiles=(0.5,))
    assert dict(zip(queue["key"], zip(queue["jobs"], queue["value_s"]))) == {
        "Venus/vcA": (2, 40.0), "Venus/vcB": (2, 40.0), "Earth/vcA": (7, 0.0)}  # VC ids are per cluster
    dur = J.duration_cdf(helios, "helios", by="size", quantiles=(0.5, 1.0))
    assert dur.rows() == [("1", 8, (105 + 420) / 8, 0.5, 60.0), ("1", 8, (105 + 420) / 8, 1.0, 105.0),
                          ("2-4", 1, 40.0, 0.5, 40.0), ("2-4", 1, 40.0, 1.0, 40.0),
                          ("5-8", 1, 150.0, 0.5, 150.0), ("5-8", 1, 150.0, 1.0, 150.0)]

    # users' GPU-seconds: uB 1200, uA 265, uD..uJ 60 each, uC 0 (its jobs never ran or have not ended)
    curve = J.concentration(helios, "helios", points=11)
    held = np.cumsum([1200, 265, *[60] * 7, 0]) / 1885
    assert curve["gpu_time_share"].to_numpy() == pytest.approx(np.concatenate([[0.0], held]), abs=1e-12)
    assert J.top_shares(helios, "helios") == pytest.approx({
        "entities": 10, "top_1": 1200 / 1885, "top_1pct": 0.1 * 1200 / 1885, "top_5pct": 0.5 * 1200 / 1885,
        "top_10pct": 1200 / 1885})
    vcs = J.top_shares(helios, "helios", by="group", fractions=(0.5,))
    assert vcs == pytest.approx({"entities": 3, "top_1": 1200 / 1885, "top_50pct": (1200 + 0.5 * 420) / 1885})

    ratio = J.user_completion_ratio(helios, "helios", quantiles=(0.1, 0.5))
    assert ratio.rows() == [(0.1, pytest.approx(0.45), 10, 0.85, 0.8, 0.1), (0.5, 1.0, 10, 0.85, 0.8, 0.1)]
    summary = J.characterize_jobs(helios, "helios", cluster="Venus")
    assert (summary["jobs"], summary["gpu_jobs"], summary["users"], summary["vcs"]) == (6, 5, 3, 2)
    assert summary["queue_s"]["p50"] == 40.0 and summary["status"]["by_jobs"]["completed"] == 0.4
    json.dumps(summary)


# ------------------------------------------------------------------------------ PAI fixture

def _hex(key: str, width: int) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:width]


J1, J2, J3, J4 = (_hex(f"job{k}", 24) for k in range(1, 5))
PAI = {
    "pai_job_table": [f"{J1},{_hex('i1', 60)},{_hex('u1', 12)},Terminated,1000.0,2000.0",
                      f"{J2},{_hex('i2', 60)},{_hex('u1', 12)},Terminated,1000.0,3000.0",
                      f"{J3},{_hex('i3', 60)},{_hex('u2', 12)},Failed,1200.0,1500.0",
                      f"{J4},{_hex('i4', 60)},{_hex('u2', 12)},Waiting,1300.0,"],
    "pai_task_table": [f"{J1},tensorflow,1.0,Terminated,1100.0,1900.0,400.0,10.0,50.0,V100",
                       f"{J2},worker,2.0,Terminated,1300.0,2900.0,400.0,10.0,100.0,T4",
                       f"{J3},worker,1.0,Failed,1210.0,1500.0,400.0,10.0,100.0,V100",
                       f"{J4},tensorflow,1.0,Waiting,0,,400.0,10.0,100.0,V100"],
    # cpu_usage (%), gpu_wrk_util (%), avg_mem, max_mem (GB); then GPU memory and network columns
    "pai_sensor_table": [f"{J1},tensorflow,{_hex('w1', 60)},{_hex('i1', 60)},m1,/dev/nvidia0,200,25,5,12,1,1,1,1,1,1",
                         f"{J2},worker,{_hex('w2', 60)},{_hex('i2', 60)},m2,/dev/nvidia0,300,100,10,10,1,1,1,1,1,1",
                         f"{J2},worker,{_hex('w3', 60)},{_hex('i2', 60)},m2,/dev/nvidia1,100,150,2,3,1,1,1,1,1,1",
                         f"{J3},worker,{_hex('w4', 60)},{_hex('i3', 60)},m1,/dev/nvidia1,400,10,20,20,1,1,1,1,1,1"],
}


def test_pai_fixture_usage_and_waits(tmp_path: Path, data_root, con) -> None:
    folder = tmp_path / "pai"
    folder.mkdir()
    for table, lines in PAI.items():
        (folder / f"{table}.csv").write_text("\n".join(lines) + "\n")
    run_source("alibaba_pai_2020", folder, data_root=data_root.root, verify=False)
    c = con()
    usage = {r["resource"]: r for r in U.pai_request_vs_usage(c).iter_rows(named=True)}
    # requests: 4 cores, 10 GB, 0.5 GPU (J1) or 1 GPU per instance
    assert usage["cpu"]["instances"] == 4 and usage["cpu"]["share_below_request"] == 0.75  # 2, 3, 1 < 4; 4 is not
    assert usage["cpu"]["ratio_p50"] == pytest.approx(0.625)  # ratios 0.5, 0.75, 0.25, 1.0
    assert usage["gpu"]["share_below_request"] == 0.5  # 0.25 < 0.5 and 0.1 < 1; 1.0 and 1.5 are not
    assert usage["gpu"]["used_mean"] == pytest.approx((0.25 + 1.0 + 1.5 + 0.1) / 4)
    assert usage["mem"]["share_below_request"] == 0.5 and usage["mem_peak"]["share_below_request"] == 0.25
    by_type = U.wait_by_request(c, by="gpu_type", quantiles=(0.5,))
    assert dict(zip(by_type["key"], by_type["value_s"])) == {"V100": 55.0, "T4": 300.0}  # J1 100, J3 10; J2 300
    by_size = U.wait_by_request(c, quantiles=(0.5,))
    assert by_size.select("key", "jobs", "value_s").rows() == [("<1", 1, 100.0), ("1", 1, 10.0), ("2-4", 1, 300.0)]
    assert trace_info(c, "alibaba_pai_2020").wall_clock is False
    with pytest.raises(NotAvailable, match="no wall clock"):
        U.diurnal_profile(U.allocation_series(c, "alibaba_pai_2020"))


# ------------------------------------------------------------------------------ Philly fixture

def _philly_job(jobid: str, status: str, start: str, end: str, ip: str, gpus: list[int]) -> dict:
    return {"status": status, "vc": "v1", "jobid": jobid, "user": "u1", "submitted_time": "2017-10-03 00:00:00",
            "attempts": [{"start_time": start, "end_time": end,
                          "detail": [{"ip": ip, "gpus": [f"gpu{k}" for k in gpus]}]}]}


PHILLY_JOBS = [
    _philly_job("application_1", "Pass", "2017-10-03 00:00:00", "2017-10-03 00:03:00", "m1", [0, 1]),
    _philly_job("application_2", "Failed", "2017-10-03 00:00:00", "2017-10-03 00:02:00", "m1", [2]),
    _philly_job("application_3", "Killed", "2017-10-03 00:01:00", "2017-10-03 00:02:00", "m2", [0, 1, 2, 3]),
]
PHILLY_GPU_UTIL = "time,machineId," + ",".join(f"gpu{k}_util" for k in range(8)) + "\n" + "".join(
    f"2017-10-03 00:0{minute} PDT,{machine},{values},\n" for minute, machine, values in [
        ("0:00", "m1", "10,20,90,0,0,0,0,0"), ("1:00", "m1", "30,40,80,0,0,0,0,0"),
        ("2:00", "m1", "50,60,NA,0,0,0,0,0"), ("3:00", "m1", "70,80,0,0,0,0,0,0"),
        ("1:00", "m2", "100,100,0,0,0,0,0,0"), ("2:00", "m2", "50,50,50,10,0,0,0,0")])


def test_philly_fixture_measured_gpu_utilization(tmp_path: Path, data_root, con) -> None:
    folder = tmp_path / "trace-data"
    folder.mkdir()
    (folder / "cluster_job_log").write_text(json.dumps(PHILLY_JOBS))
    (folder / "cluster_gpu_util").write_text(PHILLY_GPU_UTIL)
    (folder / "cluster_machine_list").write_text("machineId, number of GPUs, single GPU mem\nm1,8, 24GB\nm2,8, 24GB\n")
    run_source("philly", folder, data_root=data_root.root, verify=False)
    c = con()
    by_status = U.gpu_util_by_job(c, by="status", quantiles=(0.5,))
    # job 1: GPUs 0-1 of m1 from 00:00 to 00:03 (8 samples); job 2: GPU 2 of m1, 00:00-00:02 (NA skipped);
    # job 3: GPUs 0-3 of m2 at 00:01 and 00:02
    assert by_status.rows() == [("completed", 1, 8, 45.0, 45.0, 45.0), ("failed", 1, 2, 85.0, 85.0, 85.0),
                                ("killed", 1, 8, 45.0, 45.0, 45.0)]
    by_size = U.gpu_util_by_job(c, by="size", quantiles=(0.5,))
    assert by_size.rows() == [("1", 1, 2, 85.0, 85.0, 85.0), ("2-4", 2, 16, 45.0, 45.0, 45.0)]
    s = U.utilization_series(c, "philly")  # capacity: the machine list's 16 GPUs
    assert s.select("gpus", "capacity_gpus").rows() == [(3.0, 16.0), (7.0, 16.0), (2.0, 16.0)]
    assert s["time"][0].isoformat() == "2017-10-03T00:00:00-07:00"
