"""A table cost model from the project's own GPU profiles (`tracelab replay profile`, Parquet).

The profile holds per-operator device times measured on the TorchExecutor's own kernels (each replayed as a
CUDA graph, so launch gaps are not counted): the non-attention forward over T tokens (`linear`), the LM head
over S rows (`lm_head`), one layer's decode attention over (batch, KV tokens per sequence) and one layer's
prefill attention over (chunk, cached tokens). It also holds whole executor steps timed on the host clock
(`step_*` rows: preparation, copies, kernels and the sync), from which two fixed overheads are fitted, as the
median of (measured step - operator sum): one for decode-only steps that replay a CUDA graph, one for eager steps
(prefill chunks, mixed batches, batches larger than every graph).

Rows and metadata are documented in `replay.gpu.profiler`. The model is Vidur's operator-sum structure
(`TableCostModel`); only the two overheads differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from replay.serving.executors.cost_model import TableCostModel
from replay.serving.specs import GpuSpec, ModelConfig, kv_block_bytes

PROFILE_SCHEMA_VERSION = 1


def read_profile(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """(columns, metadata) of a profile file; ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such profile (make one with `tracelab replay profile`)")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"tracelab.profile")
    if raw is None:
        raise ValueError(f"{path}: not a tracelab GPU profile (no 'tracelab.profile' metadata)")
    meta = json.loads(raw)
    if meta.get("schema_version") != PROFILE_SCHEMA_VERSION:
        raise ValueError(f"{path}: profile schema {meta.get('schema_version')}, this version reads {PROFILE_SCHEMA_VERSION}")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}, meta


def _rows(cols: dict, kind: str) -> dict[str, np.ndarray]:
    keep = cols["kind"] == kind
    if not keep.any():
        raise ValueError(f"the profile has no {kind!r} rows")
    return {k: v[keep] for k, v in cols.items()}


class ProfileCostModel(TableCostModel):
    """`TableCostModel` built from a GPU profile, with separate overheads for graph-replayed decode steps."""

    def __init__(self, *, graph_overhead_s: float, max_graph_batch: int, **tables) -> None:
        super().__init__(**tables)
        self.graph_overhead_s = graph_overhead_s
        self.max_graph_batch = max_graph_batch

    def _overhead_s(self, num_decodes, prefill_chunks) -> float:
        if not prefill_chunks and num_decodes <= self.max_graph_batch:
            return self.graph_overhead_s
        return self.step_overhead_s

    @classmethod
    def from_profile(cls, path: str | Path, model: ModelConfig, gpu: GpuSpec, *, block_size: int = 16,
                     link_efficiency: float = 0.8) -> "ProfileCostModel":
        """Read `path` (a profile of `model` with `block_size`-token blocks); ValueError when the shapes differ."""
        cols, meta = read_profile(path)
        want = {"num_layers": model.num_layers, "hidden_size": model.hidden_size, "num_heads": model.num_heads,
                "num_kv_heads": model.num_kv_heads, "head_dim": model.head_dim, "ffn_size": model.ffn_size}
        have = {k: meta["model"].get(k) for k in want}
        if have != want:
            raise ValueError(f"{path}: profiled shape {have} differs from {model.name} {want}")
        if meta["block_size"] != block_size:
            raise ValueError(f"{path}: profiled with {meta['block_size']}-token KV blocks, the run uses {block_size}")
        tables = tables_from_profile(cols, model.num_layers)
        swap_s = kv_block_bytes(model, block_size) / (gpu.pcie_bandwidth_bytes_per_s * link_efficiency)
        cm = cls(graph_overhead_s=0.0, max_graph_batch=int(meta["max_graph_batch"]), swap_per_block_s=swap_s,
                 step_overhead_s=0.0, **tables)
        # Fitted on the operator sum (both overheads still 0), then set: the memos hold no overhead.
        cm.step_overhead_s, cm.graph_overhead_s = fitted_overheads(cm, cols)
        return cm


