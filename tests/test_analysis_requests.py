"""Request-trace characterization: published numbers on the real traces, hand-computed fixtures, exact LRU curves."""

from __future__ import annotations

import json
import math
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ingested_catalog
from hypothesis import given, settings, strategies as st

from analysis import prefix, requests as rq
from ingest.schema import REQUESTS

CODE, CONV = "azure_llm_2023_code", "azure_llm_2023_conv"
MC_CONV, MC_SYNTH = "mooncake_conversation", "mooncake_synthetic"


# ---------------------------------------------------------------- real traces


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    """Azure 2023 and Mooncake ingested once into a module-wide data root; the catalog opened read-only."""
    con = ingested_catalog(tmp_path_factory, ("azure_llm_2023", "azure_llm_2023"), ("mooncake_fast25", "mooncake"))
    yield con
    con.close()


# Splitwise simulator (generate_trace.py docstrings): (mean, std, min, max) rounded to integers.
SPLITWISE = {
    (CODE, "prompt_tokens"): (2048, 1973, 3, 7437),
    (CODE, "output_tokens"): (28, 60, 6, 1899),
    (CONV, "prompt_tokens"): (1155, 1109, 2, 14050),
    (CONV, "output_tokens"): (211, 163, 7, 1000),
}


@pytest.mark.parametrize(("trace", "column"), list(SPLITWISE))
def test_token_stats_match_splitwise_constants(real, trace, column) -> None:
    mean, std, lo, hi = SPLITWISE[(trace, column)]
    got = rq.token_stats(real, trace, column)
    assert (round(got["mean"]), got["min"], got["max"]) == (mean, lo, hi)
    # The sample std (n-1) and the population std round to the same integer on all four columns, so the
    # constants cannot tell them apart. Code prompt: sample 1973.88, population 1973.77, both round to
    # 1974; the published 1973 is that value truncated (the other three are rounded), hence "within 1".
    assert abs(got["std"] - std) < 1
    if (trace, column) != (CODE, "prompt_tokens"):
        assert round(got["std"]) == std
    pop = real.execute(f"SELECT stddev_pop({column}) FROM requests WHERE trace = ?", [trace]).fetchall()[0][0]
    assert round(pop) == round(got["std"]) and abs(pop - got["std"]) / got["std"] < 1e-4


def test_medians_and_percentiles_are_the_ingested_ones(real) -> None:
    conv = rq.token_stats(real, CONV, "prompt_tokens")
    assert (conv["count"], conv["p50"]) == (19366, 1020)  # the medians the ingest test asserts
    assert rq.token_stats(real, CODE, "output_tokens")["p50"] == 13
    keys = ["p10", "p25", "p50", "p75", "p90", "p99", "p99.9"]
    vals = [conv[k] for k in keys]
    assert vals == sorted(vals) and conv["min"] <= vals[0] and vals[-1] <= conv["max"]
    cdf = rq.token_cdf(real, CONV, "output_tokens", num_points=201)
    assert cdf.height == 201 and cdf["tokens"].is_sorted()
    assert (cdf["tokens"][0], cdf["tokens"][-1], cdf["tokens"][100]) == (7, 1000, 129)


def test_interarrival_cv_and_code_on_off(real) -> None:
    conv, code = rq.interarrival_stats(real, CONV), rq.interarrival_stats(real, CODE)
    assert conv["cv"] == pytest.approx(1.09, abs=0.01)  # close to Poisson
    assert code["cv"] == pytest.approx(13.2, abs=0.1)  # 13.15: ON/OFF bursts
    assert code["num_gaps"] == 8818 and code["zero_gap_fraction"] == 0
    burst = rq.on_off(real, CODE, idle_gap_s=10.0)
    assert burst["is_on_off"] and burst["longest_gap_s"] == pytest.approx(217.17, abs=0.01)
    assert burst["longest_gap_start_s"] == pytest.approx(2855.82, abs=0.01)
    assert burst["num_gaps"] == 45 and burst["idle_fraction"] == pytest.approx(0.692, abs=1e-3)
    steady = rq.on_off(real, CONV, idle_gap_s=10.0)
    assert not steady["is_on_off"] and steady["longest_gap_s"] == pytest.approx(4.31, abs=0.01)
    # dispersion: near Poisson at 1 s for conv, and growing with the window for both (bursts at every scale)
    disp = {r["window_s"]: r["index_of_dispersion"] for r in rq.dispersion(real, CONV).to_dicts()}
    assert disp[1.0] == pytest.approx(1.39, abs=0.01) and disp[1.0] < disp[10.0] < disp[60.0] < disp[600.0]
    assert rq.dispersion(real, CODE).row(0, named=True)["index_of_dispersion"] == pytest.approx(13.19, abs=0.01)


