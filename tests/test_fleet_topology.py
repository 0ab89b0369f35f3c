"""Serving topologies (replay.fleet): the KV link arithmetic, the serving core's hand-off entry points, golden
disaggregated replays computed by hand, the colocated fleet == run_serve anchor, conservation of requests,
tokens, KV transfers and blocks in every layout (with migration), and a directional check on the Azure traces.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ingest.paths import traces_dir
from replay.fleet.harness import run_fleet
from replay.fleet.interconnect import (INFINIBAND_NDR_BYTES_PER_S, Link, infiniband, kv_transfer_bytes, kv_transfer_s,
                                       nvlink, pcie)
from replay.fleet.topology import FleetConfig, MigrationConfig, PoolConfig
from replay.harness import ServeConfig, run_serve
from replay.serving.config import SchedulerConfig
from replay.serving.plan import StepResult
from replay.serving.policies import QUEUE_POLICIES, VICTIM_POLICIES
from replay.serving.request import Request, RequestStatus
from replay.serving.scheduler import Scheduler
from replay.serving.specs import gpu_spec, kv_bytes_per_token, model_config
from replay.sources import Workload, WorkloadSpec, load_workload

LLAMA = model_config("llama-2-7b")
KV_TOKEN_BYTES = 2 * 32 * 32 * 128 * 2  # K and V x 32 layers x 32 heads x 128 dims x 2 bytes = 512 KiB per token


# ---- interconnect ------------------------------------------------------------------------------------------


def test_link_presets_and_transfer_time_by_hand() -> None:
    h100 = gpu_spec("h100")
    assert nvlink("h100").bandwidth_bytes_per_s == h100.nvlink_bandwidth_bytes_per_s == 450e9
    assert pcie(h100).bandwidth_bytes_per_s == h100.pcie_bandwidth_bytes_per_s == 64e9
    assert infiniband().bandwidth_bytes_per_s == INFINIBAND_NDR_BYTES_PER_S == 400e9 / 8
    assert kv_bytes_per_token(LLAMA) == KV_TOKEN_BYTES
    link = Link("test", 1e9, 1e-3)
    assert kv_transfer_s(1000, LLAMA, 1, link) == pytest.approx(1e-3 + 1000 * KV_TOKEN_BYTES / 1e9, rel=1e-15)
    # tp=2: each GPU sends its half of the heads over its own link, in parallel: half the time.
    assert kv_transfer_s(1000, LLAMA, 2, link) == pytest.approx(1e-3 + 1000 * KV_TOKEN_BYTES / 2 / 1e9, rel=1e-15)
    # tp 4 -> 2: the two receiving GPUs take half the KV each: as slow as tp=2 on both sides.
    assert kv_transfer_s(1000, LLAMA, 4, link, dst_tp=2) == kv_transfer_s(1000, LLAMA, 2, link)
    assert kv_transfer_bytes(1000, LLAMA, 4, dst_tp=2) == kv_transfer_bytes(1000, LLAMA) == 1000 * KV_TOKEN_BYTES
    assert kv_transfer_s(0, LLAMA, 1, link) == 1e-3


@pytest.mark.parametrize("call, match", [
    (lambda: Link("x", 0.0), "bandwidth"),
    (lambda: Link("x", 1e9, -1.0), "latency"),
    (lambda: Link("", 1e9), "name"),
    (lambda: kv_transfer_s(-1, LLAMA, 1, infiniband()), "num_tokens"),
    (lambda: kv_transfer_s(2.5, LLAMA, 1, infiniband()), "num_tokens"),
    (lambda: kv_transfer_s(10, LLAMA, 0, infiniband()), "tp"),
    (lambda: kv_transfer_s(10, LLAMA, 3, infiniband()), "divisible"),
    (lambda: kv_transfer_s(10, LLAMA, 1, "ib"), "Link"),
    (lambda: FleetConfig(layout="ring"), "layout"),
    (lambda: FleetConfig(layout="disaggregated"), "one pool per role"),
    (lambda: PoolConfig("decode", router="nope"), "router"),
    (lambda: PoolConfig("decode", num_instances=0), "num_instances"),
    (lambda: MigrationConfig("sometimes"), "mode"),
    (lambda: MigrationConfig("defrag", interval_s=0.0), "interval_s"),
])
def test_validation(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# ---- the serving core's hand-off entry points ----------------------------------------------------------------


def _sched(**kw) -> Scheduler:
    cfg = SchedulerConfig(**{**dict(num_kv_blocks=32, max_model_len=64, block_size=4, watermark_fraction=0.0), **kw})
    return Scheduler(cfg, QUEUE_POLICIES.create("fcfs"), VICTIM_POLICIES.create("last_admitted"))


def test_core_prefill_hand_off_import_and_migration_by_hand() -> None:
    prefill, decode, other = _sched(), _sched(), _sched()
    prefill.hand_off_prefilled = True
    r = Request(0, 0.0, 10)
    prefill.add_request(r, 0.0)
    plan = prefill.schedule(0.0)
    assert prefill.update(plan, StepResult(1.0, []), 1.0) == []
    # Its first token is out: parked with its 3 blocks (10 tokens), out of the batch, waiting for its next instance.
    assert prefill.handed_off == [r] and not prefill.running and prefill.pool.num_used == 3
    assert r.status == RequestStatus.WAITING and r.block_table == [] and len(prefill.parked[0]) == 3
    assert (r.num_computed_tokens, r.num_output_tokens, r.first_token_s) == (10, 1, 1.0)
    prefill.check_integrity()
    r.token_segments = []  # (the fleet moves them aside: they index the prefill instance's log)
    decode.add_imported(r, 2.0)
    plan = decode.schedule(2.0)  # admitted: blocks for 11 tokens, one decode chunk on 10 cached tokens
    assert [(c.num_tokens, c.num_cached_tokens, c.num_output_after) for c in plan.chunks] == [(1, 10, 2)]
    assert plan.num_decodes == 1 and decode.imports_admitted == [r] and len(r.block_table) == 3
    assert r.first_scheduled_s == 0.0 and not r.kv_imported
    prefill.release_parked(r)
    assert prefill.pool.num_used == 0 and not prefill.parked
    decode.update(plan, StepResult(0.5, []), 2.5)
    assert r.num_output_tokens == 2 and r.token_segments == [[0, 0]]
    # Migration: the destination reserves the KV's blocks (11 tokens: 3) and a slot, the source parks it.
    assert other.reserve_import(r) and other.pool.num_used == 3
    decode.park(r)
    other.check_integrity()
    decode.release_parked(r)
    other.admit_reserved(r)
    assert other.running == [r] and r.status == RequestStatus.RUNNING and not other.reserved
    assert decode.pool.num_used == 0 and not decode.has_work()
    plan = other.schedule(3.0)
    assert [(c.num_tokens, c.num_cached_tokens) for c in plan.chunks] == [(1, 11)]
    other.check_integrity()


def test_core_reservation_respects_memory_and_slots() -> None:
    sched = _sched(num_kv_blocks=20, max_num_seqs=1)
    big = Request(0, 0.0, 60)
    big.num_computed_tokens = 60
    assert sched.import_need_blocks(big) == 15 and sched.reserve_import(big)
    small = Request(1, 0.0, 4)
    small.num_computed_tokens = 4
    assert not sched.reserve_import(small)  # the one sequence slot is taken by the reservation
    sched.add_request(Request(2, 0.0, 4), 0.0)
    assert sched.schedule(0.0).chunks == [] and sched.admission_blocked


# ---- golden disaggregated replays (linear cost model: step_s = 5 ms + 50 us/token + 20 ns/context token) ---------

LINK = Link("test-link", 1e9, 1e-3)  # 1 GB/s, 1 ms: a 1000-token prompt's KV (524,288,000 B) takes 0.525288 s


def disaggregated(num_prefill: int = 1, num_decode: int = 1, **serve_kw) -> FleetConfig:
    serve = ServeConfig(cost_model="linear", **serve_kw)
    return FleetConfig(serve=serve, layout="disaggregated", link=LINK,
                       pools=(PoolConfig("prefill", num_prefill), PoolConfig("decode", num_decode, router="round_robin")))


def workload(arrival_s, prompt, output) -> Workload:
    n = len(arrival_s)
    return Workload("hand", np.array([str(i) for i in range(n)], dtype=object), np.asarray(arrival_s, np.float64),
                    np.asarray(prompt, np.int64), np.asarray(output, np.int64), np.zeros(n, np.int64))


def linear_s(tokens: int, ctx: int) -> float:
    return 5e-3 + 5e-5 * tokens + 2e-8 * ctx


@pytest.mark.parametrize("fast_decode", [False, True])
def test_golden_one_request_prefill_transfer_decode(fast_decode: bool) -> None:
    # Prompt 1000, output 3, arrives at 0; 1 prefill + 1 decode instance.
    # prefill step [0, 0.05502]: 1000 tokens, ctx 1000: 5e-3 + 0.05 + 2e-5            -> token 1: TTFT 0.05502
    # KV copy [0.05502, 0.580308]: 1 ms + 1000 x 524,288 B / 1e9 B/s = 0.525288 s
    # decode step [0.580308, 0.58537802]: 1 decode, ctx 1001: 5e-3 + 5e-5 + 2.002e-5  -> token 2
    # decode step [0.58537802, 0.59044806]: ctx 1002: 0.00507004                    -> token 3 (done)
    res = run_fleet(replace(disaggregated(), serve=ServeConfig(cost_model="linear", fast_decode=fast_decode)),
                    workload([0.0], [1000], [3]))
    req = {k: v[0] for k, v in res.requests.items()}
    t1 = linear_s(1000, 1000)
    end = t1 + 0.525288
    t2 = end + linear_s(1, 1001)
    t3 = t2 + linear_s(1, 1002)
    assert req["ttft_s"] == pytest.approx(0.05502, abs=1e-12) and req["ttft_s"] == t1
    assert (req["transfer_start_s"], req["kv_transfer_bytes"]) == (t1, 1000 * KV_TOKEN_BYTES)
    assert req["transfer_end_s"] == pytest.approx(0.580308, abs=1e-12)
    assert req["decode_admit_s"] == req["transfer_end_s"]
    assert res.token_times_s[0] == pytest.approx([t1, t2, t3], abs=1e-12)
    assert req["finish_s"] == pytest.approx(0.59044806, abs=1e-12)
    assert (req["prefill_instance"], req["decode_instance"], req["num_generated_tokens"]) == (0, 1, 3)
    steps = res.steps
    assert steps["role"].tolist() == ["prefill", "decode", "decode"]
    assert steps["num_prefill_tokens"].tolist() == [1000, 0, 0] and steps["num_decodes"].tolist() == [0, 1, 1]
    assert steps["kv_blocks_used"].tolist() == [63, 63, 63] and steps["gpu"].tolist() == ["H100-SXM"] * 3
    assert res.summary["kv_transfer_mean_s"] == pytest.approx(0.525288, abs=1e-12)


def test_golden_two_requests_share_the_prefill_instances_link() -> None:
    # A (prompt 1000) and B (prompt 500), output 2 each, both at 0; 1 prefill, 2 decode instances (round robin).
    # prefill step [0, 0.08003]: 1500 tokens, ctx 1500                        -> first tokens of A and B
    # A's copy to decode 1 [0.08003, 0.605318]; B's copy to decode 2 waits for the prefill instance's egress:
    #   [0.605318, 0.868462] (1 ms + 500 x 524,288 B / 1e9 B/s = 0.263144 s), though decode 2 is idle.
    # decode 1: A decodes at ctx 1001 -> done 0.61038802;  decode 2: B at ctx 501 -> done 0.87352202
    res = run_fleet(disaggregated(num_decode=2), workload([0.0, 0.0], [1000, 500], [2, 2]))
    r = res.requests
    t1 = linear_s(1500, 1500)
    a_end = t1 + 0.525288
    b_end = a_end + 0.263144
    assert r["first_token_s"].tolist() == [t1, t1]
    assert r["transfer_start_s"] == pytest.approx([t1, a_end], abs=1e-12)
    assert r["transfer_end_s"] == pytest.approx([0.605318, 0.868462], abs=1e-12)
    assert r["decode_instance"].tolist() == [1, 2]
    assert r["finish_s"] == pytest.approx([a_end + linear_s(1, 1001), b_end + linear_s(1, 501)], abs=1e-12)
    assert r["finish_s"] == pytest.approx([0.61038802, 0.87352202], abs=1e-12)
    assert res.summary["kv_link_wait_mean_s"] == pytest.approx(0.525288 / 2, abs=1e-12)


def test_one_token_requests_finish_on_the_prefill_instance() -> None:
    res = run_fleet(disaggregated(), workload([0.0, 0.0], [100, 100], [1, 4]))
    assert res.requests["kv_transfer_bytes"].tolist() == [0, 100 * KV_TOKEN_BYTES]
    assert res.requests["decode_instance"].tolist() == [0, 1] and np.isnan(res.requests["transfer_end_s"][0])


# ---- the colocated fleet is run_serve ------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    dict(num_replicas=1),
    dict(num_replicas=2, router="round_robin"),
    dict(num_replicas=3, router="least_outstanding_tokens", cost_model="linear", preemption_mode="swap", cpu_swap_gib=1.0),
])
def test_colocated_fleet_equals_run_serve(kw: dict) -> None:
    w = WorkloadSpec(num_requests=200, rate_per_s=30.0, seed=2, prompt_median_tokens=400, output_median_tokens=120)
    serve = ServeConfig(workload=w, num_kv_blocks=500, max_model_len=2048, **kw)
    ref = run_serve(serve, write=False)
    got = run_fleet(FleetConfig.colocated(serve))
    for col, values in ref.requests.items():
        assert np.array_equal(got.requests[col], values, equal_nan=values.dtype.kind == "f"), col
    for col, values in ref.steps.items():
        if col != "replica":
            assert np.array_equal(got.steps[col], values), col
    assert np.array_equal(got.steps["instance"], ref.steps["replica"])
    assert {k: got.summary[k] for k in ref.summary if k != "excluded"} == {k: v for k, v in ref.summary.items()
                                                                          if k != "excluded"}
    assert ref.summary["num_preemptions"] > 0  # memory ran out: the anchor covers preemption too


# ---- conservation in every layout, with and without migration ------------------------------------------------

W = WorkloadSpec(num_requests=300, rate_per_s=30.0, seed=7, prompt_median_tokens=300, output_median_tokens=120)
SERVE = ServeConfig(workload=W, num_kv_blocks=300, max_model_len=2048, cost_model="linear", max_num_seqs=32)
LB, DEFRAG = MigrationConfig("load_balance", 0.05, 0.1), MigrationConfig("defrag", 0.05)
COLOC3 = (PoolConfig("colocated", 3, router="round_robin"),)
DISAGG = (PoolConfig("prefill", 1), PoolConfig("decode", 2, router="round_robin"))
LAYOUTS = {
    "colocated-load-balance": FleetConfig(serve=SERVE, pools=COLOC3, migration=LB),
    "colocated-defrag": FleetConfig(serve=SERVE, pools=COLOC3, migration=DEFRAG),
    "disaggregated": FleetConfig(serve=SERVE, layout="disaggregated", pools=DISAGG),
    "disaggregated-tp2-prefill-defrag": FleetConfig(
        serve=SERVE, layout="disaggregated", migration=DEFRAG,
        pools=(PoolConfig("prefill", 1, tensor_parallel=2), PoolConfig("decode", 2, router="round_robin"))),
    "disaggregated-load-balance": FleetConfig(serve=SERVE, layout="disaggregated", pools=DISAGG, migration=LB),
    "disaggregated-swap-load-balance": FleetConfig(
        serve=replace(SERVE, preemption_mode="swap", cpu_swap_gib=0.5), layout="disaggregated", pools=DISAGG,
        migration=LB),
    "disaggregated-phased-static-defrag": FleetConfig(
        serve=replace(SERVE, chunked_prefill=False, kv_mode="static", num_kv_blocks=600), layout="disaggregated",
        pools=DISAGG, migration=DEFRAG),
    "mixed": FleetConfig(serve=SERVE, layout="mixed", mixed_prefill_threshold_tokens=1000, mixed_decode_threshold=0.5,
                         pools=(PoolConfig("prefill"), PoolConfig("decode"), PoolConfig("mixed"))),
}


def _integrity(inst) -> None:
    inst.scheduler.check_integrity()
    if inst.role == "prefill":
        assert not inst.scheduler.running or all(r.num_output_tokens == 0 for r in inst.scheduler.running)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_conservation(name: str) -> None:
    cfg = LAYOUTS[name]
    wl = load_workload(W)
    res = run_fleet(cfg, wl, check=_integrity)
    r, steps, times = res.requests, res.steps, res.token_times_s
    finished = r["status"] == "finished"
    # Every request finished (or was rejected at arrival) with exactly its tokens, at increasing times.
    assert np.array_equal(finished | (r["status"] == "rejected"), np.ones(len(wl), bool))
    cap = SERVE.max_model_len - r["prompt_tokens"]
    assert np.array_equal(r["num_generated_tokens"][finished], np.minimum(r["output_tokens"], cap)[finished])
    for k in np.nonzero(finished)[0]:
        assert len(times[k]) == r["num_generated_tokens"][k] and np.all(np.diff(times[k]) > 0)
        assert times[k][0] == r["first_token_s"][k] and times[k][-1] == r["finish_s"][k]
    # Tokens: each prompt token computed once and each output token but the last fed back once (no preemption
    # recomputes here, or at least that many), whichever instance computed it; prefill instances never decode.
    needed = int((r["prompt_tokens"] - r["prefix_hit_tokens"] + r["num_generated_tokens"] - 1)[finished].sum())
    computed = int(steps["num_tokens"].sum())
    assert computed == needed if r["num_preemptions"].sum() == 0 else computed >= needed
    assert steps["num_decodes"][steps["role"] == "prefill"].sum() == 0
    # KV transfers: exactly once, the prompt's KV, for each request that went from a prefill to a decoding instance.
    roles = {inst.index: inst.role for inst in res.instances}
    via_prefill = np.array([roles.get(int(i)) == "prefill" for i in r["prefill_instance"]]) & finished
    moved = via_prefill & (r["num_generated_tokens"] >= 2)
    assert np.array_equal(r["kv_transfer_bytes"] > 0, moved)
    assert np.array_equal(r["kv_transfer_bytes"][moved], r["prompt_tokens"][moved] * KV_TOKEN_BYTES)
    assert res.summary["num_kv_transfers"] == moved.sum()
    if cfg.layout != "colocated":
        assert moved.sum() > 100
    # No decode before the KV arrived: the step that produced token 2 started at or after the copy's end.
    ends = {i.index: i.log.ends_s() for i in res.instances}
    starts = {i.index: i.log.columns()["start_s"] for i in res.instances}
    for k in np.nonzero(moved)[0]:
        assert r["transfer_start_s"][k] >= r["first_token_s"][k]
        assert r["decode_admit_s"][k] >= r["transfer_end_s"][k]
        if not r["num_migrations"][k]:
            inst = int(r["decode_instance"][k])
            step = int(np.searchsorted(ends[inst], times[k][1]))
            assert ends[inst][step] == times[k][1] and starts[inst][step] >= r["transfer_end_s"][k]
    # Blocks: every pool is whole again, nothing parked or reserved.
    for inst in res.instances:
        sched = inst.scheduler
        sched.check_integrity()
        assert sched.pool.num_used == 0 and not sched.parked and not sched.reserved and not sched.has_work()
    # Migrations: triggered, each charged its copy (latency + bytes / bandwidth), seen as a gap in the tokens.
    migrated = r["num_migrations"] > 0
    if cfg.migration.mode == "off":
        assert not migrated.any()
        return
    assert migrated.sum() >= 10, res.summary["num_migrations"]
    link = cfg.link
    expected_s = r["num_migrations"] * link.latency_s + r["migration_bytes"] / link.bandwidth_bytes_per_s
    assert r["migration_s"] == pytest.approx(expected_s, rel=1e-9, abs=1e-12)
    assert np.all(r["migration_bytes"][migrated] >= r["prompt_tokens"][migrated] * KV_TOKEN_BYTES)
    for k in np.nonzero(migrated & (r["num_migrations"] == 1))[0]:
        assert np.diff(times[k]).max() > r["migration_s"][k]


@pytest.mark.parametrize("name", ["colocated-defrag", "disaggregated", "disaggregated-load-balance", "mixed"])
def test_fast_decode_is_plain_stepping_in_every_layout(name: str) -> None:
    """Decode runs stop wherever another instance could hand over a request, route by this one's state, or
    (while a prefill instance is blocked) free its memory: the fleet's fast path is plain stepping to the bit."""
    cfg = LAYOUTS[name]
    wl = load_workload(W)
    fast = run_fleet(cfg, wl)
    slow = run_fleet(replace(cfg, serve=replace(cfg.serve, fast_decode=False)), wl)
    for col, values in slow.requests.items():
        assert np.array_equal(fast.requests[col], values, equal_nan=values.dtype.kind == "f"), col
    for col, values in slow.steps.items():
        if col != "num_waiting":  # documented: a decode run logs the queue length at its first step
            assert np.array_equal(fast.steps[col], values), col


