"""GPU profiles and the cost model built on them; the wall-clock replay and the fidelity report, on the CPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from replay.gpu import profiles_root
from replay.serving.executors.profile_table import ProfileCostModel, read_profile, step_plan_of
from replay.serving.plan import Chunk, StepPlan
from replay.serving.specs import ModelConfig, gpu_spec, model_config

COMMITTED = [("Llama-3-8B", "h100-sxm__llama-3-8b.parquet"), ("Llama-3.2-1B", "h100-sxm__llama-3.2-1b.parquet")]
TINY = ModelConfig("tiny-gqa", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16, ffn_size=96,
                   vocab_size=101, max_model_len=512)


def _decode_plan(n: int, ctx: int) -> StepPlan:
    plan = StepPlan()
    for i in range(n):
        plan.add(Chunk(i, 1, ctx - 1, True, 1))
    return plan


@pytest.mark.parametrize("name, file", COMMITTED)
def test_committed_h100_profiles_load_and_order_steps(name, file):
    """The measured H100 profiles under data/profiles: metadata as documented, step times rising with work."""
    path = profiles_root() / file
    cols, meta = read_profile(path)
    assert meta["gpu_name"].startswith("NVIDIA H100") and meta["model"]["name"] == name
    assert {"linear", "lm_head", "attn_decode", "attn_prefill", "step_decode", "step_prefill", "step_mixed"} <= set(cols["kind"])
    model = model_config(name)
    cm = ProfileCostModel.from_profile(path, model, gpu_spec("h100"))
    small, big, long = (cm.step_time_s(_decode_plan(n, c)) for n, c in ((8, 512), (128, 512), (128, 4000)))
    assert 0 < small < big < long
    prefill = StepPlan()
    prefill.add(Chunk(0, 2048, 0, True, 1))
    assert cm.step_time_s(prefill) > big
    # Decode-only steps in a graph bucket carry the graph overhead, other steps the eager one.
    assert cm.graph_overhead_s < cm.step_overhead_s
    with pytest.raises(ValueError, match="differs from"):
        ProfileCostModel.from_profile(path, model_config("llama-2-7b"), gpu_spec("h100"))


def test_profile_model_is_exact_at_measured_whole_steps_up_to_the_fitted_overhead():
    """At each measured whole step, prediction - measurement spreads around zero (the overheads are medians)."""
    path = profiles_root() / COMMITTED[0][1]
    cols, _ = read_profile(path)
    cm = ProfileCostModel.from_profile(path, model_config("llama-3-8b"), gpu_spec("h100"))
    steps = np.char.startswith(cols["kind"].astype(str), "step_decode")
    rel = [cm.step_time_s(step_plan_of({k: v[i] for k, v in cols.items()})) / cols["wall_s"][i] - 1
           for i in np.flatnonzero(steps)]
    assert abs(float(np.median(rel))) < 0.05 and max(abs(r) for r in rel) < 0.25


def test_fast_decode_runs_equal_single_steps_bit_for_bit():
    cm = ProfileCostModel.from_profile(profiles_root() / COMMITTED[1][1], model_config("llama-3.2-1b"), gpu_spec("h100"))
    for n, ctx0 in ((3, 3 * 700), (64, 64 * 100), (300, 300 * 50)):  # 300: past the largest graph, eager overhead
        run = cm.decode_run_times_s(n, ctx0, 40)
        single = [cm._times_s(n, np.array([ctx0 + i * n], dtype=np.float64), ())[0] for i in range(40)]
        assert run.tolist() == single


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    from replay.gpu.profiler import ProfileGrid, profile_model, write_profile

    grid = ProfileGrid(token_counts=(1, 4, 16, 64, 256), decode_batches=(1, 4, 8), decode_kv=(16, 64, 256),
                       prefill_chunks=(16, 64, 128), prefill_cached=(0, 64, 128), mixed=((4, 64, 32),),
                       step_decode_kv=(16, 128), repeats=4)
    cols, meta = profile_model(TINY, device="cpu", grid=grid, num_kv_blocks=200)
    return write_profile(tmp_path_factory.mktemp("prof") / "cpu__tiny.parquet", cols, meta)


def test_cpu_profile_has_every_documented_row_and_reloads(tiny_profile):
    from replay.gpu.profiler import COLUMNS

    cols, meta = read_profile(tiny_profile)
    assert tuple(cols) == COLUMNS
    kinds = set(cols["kind"].tolist())
    assert kinds == {"linear", "lm_head", "attn_decode", "attn_prefill", "step_decode", "step_prefill", "step_mixed"}
    assert (cols["device_s"] > 0).all() and (cols["device_p10_s"] <= cols["device_p90_s"]).all()
    assert meta["model"]["name"] == "tiny-gqa" and meta["block_size"] == 16 and meta["efficiency"] == []
    dec = cols["kind"] == "attn_decode"
    assert len(set(zip(cols["batch_size"][dec], cols["kv_tokens"][dec]))) == 9  # the full 3 x 3 grid
    cm = ProfileCostModel.from_profile(tiny_profile, TINY, gpu_spec("h100"))
    assert cm.step_overhead_s == cm.graph_overhead_s >= 0  # no graphs on the CPU: one kind of step
    with pytest.raises(ValueError, match="block"):
        ProfileCostModel.from_profile(tiny_profile, TINY, gpu_spec("h100"), block_size=32)


def test_reading_something_else_fails_with_the_file_name(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), bad)
    with pytest.raises(ValueError, match="x.parquet: not a tracelab GPU profile"):
        read_profile(bad)
    with pytest.raises(ValueError, match="no such profile"):
        read_profile(tmp_path / "missing.parquet")


def test_wall_clock_replay_on_the_cpu_and_its_fidelity_report():
    """The real-executor path end to end on the CPU: arrivals on a real clock, every request served, the step
    log in wall time, and a validation report whose 'real' side is this run."""
    from replay.gpu.run import run_gpu_serve
    from replay.gpu.validate import metric_values, relative_errors
    from replay.harness import ServeConfig
    from replay.sources import WorkloadSpec, load_workload

    spec = WorkloadSpec(num_requests=25, rate_per_s=40, prompt_median_tokens=60, output_median_tokens=8,
                        prompt_max_tokens=300, output_max_tokens=40)
    cfg = ServeConfig(workload=spec, max_model_len=512, num_kv_blocks=40, max_num_seqs=16)
    wl = load_workload(cfg.workload)
    res, ex, ran = run_gpu_serve(cfg, wl, device="cpu", model=TINY, check=lambda r: r.scheduler.check_integrity())
    s = res.summary
    assert s["num_finished"] == 25 and s["num_steps"] == len(res.steps["start_s"]) == len(ex.step_device_s)
    start, end = res.steps["start_s"], res.steps["start_s"] + res.steps["duration_s"]
    assert (start[1:] >= end[:-1] - 1e-9).all(), "steps overlap in wall time"
    assert (res.requests["first_token_s"] >= res.requests["arrival_s"]).all()
    assert ran.num_kv_blocks == 40 and not ran.enable_prefix_caching
    assert res.requests["num_generated_tokens"].tolist() == wl.output_tokens.tolist()
    v = metric_values(res)
    assert set(v) == {f"{m}_{q}" for m in ("ttft", "tbt", "e2e") for q in ("p50", "p90", "p99")} | {"throughput"}
    assert all(e == 0 for e in relative_errors(v, v).values())
    doubled = {k: 2 * x for k, x in v.items()}
    assert all(abs(e - 1) < 1e-12 for e in relative_errors(v, doubled).values())


def test_gpu_run_refuses_what_the_executor_does_not_do():
    from replay.gpu.run import check_gpu_config
    from replay.harness import ServeConfig

    with pytest.raises(ValueError, match="one replica.*recompute"):
        check_gpu_config(replace(ServeConfig(), num_replicas=2, preemption_mode="swap"))


def test_safetensors_checkpoint_replaces_the_random_weights(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    from replay.serving.executors.torch_model import LlamaWeights

    w = LlamaWeights(TINY, torch.device("cpu"), torch.float32, seed=1)
    m, e, d, f = TINY, TINY.hidden_size, TINY.head_dim, TINY.ffn_size
    g = torch.Generator().manual_seed(9)
    tensors = {"model.embed_tokens.weight": torch.randn(m.vocab_size, e, generator=g),
               "model.norm.weight": torch.randn(e, generator=g), "lm_head.weight": torch.randn(m.vocab_size, e, generator=g)}
    for i in range(m.num_layers):
        p = f"model.layers.{i}."
        for name, shape in (("input_layernorm", (e,)), ("post_attention_layernorm", (e,)),
                            ("self_attn.q_proj", (m.num_heads * d, e)), ("self_attn.k_proj", (m.num_kv_heads * d, e)),
                            ("self_attn.v_proj", (m.num_kv_heads * d, e)), ("self_attn.o_proj", (e, m.num_heads * d)),
                            ("mlp.gate_proj", (f, e)), ("mlp.up_proj", (f, e)), ("mlp.down_proj", (e, f))):
            tensors[p + name + ".weight"] = torch.randn(*shape, generator=g)
    st.save_file(tensors, str(tmp_path / "model.safetensors"))
    w.load_safetensors(tmp_path)
    assert torch.equal(w.layers[1]["qkv"][: m.num_heads * d], tensors["model.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(w.layers[0]["gate_up"][f:], tensors["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(w.lm_head, tensors["lm_head.weight"])
    del tensors["model.layers.1.mlp.down_proj.weight"]
    st.save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="model.layers.1.mlp.down_proj.weight.*missing"):
        w.load_safetensors(tmp_path / "model.safetensors")