def test_rate_series_adds_up(real) -> None:
    counts = rq.request_counts(real, CODE)
    assert counts["num_requests"] == 8819 and counts["span_s"] == pytest.approx(3435.948, abs=1e-3)
    per_s = rq.rate_series(real, CODE, 1.0)
    assert per_s.height == 3436 and per_s["num_requests"].sum() == 8819
    assert per_s["num_requests"].max() == counts["peak_requests_per_s"]
    per_min = rq.tokens_per_minute(real, CODE)
    assert per_min.height == 58 and per_min["prompt_tokens"].sum() == counts["total_prompt_tokens"]
    assert per_min["output_tokens"].sum() == counts["total_output_tokens"]
    per_h = rq.rate_series(real, CODE, 3600.0)
    assert per_h.rows() == [(0.0, 8819, counts["total_prompt_tokens"], counts["total_output_tokens"], 8819 / 3600)]


def test_short_or_relative_traces_have_no_time_patterns(real) -> None:
    azure = rq.time_patterns(real, CONV)
    assert azure["diurnal"] == {"available": False, "reason": "span too short: 0.97 h < 24 h"}
    assert azure["weekly"]["reason"].startswith("span too short")
    mooncake = rq.time_patterns(real, MC_CONV)
    assert mooncake["diurnal"] == {"available": False, "reason": "no absolute time (epoch: ms since the first request)"}


def test_correlation_against_scipy(real) -> None:
    stats = pytest.importorskip("scipy.stats")
    x, y = np.array(real.execute(
        "SELECT prompt_tokens, output_tokens FROM requests WHERE trace = ? ORDER BY request_id", [MC_SYNTH]).fetchall()).T
    got = rq.length_correlation(real, MC_SYNTH)
    assert got["pearson"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-9)
    assert got["spearman"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-9)
    assert got["spearman"] == pytest.approx(-0.517, abs=1e-3)


def _brute_lru(hashes, capacity: int) -> int:
    """Hits of an LRU cache of ``capacity`` blocks over the access stream, one access at a time."""
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for h in hashes:
        if h in cache:
            hits += 1
            cache.move_to_end(h)
        else:
            cache[h] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits


def test_mooncake_prefix_reuse_and_lru(real) -> None:
    conv = prefix.prefix_reuse(real, MC_CONV, lru_capacities_blocks=(1_000, 10_000, 200_000))
    # hash ids are consecutive from 0 (the ingest test: max 182,789), so the distinct count is known
    assert (conv["num_accesses"], conv["num_distinct_blocks"]) == (288_500, 182_790)
    assert conv["reuse_fraction"] == pytest.approx(1 - 182_790 / 288_500, abs=1e-12)
    assert conv["lru_hit_rate"]["200000"] == conv["reuse_fraction"]  # bigger than the working set
    synth = prefix.prefix_reuse(real, MC_SYNTH)
    assert (synth["num_accesses"], synth["num_distinct_blocks"]) == (121_877, 43_924)
    assert synth["reuse_fraction"] == pytest.approx(0.6396, abs=1e-4)
    # the exact curve against a plain LRU simulation of the real access stream
    for trace, order in ((MC_SYNTH, "forward"), (MC_SYNTH, "reverse"), (MC_CONV, "forward")):
        hashes, _ = prefix.block_accesses(real, trace, order)
        caps = [1, 500, 5_000, 20_000]
        curve = prefix.lru_curve(real, trace, caps, order=order)
        assert curve["hit_rate"].to_list() == [_brute_lru(hashes.tolist(), c) / len(hashes) for c in caps]
    default = prefix.lru_curve(real, MC_SYNTH)
    assert default["hit_rate"].is_sorted() and default["capacity_blocks"][-1] == 43_924
    assert default["hit_rate"][-1] == synth["reuse_fraction"]
    assert prefix.lru_curve(real, CODE).height == 0 and prefix.prefix_reuse(real, CODE)["reuse_fraction"] is None


@pytest.mark.parametrize("trace", [CODE, CONV, MC_CONV, MC_SYNTH])
def test_characterize_is_json(real, trace) -> None:
    report = rq.characterize_requests(real, trace)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["trace"] == trace
    assert (report["prefix"] is None) == trace.startswith("azure")


def test_unknown_trace_and_column(real) -> None:
    with pytest.raises(ValueError, match="no requests for trace 'nope'; known: azure_llm_2023_code"):
        rq.interarrival_stats(real, "nope")
    with pytest.raises(ValueError, match="column must be one of"):
        rq.token_stats(real, CODE, "prompt_tokens; DROP TABLE x")


# ---------------------------------------------------------------- hand-computed fixtures


