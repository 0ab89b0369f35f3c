"""`tracelab replay` (serve, sweep, capacity, policies) and replay.sweep, on small generated workloads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ingest.cli import run_app
from replay.harness import ServeConfig
from replay.sources import WorkloadSpec, load_workload
from replay.sweep import capacity_search, expand_grid, scaled, sweep, sweep_id
from tests.cli_helpers import flat, replay
from tracelab.cli import app

SMALL = ["--num-requests", "200", "--model", "llama-3-8b"]
"""A generated workload of 200 requests (each run well under a second)."""




def small_config(**changes) -> ServeConfig:
    return replace(ServeConfig(workload=WorkloadSpec(num_requests=200), model="llama-3-8b"), **changes)


# -- serve -------------------------------------------------------------------------------------------

def test_serve_writes_a_run_and_prints_the_summary(tmp_path: Path) -> None:
    result = replay("serve", *SMALL, "--rate-scale", "2", "--data", str(tmp_path))
    assert result.exit_code == 0, result.output
    (run,) = [p for p in (tmp_path / "results").iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "requests.parquet", "steps.parquet", "summary.json"]
    for words in ("TTFT", "TBT", "E2E", "SLO attainment", "preemptions", "rejected by reason", run.name):
        assert words in result.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["workload"]["rate_scale"] == 2.0 and config["policy"] == "fcfs" and config["model"] == "llama-3-8b"

    as_json = replay("serve", *SMALL, "--rate-scale", "2", "--data", str(tmp_path), "--json")
    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.stdout)
    assert printed["run_id"] == run.name
    assert printed["summary"] == json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--policy", "nope"], 2, ["unknown queue policy 'nope'", "fcfs", "sjf"]),
    (["--router", "nope", "--replicas", "2"], 2, ["unknown router 'nope'", "round_robin"]),
    (["--model", "gpt-17"], 2, ["unknown model 'gpt-17'", "Llama-3-8B"]),
    (["--gpu", "tpu"], 2, ["unknown GPU 'tpu'", "H100"]),
    (["--policy", "sjf"], 2, ["sjf", "--predictor", "--oracle-lengths"]),
    (["--predictor", "oracle"], 2, ["--oracle-lengths"]),
    (["--rate-scale", "0"], 2, ["rate_scale must be finite and > 0"]),
    (["--trace", "azure_llm_2023_conv"], 3, ["not in the lake", "ingest run azure_llm_2023"]),
])
def test_serve_errors_are_one_clear_line(tmp_path: Path, args: list[str], code: int, words: list[str]) -> None:
    result = replay("serve", *SMALL, *args, "--data", str(tmp_path))
    assert result.exit_code == code, result.output
    for w in words:
        assert w in flat(result.stderr)
    assert not (tmp_path / "results").exists()


def test_tracelab_entry_point_maps_errors_to_one_line(tmp_path: Path, capsys) -> None:
    code = run_app(app, ["replay", "serve", "--policy", "nope", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: unknown queue policy 'nope'") and err.count("\n") == 1
    assert run_app(app, ["replay", "serve", "--trace", "nowhere", "--data", str(tmp_path)]) == 3


def test_serve_oracle_is_explicit_and_recorded(tmp_path: Path) -> None:
    result = replay("serve", *SMALL, "--policy", "sjf", "--oracle-lengths", "--data", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    run = tmp_path / "results" / json.loads(result.stdout)["run_id"]
    config = json.loads((run / "config.json").read_text())
    assert config["predictor"] == "oracle" and config["oracle_lengths"] is True
    assert "ORACLE" in replay("serve", *SMALL, "--policy", "sjf", "--oracle-lengths", "--data", str(tmp_path)).stdout


# -- sweep -------------------------------------------------------------------------------------------

SWEEP = ["sweep", *SMALL, "--policies", "fcfs,sjf", "--rate-scales", "1,4", "--oracle-lengths"]


def test_sweep_table_is_the_same_in_process_and_in_a_pool(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    a = replay(*SWEEP, "--workers", "1", "--data", str(one))
    assert a.exit_code == 0, a.output
    b = replay(*SWEEP, "--workers", "2", "--data", str(two))
    assert b.exit_code == 0, b.output
    (ta,) = (one / "results" / "sweeps").glob("*.parquet")
    (tb,) = (two / "results" / "sweeps").glob("*.parquet")
    assert ta.name == tb.name  # the sweep id is a hash of the config list
    rows_a, rows_b = pq.read_table(ta).to_pylist(), pq.read_table(tb).to_pylist()
    assert rows_a == rows_b
    assert [(r["policy"], r["rate_scale"], r["oracle_lengths"]) for r in rows_a] == [
        ("fcfs", 1.0, False), ("fcfs", 4.0, False), ("sjf", 1.0, True), ("sjf", 4.0, True)]
    assert len({r["run_id"] for r in rows_a}) == 4
    for r in rows_a:
        assert (one / "results" / r["run_id"] / "summary.json").is_file()
        assert (two / "results" / r["run_id"] / "summary.json").is_file()
        assert r["run_id"] in a.stdout
        assert 0 <= r["slo_attainment"] <= 1 and r["offered_requests_per_s"] > 0
    sidecar = json.loads(ta.with_suffix(".json").read_text())
    assert sidecar["rows"] == rows_a and len(sidecar["configs"]) == 4


def test_sweep_refuses_a_silent_oracle(tmp_path: Path) -> None:
    result = replay("sweep", *SMALL, "--policies", "fcfs,srpt", "--data", str(tmp_path))
    assert result.exit_code == 2
    assert "srpt" in flat(result.stderr) and "--oracle-lengths" in flat(result.stderr)
    bad = replay("sweep", *SMALL, "--rate-scales", "1,x", "--data", str(tmp_path))
    assert bad.exit_code == 2 and "--rate-scales" in flat(bad.stderr)


def test_expand_grid_order_and_oracle_rule() -> None:
    base = small_config()
    grid = expand_grid(base, policy=["fcfs", "sjf"], rate_scale=[1, 2], num_replicas=[1, 2], oracle=True)
    assert len(grid) == 8
    assert [(c.policy, c.workload.rate_scale, c.num_replicas) for c in grid[:3]] == [
        ("fcfs", 1, 1), ("fcfs", 1, 2), ("fcfs", 2, 1)]
    assert all(c.oracle_lengths == (c.policy == "sjf") for c in grid)
    assert all((c.predictor == "oracle") == (c.policy == "sjf") for c in grid)
    assert expand_grid(base) == [base]
    with pytest.raises(ValueError, match="predictor.*oracle=True"):
        expand_grid(base, policy=["fcfs", "sjf"])
    with pytest.raises(ValueError, match="unknown sweep axis bogus"):
        expand_grid(base, bogus=[1])
    with pytest.raises(ValueError, match="has no values"):
        expand_grid(base, policy=[])
    with pytest.raises(ValueError, match="unknown queue policy"):
        expand_grid(base, policy=["nope"])


def test_a_rate_scale_is_the_unit_workload_with_scaled_arrivals() -> None:
    spec = WorkloadSpec(num_requests=300, start_s=3.0, duration_s=40.0, sample_fraction=0.7, seed=5)
    unit = load_workload(spec)
    for rate in (0.5, 1.0, 3.0, 7.3):
        direct = load_workload(replace(spec, rate_scale=rate))
        assert np.array_equal(scaled(unit, rate).arrival_s, direct.arrival_s)  # bit for bit
        assert np.array_equal(scaled(unit, rate).output_tokens, direct.output_tokens)


def test_sweep_api_keeps_config_order_and_runs_duplicates_once(tmp_path: Path) -> None:
    configs = expand_grid(small_config(), rate_scale=[4, 1, 4])
    seen: list[int] = []
    rows = sweep(configs, workers=1, data_root=tmp_path, on_result=lambda i, row: seen.append(i))
    assert [r["rate_scale"] for r in rows] == [4, 1, 4]
    assert rows[0] == rows[2] and rows[0]["run_id"] != rows[1]["run_id"]
    assert sorted(seen) == [0, 1, 2]
    assert (tmp_path / "results" / "sweeps" / f"{sweep_id(configs)}.parquet").is_file()
    assert sweep_id(configs[:2]) != sweep_id(configs[1::-1])


# -- capacity ----------------------------------------------------------------------------------------

def test_capacity_finds_the_crossing(tmp_path: Path) -> None:
    result = replay("capacity", *SMALL, "--min-attainment", "0.9", "--data", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    res = json.loads(result.stdout)
    best, bad = res["max_rate_scale"], res["failing_rate_scale"]
    assert res["converged"] and best is not None and bad is not None
    assert bad > best and bad - best <= res["tol"] * best
    by_rate = {p["rate_scale"]: p for p in res["probes"]}
    assert by_rate[best]["slo_attainment"] >= 0.9 and by_rate[best]["passed"]
    assert by_rate[bad]["slo_attainment"] < 0.9 and not by_rate[bad]["passed"]
    assert res["requests_per_s"] == by_rate[best]["requests_per_s"] > 0
    ordered = [by_rate[r]["passed"] for r in sorted(by_rate)]
    assert ordered == sorted(ordered, reverse=True)  # this fixture is monotone: passes, then fails
    for p in res["probes"]:
        assert (tmp_path / "results" / p["run_id"] / "summary.json").is_file()
    text = replay("capacity", *SMALL, "--max-runs", "3", "--data", str(tmp_path))
    assert text.exit_code == 0 and "capacity: rate scale" in text.stdout


def test_capacity_search_brackets_downward_and_reports_no_answer() -> None:
    config = small_config()
    down = capacity_search(config, lo=64.0, tol=0.1, write=False)
    assert down["probes"][0]["rate_scale"] == 64.0 and not down["probes"][0]["passed"]
    assert down["converged"] and down["max_rate_scale"] < 64
    hopeless = capacity_search(replace(config, slo_ttft_s=1e-6), max_runs=3, write=False)
    assert hopeless["max_rate_scale"] is None and hopeless["requests_per_s"] is None
    assert [p["rate_scale"] for p in hopeless["probes"]] == [1.0, 0.5, 0.25]


# -- policies ----------------------------------------------------------------------------------------

def test_policies_lists_the_registries() -> None:
    result = replay("policies")
    assert result.exit_code == 0, result.output
    for name in ("fcfs", "sjf", "srpt", "mlfq", "last_admitted", "round_robin", "kv_aware", "roofline",
                 "Llama-3-8B", "H100-SXM"):
        assert name in result.stdout
