"""Cost models (linear, roofline, measured table) and the GPU / model specs they stand on."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.serving.executors.cost_model import (DEFAULT_STEP_OVERHEAD_S, LinearCostModel, RooflineCostModel,
                                                 TableCostModel)
from replay.serving.plan import Chunk, StepPlan
from replay.serving.specs import (GpuSpec, ModelConfig, gpu_spec, known_gpus, known_models, kv_block_bytes,
                                  kv_bytes_per_token, kv_capacity_blocks, model_config, param_count,
                                  weight_bytes_per_gpu)

H100, A100 = gpu_spec("h100"), gpu_spec("A100")
LLAMA7, LLAMA70 = model_config("llama-2-7b"), model_config("Llama-2-70B")
MLP_CSV, ATTN_CSV = "vidur_h100_llama2_7b_mlp.csv", "h100_llama2_7b_attention_torchsdpa.csv"


def _profiles() -> Path | None:
    env = os.environ.get("TRACELAB_PROFILES")
    found = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "profiles"
    return found if (found / MLP_CSV).is_file() and (found / ATTN_CSV).is_file() else None


@pytest.fixture(scope="module")
def profiles() -> Path:
    found = _profiles()
    if found is None:
        pytest.skip("measured profiles not available: set TRACELAB_PROFILES or put shared/profiles beside the checkout")
    return found


@pytest.fixture(scope="module")
def table(profiles: Path) -> TableCostModel:
    return TableCostModel.from_vidur_profiles(profiles / MLP_CSV, profiles / ATTN_CSV, LLAMA7, H100)


def plan_of(decode_cached=(), prefills=(), swap_in=0, swap_out=0) -> StepPlan:
    """A plan with one decode per cached length in `decode_cached` and one chunk per (tokens, cached)."""
    plan = StepPlan(swap_in_blocks=swap_in, swap_out_blocks=swap_out)
    for i, cached in enumerate(decode_cached):
        plan.add(Chunk(req=i, num_tokens=1, num_cached_tokens=cached, produces_token=True, num_output_after=1))
    for j, (tokens, cached) in enumerate(prefills):
        plan.add(Chunk(req=10_000 + j, num_tokens=tokens, num_cached_tokens=cached, produces_token=False,
                       num_output_after=0))
    return plan


# -- specs ---------------------------------------------------------------------------------------------

def test_names_are_case_insensitive_with_aliases():
    assert gpu_spec("h100").name == gpu_spec("H100-SXM").name == "H100-SXM"
    assert gpu_spec("a100").name == "A100-80G" and gpu_spec("H200").name == "H200"
    assert model_config("LLAMA_3_8B").name == model_config("meta-llama/Meta-Llama-3-8B").name == "Llama-3-8B"
    assert model_config("llama-3.2-1b").tie_word_embeddings
    assert set(known_gpus()) == {"A100-80G", "H100-SXM", "H200"}
    assert set(known_models()) == {"Llama-3.2-1B", "Llama-2-7B", "Llama-3-8B", "Llama-2-70B"}


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="H100-SXM"):
        gpu_spec("v100")
    with pytest.raises(KeyError, match="Llama-2-70B"):
        model_config("gpt-2")


def test_configs_validate():
    with pytest.raises(ValueError, match="hbm_bandwidth"):
        GpuSpec("x", 1e15, -1.0, 80 * 2**30, 64e9, 450e9)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        ModelConfig("m", 2, 512, 6, 4, 64, 1024, 1000)
    with pytest.raises(ValueError, match="divisible"):
        weight_bytes_per_gpu(LLAMA7, tp=3)


@pytest.mark.parametrize("name, billions", [("Llama-3.2-1B", 1.236), ("Llama-2-7B", 6.738),
                                            ("Llama-3-8B", 8.030), ("Llama-2-70B", 68.977)])
def test_param_counts_match_published_sizes(name, billions):
    assert param_count(model_config(name)) / 1e9 == pytest.approx(billions, abs=0.002)


def test_kv_bytes_and_capacity():
    assert kv_bytes_per_token(LLAMA7) == 2 * 32 * 32 * 128 * 2 == 512 * 1024
    assert kv_bytes_per_token(LLAMA70, tp=4) == 2 * 80 * 2 * 128 * 2
    assert kv_bytes_per_token(LLAMA70, tp=16 // 2) == 2 * 80 * 1 * 128 * 2
    blocks = kv_capacity_blocks(LLAMA7, H100, tp=1, block_size=16)
    kv_gb = blocks * kv_block_bytes(LLAMA7, 16) / 1e9
    assert 3_000 < blocks < 10_000 and 55 < kv_gb < 70
    assert kv_capacity_blocks(LLAMA7, H100, gpu_memory_utilization=0.5) < blocks
    with pytest.raises(ValueError, match="does not fit on H100-SXM with tp=1"):
        kv_capacity_blocks(LLAMA70, H100, tp=1)
    assert kv_capacity_blocks(LLAMA70, H100, tp=4) > kv_capacity_blocks(LLAMA70, H100, tp=2) > 0


# -- linear ------------------------------------------------------------------------------------------

LINEAR = LinearCostModel(base_s=0.01, per_token_s=0.001, per_ctx_token_s=1e-5, swap_per_block_s=0.002)


def test_linear_decode_step_by_hand():
    # decodes with 9 and 19 cached: 2 tokens, context (9+1) + (19+1) = 30
    assert LINEAR.step_time_s(plan_of([9, 19])) == pytest.approx(0.01 + 0.002 + 30e-5, rel=1e-12)


def test_linear_mixed_step_with_swaps_by_hand():
    # 2 decodes (ctx 30) + chunk of 100 tokens over 50 cached: 102 tokens, ctx 30 + 150, 3 + 1 blocks swapped
    plan = plan_of([9, 19], [(100, 50)], swap_in=3, swap_out=1)
    assert LINEAR.step_time_s(plan) == pytest.approx(0.01 + 0.102 + 180e-5 + 0.008, rel=1e-12)


def test_linear_first_prefill_and_swap_only_step():
    assert LINEAR.step_time_s(plan_of(prefills=[(7, 0)])) == pytest.approx(0.01 + 0.007 + 7e-5, rel=1e-12)
    assert LINEAR.step_time_s(plan_of(swap_out=5)) == pytest.approx(0.01, rel=1e-12)  # no tokens: swaps only
    assert LINEAR.swap_time_s(3) == pytest.approx(0.006)


# -- roofline ----------------------------------------------------------------------------------------

def test_roofline_single_decode_is_weight_streaming():
    step_s = RooflineCostModel(LLAMA7, H100).step_time_s(plan_of([511]))
    floor_s = weight_bytes_per_gpu(LLAMA7) / H100.hbm_bandwidth_bytes_per_s
    assert 3.5e-3 < floor_s < step_s < 7e-3
    # memory-bound: slower memory slows it, slower compute does not
    assert RooflineCostModel(LLAMA7, H100, memory_efficiency=0.4).step_time_s(plan_of([511])) > 1.8 * step_s
    assert RooflineCostModel(LLAMA7, H100, compute_efficiency=0.3).step_time_s(plan_of([511])) == step_s


def test_roofline_long_prefill_is_compute_bound():
    plan = plan_of(prefills=[(4096, 0)])
    step_s = RooflineCostModel(LLAMA7, H100).step_time_s(plan)
    # only the one-row LM head (memory-bound) feels the memory efficiency
    assert RooflineCostModel(LLAMA7, H100, memory_efficiency=0.4).step_time_s(plan) == pytest.approx(step_s, rel=0.01)
    assert RooflineCostModel(LLAMA7, H100, compute_efficiency=0.325).step_time_s(plan) > 1.8 * step_s
    flops = 2 * param_count(LLAMA7) * 4096
    assert step_s == pytest.approx(flops / (H100.peak_bf16_flop_per_s * 0.65), rel=0.15)


def test_roofline_monotone_in_tokens_and_context():
    roof = RooflineCostModel(LLAMA7, H100)
    prefill = [roof.step_time_s(plan_of(prefills=[(q, 0)])) for q in (1, 16, 128, 512, 2048, 4096)]
    cached = [roof.step_time_s(plan_of(prefills=[(256, c)])) for c in (0, 256, 1024, 3000)]
    batch = [roof.step_time_s(plan_of([1000] * n)) for n in (1, 8, 64, 256)]
    ctx = [roof.step_time_s(plan_of([c] * 32)) for c in (10, 500, 2000, 4000)]
    for series in (prefill, cached, batch, ctx):
        assert all(a < b for a, b in zip(series, series[1:])), series


def test_roofline_tensor_parallel_and_gpu_ordering():
    for plan in (plan_of([1000] * 16), plan_of(prefills=[(2048, 0)])):
        tp1 = RooflineCostModel(LLAMA70, H100, tp=1).step_time_s(plan)
        tp2 = RooflineCostModel(LLAMA70, H100, tp=2).step_time_s(plan)
        assert tp2 < 0.7 * tp1
        assert RooflineCostModel(LLAMA7, A100).step_time_s(plan) > RooflineCostModel(LLAMA7, H100).step_time_s(plan)
        assert RooflineCostModel(LLAMA7, gpu_spec("h200")).step_time_s(plan) <= \
            RooflineCostModel(LLAMA7, H100).step_time_s(plan)


def test_roofline_swaps_cross_pcie():
    roof = RooflineCostModel(LLAMA7, H100, link_efficiency=1.0)
    assert roof.swap_time_s(10) == pytest.approx(10 * 16 * 512 * 1024 / 64e9)
    assert roof.step_time_s(plan_of([100], swap_in=10)) == pytest.approx(
        roof.step_time_s(plan_of([100])) + roof.swap_time_s(10), rel=1e-12)


# -- measured table ----------------------------------------------------------------------------------

def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_table_reproduces_decode_grid_points(table, profiles):
    rows = [r for r in _rows(profiles / ATTN_CSV) if r["is_prefill"] == "False"]
    for r in rows[::97]:
        got = table.attention_decode_layer_s(int(r["batch_size"]), float(r["kv_cache_size"]))
        assert float(got) == float(r["time_stats.attn_decode.median"]) / 1000.0


def test_table_reproduces_mlp_and_prefill_grid_points(table, profiles):
    ops = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
    row = next(r for r in _rows(profiles / MLP_CSV)
               if r["num_tokens"] == "24" and r["num_tensor_parallel_workers"] == "1")
    assert table.layer_ops_time_s(24) == sum(float(row[f"time_stats.{op}.median"]) / 1000.0 for op in ops)
    for r in _rows(profiles / ATTN_CSV)[:390:23]:
        if r["is_prefill"] == "True":
            got = table.attention_prefill_layer_s(int(r["prefill_chunk_size"]), int(r["kv_cache_size"]))
            assert float(got[0]) == pytest.approx(float(r["time_stats.attn_prefill.median"]) / 1000.0, rel=1e-12)


def test_table_interpolates_between_grid_points(table):
    # decode batch 64 between KV grid points 992 and 1088 per sequence
    lo, hi = (float(table.attention_decode_layer_s(64, kv)) for kv in (992.0, 1088.0))
    between = table.attention_decode_layer_s(64, np.linspace(992.0, 1088.0, 25))
    assert lo < hi and np.all(np.diff(between) >= 0) and between[0] == lo and between[-1] == hi
    steps = [table.step_time_s(plan_of([c - 1] * 64)) for c in range(992, 1089, 8)]
    assert all(a <= b for a, b in zip(steps, steps[1:]))
    # prefill chunk between profiled chunk sizes, with a cached context between profiled points
    mid = float(table.attention_prefill_layer_s(320, 700)[0])
    assert float(table.attention_prefill_layer_s(256, 700)[0]) < mid < float(table.attention_prefill_layer_s(384, 700)[0])


def test_table_step_composition_and_extrapolation(table):
    step = table.step_time_s(plan_of([1023] * 32))
    layer = table.layer_ops_time_s(32) + float(table.attention_decode_layer_s(32, 1024.0))
    expected = DEFAULT_STEP_OVERHEAD_S + table.emb_time_s(32) + table.lm_head_time_s(32) + 32 * layer
    assert step == pytest.approx(expected, rel=1e-12)
    # beyond the grid: proportional, so monotone and finite
    big = [table.step_time_s(plan_of(prefills=[(q, 0)])) for q in (4096, 6000, 8192)]
    assert big[0] < big[1] < big[2] < 3 * big[0]
    assert table.step_time_s(plan_of([2000] * 200)) > table.step_time_s(plan_of([2000] * 128))


def test_table_refuses_a_different_shape(profiles):
    with pytest.raises(ValueError, match="no rows for Llama-3-8B"):
        TableCostModel.from_vidur_profiles(profiles / MLP_CSV, profiles / ATTN_CSV, model_config("llama-3-8b"), H100)
    with pytest.raises(ValueError, match="no rows for"):
        TableCostModel.from_vidur_profiles(profiles / MLP_CSV, profiles / ATTN_CSV, LLAMA7, H100, tp=2)
    with pytest.raises(ValueError, match="block_size"):
        TableCostModel.from_vidur_profiles(profiles / MLP_CSV, profiles / ATTN_CSV, LLAMA7, H100, block_size=32)


def test_table_from_profiles_dir(profiles):
    model = TableCostModel.from_profiles_dir(LLAMA7, H100, profiles)
    assert 4e-3 < model.step_time_s(plan_of([127])) < 8e-3


# -- the fast-path contract, for every model --------------------------------------------------------

def _models() -> list:
    models = [LINEAR, RooflineCostModel(LLAMA7, H100), RooflineCostModel(LLAMA70, A100, tp=4),
              RooflineCostModel(model_config("llama-3.2-1b"), gpu_spec("h200"))]
    found = _profiles()
    if found is not None:
        models.append(TableCostModel.from_vidur_profiles(found / MLP_CSV, found / ATTN_CSV, LLAMA7, H100))
    return models


MODELS = _models()


@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, len(MODELS) - 1),
       cached=st.lists(st.integers(1, 6000), min_size=1, max_size=300),
       num_steps=st.integers(1, 40))
def test_decode_run_is_bit_identical_to_single_steps(which, cached, num_steps):
    model = MODELS[which]
    n, ctx0 = len(cached), sum(c + 1 for c in cached)
    run = model.decode_run_times_s(n, ctx0, num_steps)
    assert run.dtype == np.float64 and run.shape == (num_steps,)
    for i in range(num_steps):
        plan = plan_of([c + i for c in cached])
        assert plan.decode_ctx_tokens == ctx0 + i * n
        assert run[i] == model.step_time_s(plan)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_decode_run_edges(model):
    assert model.decode_run_times_s(4, 100, 0).shape == (0,)
    with pytest.raises(ValueError):
        model.decode_run_times_s(0, 100, 3)
    run = model.decode_run_times_s(64, 64 * 500, 10_000)
    assert np.all(np.diff(run) >= 0) and np.all(run > 0)