def _con(tmp_path: Path, arrivals, prompt=None, output=None, hashes=None, trace="t", time_base=None):
    """An in-memory DuckDB with a ``requests`` view over one canonical Parquet file (and a ``traces`` row)."""
    n = len(arrivals)
    cols = {
        "trace": [trace] * n, "request_id": list(range(n)), "arrival_s": [float(a) for a in arrivals],
        "prompt_tokens": prompt or [100] * n, "output_tokens": output or [10] * n,
        "session_id": [None] * n, "prefix_block_hashes": hashes or [None] * n,
        "num_images": [None] * n, "priority": [None] * n,
    }
    path = tmp_path / f"{trace}-{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.table(cols, schema=REQUESTS.schema), path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW requests AS SELECT * FROM read_parquet('{path}')")
    if time_base is not None:
        con.execute("CREATE TABLE traces (trace VARCHAR, origin_epoch_us BIGINT, time_zone VARCHAR, epoch VARCHAR)")
        con.execute("INSERT INTO traces VALUES (?, ?, ?, ?)", [trace, *time_base])
    return con


def test_dispersion_by_hand(tmp_path) -> None:
    con = _con(tmp_path, [0, 0.1, 0.2, 1.5, 3.2, 3.3, 4.0])
    got = {r["window_s"]: r for r in rq.dispersion(con, "t", [1.0, 2.0, 3.0]).to_dicts()}
    # 1 s: complete windows [0,4): counts 3, 1, 0, 2 (the arrival at 4.0 starts a fifth, incomplete one)
    assert got[1.0]["num_windows"] == 4 and got[1.0]["mean_count"] == 1.5
    assert got[1.0]["var_count"] == pytest.approx(5 / 3) and got[1.0]["index_of_dispersion"] == pytest.approx(10 / 9)
    # 2 s: counts 4, 2 -> mean 3, sample variance 2
    assert (got[2.0]["mean_count"], got[2.0]["var_count"]) == (3.0, 2.0)
    assert got[2.0]["index_of_dispersion"] == pytest.approx(2 / 3)
    assert (got[3.0]["num_windows"], got[3.0]["index_of_dispersion"]) == (1, None)  # one window: undefined
    series = rq.rate_series(con, "t", 1.0)
    assert series["num_requests"].to_list() == [3, 1, 0, 2, 1] and series["window_start_s"].to_list() == [0, 1, 2, 3, 4]


def test_on_off_and_interarrival_by_hand(tmp_path) -> None:
    con = _con(tmp_path, [0, 1, 2, 30, 31, 100])
    got = rq.on_off(con, "t", idle_gap_s=10.0)
    assert got == {
        "idle_gap_s": 10.0, "num_gaps": 2, "longest_gap_s": 69.0, "longest_gap_start_s": 31.0, "idle_s": 97.0,
        "idle_fraction": 0.97, "num_on_periods": 3, "mean_on_period_s": 1.0, "is_on_off": True,
    }
    assert rq.on_off(con, "t", idle_gap_s=69.0)["num_gaps"] == 0  # strictly longer than the threshold
    ia = rq.interarrival_stats(con, "t")  # gaps 1, 1, 28, 1, 69: mean 20, sample variance 3548 / 4
    assert (ia["num_gaps"], ia["mean_s"], ia["min_s"], ia["max_s"], ia["p50"]) == (5, 20.0, 1.0, 69.0, 1.0)
    assert ia["std_s"] == pytest.approx(math.sqrt(887)) and ia["cv"] == pytest.approx(math.sqrt(887) / 20)
    assert ia["p90"] == pytest.approx(28 + 0.6 * 41)  # linear interpolation between order statistics


def test_correlation_and_token_stats_by_hand(tmp_path) -> None:
    con = _con(tmp_path, [0, 1, 2, 3], prompt=[1, 2, 2, 10], output=[1, 3, 2, 4])
    got = rq.length_correlation(con, "t")
    # Pearson: sum dx*dy = 13.5, sum dx^2 = 52.75, sum dy^2 = 5. Spearman: ranks x (1, 2.5, 2.5, 4), y (1, 3, 2, 4)
    assert got["pearson"] == pytest.approx(13.5 / math.sqrt(52.75 * 5))
    assert got["spearman"] == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    stats = rq.token_stats(con, "t", "prompt_tokens")
    assert (stats["count"], stats["mean"], stats["min"], stats["max"], stats["p50"]) == (4, 3.75, 1, 10, 2.0)
    assert stats["std"] == pytest.approx(math.sqrt(52.75 / 3)) and stats["p90"] == pytest.approx(2 + 0.7 * 8)
    cdf = rq.token_cdf(con, "t", "output_tokens", num_points=3)
    assert cdf.rows() == [(0.0, 1.0), (0.5, 2.5), (1.0, 4.0)]
    flat = _con(tmp_path, [0, 1], prompt=[5, 5], output=[1, 2], trace="flat")
    assert rq.length_correlation(flat, "flat") == {"n": 2, "pearson": None, "spearman": None}  # NaN -> None


