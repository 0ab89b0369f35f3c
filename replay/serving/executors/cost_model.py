"""Cost models: how long one `StepPlan` takes on a GPU, in seconds.

Three models satisfy the `CostModel` protocol (executors/base.py):

- `LinearCostModel`: a hand-computable affine formula, for golden tests.
- `RooflineCostModel`: per-step roofline from a `ModelConfig` and a `GpuSpec` (no measurements needed).
- `TableCostModel`: interpolates measured per-operator GPU times in Vidur's CSV layout.

Fast-path contract: every model computes a step through one vectorized function, `_times_s(num_decodes,
decode_ctx_tokens, prefill_chunks)`, whose only array argument is the decode context. `step_time_s` calls
it with a length-1 array, `decode_run_times_s` with `ctx0 + n * arange(k)`, so the two agree to the last
bit (numpy's elementwise arithmetic and `np.interp` do not depend on the array length). Swaps are charged
after that function and never appear in a decode run.

A step with no tokens (only swaps) costs just its swaps: there is no forward pass.
"""

from __future__ import annotations

import csv
import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from replay.serving.plan import StepPlan
from replay.serving.specs import (GpuSpec, ModelConfig, check_tensor_parallel, kv_block_bytes,
                                  kv_bytes_per_token, layer_linear_param_count)

DEFAULT_STEP_OVERHEAD_S = 300e-6
"""Fixed cost of every step outside the GPU kernels: scheduling, input preparation, kernel launches and
sampling (a few hundred microseconds per step in vLLM-class servers on a fast host CPU)."""

__all__ = ["DEFAULT_STEP_OVERHEAD_S", "LinearCostModel", "RooflineCostModel", "StepWork", "TableCostModel",
           "profiles_dir"]


class _StepCostModel:
    """Shared plumbing: the public methods route through `_times_s` (see the module docstring)."""

    __slots__ = ()

    def _times_s(self, num_decodes: int, decode_ctx_tokens: np.ndarray,
                 prefill_chunks: Sequence[tuple[int, int]]) -> np.ndarray:
        raise NotImplementedError

    def swap_time_s(self, num_blocks: int) -> float:
        """Seconds to copy `num_blocks` KV blocks between host and GPU (either direction)."""
        raise NotImplementedError

    def step_time_s(self, plan: StepPlan) -> float:
        """Duration of one step, swaps included."""
        swap_s = self.swap_time_s(plan.swap_in_blocks + plan.swap_out_blocks)
        if plan.num_tokens == 0:
            return swap_s
        ctx = np.array([plan.decode_ctx_tokens], dtype=np.float64)
        return float(self._times_s(plan.num_decodes, ctx, plan.prefill_chunks)[0]) + swap_s

    def decode_run_times_s(self, num_decodes: int, decode_ctx_tokens0: int, num_steps: int) -> np.ndarray:
        """Durations of `num_steps` decode-only steps; step i has `decode_ctx_tokens0 + i * num_decodes` context."""
        if num_decodes < 1 or num_steps < 0 or decode_ctx_tokens0 < num_decodes:
            raise ValueError(f"bad decode run: num_decodes={num_decodes}, decode_ctx_tokens0={decode_ctx_tokens0}, "
                             f"num_steps={num_steps}")
        ctx = (decode_ctx_tokens0 + num_decodes * np.arange(num_steps, dtype=np.int64)).astype(np.float64)
        return np.asarray(self._times_s(num_decodes, ctx, ()), dtype=np.float64)


