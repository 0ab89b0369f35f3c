"""Power, energy and cost per request (replay.fleet.power / energy / cost): golden steps by hand, limits,
monotonicity, idle gaps, attribution sums (and exactness against recorded plans), cost arithmetic, the
shipped data table, and an end-to-end run_serve report with plausibility bounds."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest

from replay.fleet import cost
from replay.fleet.energy import attribute_energy, energy_report, energy_summary
from replay.fleet.power import PowerModel, instance_energy, load_power_table, power_model, step_energy
from replay.harness import ServeConfig, run_serve
from replay.serving.config import SchedulerConfig
from replay.serving.executors.cost_model import RooflineCostModel
from replay.serving.executors.simulated import SimulatedExecutor
from replay.serving.plan import Chunk, StepPlan
from replay.serving.policies import QUEUE_POLICIES, VICTIM_POLICIES
from replay.serving.request import Request
from replay.serving.scheduler import Scheduler
from replay.serving.specs import gpu_spec, known_gpus, model_config
from replay.simulate import Replica, simulate
from replay.sources import WorkloadSpec

H100 = {"H100-SXM": PowerModel("H100-SXM", idle_w=100.0, peak_w=700.0, memory_weight=0.5)}


def _steps(**cols) -> dict[str, np.ndarray]:
    n = len(cols["duration_s"])
    base = {"start_s": np.cumsum(np.r_[0.0, cols["duration_s"][:-1]]), "num_waiting": np.zeros(n),
            "num_preempted": np.zeros(n)}
    return {k: np.asarray(v) for k, v in {**base, **cols}.items()}


# -- golden energy of two hand-made steps ---------------------------------------------------------------

def test_golden_energy_two_steps_by_hand():
    # Llama-2-7B on one H100 (roofline defaults: 65% of 989.4 TFLOP/s for matmuls, 50% for attention, 80% of
    # 3.35 TB/s). Step 0: one 512-token prefill chunk; step 1: 4 decodes whose KV fills 40 blocks of 16.
    steps = _steps(duration_s=np.array([0.05, 0.01]), num_tokens=np.array([512, 4]), num_seqs=np.array([1, 4]),
                   num_decodes=np.array([0, 4]), num_prefill_tokens=np.array([512, 0]),
                   kv_blocks_used=np.array([32, 40]))
    out = step_energy(steps, "llama-2-7b", "h100", 1, 16, power_models=H100)

    linear = 32 * (2 * 4096 * 4096 + 2 * 4096 * 4096 + 3 * 4096 * 11008)  # 6,476,005,376
    head = 32000 * 4096
    pair = 4 * 32 * 32 * 128  # attention FLOPs per (query, key) pair
    kv_tok = 2 * 32 * 32 * 128 * 2  # KV bytes per token
    mm, attn, bw = 989.4e12 * 0.65, 989.4e12 * 0.5, 3.35e12 * 0.8
    # step 0: prefill pairs 512 * 512 / 2, KV read+written 2 * 512 tokens
    c0 = 2 * linear * 512 / mm + 2 * head * 1 / mm + pair * 512 * 256 / attn
    m0 = (linear + head) * 2 / bw + kv_tok * 1024 / bw
    # step 1: decode context 40 * 16 = 640 tokens, plus the 4 new tokens' KV written
    c1 = 2 * linear * 4 / mm + 2 * head * 4 / mm + pair * 640 / attn
    m1 = (linear + head) * 2 / bw + kv_tok * (640 + 4) / bw
    flops0 = 2 * (linear * 512 + head) + pair * 512 * 256
    bytes1 = (linear + head) * 2 + kv_tok * 644
    p0 = 100 + 600 * min(1.0, c0 / 0.05 + 0.5 * m0 / 0.05)
    p1 = 100 + 600 * min(1.0, c1 / 0.01 + 0.5 * m1 / 0.01)
    assert out["flops"][0] == pytest.approx(flops0, rel=1e-12)
    assert out["hbm_bytes"][1] == pytest.approx(bytes1, rel=1e-12)
    assert out["power_w"] == pytest.approx([p0, p1], rel=1e-12)
    assert out["energy_j"] == pytest.approx([p0 * 0.05, p1 * 0.01], rel=1e-12)
    # tp=2: each GPU does half the matmul work, and both GPUs draw power
    out2 = step_energy(steps, "llama-2-7b", "h100", 2, 16, power_models=H100)
    assert out2["flops"][0] < out["flops"][0] and np.all(out2["gpu_power_w"] == 2 * out2["power_w"])


def test_step_work_matches_roofline_step_time():
    roof = RooflineCostModel(model_config("llama-3-8b"), gpu_spec("h100"))
    plan = StepPlan()
    for i, cached in enumerate((100, 900, 3000)):
        plan.add(Chunk(req=i, num_tokens=1, num_cached_tokens=cached, produces_token=True, num_output_after=2))
    plan.add(Chunk(req=9, num_tokens=300, num_cached_tokens=512, produces_token=False, num_output_after=0))
    work = roof.step_work(plan.num_tokens, len(plan.chunks), plan.num_decodes, plan.decode_ctx_tokens,
                          300 * (512 + 150), 512 + 600)
    assert roof.step_overhead_s + float(work.kernel_s) == pytest.approx(roof.step_time_s(plan), rel=1e-12)


# -- limits and monotonicity ---------------------------------------------------------------------------

def test_limits_idle_and_peak():
    pm = power_model("h100")
    assert pm.peak_w == gpu_spec("h100").peak_power_w == 700
    assert pm.power_w(0.0, 0.0) == pm.idle_w
    assert pm.power_w(1.0, 0.0) == pm.peak_w == pm.power_w(1.0, 1.0)
    assert pm.idle_w < pm.power_w(0.0, 1.0) < pm.peak_w  # memory-bound streaming stays below TDP
    # A step of only swaps does no forward pass: idle power. A long prefill timed at exactly its compute
    # roofline time (no overhead) is fully compute-bound: peak power.
    roof = RooflineCostModel(model_config("llama-2-7b"), gpu_spec("h100"))
    work = roof.step_work(8192, 1, 0, 0, 8192 * 4096, 2 * 8192)
    steps = _steps(duration_s=np.array([0.003, float(work.compute_s)]), num_tokens=np.array([0, 8192]),
                   num_seqs=np.array([0, 1]), num_decodes=np.array([0, 0]), num_prefill_tokens=np.array([0, 8192]),
                   kv_blocks_used=np.array([0, 512]))
    out = step_energy(steps, "llama-2-7b", "h100", 1, 16)
    assert out["power_w"][0] == pm.idle_w and out["compute_util"][1] == pytest.approx(1.0)
    assert out["power_w"][1] == pm.peak_w


def test_batching_costs_more_per_step_and_less_per_token():
    roof = RooflineCostModel(model_config("llama-2-7b"), gpu_spec("h100"))
    batch = np.array([1, 8, 64, 160])
    ctx = 512
    dur = np.array([float(roof.decode_run_times_s(int(b), int(b) * ctx, 1)[0]) for b in batch])
    steps = _steps(duration_s=dur, num_tokens=batch, num_seqs=batch, num_decodes=batch,
                   num_prefill_tokens=np.zeros(4, dtype=np.int64), kv_blocks_used=batch * ctx // 16)
    e = step_energy(steps, "llama-2-7b", "h100", 1, 16)["energy_j"]
    assert np.all(np.diff(e) > 0)
    assert np.all(np.diff(e / batch) < 0)


def test_idle_gaps_are_counted_per_instance():
    # Instance 0: steps [0, 1) and [3, 4); instance 1: [0, 2). Span (0, 5): idle 3 s and 3 s.
    steps = _steps(duration_s=np.array([1.0, 1.0, 2.0]), num_tokens=np.array([4, 4, 4]),
                   num_seqs=np.array([4, 4, 4]), num_decodes=np.array([4, 4, 4]),
                   num_prefill_tokens=np.zeros(3, dtype=np.int64), kv_blocks_used=np.array([10, 10, 10]))
    steps["start_s"] = np.array([0.0, 3.0, 0.0])
    steps["instance"] = np.array([0, 0, 1])
    steps["gpu"] = np.array(["h100", "h100", "a100"], dtype=object)
    steps["tensor_parallel"] = np.array([1, 1, 2])
    pms = {**H100, "A100-80G": PowerModel("A100-80G", idle_w=50.0, peak_w=400.0)}
    se = step_energy(steps, "llama-2-7b", power_models=pms)
    inst = instance_energy(steps, se["energy_j"], span_s=(0.0, 5.0), power_models=pms)
    assert inst["gpu"].tolist() == ["H100-SXM", "A100-80G"]
    assert inst["busy_s"].tolist() == [2.0, 2.0]
    assert inst["idle_energy_j"].tolist() == [100.0 * 1 * 3.0, 50.0 * 2 * 3.0]
    assert inst["busy_energy_j"] == pytest.approx([se["energy_j"][:2].sum(), se["energy_j"][2]])
    assert se["gpu_power_w"][2] == 2 * se["power_w"][2]


# -- attribution -----------------------------------------------------------------------------------------

class RecordingExecutor(SimulatedExecutor):
    """Records every plan's (request, tokens) chunks (plain stepping only)."""

    def __init__(self, cost_model, true_output_tokens):
        super().__init__(cost_model, true_output_tokens)
        self.plans: list[list[tuple[int, int]]] = []

    def execute(self, plan):
        self.plans.append([(c.req, c.num_tokens) for c in plan.chunks])
        return super().execute(plan)