# ---- directional: disaggregation removes prefill interference from decode steps (Azure LLM 2023) ---------------


def azure_window(kind: str, start_s: float, duration_s: float, rate_scale: float) -> Workload:
    """A window of the raw Azure 2023 CSV (TIMESTAMP, ContextTokens, GeneratedTokens), read directly."""
    found = traces_dir()
    path = Path(found or "") / "azure_llm_2023" / f"AzureLLMInferenceTrace_{kind}.csv"
    if found is None or not path.is_file():
        pytest.skip(f"Azure LLM 2023 trace not available ({path}): set TRACELAB_TRACES or put shared/traces "
                    "beside the checkout")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    stamps = np.array([np.datetime64(row[0].replace(" ", "T"), "ns") for row in rows])
    t = (stamps - stamps.min()) / np.timedelta64(1, "ns") / 1e9
    prompt = np.array([int(row[1]) for row in rows], np.int64)
    output = np.array([int(row[2]) for row in rows], np.int64)
    keep = np.nonzero((t >= start_s) & (t < start_s + duration_s) & (prompt > 0) & (output > 0))[0]
    keep = keep[np.argsort(t[keep], kind="stable")]
    return Workload(f"azure_llm_2023_{kind}", np.array([str(i) for i in keep], dtype=object),
                    (t[keep] - start_s) / rate_scale, prompt[keep], output[keep], np.zeros(len(keep), np.int64))