def _non_negative(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        if not getattr(obj, name) >= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be >= 0, got {getattr(obj, name)!r}")


def _fraction(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        if not 0 < getattr(obj, name) <= 1:
            raise ValueError(f"{type(obj).__name__}.{name} must be in (0, 1], got {getattr(obj, name)!r}")


@dataclass(frozen=True, slots=True)
class LinearCostModel(_StepCostModel):
    """step_s = base_s + per_token_s * num_tokens + per_ctx_token_s * ctx_tokens + swap_per_block_s * swap_blocks.

    `num_tokens` = decodes + prefill chunk tokens; `ctx_tokens` = decode_ctx_tokens (sum of cached + 1 over
    decodes) + sum over prefill chunks of (cached + chunk); `swap_blocks` = swap-in + swap-out blocks.
    Evaluated left to right in that order. Exactly this formula: golden tests compute it by hand.
    """

    base_s: float
    """Fixed cost of every step with at least one token, seconds."""
    per_token_s: float
    """Cost per token computed in the step, seconds."""
    per_ctx_token_s: float
    """Cost per token of attention context (cached + new), seconds."""
    swap_per_block_s: float = 0.0
    """Cost per KV block swapped in or out, seconds."""

    def __post_init__(self) -> None:
        _non_negative(self, ("base_s", "per_token_s", "per_ctx_token_s", "swap_per_block_s"))

    def _times_s(self, num_decodes, decode_ctx_tokens, prefill_chunks):
        num_tokens = num_decodes + sum(q for q, _ in prefill_chunks)
        prefill_ctx = float(sum(c + q for q, c in prefill_chunks))
        return self.base_s + self.per_token_s * num_tokens + self.per_ctx_token_s * (decode_ctx_tokens + prefill_ctx)

    def swap_time_s(self, num_blocks: int) -> float:
        """`swap_per_block_s * num_blocks`."""
        return self.swap_per_block_s * num_blocks


@dataclass(frozen=True, slots=True)
class RooflineCostModel(_StepCostModel):
    """Analytic roofline per step, per GPU of a tensor-parallel group of `tp`.

    - Linear layers: 2 * params * tokens FLOPs against the weights read once per step; time is
      max(FLOPs / (peak * compute_efficiency), bytes / (HBM bandwidth * memory_efficiency)). The LM head
      is charged for one token per sequence in the step (vLLM computes logits only at each request's last
      scheduled position), the embedding lookup is free.
    - Attention, decodes and prefill chunks as two parts, each max(compute, memory): FLOPs
      4 * layers * heads * head_dim per (query, key) pair, i.e. ctx pairs per decode and q * (cached + q/2)
      per causal prefill chunk; bytes = KV of the context read + KV of the new tokens written.
      Compute uses `attention_compute_efficiency` (flash kernels reach a lower fraction of peak).
    - tp > 1: weights, heads and KV split `tp` ways, plus 2 ring all-reduces per layer of
      tokens * hidden * dtype bytes: latency + 2 (tp-1)/tp * bytes / (NVLink * link_efficiency).
    - Swaps: blocks * per-GPU block bytes / (PCIe * link_efficiency); each GPU uses its own link.
    - Plus `step_overhead_s` per step.

    Default efficiencies are rough fits to Vidur's H100 Llama-2-7B profile (see the tests' report).
    """

    model: ModelConfig
    """Model shape."""
    gpu: GpuSpec
    """GPU each tensor-parallel worker runs on."""
    tp: int = 1
    """Tensor-parallel degree."""
    block_size: int = 16
    """Tokens per KV block (for swap bytes)."""
    step_overhead_s: float = DEFAULT_STEP_OVERHEAD_S
    """Fixed CPU / launch cost per step, seconds."""
    compute_efficiency: float = 0.65
    """Fraction of peak FLOP/s the linear layers reach."""
    attention_compute_efficiency: float = 0.5
    """Fraction of peak FLOP/s the attention kernels reach."""
    memory_efficiency: float = 0.8
    """Fraction of HBM bandwidth reached when streaming weights or KV."""
    link_efficiency: float = 0.8
    """Fraction of NVLink / PCIe bandwidth reached by all-reduces and swaps."""
    allreduce_latency_s: float = 10e-6
    """Fixed cost of one all-reduce call, seconds."""
    _const: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        check_tensor_parallel(self.model, self.tp)
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        _non_negative(self, ("step_overhead_s", "allreduce_latency_s"))
        _fraction(self, ("compute_efficiency", "attention_compute_efficiency", "memory_efficiency",
                         "link_efficiency"))
        m, g, tp = self.model, self.gpu, self.tp
        linear_params = m.num_layers * layer_linear_param_count(m) / tp
        head_params = m.vocab_size * m.hidden_size / tp
        const = (
            g.peak_bf16_flop_per_s * self.compute_efficiency,            # 0 linear FLOP/s
            g.peak_bf16_flop_per_s * self.attention_compute_efficiency,  # 1 attention FLOP/s
            g.hbm_bandwidth_bytes_per_s * self.memory_efficiency,        # 2 HBM bytes/s
            linear_params, head_params,                                  # 3, 4
            4.0 * m.num_layers * (m.num_heads // tp) * m.head_dim,       # 5 attention FLOPs per pair
            float(kv_bytes_per_token(m, tp)),                            # 6 KV bytes per token
        )
        object.__setattr__(self, "_const", const)

    def _allreduce_s(self, num_tokens: int) -> float:
        if self.tp == 1:
            return 0.0
        m = self.model
        ring_bytes = 2.0 * (self.tp - 1) / self.tp * num_tokens * m.hidden_size * m.dtype_bytes
        per_call_s = self.allreduce_latency_s + ring_bytes / (self.gpu.nvlink_bandwidth_bytes_per_s * self.link_efficiency)
        return 2 * m.num_layers * per_call_s

    def _times_s(self, num_decodes, decode_ctx_tokens, prefill_chunks):
        lin_flop_s, attn_flop_s, hbm_s, linear_params, head_params, pair_flops, kv_tok = self._const
        dtype = self.model.dtype_bytes
        num_tokens = num_decodes + sum(q for q, _ in prefill_chunks)
        num_seqs = num_decodes + len(prefill_chunks)
        body_s = max(2.0 * linear_params * num_tokens / lin_flop_s, linear_params * dtype / hbm_s)
        head_s = max(2.0 * head_params * num_seqs / lin_flop_s, head_params * dtype / hbm_s)
        prefill_pairs = sum(q * (c + q / 2.0) for q, c in prefill_chunks)
        prefill_kv = sum(c + 2 * q for q, c in prefill_chunks)
        prefill_s = max(pair_flops * prefill_pairs / attn_flop_s, kv_tok * prefill_kv / hbm_s)
        fixed_s = self.step_overhead_s + body_s + head_s + prefill_s + self._allreduce_s(num_tokens)
        decode_s = np.maximum(pair_flops * decode_ctx_tokens / attn_flop_s,
                              kv_tok * (decode_ctx_tokens + num_decodes) / hbm_s)
        return fixed_s + decode_s

    def swap_time_s(self, num_blocks: int) -> float:
        """Per-GPU block bytes over the GPU's PCIe link at `link_efficiency`."""
        block_bytes = kv_block_bytes(self.model, self.block_size, self.tp)
        return num_blocks * block_bytes / (self.gpu.pcie_bandwidth_bytes_per_s * self.link_efficiency)

    def step_work(self, num_tokens, num_seqs, num_decodes, decode_ctx_tokens, prefill_pairs,
                  prefill_kv_tokens) -> "StepWork":
        """Per-GPU FLOPs, HBM bytes and roofline times of steps given by aggregates (numpy arrays or scalars).

        The same terms as `_times_s` (body, LM head, prefill attention, decode attention), in aggregate form:
        `prefill_pairs` = sum over chunks of q * (cached + q/2), `prefill_kv_tokens` = sum of cached + 2q.
        `kernel_s` = the sum of each term's max(compute, memory), so `step_overhead_s + kernel_s` + all-reduces
        is `step_time_s` (swaps aside); the power model reads `compute_s` and `memory_s`. Steps with no token
        do no forward pass: all zero. Kept beside `_times_s`, not called by it (the hot path stays as is).
        """
        lin_flop_s, attn_flop_s, hbm_s, linear_params, head_params, pair_flops, kv_tok = self._const
        dtype = self.model.dtype_bytes
        t, s, d, ctx, pairs, pkv = (np.asarray(x, dtype=np.float64) for x in
                                    (num_tokens, num_seqs, num_decodes, decode_ctx_tokens, prefill_pairs,
                                     prefill_kv_tokens))
        on = t > 0
        c_parts = (2.0 * linear_params * t / lin_flop_s, 2.0 * head_params * s / lin_flop_s,
                   pair_flops * pairs / attn_flop_s, pair_flops * ctx / attn_flop_s)
        m_parts = (np.where(on, linear_params * dtype / hbm_s, 0.0), np.where(on, head_params * dtype / hbm_s, 0.0),
                   kv_tok * pkv / hbm_s, kv_tok * (ctx + d) / hbm_s)
        flops = 2.0 * (linear_params * t + head_params * s) + pair_flops * (pairs + ctx)
        hbm_bytes = np.where(on, (linear_params + head_params) * dtype, 0.0) + kv_tok * (pkv + ctx + d)
        return StepWork(flops=flops, hbm_bytes=hbm_bytes, compute_s=sum(c_parts), memory_s=sum(m_parts),
                        kernel_s=sum(np.maximum(c, m) for c, m in zip(c_parts, m_parts)))


@dataclass(frozen=True, slots=True)
class StepWork:
    """What `RooflineCostModel.step_work` returns: per-GPU work of each step (arrays, one value per step)."""

    flops: np.ndarray
    """Floating-point operations per GPU."""
    hbm_bytes: np.ndarray
    """Device-memory bytes read or written per GPU (weights once per step, KV read and written)."""
    compute_s: np.ndarray
    """Sum of the terms' compute times at the model's derated FLOP/s."""
    memory_s: np.ndarray
    """Sum of the terms' memory times at the model's derated HBM bandwidth."""
    kernel_s: np.ndarray
    """Sum of the terms' roofline times max(compute, memory) (no overhead, no all-reduce)."""


# -- measured tables ------------------------------------------------------------------------------------

PROFILES_ENV = "TRACELAB_PROFILES"
"""Environment variable naming the measured-profiles folder."""
DEFAULT_MLP_CSV = "vidur_h100_llama2_7b_mlp.csv"
"""Non-attention operator profile inside the profiles folder (Vidur's H100 Llama-2-7B mlp.csv)."""
DEFAULT_ATTENTION_CSV = "h100_llama2_7b_attention_torchsdpa.csv"
"""Attention profile inside the profiles folder (PyTorch SDPA on an H100, Vidur's column layout)."""
_MLP_OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
            "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
_VOCAB_PAD_TOLERANCE = 0.05
"""Vidur pads vocabularies (Llama-2's 32,000 to 32,768); a profile's vocab may exceed the model's by this much."""


def profiles_dir(path: str | Path | None = None) -> Path:
    """The measured-profiles folder: `path`, else $TRACELAB_PROFILES, else ../shared/profiles from the cwd."""
    chosen = path if path is not None else os.environ.get(PROFILES_ENV) or os.path.join("..", "shared", "profiles")
    return Path(chosen).resolve()


def _interp_s(x, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear in x; clamped below xp[0]; above xp[-1] proportional to x (fp[-1] * x / xp[-1])."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > xp[-1], fp[-1] * (x / xp[-1]), np.interp(x, xp, fp))


def _interp_scalar(x: float, xp: list[float], fp: list[float]) -> float:
    """`_interp_s` for one point on Python lists (a step's scalar lookups; ~10x cheaper than numpy)."""
    if x > xp[-1]:
        return fp[-1] * (x / xp[-1])
    if x <= xp[0]:
        return fp[0]
    j = bisect_right(xp, x) - 1
    if xp[j] == x:
        return fp[j]
    return fp[j] + (fp[j + 1] - fp[j]) * ((x - xp[j]) / (xp[j + 1] - xp[j]))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ms_to_s(rows: list[dict[str, str]], column: str) -> np.ndarray:
    return np.array([float(r[column]) for r in rows], dtype=np.float64) / 1000.0


def _mean_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys and the mean value per key (duplicate profile rows are averaged)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    return uniq.astype(np.float64), sums / np.bincount(inverse)


def _check_mlp_shape(rows: list[dict[str, str]], model: ModelConfig, tp: int, path: Path) -> list[dict[str, str]]:
    """The rows of `tp` whose shape columns match `model`; ValueError naming what the file holds otherwise."""
    def shape(r):
        return (int(r["n_head"]), int(r["n_kv_head"]), int(r["n_embd"]), int(r["n_expanded_embd"]),
                r["use_gated_mlp"].strip().lower() == "true", int(r["vocab_size"]))

    want = (model.num_heads, model.num_kv_heads, model.hidden_size, model.ffn_size, model.gated_mlp)

    def ok(r):
        s = shape(r)
        return s[:5] == want and 0 <= s[5] - model.vocab_size <= _VOCAB_PAD_TOLERANCE * model.vocab_size

    matching = [r for r in rows if ok(r)]
    if not matching:
        found = sorted({shape(r) for r in rows})
        raise ValueError(f"{path.name} has no rows for {model.name} (n_head, n_kv_head, n_embd, n_expanded_embd, "
                         f"use_gated_mlp, vocab_size ~ {want + (model.vocab_size,)}); it holds {found}")
    chosen = [r for r in matching if int(r["num_tensor_parallel_workers"]) == tp]
    if not chosen:
        tps = sorted({int(r["num_tensor_parallel_workers"]) for r in matching})
        raise ValueError(f"{path.name} has no rows for tp={tp}; tensor-parallel degrees present: {tps}")
    return chosen


def _attention_rows(path: Path, model: ModelConfig, tp: int, block_size: int) -> list[dict[str, str]]:
    rows = _read_csv(path)
    want = (model.hidden_size, model.num_heads, model.num_kv_heads, block_size, tp)

    def shape(r):
        return tuple(int(r[k]) for k in ("n_embd", "n_q_head", "n_kv_head", "block_size",
                                         "num_tensor_parallel_workers"))

    chosen = [r for r in rows if shape(r) == want]
    if not chosen:
        raise ValueError(f"{path.name} has no rows for (n_embd, n_q_head, n_kv_head, block_size, tp) = {want}; "
                         f"it holds {sorted({shape(r) for r in rows})}")
    return chosen


class TableCostModel(_StepCostModel):
    """Step time interpolated from per-layer, per-operator GPU medians (Vidur's profile layout).

    step_s = overhead + emb(T) + lm_head(S) + layers * (ops(T) + attn_decode(n, ctx / n) + sum attn_prefill(q, c))
    with T tokens, S = sequences (decodes + prefill chunks; one LM-head row each) and ops(T) the sum of
    the non-attention operators. The LM head is not profiled: it is estimated as mlp_up_proj at S tokens
    scaled by vocab / up-projection width (same shape of matmul). Interpolation is piecewise-linear in
    each dimension; below a grid it clamps to the first point, above it scales the last point in
    proportion (time ~ tokens, batch or context: the compute- or bandwidth-bound asymptote).

    - Decode attention: bilinear over (batch size, KV tokens per sequence), using the batch's mean
      context decode_ctx_tokens / num_decodes.
    - Prefill attention of a chunk (q, c) = base(q) + extra(q, c): base from the rows without cache
      (every chunk size), extra = time above base, interpolated in c along each chunk size profiled with a
      cache, then linearly in q between those chunk sizes. Chunks in one step are summed.
    """

    def __init__(self, *, num_layers: int, token_grid: np.ndarray, layer_ops_s: np.ndarray, emb_s: np.ndarray,
                 lm_head_s: np.ndarray, decode_batch_grid: np.ndarray, decode_kv_grid: np.ndarray,
                 decode_layer_s: np.ndarray, prefill_q_grid: np.ndarray, prefill_base_s: np.ndarray,
                 prefill_ctx_curves: list[tuple[float, np.ndarray, np.ndarray]], swap_per_block_s: float,
                 step_overhead_s: float = DEFAULT_STEP_OVERHEAD_S) -> None:
        """Tables in seconds per layer (emb and LM head: per step), all grids strictly increasing.

        `decode_layer_s[i, j]` is batch `decode_batch_grid[i]` at `decode_kv_grid[j]` tokens per sequence;
        `prefill_ctx_curves` holds (chunk size, cached-token points starting at 0, time above base there).
        """
        if len(prefill_ctx_curves) < 2:
            raise ValueError("need prefill rows with a cached context for at least two chunk sizes")
        if min(swap_per_block_s, step_overhead_s) < 0:
            raise ValueError("swap_per_block_s and step_overhead_s must be >= 0")
        self.num_layers = num_layers
        self.token_grid, self.layer_ops_s, self.emb_s, self.lm_head_s = token_grid, layer_ops_s, emb_s, lm_head_s
        self.decode_batch_grid, self.decode_kv_grid = decode_batch_grid, decode_kv_grid
        self.decode_layer_s = decode_layer_s
        self.prefill_q_grid, self.prefill_base_s = prefill_q_grid, prefill_base_s
        self.prefill_ctx_curves = prefill_ctx_curves
        self._curve_q = np.array([q for q, _, _ in prefill_ctx_curves], dtype=np.float64)
        self._lists = tuple(a.tolist() for a in (token_grid, layer_ops_s, emb_s, lm_head_s))
        self.swap_per_block_s = swap_per_block_s
        self.step_overhead_s = step_overhead_s
        # Memos of pure functions of their keys (same values, computed once): replays revisit the same
        # decode batch sizes and (chunk, cached) prefill shapes thousands of times.
        self._decode_rows: dict[int, np.ndarray] = {}
        self._prefill_memo: dict[tuple[int, int], float] = {}
        self._prefill_lists = (prefill_q_grid.tolist(), prefill_base_s.tolist(), self._curve_q.tolist(),
                               [(kv.tolist(), d.tolist()) for _, kv, d in prefill_ctx_curves])

    @classmethod
    def from_vidur_profiles(cls, mlp_csv: str | Path, attention_csv: str | Path, model: ModelConfig, gpu: GpuSpec,
                            *, tp: int = 1, block_size: int = 16, step_overhead_s: float = DEFAULT_STEP_OVERHEAD_S,
                            link_efficiency: float = 0.8) -> "TableCostModel":
        """Read Vidur-layout CSVs (medians, milliseconds) for `model`; ValueError when their shape differs.

        `gpu` prices swaps (per-GPU block bytes over PCIe at `link_efficiency`); it should be the profiled GPU.
        """
        check_tensor_parallel(model, tp)
        mlp_path, attn_path = Path(mlp_csv), Path(attention_csv)
        mlp = _check_mlp_shape(_read_csv(mlp_path), model, tp, mlp_path)
        tokens = np.array([int(r["num_tokens"]) for r in mlp])
        ops_s = sum(_ms_to_s(mlp, f"time_stats.{op}.median") for op in _MLP_OPS)
        token_grid, layer_ops_s = _mean_by_key(tokens, ops_s)
        _, emb_s = _mean_by_key(tokens, _ms_to_s(mlp, "time_stats.emb.median"))
        _, up_s = _mean_by_key(tokens, _ms_to_s(mlp, "time_stats.mlp_up_proj.median"))
        lm_head_s = up_s * (model.vocab_size / ((2 if model.gated_mlp else 1) * model.ffn_size))

        attn = _attention_rows(attn_path, model, tp, block_size)
        decode = [r for r in attn if r["is_prefill"].strip().lower() == "false"]
        prefill = [r for r in attn if r["is_prefill"].strip().lower() == "true"]
        batch_grid, kv_grid, decode_s = _decode_grid(decode, attn_path)
        q_grid, base_s, curves = _prefill_tables(prefill, attn_path)
        swap_s = kv_block_bytes(model, block_size, tp) / (gpu.pcie_bandwidth_bytes_per_s * link_efficiency)
        return cls(num_layers=model.num_layers, token_grid=token_grid, layer_ops_s=layer_ops_s, emb_s=emb_s,
                   lm_head_s=lm_head_s, decode_batch_grid=batch_grid, decode_kv_grid=kv_grid, decode_layer_s=decode_s,
                   prefill_q_grid=q_grid, prefill_base_s=base_s, prefill_ctx_curves=curves,
                   swap_per_block_s=swap_s, step_overhead_s=step_overhead_s)

    @classmethod
    def from_profiles_dir(cls, model: ModelConfig, gpu: GpuSpec, path: str | Path | None = None,
                          **kwargs) -> "TableCostModel":
        """`from_vidur_profiles` on the default file names inside `profiles_dir(path)`."""
        folder = profiles_dir(path)
        return cls.from_vidur_profiles(folder / DEFAULT_MLP_CSV, folder / DEFAULT_ATTENTION_CSV, model, gpu, **kwargs)

    def layer_ops_time_s(self, num_tokens: int) -> float:
        """Non-attention operators of one layer at `num_tokens` tokens, seconds."""
        return _interp_scalar(num_tokens, self._lists[0], self._lists[1])

    def emb_time_s(self, num_tokens: int) -> float:
        """Embedding lookup of `num_tokens` tokens (once per step), seconds."""
        return _interp_scalar(num_tokens, self._lists[0], self._lists[2])

    def lm_head_time_s(self, num_seqs: int) -> float:
        """LM head for `num_seqs` output rows (once per step; estimated, see the class docstring), seconds."""
        return _interp_scalar(num_seqs, self._lists[0], self._lists[3])

    def attention_decode_layer_s(self, num_decodes: int, ctx_per_seq) -> np.ndarray:
        """Decode attention of one layer for a batch of `num_decodes` with `ctx_per_seq` tokens each, seconds."""
        row = self._decode_rows.get(num_decodes)
        if row is None:
            row = self._decode_rows[num_decodes] = self._decode_row(num_decodes)
        return _interp_s(ctx_per_seq, self.decode_kv_grid, row)

    def _decode_row(self, num_decodes: int) -> np.ndarray:
        b, grid = self.decode_batch_grid, self.decode_layer_s
        if num_decodes >= b[-1]:
            row = grid[-1] * (num_decodes / b[-1])
        elif num_decodes <= b[0]:
            row = grid[0]
        else:
            j = int(np.searchsorted(b, num_decodes, side="right")) - 1
            w = (num_decodes - b[j]) / (b[j + 1] - b[j])
            row = (1.0 - w) * grid[j] + w * grid[j + 1]
        return row

    def attention_prefill_layer_s(self, chunk_tokens, cached_tokens) -> np.ndarray:
        """Prefill attention of one layer per chunk (arrays of chunk and cached tokens), seconds."""
        q = np.atleast_1d(np.asarray(chunk_tokens, dtype=np.float64))
        c = np.atleast_1d(np.asarray(cached_tokens, dtype=np.float64))
        base = _interp_s(q, self.prefill_q_grid, self.prefill_base_s)
        extra = np.stack([_interp_s(c, kv, d) for _, kv, d in self.prefill_ctx_curves])  # curves x chunks
        cq, cols = self._curve_q, np.arange(q.size)
        j = np.clip(np.searchsorted(cq, q, side="right") - 1, 0, cq.size - 2)
        w = np.clip((q - cq[j]) / (cq[j + 1] - cq[j]), 0.0, 1.0)
        between = (1.0 - w) * extra[j, cols] + w * extra[j + 1, cols]
        return base + np.where(q > cq[-1], extra[-1] * (q / cq[-1]), between)

    def _prefill_layer_scalar(self, q: int, c: int) -> float:
        """`attention_prefill_layer_s` for one chunk, on Python lists (only the two bracketing curves)."""
        q_grid, base_s, cq, curves = self._prefill_lists
        base = _interp_scalar(q, q_grid, base_s)
        if q > cq[-1]:
            return base + _interp_scalar(c, *curves[-1]) * (q / cq[-1])
        j = min(max(bisect_right(cq, q) - 1, 0), len(cq) - 2)
        w = min(max((q - cq[j]) / (cq[j + 1] - cq[j]), 0.0), 1.0)
        return base + ((1.0 - w) * _interp_scalar(c, *curves[j]) + w * _interp_scalar(c, *curves[j + 1]))

    def _times_s(self, num_decodes, decode_ctx_tokens, prefill_chunks):
        num_tokens = num_decodes + sum(q for q, _ in prefill_chunks)
        num_seqs = num_decodes + len(prefill_chunks)
        layer_s = self.layer_ops_time_s(num_tokens)
        if prefill_chunks:
            memo = self._prefill_memo
            for chunk in prefill_chunks:
                t = memo.get(chunk)
                if t is None:
                    t = memo[chunk] = self._prefill_layer_scalar(*chunk)
                layer_s += t
        if num_decodes:
            decode_s = self.attention_decode_layer_s(num_decodes, decode_ctx_tokens / num_decodes)
        else:
            decode_s = np.zeros_like(decode_ctx_tokens)
        fixed_s = self._overhead_s(num_decodes, prefill_chunks) + self.emb_time_s(num_tokens) + self.lm_head_time_s(num_seqs)
        return fixed_s + self.num_layers * (layer_s + decode_s)

    def _overhead_s(self, num_decodes: int, prefill_chunks) -> float:
        """Fixed time of a step outside the profiled operators (a subclass may tell step kinds apart)."""
        return self.step_overhead_s

    def swap_time_s(self, num_blocks: int) -> float:
        """`swap_per_block_s * num_blocks`."""
        return self.swap_per_block_s * num_blocks


def _decode_grid(rows: list[dict[str, str]], path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch sizes, KV sizes, seconds[batch, kv]) from decode rows forming a full rectangle."""
    batch = np.array([int(r["batch_size"]) for r in rows])
    kv = np.array([int(r["kv_cache_size"]) for r in rows])
    t = _ms_to_s(rows, "time_stats.attn_decode.median")
    b_grid, kv_grid = np.unique(batch), np.unique(kv)
    if b_grid.size < 2 or kv_grid.size < 2:
        raise ValueError(f"{path.name}: need decode rows for at least two batch sizes and two KV sizes")
    sums = np.zeros((b_grid.size, kv_grid.size))
    counts = np.zeros_like(sums)
    np.add.at(sums, (np.searchsorted(b_grid, batch), np.searchsorted(kv_grid, kv)), t)
    np.add.at(counts, (np.searchsorted(b_grid, batch), np.searchsorted(kv_grid, kv)), 1)
    if (counts == 0).any():
        raise ValueError(f"{path.name}: decode rows do not cover the full batch x KV grid "
                         f"({int((counts == 0).sum())} of {counts.size} points missing)")
    return b_grid.astype(np.float64), kv_grid.astype(np.float64), sums / counts


def _prefill_tables(rows: list[dict[str, str]], path: Path):
    """(chunk sizes, seconds without cache, [(chunk size, cached points, seconds above base)])."""
    q = np.array([int(r["prefill_chunk_size"]) for r in rows])
    c = np.array([int(r["kv_cache_size"]) for r in rows])
    t = _ms_to_s(rows, "time_stats.attn_prefill.median")
    q_grid, base_s = _mean_by_key(q[c == 0], t[c == 0])
    if q_grid.size < 2:
        raise ValueError(f"{path.name}: need prefill rows without cache (kv_cache_size 0) for two chunk sizes")
    curves = []
    for size, base in zip(q_grid, base_s):
        mine = (q == size) & (c > 0)
        if mine.any():
            kv, extra = _mean_by_key(c[mine], t[mine] - base)
            curves.append((float(size), np.concatenate(([0.0], kv)), np.concatenate(([0.0], extra))))
    return q_grid, base_s, curves
