"""Fleet layout search (replay.fleet.search) and the `tracelab replay fleet` / `fleet-search` commands: candidate
enumeration, the cheapest SLO-meeting row against brute force, the no-feasible-row message, the throughput
search's bracket on a small generated workload, Splitwise's ratios by hand, and CLI smoke tests with real figures."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from replay.cli import _fmt
from replay.fleet import search
from replay.fleet.harness import run_fleet
from replay.fleet.search import (OBJECTIVES, candidate_layouts, cheapest, evaluate, layout_label, max_throughput,
                                 meets, throughput_ratios, why_none)
from replay.harness import ServeConfig
from replay.metrics import SloSpec
from replay.sources import WorkloadSpec, load_workload
from replay.sweep import scaled
from tests.cli_helpers import flat, replay

SPEC = WorkloadSpec(num_requests=150, rate_per_s=8.0, seed=3)
SMALL = ["--num-requests", "150", "--gen-rate", "8", "--seed", "3"]
SLO = SloSpec(2.0, 0.2)


@pytest.fixture(scope="module")
def workload():
    return load_workload(SPEC)


@pytest.fixture(scope="module")
def rows(workload):
    """Every 2-GPU layout of H100 and A100, replayed at 4x the generated rate."""
    return evaluate(candidate_layouts(["h100", "a100"], 2), scaled(workload, 4.0), SLO)


# -- candidates --------------------------------------------------------------------------------------

def test_candidate_counts_splits_and_order() -> None:
    four = candidate_layouts(["h100", "a100"], 4)
    # 2 colocated + (2 same-type + 2 cross-type pairs) x 3 splits
    assert len(four) == 2 + 4 * 3
    assert len(candidate_layouts(["h100", "a100"], 4, mixed_types=False)) == 2 + 2 * 3
    assert len(candidate_layouts(["h100", "a100"], [2, 4])) == (2 + 4 * 1) + len(four)
    assert [layout_label(c) for c in four[:5]] == ["4xH100 colocated", "4xA100 colocated", "1xH100 P + 3xH100 D",
                                                   "2xH100 P + 2xH100 D", "3xH100 P + 1xH100 D"]
    assert "2xH100 P + 2xA100 D" in [layout_label(c) for c in four]  # Splitwise-HA
    for c in four:
        assert c.num_gpus == 4
        if c.layout == "disaggregated":
            assert c.pool("prefill").num_instances + c.pool("decode").num_instances == 4
            assert c.pool("prefill").num_instances >= 1 and c.pool("decode").num_instances >= 1
    splits = sorted((c.pool("prefill").num_instances, c.pool("decode").num_instances) for c in four
                    if c.layout == "disaggregated" and c.pool("prefill").gpu == c.pool("decode").gpu == "H100-SXM")
    assert splits == [(1, 3), (2, 2), (3, 1)]
    labels = [layout_label(c) for c in four]
    assert len(set(labels)) == len(labels)
    again = candidate_layouts(["h100", "a100"], 4)
    assert again == four and [layout_label(c) for c in again] == labels  # deterministic
    mixed = candidate_layouts(["h100"], 4, include_mixed=True)
    assert [layout_label(c) for c in mixed if c.layout == "mixed"] == [
        "1xH100 P + 1xH100 D + 2xH100 M", "1xH100 P + 2xH100 D + 1xH100 M", "2xH100 P + 1xH100 D + 1xH100 M"]
    tp2 = candidate_layouts(["h100"], 4, tensor_parallel=2)
    assert [layout_label(c) for c in tp2] == ["2xH100/tp2 colocated", "1xH100/tp2 P + 1xH100/tp2 D"]
    assert all(c.num_gpus == 4 for c in tp2)


def test_candidate_errors() -> None:
    with pytest.raises(KeyError, match="unknown GPU 'tpu'"):
        candidate_layouts(["tpu"], 2)
    with pytest.raises(ValueError, match="multiples of tensor_parallel"):
        candidate_layouts(["h100"], 3, tensor_parallel=2)
    with pytest.raises(ValueError, match="distinct"):
        candidate_layouts(["h100", "H100-SXM"], 2)


# -- cheapest ----------------------------------------------------------------------------------------

def _brute(rows, objective, min_attainment):
    key, ties = OBJECTIVES[objective]
    best = None
    for r in rows:
        if r["slo_attainment"] is None or r["slo_attainment"] < min_attainment:
            continue
        k = (r[key], *(-r[t] if t == "slo_attainment" else r[t] for t in ties))
        if best is None or k < best[0]:
            best = (k, r)
    return None if best is None else best[1]


def test_evaluated_rows_and_cheapest_against_brute_force(rows) -> None:
    assert [r["label"] for r in rows] == [layout_label(c) for c in candidate_layouts(["h100", "a100"], 2)]
    for r in rows:
        assert r["num_gpus"] == 2 and r["usd_per_hour"] > 0 and r["energy_per_output_token_j"] > 0
        assert r["cost_usd"] == pytest.approx(r["usd_per_hour"] * r["span_s"] / 3600)
        assert (r["num_kv_transfers"] > 0) == (r["layout"] == "disaggregated")
    assert {r["usd_per_hour"] for r in rows if "A100" in r["label"] and "H100" not in r["label"]} == {2 * 2.70}
    atts = sorted({r["slo_attainment"] for r in rows})
    assert len(atts) > 1  # the layouts differ: some thresholds below separate them
    for objective in OBJECTIVES:
        for target in (*atts, 0.5, 1.0):
            assert cheapest(rows, objective, target) is _brute(rows, objective, target)


def test_cheapest_skips_a_cheaper_row_that_fails_the_slo() -> None:
    rows = [
        {"label": "cheap but slow", "usd_per_hour": 5.0, "slo_attainment": 0.80, "energy_per_output_token_j": 0.2},
        {"label": "dear", "usd_per_hour": 12.0, "slo_attainment": 0.99, "energy_per_output_token_j": 0.3},
        {"label": "middle", "usd_per_hour": 8.0, "slo_attainment": 0.91, "energy_per_output_token_j": 0.5},
        {"label": "middle, better SLO", "usd_per_hour": 8.0, "slo_attainment": 0.95, "energy_per_output_token_j": 0.6},
        {"label": "never finished", "usd_per_hour": 1.0, "slo_attainment": None, "energy_per_output_token_j": None},
    ]
    assert cheapest(rows, "cost", 0.9)["label"] == "middle, better SLO"  # tie on $/h: higher attainment
    assert cheapest(rows, "cost", 0.8)["label"] == "cheap but slow"
    assert cheapest(rows, "energy", 0.9)["label"] == "dear"
    assert cheapest(rows, "cost", 0.99)["label"] == "dear"
    assert [rows[i]["label"] for i in search.rank(rows, "cost")][0] == "never finished"  # ranked, never chosen
    assert cheapest(rows, "cost", 0.01)["label"] == "cheap but slow"
    assert [rows[i]["label"] for i in search.rank(rows, "energy")][-1] == "never finished"  # no value: last
    assert cheapest(rows, "cost", 1.0) is None
    msg = why_none(rows, 1.0)
    assert "no configuration meets the SLOs for >= 100% of requests" in msg and "dear" in msg and "99.0%" in msg
    with pytest.raises(ValueError, match="objective"):
        cheapest(rows, "speed")


def test_no_feasible_row_gives_none_and_a_message(workload) -> None:
    tight = SloSpec(1e-4, 1e-4)
    rows = evaluate(candidate_layouts(["h100"], 2), workload, tight)
    assert all(r["slo_attainment"] == 0 and r["slo_ttft_s"] == 1e-4 for r in rows)
    assert cheapest(rows, "cost", 0.9) is None and cheapest(rows, "energy", 0.1) is None
    assert "no configuration meets" in why_none(rows, 0.9) and "TTFT <= 0.0001 s" in why_none(rows, 0.9)


# -- throughput --------------------------------------------------------------------------------------

def test_max_throughput_brackets_the_slo_crossing(workload) -> None:
    serve = ServeConfig(workload=SPEC, cost_model="linear", max_model_len=4096)
    (config,) = candidate_layouts(["h100"], 1, serve=serve)
    probes = []
    res = max_throughput(config, workload, SLO, 0.9, lo=1.0, tol=0.05, max_runs=12, on_probe=probes.append)
    assert res["converged"] and probes == res["probes"] and len(probes) <= 12
    good, bad = res["max_rate_scale"], res["failing_rate_scale"]
    assert good < bad <= 1.05 * good
    by_rate = {p["rate_scale"]: p for p in probes}
    assert by_rate[good]["passed"] and not by_rate[bad]["passed"]
    assert len({p["run_id"] for p in probes}) == len(probes)  # each probe's config records its rate
    # Re-run at the rate found and some margin above: the first meets the SLOs, the second does not.
    at = evaluate([config], scaled(workload, good), SLO)[0]
    above = evaluate([config], scaled(workload, 1.3 * good), SLO)[0]
    assert meets(at, 0.9) and at["slo_attainment"] == res["slo_attainment"] and not meets(above, 0.9)
    span_s = workload.arrival_s[-1] - workload.arrival_s[0]
    assert res["requests_per_s"] == pytest.approx(good * len(workload) / span_s, rel=1e-9)
    assert res["tokens_per_usd"] == pytest.approx(res["output_tokens_per_s"] * 3600 / res["usd_per_hour"])
    assert res["output_tokens_per_j"] == pytest.approx(res["output_tokens_per_s"] / res["avg_power_w"])
    assert res["usd_per_hour"] == pytest.approx(6.155) and res["provisioned_power_w"] == 700


def test_throughput_ratios_by_hand() -> None:
    base = {"output_tokens_per_s": 1000.0, "usd_per_hour": 24.0, "provisioned_power_w": 2800.0}
    ha = {"output_tokens_per_s": 1400.0, "usd_per_hour": 19.2, "provisioned_power_w": 2200.0}
    r = throughput_ratios(ha, base)
    assert r["throughput_ratio"] == pytest.approx(1.4) and r["cost_ratio"] == pytest.approx(0.8)
    assert r["throughput_at_equal_cost"] == pytest.approx(1.75)
    assert r["cost_at_equal_throughput"] == pytest.approx(0.8 / 1.4)
    assert r["throughput_at_equal_power"] == pytest.approx(1.4 / (2200 / 2800))
    assert throughput_ratios({**ha, "output_tokens_per_s": None}, base)["throughput_at_equal_cost"] is None


# -- CLI ---------------------------------------------------------------------------------------------

DISAGG = ["fleet", *SMALL, "--rate-scale", "2", "--layout", "disaggregated", "--prefill", "1xh100", "--decode", "1xa100"]


def test_fleet_command_prints_the_run_figures() -> None:
    as_json = replay(*DISAGG, "--json")
    assert as_json.exit_code == 0, as_json.output
    got = json.loads(as_json.stdout)
    assert got["label"] == "1xH100 P + 1xA100 D"
    config = search.candidate_layouts(["h100", "a100"], 2)[4]
    assert layout_label(config) == got["label"]
    config = replace(config, serve=replace(config.serve, workload=replace(SPEC, rate_scale=2.0)))
    direct = run_fleet(config)
    assert got["summary"]["num_kv_transfers"] == direct.summary["num_kv_transfers"] > 100
    assert got["summary"]["ttft_p99_s"] == direct.summary["ttft_p99_s"]
    assert got["energy"]["usd_per_hour"] == pytest.approx(6.155 + 2.70)
    table = replay(*DISAGG)
    assert table.exit_code == 0, table.output
    text = flat(table.stdout)
    e, s = got["energy"], got["summary"]
    for words in ("1xH100 P + 1xA100 D", "infiniband-ndr", "KV transfers", f"{s['num_kv_transfers']} ·",
                  _fmt(s["ttft_p99_s"], " s"), _fmt(e["energy_per_output_token_j"], " J"),
                  _fmt(e["avg_power_w"], " W"), f"${_fmt(e['cost_usd'])}", f"${_fmt(e['usd_per_1m_output_tokens'])}"):
        assert words in text, words
    colo = replay("fleet", *SMALL, "--replicas", "2", "--gpu", "a100", "--link", "nvlink", "--json")
    assert colo.exit_code == 0, colo.output
    c = json.loads(colo.stdout)
    assert c["label"] == "2xA100 colocated" and c["summary"]["num_kv_transfers"] == 0
    assert c["energy"]["usd_per_hour"] == pytest.approx(5.4) and c["summary"]["link"] == "nvlink-A100-80G"


@pytest.mark.parametrize(("args", "option"), [
    (["--layout", "disaggregated", "--prefill", "1xh100"], "--decode"),
    (["--layout", "disaggregated", "--prefill", "2xnope", "--decode", "1xh100"], "--prefill"),
    (["--layout", "disaggregated", "--prefill", "h100", "--decode", "1xh100"], "--prefill"),
    (["--prefill", "1xh100"], "--prefill"),
    (["--layout", "ring"], "--layout"),
    (["--link", "warp"], "--link"),
    (["--migration", "sometimes"], "--migration"),
])
def test_fleet_bad_specs_name_the_option(args, option) -> None:
    result = replay("fleet", *SMALL, *args)
    assert result.exit_code == 2, result.output
    assert option in flat(result.output)


def test_fleet_search_marks_the_choice_and_the_failures(rows) -> None:
    args = ["fleet-search", *SMALL, "--rate-scale", "4", "--gpus", "h100,a100", "--total-gpus", "2"]
    as_json = replay(*args, "--json", "--min-attainment", "0.9")
    assert as_json.exit_code == 0, as_json.output
    got = json.loads(as_json.stdout)
    assert [r["label"] for r in got["rows"]] == [r["label"] for r in rows]
    assert [r["slo_attainment"] for r in got["rows"]] == [r["slo_attainment"] for r in rows]
    best = cheapest(rows, "cost", 0.9)
    assert got["chosen"] == (best and best["label"])
    table = replay(*args)
    assert table.exit_code == 0, table.output
    text = flat(table.stdout)
    assert text.count("FAIL") == sum(not meets(r, 0.9) for r in rows)
    assert f"* {best['label']}" in text and f"chosen (*): {best['label']} · ${_fmt(best['usd_per_hour'])}/h" in text
    none = replay(*args, "--slo-ttft", "0.0001")
    assert none.exit_code == 0, none.output
    assert "no configuration meets the SLOs" in flat(none.stdout) and "chosen" not in none.stdout
    bad = replay("fleet-search", *SMALL, "--gpus", "h100,tpu")
    assert bad.exit_code == 2 and "--gpus" in flat(bad.output) and "tpu" in flat(bad.output)
    assert replay("fleet-search", *SMALL, "--objective", "speed").exit_code == 2


def test_fleet_search_throughput_ratios() -> None:
    args = ["fleet-search", *SMALL, "--gpus", "h100", "--total-gpus", "2", "--throughput", "--max-runs", "5"]
    as_json = replay(*args, "--json")
    assert as_json.exit_code == 0, as_json.output
    tput = json.loads(as_json.stdout)["throughput"]
    assert [t["label"] for t in tput] == ["2xH100 colocated", "1xH100 P + 1xH100 D"]
    base, dis = tput
    assert base["baseline"] == dis["baseline"] == "2xH100 colocated" and base["throughput_ratio"] == 1.0
    assert base["max_rate_scale"] is not None and base["output_tokens_per_s"] > 0
    if dis["output_tokens_per_s"] is not None:
        assert dis["throughput_at_equal_cost"] == pytest.approx(dis["output_tokens_per_s"] / base["output_tokens_per_s"])
    table = replay(*args)
    assert table.exit_code == 0, table.output
    text = flat(table.stdout)
    assert "tput @ equal $" in text and "2xH100 colocated" in text
    assert _fmt(base["tokens_per_usd"]) in text and not math.isnan(base["tokens_per_usd"])


def test_fleet_save_writes_a_documented_deterministic_run(tmp_path) -> None:
    """`fleet --save` writes results/fleet/<run id>/: the fleet columns, the energy summary; a second run
    of the same command gives the same bytes."""
    from replay.fleet.sink import FLEET_REQUESTS, FLEET_STEPS, read_fleet_run

    first = replay(*DISAGG, "--save", "--json", "--data", str(tmp_path))
    assert first.exit_code == 0, first.output
    got = json.loads(first.stdout)
    folder = tmp_path / "results" / "fleet" / got["run_id"]
    config, summary, tables = read_fleet_run(folder)
    assert tables["requests"].schema.equals(FLEET_REQUESTS) and tables["steps"].schema.equals(FLEET_STEPS)
    req = tables["requests"].to_pydict()
    assert summary["num_kv_transfers"] == got["summary"]["num_kv_transfers"] == sum(b > 0 for b in req["kv_transfer_bytes"])
    assert summary["energy"]["energy_j"] == pytest.approx(got["energy"]["energy_j"])
    assert set(tables["steps"].column("role").to_pylist()) == {"prefill", "decode"}
    assert config["layout"] == "disaggregated"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = replay(*DISAGG, "--save", "--data", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