def _recorded_run(prompts, outputs, arrivals, budget):
    cfg = SchedulerConfig(num_kv_blocks=4000, max_model_len=4096, block_size=16, max_num_batched_tokens=budget,
                          max_num_seqs=64)
    roof = RooflineCostModel(model_config("llama-2-7b"), gpu_spec("h100"))
    reqs = [Request(i, a, p) for i, (a, p) in enumerate(zip(arrivals, prompts))]
    ex = RecordingExecutor(roof, np.asarray(outputs))
    rep = Replica(0, Scheduler(cfg, QUEUE_POLICIES.create("fcfs"), VICTIM_POLICIES.create("last_admitted")), ex,
                  fast_decode=False)
    simulate(reqs, [rep])
    steps = {**rep.log.columns(), "replica": np.zeros(rep.log.num_steps, dtype=np.int64)}
    f = lambda xs: np.array([math.nan if x is None else x for x in xs], dtype=np.float64)  # noqa: E731
    requests = {"replica": np.zeros(len(reqs), dtype=np.int64),
                "first_scheduled_s": f(r.first_scheduled_s for r in reqs),
                "first_token_s": f(r.first_token_s for r in reqs), "finish_s": f(r.finish_s for r in reqs),
                "prompt_tokens": np.asarray(prompts), "prefix_hit_tokens": np.zeros(len(reqs)),
                "arrival_s": np.asarray(arrivals, dtype=np.float64), "num_generated_tokens": np.asarray(outputs),
                "status": np.array(["finished"] * len(reqs), dtype=object)}
    return requests, steps, ex.plans, reqs


