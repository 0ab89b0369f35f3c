"""TorchExecutor: runs the scheduler's `StepPlan`s on a real GPU with a Llama-shaped model (PyTorch).

- KV memory is a paged pool on the device, one K and one V tensor of blocks per layer, indexed by the
  scheduler's own block tables (the pool has one extra scratch block for padding rows).
- One batched forward per step mixing prefill chunks and decodes; decode-only steps replay a CUDA graph
  captured for the smallest bucket that holds the batch (`step_inputs.GRAPH_BATCH_SIZES`), so a decode step
  costs a handful of host-to-device copies and one graph launch, whatever the batch.
- Step time is measured twice: wall time of `execute` (host preparation, copies, kernels and the sync that
  brings the sampled ids back; what a server's clock sees) and device time between CUDA events.
- Only this executor knows the true output lengths: a request finishes when it reaches its trace length
  (DESIGN convention 3), whatever tokens the random weights produce.

On a machine without CUDA it runs on the CPU in float32 with the dense reference attention and no graphs: slow,
for tests of the bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from replay.serving.executors import paged_attention as pa
from replay.serving.executors.step_inputs import (GRAPH_BATCH_SIZES, BlockTableMirror, StepInputs, TokenStore,
                                                  attention_tiles, build_step_inputs, graph_bucket, record_outputs)
from replay.serving.executors.torch_model import AttentionMeta, LlamaModel, LlamaWeights
from replay.serving.plan import DecodeRunResult, StepPlan, StepResult
from replay.serving.specs import ModelConfig, kv_bytes_per_token

PREFILL_TILE_ROWS = 64
"""Query rows (tokens x heads sharing a KV head) per attention tile of a prefill chunk."""


def cuda_available() -> bool:
    return torch.cuda.is_available()


def kv_blocks_that_fit(model: ModelConfig, block_size: int, device: torch.device, gpu_memory_utilization: float,
                       reserve_bytes: int) -> int:
    """KV blocks (all layers) that fit in the free device memory after the weights, keeping `reserve_bytes` and
    (1 - utilization) of the card free for activations and graphs."""
    free, total = torch.cuda.mem_get_info(device)
    usable = free - (1.0 - gpu_memory_utilization) * total - reserve_bytes
    blocks = int(usable // (block_size * kv_bytes_per_token(model)))
    if blocks < 1:
        raise ValueError(f"no room for a KV block: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB after the weights")
    return blocks - 1  # one more block is the scratch block


class TorchExecutor:
    """Executes plans on `device` (see the module docstring). `block_table_of(req)` returns the scheduler's table."""

    supports_decode_runs = False

    def __init__(self, model: ModelConfig, *, prompt_tokens: np.ndarray, true_output_tokens: np.ndarray,
                 num_kv_blocks: int | None, block_size: int, max_model_len: int, max_num_seqs: int = 256,
                 device: str | torch.device = "cuda", dtype: torch.dtype | None = None, cuda_graphs: bool = True,
                 graph_batch_sizes: Sequence[int] = GRAPH_BATCH_SIZES, weights_path: str | Path | None = None,
                 gpu_memory_utilization: float = 0.9, reserve_bytes: int = 4 * 2**30, seed: int = 0,
                 block_table_of: Callable[[int], list[int]] | None = None) -> None:
        self.device = torch.device(device)
        on_gpu = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
        self.model_config = model
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.weights = LlamaWeights(model, self.device, self.dtype, seed)
        if weights_path is not None:
            self.weights.load_safetensors(weights_path)
        if num_kv_blocks is None:
            if not on_gpu:
                raise ValueError("num_kv_blocks must be given on the CPU")
            num_kv_blocks = kv_blocks_that_fit(model, block_size, self.device, gpu_memory_utilization, reserve_bytes)
        self.num_kv_blocks = num_kv_blocks
        self.scratch_block = num_kv_blocks
        self.model = LlamaModel(self.weights, num_kv_blocks + 1, block_size, max_model_len)
        width = -(-max_model_len // block_size)
        self.mirror = BlockTableMirror(len(prompt_tokens), width, block_size, self.scratch_block)
        self.tokens = TokenStore(prompt_tokens, true_output_tokens, model.vocab_size, seed)
        self._true = np.asarray(true_output_tokens, dtype=np.int64)
        self.block_table_of = block_table_of
        self.use_kernel = pa.kernel_available(self.device)
        group = model.num_heads // model.num_kv_heads
        self.block_q_prefill = pa.block_q_for(group, PREFILL_TILE_ROWS)
        self.step_device_s: list[float] = []
        """Device time of every executed step (CUDA events; on the CPU, the wall time)."""
        self.step_graph: list[bool] = []
        """Whether each step replayed a CUDA graph."""
        buckets = [b for b in graph_batch_sizes if b <= max_num_seqs]
        if not buckets or buckets[-1] < max_num_seqs:
            buckets.append(max_num_seqs)
        self.graph_batch_sizes = tuple(sorted(set(buckets)))
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if cuda_graphs and on_gpu:
            self._capture_graphs()

    # ---- inputs -------------------------------------------------------------------------------------------

    def _to_dev(self, a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype=dtype, non_blocking=True)

    def _meta(self, inp: StepInputs) -> AttentionMeta:
        launches, decode_seqs = [], None
        if self.use_kernel:
            seqs = np.arange(inp.q_lens.size)
            one = inp.q_lens == 1
            if one.any():
                decode_seqs = self._to_dev(seqs[one], torch.int32)
            if (~one).any():
                ts, tq = attention_tiles(inp.q_lens, seqs[~one], self.block_q_prefill)
                launches.append((self._to_dev(ts, torch.int32), self._to_dev(tq, torch.int32), self.block_q_prefill))
        return AttentionMeta(slot_mapping=self._to_dev(inp.slot_mapping, torch.int64),
                             query_start=self._to_dev(inp.query_start, torch.int32),
                             seq_lens=self._to_dev(inp.seq_lens, torch.int32),
                             block_tables=self._to_dev(inp.block_tables, torch.int32),
                             launches=launches, use_kernel=self.use_kernel, decode_seqs=decode_seqs,
                             max_len=self.max_model_len)

    # ---- CUDA graphs for decode-only steps ----------------------------------------------------------------

    def _capture_graphs(self) -> None:
        """Capture one graph per decode bucket, largest first, sharing one memory pool (as vLLM does)."""
        bmax = self.graph_batch_sizes[-1]
        dev, w = self.device, self.mirror.width
        self._static = {
            "ids": torch.zeros(bmax, dtype=torch.int64, device=dev),
            "pos": torch.zeros(bmax, dtype=torch.int64, device=dev),
            "slots": torch.full((bmax,), self.scratch_block * self.block_size, dtype=torch.int64, device=dev),
            "qstart": torch.arange(bmax + 1, dtype=torch.int32, device=dev),
            "lens": torch.ones(bmax, dtype=torch.int32, device=dev),
            "tables": torch.full((bmax, w), self.scratch_block, dtype=torch.int32, device=dev),
            "tile_seq": torch.arange(bmax, dtype=torch.int32, device=dev),
            "tile_q0": torch.zeros(bmax, dtype=torch.int32, device=dev),
            "rows": torch.arange(bmax, dtype=torch.int64, device=dev),
        }
        self._graph_out: dict[int, torch.Tensor] = {}
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream(dev)
        for b in sorted(self.graph_batch_sizes, reverse=True):
            s = self._static
            meta = AttentionMeta(s["slots"][:b], s["qstart"][:b + 1], s["lens"][:b], s["tables"][:b], [],
                                 self.use_kernel, decode_seqs=s["tile_seq"][:b], max_len=self.max_model_len)
            args = (s["ids"][:b], s["pos"][:b], meta, s["rows"][:b])
            stream.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up outside the graph (Triton compiles, cuBLAS picks kernels)
                    self.model.forward(*args)
            torch.cuda.current_stream(dev).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._graph_out[b] = self.model.forward(*args)
            self._graphs[b] = graph
        torch.cuda.synchronize(dev)

    def _run_graph(self, inp: StepInputs, b: int) -> torch.Tensor:
        n, s = inp.reqs.size, self._static
        pad = b - n
        ids = np.concatenate((inp.input_ids.astype(np.int64), np.zeros(pad, np.int64)))
        pos = np.concatenate((inp.positions.astype(np.int64), np.zeros(pad, np.int64)))
        slots = np.concatenate((inp.slot_mapping, np.full(pad, self.scratch_block * self.block_size, np.int64)))
        lens = np.concatenate((inp.seq_lens, np.ones(pad, np.int32)))
        s["ids"][:b].copy_(self._to_dev(ids, torch.int64))
        s["pos"][:b].copy_(self._to_dev(pos, torch.int64))
        s["slots"][:b].copy_(self._to_dev(slots, torch.int64))
        s["lens"][:b].copy_(self._to_dev(lens, torch.int32))
        # Columns past this step's widest table and padding rows keep stale block ids: the kernel never reads a
        # column past a row's seq_len (padding rows have seq_len 1 and read column 0 of a stale row, harmlessly).
        s["tables"][:n, :inp.block_tables.shape[1]].copy_(self._to_dev(inp.block_tables, torch.int32))
        self._graphs[b].replay()
        return self._graph_out[b][:n]

    # ---- the Executor protocol ----------------------------------------------------------------------------

    def execute(self, plan: StepPlan) -> StepResult:
        t0 = time.perf_counter()
        if not plan.chunks:
            return StepResult(0.0, [])
        if plan.swap_in_blocks or plan.swap_out_blocks:
            raise NotImplementedError("TorchExecutor does not swap KV to the CPU: use preemption_mode='recompute'")
        inp = build_step_inputs(plan, self.mirror, self.block_table_of, self.tokens)
        on_gpu = self.device.type == "cuda"
        if on_gpu:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        bucket = graph_bucket(inp.reqs.size, self.graph_batch_sizes) if inp.is_decode_only and self._graphs else None
        with torch.inference_mode():
            if bucket is not None:
                next_ids = self._run_graph(inp, bucket)
            else:
                next_ids = self.model.forward(self._to_dev(inp.input_ids, torch.int64),
                                              self._to_dev(inp.positions, torch.int64), self._meta(inp),
                                              self._to_dev(inp.logits_index, torch.int64))
        if on_gpu:
            end.record()
        ids = next_ids.cpu().numpy()  # the sync: the next step needs these ids
        record_outputs(inp, self.tokens, ids)
        wall_s = time.perf_counter() - t0
        self.step_device_s.append(start.elapsed_time(end) / 1e3 if on_gpu else wall_s)
        self.step_graph.append(bucket is not None)
        true = self._true
        finished = [c.req for c in plan.chunks if c.produces_token and c.num_output_after >= true[c.req]]
        return StepResult(wall_s, finished)

    def execute_decode_run(self, plan: StepPlan, max_steps: int, stop_at_s: float, now_s: float) -> DecodeRunResult:
        """Not supported: a real GPU runs every step (the wall-clock harness never asks; `supports_decode_runs`)."""
        raise NotImplementedError("TorchExecutor runs one step at a time (replicas driving it use fast_decode=False)")
