"""The replay harness's input and output sides: workloads from the lake or the generator, metrics, run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.pipeline import run_source
from replay.metrics import SloSpec, latency_columns, summarize, tbt_stats
from replay.sinks import read_run, results_root, run_id, write_run
from replay.sources import (
    HASH_BLOCK_TOKENS_BY_SOURCE, INGEST_SOURCE_HINTS, TraceNotFoundError, WorkloadSpec, generate_workload, load_workload,
)

# Azure 2024 format: (seconds after the start, prompt, output); line order is the request id.
ROWS = [(0.0, 10, 5), (1.0, 20, 6), (1.0, 30, 7), (2.5, 0, 8), (3.0, 40, 0), (4.0, 50, 9), (6.5, 60, 10), (9.0, 70, 11)]
TRACE = "azure_llm_2024_conv"


@pytest.fixture
def lake(tmp_path: Path, data_root) -> Path:
    """A data root holding one tiny trace, ingested by the real pipeline from an upstream-format CSV."""
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for t, p, o in ROWS:
        lines.append(f"2024-05-12 00:00:{int(t):02d}.{round((t % 1) * 1e6):06d}+00:00,{p},{o}")
    src = tmp_path / "in"
    src.mkdir()
    (src / "AzureLLMInferenceTrace_conv_1week.csv").write_text("\n".join(lines) + "\n")
    run_source("azure_llm_2024", src, data_root=data_root.root)
    return data_root.root


def test_load_whole_trace(lake: Path) -> None:
    w = load_workload(WorkloadSpec(TRACE), lake)
    assert len(w) == 6 and w.trace == TRACE
    assert w.request_id.tolist() == ["0", "1", "2", "5", "6", "7"]  # ties keep file order; 3 and 4 excluded
    assert w.arrival_s.tolist() == [0.0, 1.0, 1.0, 4.0, 6.5, 9.0]
    assert w.prompt_tokens.tolist() == [10, 20, 30, 50, 60, 70] and w.output_tokens.tolist() == [5, 6, 7, 9, 10, 11]
    assert w.excluded == {"prompt_tokens<=0": 1, "output_tokens<=0": 1}
    assert (w.arrival_s.dtype, w.prompt_tokens.dtype, w.output_tokens.dtype, w.priority.dtype) == (
        np.float64, np.int64, np.int64, np.int64)
    assert w.priority.tolist() == [0] * 6 and w.session_id is None and w.prefix_hashes is None and w.hash_block_tokens == 0


def test_window_rate_scale_and_max(lake: Path) -> None:
    w = load_workload(WorkloadSpec(TRACE, start_s=2.0, duration_s=5.0), lake)  # [2, 7)
    assert w.request_id.tolist() == ["5", "6"] and w.arrival_s.tolist() == [2.0, 4.5]
    assert w.excluded == {"prompt_tokens<=0": 1, "output_tokens<=0": 1}
    w = load_workload(WorkloadSpec(TRACE, start_s=2.0, duration_s=5.0, rate_scale=2.0), lake)
    assert w.arrival_s.tolist() == [1.0, 2.25]
    w = load_workload(WorkloadSpec(TRACE, start_s=5.0), lake)
    assert w.excluded == {} and w.arrival_s.tolist() == [1.5, 4.0]
    w = load_workload(WorkloadSpec(TRACE, max_requests=3), lake)
    assert w.request_id.tolist() == ["0", "1", "2"]
    assert len(load_workload(WorkloadSpec(TRACE, start_s=100.0), lake)) == 0


def test_sample_is_deterministic_and_window_stable() -> None:
    base = dict(num_requests=5000, rate_per_s=50.0)
    full = generate_workload(WorkloadSpec(**base, sample_fraction=0.3, seed=7))
    again = generate_workload(WorkloadSpec(**base, sample_fraction=0.3, seed=7))
    assert np.array_equal(full.request_id, again.request_id) and np.array_equal(full.arrival_s, again.arrival_s)
    assert 0.27 < len(full) / 5000 < 0.33
    # a window keeps exactly the sampled requests that fall in it
    windowed = generate_workload(WorkloadSpec(**base, sample_fraction=0.3, seed=7, start_s=20.0, duration_s=40.0))
    unsampled = generate_workload(WorkloadSpec(**base, seed=7))
    in_window = unsampled.request_id[(unsampled.arrival_s >= 20.0) & (unsampled.arrival_s < 60.0)]
    assert set(windowed.request_id) == set(full.request_id) & set(in_window)
    other = generate_workload(WorkloadSpec(num_requests=5000, rate_per_s=50.0, sample_fraction=0.3, seed=7, max_requests=10))
    assert other.request_id.tolist() == full.request_id[:10].tolist()


def test_missing_trace_names_it_and_the_ingest_command(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(TraceNotFoundError) as err:
        load_workload(WorkloadSpec("azure_llm_2023_code"), lake)
    msg = str(err.value)
    assert "'azure_llm_2023_code'" in msg and "ingest run azure_llm_2023" in msg and TRACE in msg
    with pytest.raises(TraceNotFoundError, match=r"ingest run <source>.*available requests traces: none"):
        load_workload(WorkloadSpec("nope"), tmp_path / "empty")


def test_hint_tables_name_registered_sources() -> None:
    from ingest.sources import registry

    names = {s.name for s in registry()}
    assert set(INGEST_SOURCE_HINTS.values()) <= names and set(HASH_BLOCK_TOKENS_BY_SOURCE) <= names


def test_real_azure_2023_conv(traces: Path, data_root) -> None:
    run_source("azure_llm_2023", traces / "azure_llm_2023", data_root=data_root.root)
    w = load_workload(WorkloadSpec("azure_llm_2023_conv"), data_root.root)
    assert len(w) == 19_366 and w.excluded == {}
    assert w.arrival_s[0] == 0.0 and np.all(np.diff(w.arrival_s) >= 0)
    fast = load_workload(WorkloadSpec("azure_llm_2023_conv", rate_scale=2.0), data_root.root)
    assert fast.arrival_s[-1] == pytest.approx(w.arrival_s[-1] / 2) and np.array_equal(fast.request_id, w.request_id)
    assert (np.median(w.prompt_tokens), np.median(w.output_tokens)) == (1020, 129)


def test_real_mooncake_prefix_hashes(traces: Path, data_root) -> None:
    run_source("mooncake_fast25", traces / "mooncake", data_root=data_root.root)
    w = load_workload(WorkloadSpec("mooncake_conversation"), data_root.root)
    assert len(w) == 12_031 and w.hash_block_tokens == 512
    assert all(h.dtype == np.int64 for h in w.prefix_hashes)
    blocks = np.array([len(h) for h in w.prefix_hashes])
    assert np.array_equal(blocks, -(-w.prompt_tokens // 512))  # one id per started 512-token block


def test_generated_statistics() -> None:
    w = generate_workload(WorkloadSpec(num_requests=20_000, rate_per_s=10.0, seed=3))
    gaps = np.diff(w.arrival_s)
    assert w.arrival_s[0] == 0.0 and gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert np.median(w.prompt_tokens) == pytest.approx(1020, rel=0.05)
    assert np.median(w.output_tokens) == pytest.approx(129, rel=0.05)
    assert w.prompt_tokens.min() >= 1 and w.prompt_tokens.max() <= 14_000 and w.output_tokens.max() <= 1000
    bursty = generate_workload(WorkloadSpec(num_requests=20_000, rate_per_s=10.0, arrival="gamma", arrival_cv=3.0))
    gaps = np.diff(bursty.arrival_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.1) and gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)
    same = generate_workload(WorkloadSpec(num_requests=20_000, rate_per_s=10.0, seed=3))
    assert np.array_equal(same.arrival_s, w.arrival_s) and np.array_equal(same.output_tokens, w.output_tokens)
    assert not np.array_equal(generate_workload(WorkloadSpec(num_requests=100, seed=4)).output_tokens, w.output_tokens[:100])


@pytest.mark.parametrize("kwargs", [
    {"sample_fraction": 0.0}, {"sample_fraction": 1.5}, {"rate_scale": 0.0}, {"duration_s": 0.0}, {"start_s": -1.0},
    {"max_requests": 0}, {"seed": -1}, {"arrival": "weibull"}, {"arrival_cv": 2.0}, {"output_median_tokens": 0.5},
    {"trace": ""}, {"rate_per_s": float("inf")},
])
def test_spec_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        WorkloadSpec(**kwargs)


def _requests() -> dict[str, np.ndarray]:
    """Four finished requests and one rejected one, with hand-picked latencies."""
    nan = math.nan
    arrival = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    sched = np.array([0.05, 1.1, 2.2, 3.3, nan])
    first = np.array([0.1, 1.2, 2.3, 3.4, nan])
    finish = np.array([2.0, 3.0, 5.0, 6.0, nan])
    generated = np.array([10, 20, 5, 1, 0])
    cols = {
        "request_id": np.array(["a", "b", "c", "d", "e"], dtype=object), "arrival_s": arrival,
        "prompt_tokens": np.array([100, 200, 300, 400, 500]), "output_tokens": np.array([10, 20, 5, 1, 9]),
        "status": np.array(["finished"] * 4 + ["rejected"], dtype=object),
        "reject_reason": np.array([None] * 4 + ["too_long"], dtype=object),
        "first_scheduled_s": sched, "first_token_s": first, "finish_s": finish, "num_generated_tokens": generated,
        "num_preemptions": np.array([0, 2, 1, 0, 0]), "prefix_hit_tokens": np.zeros(5, np.int64),
        "tbt_p50_s": np.array([0.01, 0.03, 0.02, nan, nan]), "tbt_p90_s": np.array([0.01, 0.05, 0.02, nan, nan]),
        "tbt_p99_s": np.array([0.01, 0.06, 0.02, nan, nan]), "tbt_max_s": np.array([0.01, 0.07, 0.02, nan, nan]),
    }
    cols.update(latency_columns(arrival, sched, first, finish, generated))
    return cols


STEPS = {
    "step": np.array([0, 1]), "start_s": np.array([0.0, 1.0]), "duration_s": np.array([1.0, 3.0]),
    "num_seqs": np.array([2, 4]), "num_decodes": np.array([0, 3]), "num_prefill_tokens": np.array([300, 100]),
    "num_tokens": np.array([300, 103]), "kv_blocks_used": np.array([10, 50]), "kv_blocks_total": np.array([100, 100]),
    "num_waiting": np.array([1, 0]), "num_preempted": np.array([0, 1]),
}


def test_latency_helpers() -> None:
    cols = _requests()
    assert cols["ttft_s"][:4] == pytest.approx([0.1, 0.2, 0.3, 0.4]) and math.isnan(cols["ttft_s"][4])
    assert cols["tpot_s"][:3] == pytest.approx([1.9 / 9, 1.8 / 19, 2.7 / 4]) and math.isnan(cols["tpot_s"][3])
    assert tbt_stats(np.array([0.0, 0.1, 0.3, 0.4])) == pytest.approx(
        {"tbt_p50_s": 0.1, "tbt_p90_s": 0.18, "tbt_p99_s": 0.198, "tbt_max_s": 0.2})
    assert all(math.isnan(v) for v in tbt_stats(np.array([1.0])).values())


def test_summarize_by_hand() -> None:
    s = summarize(_requests(), STEPS, SloSpec(ttft_s=0.35, tbt_s=0.05))
    json.dumps(s, allow_nan=False)
    assert (s["num_arrived"], s["num_finished"], s["num_rejected"], s["num_unfinished"]) == (5, 4, 1, 0)
    assert s["rejected_by_reason"] == {"too_long": 1} and s["num_preemptions"] == 3
    # ttft over finished = [0.1, 0.2, 0.3, 0.4]: linear percentiles
    assert (s["ttft_p50_s"], s["ttft_p90_s"], s["ttft_p99_s"], s["ttft_mean_s"]) == pytest.approx((0.25, 0.37, 0.397, 0.25))
    assert s["tbt_p99_p50_s"] == pytest.approx(0.02) and s["tbt_p99_p99_s"] == pytest.approx(0.0592)  # [.01,.02,.06]: .02 + .98 * .04
    assert s["makespan_s"] == 6.0
    assert s["output_tokens_per_s"] == pytest.approx(36 / 6) and s["total_tokens_per_s"] == pytest.approx(1036 / 6)
    assert s["requests_per_s"] == pytest.approx(4 / 6)
    # met: a (ttft .1, tbt .01) and c (.3, .02); b misses TBT, d misses TTFT, e was rejected
    assert s["num_slo_met"] == 2 and s["slo_attainment"] == pytest.approx(0.4)
    assert s["goodput_requests_per_s"] == pytest.approx(2 / 6)
    assert s["kv_utilization_mean"] == pytest.approx((0.1 * 1 + 0.5 * 3) / 4) and s["kv_utilization_max"] == 0.5
    assert s["mean_num_seqs"] == pytest.approx((2 * 1 + 4 * 3) / 4) and s["num_steps"] == 2
    with_e2e = summarize(_requests(), STEPS, SloSpec(ttft_s=0.35, tbt_s=0.05, e2e_s=2.5))
    assert with_e2e["num_slo_met"] == 1 and with_e2e["slo_e2e_s"] == 2.5  # c took 3 s


def test_summarize_empty_and_nothing_finished() -> None:
    empty = {k: np.array(v[:0]) for k, v in _requests().items()}
    s = summarize(empty, {k: v[:0] for k, v in STEPS.items()}, SloSpec(1.0, 0.1))
    json.dumps(s, allow_nan=False)
    assert s["num_arrived"] == 0 and s["ttft_p99_s"] is None and s["makespan_s"] is None
    assert s["slo_attainment"] is None and s["kv_utilization_mean"] is None and s["mean_num_seqs"] is None
    rejected = {k: v[4:] for k, v in _requests().items()}
    s = summarize(rejected, {}, SloSpec(1.0, 0.1))
    assert s["slo_attainment"] == 0.0 and s["goodput_requests_per_s"] is None and s["e2e_mean_s"] is None


def test_run_id_is_canonical() -> None:
    a = {"workload": WorkloadSpec("x", seed=1), "slo": SloSpec(1.0, 0.1), "n": np.int64(3)}
    b = {"n": 3, "slo": {"e2e_s": None, "tbt_s": 0.1, "ttft_s": 1.0}, "workload": WorkloadSpec("x", seed=1)}
    assert run_id(a) == run_id(b) and len(run_id(a)) == 12
    assert run_id(a) != run_id({**a, "n": 4})


def _write(root: Path, config: dict) -> Path:
    req = _requests()
    return write_run(root, run_id(config), config, req, STEPS, summarize(req, STEPS, SloSpec(0.35, 0.05)))


def test_write_run_is_byte_deterministic_and_reads_back(tmp_path: Path) -> None:
    config = {"workload": WorkloadSpec(TRACE), "policy": "fcfs"}
    one, two = _write(tmp_path / "a", config), _write(tmp_path / "b", config)
    names = sorted(p.name for p in one.iterdir())
    assert names == ["config.json", "requests.parquet", "steps.parquet", "summary.json"]
    assert all((one / n).read_bytes() == (two / n).read_bytes() for n in names)
    before = {n: (one / n).read_bytes() for n in names}
    again = _write(tmp_path / "a", config)  # replaces the run in place
    assert again == one and {n: (one / n).read_bytes() for n in names} == before
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [one.name]
    rec = read_run(one)
    assert rec.config["policy"] == "fcfs" and rec.summary["num_slo_met"] == 2
    assert rec.requests.column("ttft_s").null_count == 1 and rec.requests.column("predicted_output_tokens").null_count == 5
    assert set(rec.requests.column("run_id").to_pylist()) == {one.name} and rec.steps.num_rows == 2
    assert pq.read_metadata(one / "requests.parquet").row_group(0).column(0).compression == "ZSTD"


def test_failed_write_leaves_no_partial_run(tmp_path: Path, monkeypatch) -> None:
    import replay.sinks as sinks

    config = {"policy": "fcfs"}
    real = pq.write_table

    def fail_on_steps(table, where, **kw):
        real(table, where, **kw)
        if Path(where).name == "steps.parquet":
            raise OSError("disk full")

    monkeypatch.setattr(sinks.pq, "write_table", fail_on_steps)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path, config)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(sinks.pq, "write_table", real)
    good = _write(tmp_path, config)
    kept = (good / "summary.json").read_bytes()
    monkeypatch.setattr(sinks.pq, "write_table", fail_on_steps)
    with pytest.raises(OSError):
        _write(tmp_path, config)
    assert [p.name for p in tmp_path.iterdir()] == [good.name] and (good / "summary.json").read_bytes() == kept


def test_bad_columns_are_refused_before_writing(tmp_path: Path) -> None:
    req = _requests()
    del req["status"]
    with pytest.raises(ValueError, match="status"):
        write_run(tmp_path / "r", "x1", {}, req, STEPS, {})
    with pytest.raises(ValueError, match="status must be one of"):
        write_run(tmp_path / "r", "x1", {}, {**_requests(), "status": np.array(["done"] * 5, dtype=object)}, STEPS, {})
    with pytest.raises(ValueError, match="plain folder name"):
        write_run(tmp_path / "r", "../x", {}, _requests(), STEPS, {})
    assert not (tmp_path / "r").exists() or list((tmp_path / "r").iterdir()) == []


def test_results_root_follows_the_data_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRACELAB_DATA", str(tmp_path / "d"))
    assert results_root() == (tmp_path / "d" / "results").resolve()
    assert results_root(tmp_path / "e") == (tmp_path / "e" / "results").resolve()