def test_attribution_is_exact_when_prompts_fit_one_step():
    rng = np.random.default_rng(7)
    n = 40
    prompts, outputs = rng.integers(20, 300, n), rng.integers(1, 60, n)
    arrivals = np.sort(rng.uniform(0, 1.0, n))
    requests, steps, plans, reqs = _recorded_run(prompts, outputs, arrivals, budget=8192)
    assert all(r.num_preemptions == 0 for r in reqs)
    e = step_energy(steps, "llama-2-7b", "h100", 1, 16)["energy_j"]
    exact = np.zeros(n)
    for s, chunks in enumerate(plans):  # token share of each step's energy, from the recorded plans
        total = sum(t for _, t in chunks)
        for req, t in chunks:
            exact[req] += e[s] * t / total
    att = attribute_energy(requests, steps, e)
    assert att["busy_energy_j"] == pytest.approx(exact, rel=1e-9)
    assert att["unattributed_j"] == pytest.approx(0.0, abs=1e-9 * e.sum())


def test_attribution_sums_to_totals_with_chunked_prefill():
    rng = np.random.default_rng(3)
    n = 30
    prompts, outputs = rng.integers(200, 3000, n), rng.integers(1, 200, n)
    arrivals = np.sort(rng.uniform(0, 2.0, n))
    requests, steps, _, _ = _recorded_run(prompts, outputs, arrivals, budget=512)
    e = step_energy(steps, "llama-2-7b", "h100", 1, 16)["energy_j"]
    att = attribute_energy(requests, steps, e)
    assert att["busy_energy_j"].sum() + att["unattributed_j"] == pytest.approx(e.sum(), rel=1e-12)
    assert np.all(att["busy_energy_j"] > 0) and np.all(att["prefill_energy_j"] > 0)
    # Energy reports add idle energy on top, spread so that per-request energy sums to the run total.
    rep = energy_summary(requests, steps, "llama-2-7b", "h100", 1, 16, span_s=(0.0, float(steps["start_s"][-1] + 5)))
    assert rep.requests["energy_j"].sum() == pytest.approx(rep.summary["energy_j"], rel=1e-12)
    assert rep.summary["idle_energy_j"] > 0