def tables_from_profile(cols: dict, num_layers: int) -> dict:
    """The `TableCostModel` constructor's tables (per layer, seconds) from profile columns."""
    lin, head = _rows(cols, "linear"), _rows(cols, "lm_head")
    token_grid = lin["num_tokens"].astype(np.float64)
    order = np.argsort(token_grid)
    token_grid, layer_ops = token_grid[order], lin["device_s"][order] / num_layers
    lm = np.interp(token_grid, head["num_tokens"].astype(np.float64)[np.argsort(head["num_tokens"])],
                   head["device_s"][np.argsort(head["num_tokens"])])
    dec = _rows(cols, "attn_decode")
    b_grid, kv_grid = np.unique(dec["batch_size"]).astype(np.float64), np.unique(dec["kv_tokens"]).astype(np.float64)
    grid = np.full((b_grid.size, kv_grid.size), np.nan)
    grid[np.searchsorted(b_grid, dec["batch_size"]), np.searchsorted(kv_grid, dec["kv_tokens"])] = dec["device_s"]
    if np.isnan(grid).any():
        raise ValueError("the profile's decode attention rows do not cover the full batch x KV grid")
    pre = _rows(cols, "attn_prefill")
    q, c, t = pre["chunk_tokens"], pre["cached_tokens"], pre["device_s"]
    q_grid = np.unique(q[c == 0]).astype(np.float64)
    base = np.array([t[(q == x) & (c == 0)].mean() for x in q_grid])
    curves = []
    for size, b in zip(q_grid, base):
        mine = (q == size) & (c > 0)
        if mine.any():
            o = np.argsort(c[mine])
            curves.append((float(size), np.concatenate(([0.0], c[mine][o].astype(np.float64))),
                           np.concatenate(([0.0], t[mine][o] - b))))
    return dict(num_layers=num_layers, token_grid=token_grid, layer_ops_s=layer_ops, emb_s=np.zeros_like(token_grid),
                lm_head_s=lm, decode_batch_grid=b_grid, decode_kv_grid=kv_grid, decode_layer_s=grid,
                prefill_q_grid=q_grid, prefill_base_s=base, prefill_ctx_curves=curves)


def step_plan_of(row: dict):
    """The `StepPlan` a `step_*` profile row measured: `num_decodes` decodes of `kv_tokens` context each, plus
    one prefill chunk of `chunk_tokens` after `cached_tokens` when chunk_tokens > 0."""
    from replay.serving.plan import Chunk, StepPlan

    plan = StepPlan()
    for i in range(int(row["num_decodes"])):
        plan.add(Chunk(i, 1, int(row["kv_tokens"]) - 1, True, 1))
    if row["chunk_tokens"] > 0:
        plan.add(Chunk(int(row["num_decodes"]), int(row["chunk_tokens"]), int(row["cached_tokens"]), True, 1))
    return plan


def fitted_overheads(model: ProfileCostModel, cols: dict) -> tuple[float, float]:
    """(eager, graph) overheads: medians of measured wall time minus the operator sum over the `step_*` rows."""
    steps = {k: v[np.char.startswith(cols["kind"].astype(str), "step_")] for k, v in cols.items()}
    n = steps["kind"].size
    if n == 0:
        raise ValueError("the profile has no whole-step rows to fit the overheads on")
    resid = np.array([steps["wall_s"][i] - model.step_time_s(step_plan_of({k: v[i] for k, v in steps.items()}))
                      for i in range(n)])
    graph = steps["graph"].astype(bool)
    # A profile taken without graphs (the CPU path) has one kind of step: both overheads come from it.
    eager = float(np.median(resid[~graph])) if (~graph).any() else float(np.median(resid))
    graphed = float(np.median(resid[graph])) if graph.any() else eager
    return max(0.0, eager), max(0.0, graphed)