@pytest.mark.parametrize("kind, rate_scale", [("code", 4.0), ("conv", 2.0)])
def test_disaggregation_lowers_p99_tbt_at_a_ttft_cost(kind: str, rate_scale: float) -> None:
    # Two minutes of the trace, compressed to load two H100s (Llama-2-7B, roofline): 2 colocated instances
    # vs 1 prefill + 1 decode instance over InfiniBand NDR. Colocated decodes share steps with up to 2048-token
    # prefill chunks; disaggregated decode steps carry decodes only, but each request's second token waits for
    # its KV copy (~13 ms for a 1,300-1,700-token prompt) and one GPU does all the prefills.
    wl = azure_window(kind, 600.0, 120.0, rate_scale)
    serve = ServeConfig(router="least_outstanding_tokens", num_replicas=2)
    colo = run_fleet(FleetConfig.colocated(serve), wl)
    dis = run_fleet(FleetConfig(serve=serve, layout="disaggregated", pools=(PoolConfig("prefill"), PoolConfig("decode"))),
                    wl)
    c, d = colo.summary, dis.summary
    ttfd = (dis.requests["transfer_end_s"] - dis.requests["arrival_s"])  # time until the KV is on the decode GPU
    for label, s in (("colocated", c), ("disaggregated", d)):
        print(f"\n{kind} x{rate_scale:g} {label:13s}: p99 TBT (all gaps) {s['tbt_pooled_p99_s'] * 1e3:.1f} ms, "
              f"median per-request p99 TBT {s['tbt_p99_p50_s'] * 1e3:.1f} ms, p99 per-request p99 TBT "
              f"{s['tbt_p99_p99_s'] * 1e3:.1f} ms, TTFT mean {s['ttft_mean_s']:.3f} s p50 {s['ttft_p50_s']:.3f} s, "
              f"E2E mean {s['e2e_mean_s']:.3f} s", end="")
    print(f"\n{kind}: KV copy mean {d['kv_transfer_mean_s'] * 1e3:.1f} ms, p99 {d['kv_transfer_p99_s'] * 1e3:.1f} ms, "
          f"link wait {d['kv_link_wait_mean_s'] * 1e3:.1f} ms; arrival -> KV on decode: mean {np.nanmean(ttfd):.3f} s")
    assert c["num_finished"] == d["num_finished"] > 400 and d["num_kv_transfers"] > 0.9 * d["num_finished"]
    assert d["tbt_pooled_p99_s"] < 0.8 * c["tbt_pooled_p99_s"]
    assert d["tbt_p99_p50_s"] < 0.8 * c["tbt_p99_p50_s"]
    # The TTFT cost: the second token waits for the copy, and the KV reaches the decode GPU later than
    # colocated requests see their first token.
    moved = dis.requests["kv_transfer_bytes"] > 0
    copy_s = (dis.requests["transfer_end_s"] - dis.requests["transfer_start_s"])[moved]
    second_gap_s = np.array([t[1] - t[0] for t in np.array(dis.token_times_s, dtype=object)[moved]])
    assert np.all(second_gap_s > copy_s)
    ttft_s = dis.requests["ttft_s"][moved]
    assert np.all(ttfd[moved] >= ttft_s + copy_s - 1e-12)
    assert np.nanmean(ttfd) > 1.2 * c["ttft_mean_s"] and math.isfinite(d["kv_transfer_p99_s"])