def test_attribution_by_hand_across_disaggregated_instances():
    # Instance 0 prefills A (100 tokens) and B (300) in one step; instance 1 decodes both for two steps.
    steps = _steps(duration_s=np.array([1.0, 0.5, 0.5]), num_tokens=np.array([400, 2, 2]),
                   num_seqs=np.array([2, 2, 2]), num_decodes=np.array([0, 2, 2]),
                   num_prefill_tokens=np.array([400, 0, 0]), kv_blocks_used=np.array([25, 26, 26]))
    steps["start_s"] = np.array([0.0, 1.5, 2.0])
    steps["instance"] = np.array([0, 1, 1])
    steps["gpu"] = np.array(["h100"] * 3, dtype=object)
    steps["tensor_parallel"] = np.array([1, 1, 1])
    requests = {"first_scheduled_s": np.array([0.0, 0.0]), "first_token_s": np.array([1.0, 1.0]),
                "finish_s": np.array([2.5, 2.5]), "prompt_tokens": np.array([100, 300]),
                "prefix_hit_tokens": np.array([0, 0]), "prefill_instance": np.array([0, 0]),
                "decode_instance": np.array([1, 1]), "arrival_s": np.array([0.0, 0.0]),
                "num_generated_tokens": np.array([3, 3]), "status": np.array(["finished"] * 2, dtype=object)}
    att = attribute_energy(requests, steps, np.array([40.0, 10.0, 6.0]))
    assert att["prefill_energy_j"].tolist() == [10.0, 30.0]
    assert att["decode_energy_j"].tolist() == [8.0, 8.0]
    # A third, provisioned H100 instance that never ran: its idle energy reaches no request.
    extra = {"instance": np.array([2]), "gpu": np.array(["h100"], dtype=object), "tensor_parallel": np.array([1])}
    rep = energy_summary(requests, steps, "llama-2-7b", span_s=(0.0, 3.0), power_models=H100, provisioned=extra)
    assert rep.instances["instance"].tolist() == [0, 1, 2] and rep.summary["num_gpus"] == 3
    assert rep.summary["unassigned_energy_j"] == pytest.approx(100.0 * 3.0)
    assert rep.requests["energy_j"].sum() + 300.0 == pytest.approx(rep.summary["energy_j"])
    assert rep.summary["gpu_hours"] == pytest.approx(3 * 3.0 / 3600)