def _two_weeks(tmp_path, zone: str):
    """Monday 2024-05-13 00:00 UTC: one arrival at the start of every hour for 14 days, plus one at 12:30 UTC daily."""
    origin_us = int(datetime(2024, 5, 13, tzinfo=timezone.utc).timestamp() * 1e6)
    arrivals = sorted([h * 3600.0 for h in range(14 * 24 + 1)] + [(d * 24 + 12.5) * 3600 for d in range(14)])
    return _con(tmp_path, arrivals, time_base=(origin_us, zone, "unix"))


def test_time_patterns_by_hand(tmp_path) -> None:
    got = rq.time_patterns(_two_weeks(tmp_path, "UTC"), "t")
    diurnal, weekly = got["diurnal"], got["weekly"]
    assert diurnal["available"] and diurnal["num_hours"] == 14 * 24  # the last arrival opens no whole hour
    assert diurnal["requests_per_hour"] == [2.0 if h == 12 else 1.0 for h in range(24)]
    assert diurnal["peak_to_mean"] == pytest.approx(2 / (25 / 24))
    assert weekly["weekday"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert weekly["requests_per_hour"] == [25 / 24] * 7 and weekly["peak_to_mean"] == pytest.approx(1.0)
    # the same instants on a Los Angeles wall clock (PDT, UTC-7): the peak moves to 05:00
    la = rq.time_patterns(_two_weeks(tmp_path, "America/Los_Angeles"), "t")["diurnal"]["requests_per_hour"]
    assert la.index(2.0) == 5 and la.count(2.0) == 1
    short = rq.time_patterns(_two_weeks(tmp_path, "UTC"), "t", min_span_weekly_s=15 * 86_400)
    assert short["diurnal"]["available"] and short["weekly"] == {"available": False, "reason": "span too short: 336.00 h < 360 h"}
    none = rq.time_patterns(_con(tmp_path, [0, 1]), "t")
    assert none["diurnal"]["reason"] == "no absolute time (trace not in catalog)"


def test_block_access_order(tmp_path) -> None:
    hashes = [[0, 1, 2], None, [], [0, 1, 3], [4]]
    con = _con(tmp_path, [0, 1, 1, 2, 3], hashes=hashes)
    fwd, req = prefix.block_accesses(con, "t")
    assert fwd.tolist() == [0, 1, 2, 0, 1, 3, 4] and req.tolist() == [0, 0, 0, 3, 3, 3, 4]
    rev, _ = prefix.block_accesses(con, "t", "reverse")
    assert rev.tolist() == [2, 1, 0, 3, 1, 0, 4]
    # forward: 0 comes back after {1, 2}, then 1 after {2, 0}; reverse: 1 after {0, 3}, then 0 after {3, 1}
    assert prefix.stack_distances(fwd).tolist() == [-1, -1, -1, 2, 2, -1, -1]
    assert prefix.stack_distances(rev).tolist() == [-1, -1, -1, -1, 2, 2, -1]
    got = prefix.prefix_reuse(con, "t", lru_capacities_blocks=[2, 3])
    assert (got["num_requests_with_blocks"], got["num_accesses"], got["num_distinct_blocks"]) == (3, 7, 5)
    assert got["reuse_fraction"] == pytest.approx(2 / 7) and got["requests_with_reuse_fraction"] == pytest.approx(1 / 3)
    assert got["lru_hit_rate"] == {"2": 0.0, "3": pytest.approx(2 / 7)}
    assert got["request_distance"]["max"] == 3  # request 0 -> request 3 (positions count requests without blocks)


def _brute_distances(hashes) -> list[int]:
    stack: list[int] = []
    out = []
    for h in hashes:
        if h in stack:
            i = stack.index(h)
            out.append(len(stack) - 1 - i)
            stack.pop(i)
        else:
            out.append(-1)
        stack.append(h)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=80))
def test_stack_distances_and_lru_match_brute_force(hashes) -> None:
    arr = np.array(hashes, dtype=np.int64)
    dist = prefix.stack_distances(arr)
    assert dist.tolist() == _brute_distances(hashes)
    caps = list(range(1, len(set(hashes)) + 2))
    rates = prefix.lru_hit_rates(dist, caps)
    assert [round(r * len(hashes)) for r in rates] == [_brute_lru(hashes, c) for c in caps]


def test_default_capacities() -> None:
    caps = prefix.default_capacities(43_924)
    assert caps[0] == 1 and caps[-1] == 43_924 and np.all(np.diff(caps) > 0) and len(caps) < 60
    assert prefix.default_capacities(1).tolist() == [1]