# -- cost -----------------------------------------------------------------------------------------------

def test_cost_arithmetic_by_hand():
    prices = {"h100": 4.0, "a100": 2.0}
    money = cost.run_cost(["h100", "h100", "a100"], [2, 2, 1], 1800.0, prices=prices)
    # 2 GPUs x 0.5 h x 2 instances = 2 GPU-hours of H100 at $4 + 0.5 GPU-hours of A100 at $2 = $9
    assert money["gpu_hours"] == pytest.approx(2.5)
    assert money["cost_usd"] == pytest.approx(9.0)
    assert money["usd_per_hour"] == pytest.approx(18.0)
    assert money["cost_usd_by_type"] == pytest.approx({"A100-80G": 1.0, "H100-SXM": 8.0})
    r = cost.cost_ratios(9.0, 300, 45_000.0, 1800.0)
    assert r["usd_per_1k_requests"] == pytest.approx(30.0)
    assert r["usd_per_1m_output_tokens"] == pytest.approx(200.0)
    assert r["output_tokens_per_usd"] == pytest.approx(5000.0)
    assert cost.cost_ratios(0.0, 0, 0.0, 0.0)["usd_per_1k_requests"] is None
    assert cost.price_per_gpu_hour("h200") == load_power_table()["H200"]["usd_per_gpu_hour"]


def test_power_price_table_is_complete_and_sourced():
    text = resources.files("replay.fleet").joinpath("data", "power_prices.json").read_text(encoding="utf-8")
    assert json.loads(text)["_about"]
    table = load_power_table()
    assert set(known_gpus()) <= set(table)
    for name in known_gpus():
        row, spec = table[name], gpu_spec(name)
        assert 0 < row["idle_power_w"] < spec.peak_power_w
        assert row["usd_per_gpu_hour"] > 0
        assert row["idle_source"].strip() and row["price_source"].strip()
        assert power_model(name).idle_w == row["idle_power_w"]


# -- end to end ------------------------------------------------------------------------------------------

def test_energy_report_of_run_serve_is_plausible():
    w = WorkloadSpec(num_requests=150, rate_per_s=10.0, seed=2, prompt_median_tokens=500, output_median_tokens=150)
    cfg = ServeConfig(workload=w, model="llama-2-7b", gpu="h100", max_model_len=2048)
    res = run_serve(cfg, write=False)
    rep = energy_report(res, cfg)
    s = rep.summary
    assert s["energy_j"] == pytest.approx(s["busy_energy_j"] + s["idle_energy_j"])
    assert rep.requests["energy_j"].sum() + s["unassigned_energy_j"] == pytest.approx(s["energy_j"], rel=1e-9)
    pm = power_model("h100")
    assert pm.idle_w <= s["avg_power_per_gpu_w"] <= pm.peak_w
    # Plausible range for a 7-8B model on one H100: ML.ENERGY leaderboard (Chung et al.) reports
    # ~0.1-0.2 J per output token for Llama-3.1-8B under vLLM at batch 64, more at small batches;
    # Samsi et al. 2023 ("From Words to Watts") measured ~3-4 J/token for LLaMA-65B on V100/A100.
    # A lightly loaded 7B replay (prefill energy included) must land between 0.05 and 5 J/token.
    assert 0.05 < s["energy_per_output_token_j"] < 5.0
    # $/1M output tokens at ~$6/GPU-hour and a few hundred to a few thousand tokens/s: $0.3-$30.
    assert 0.3 < s["usd_per_1m_output_tokens"] < 30.0
    assert s["gpu_hours"] == pytest.approx(s["span_s"] / 3600)
    row = cost.comparison_row(res.summary, s, label="h100-tp1")
    assert row["slo_attainment"] == res.summary["slo_attainment"] and row["cost_usd"] == s["cost_usd"]
    finished = res.requests["status"] == "finished"
    assert np.all(rep.requests["energy_j"][finished] > 0)
    assert np.all(rep.requests["energy_j"][~finished] == 0)
