"""`tracelab replay profile`: measure the TorchExecutor's step costs on the local GPU and write a profile.

Rows (one per measured point; times are medians over `repeats`, seconds):

| kind | what is timed | keys |
|---|---|---|
| `linear` | the forward over `num_tokens` tokens without attention (embedding, norms, QKV/O/MLP, RoPE), CUDA graph | num_tokens |
| `lm_head` | final norm + LM head + argmax over `num_tokens` rows, CUDA graph | num_tokens |
| `attn_decode` | one layer: KV write + paged attention, `batch_size` decodes of `kv_tokens` each, CUDA graph | batch_size, kv_tokens |
| `attn_prefill` | one layer: KV write + paged attention, one chunk of `chunk_tokens` after `cached_tokens`, CUDA graph | chunk_tokens, cached_tokens |
| `step_decode` / `step_prefill` / `step_mixed` | `TorchExecutor.execute` of a whole step on the host clock (`wall_s`) and between CUDA events (`device_s`); `graph` says whether it replayed a graph | num_decodes, kv_tokens, chunk_tokens, cached_tokens |

Metadata (``tracelab.profile``, JSON): GPU name, torch / CUDA / Triton versions, the model shape, dtype, block size,
the largest graph batch, the KV pool size, the measured HBM copy bandwidth and bf16 matrix-product rate, and the
efficiency table (decode steps against the memory-bandwidth floor, prefill steps against the FLOP floor).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.serving.executors.profile_table import PROFILE_SCHEMA_VERSION, step_plan_of
from replay.serving.specs import ModelConfig, kv_bytes_per_token, layer_linear_param_count, weight_bytes_per_gpu

COLUMNS = ("kind", "num_tokens", "batch_size", "kv_tokens", "chunk_tokens", "cached_tokens", "num_decodes", "graph",
           "wall_s", "device_s", "device_p10_s", "device_p90_s", "repeats")


@dataclass(frozen=True)
class ProfileGrid:
    """The measured points (values above the model's max_model_len, or beyond the KV pool, are skipped)."""

    token_counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096)
    """Tokens per step for the `linear` and `lm_head` rows."""
    decode_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    """Decode batch sizes."""
    decode_kv: tuple[int, ...] = (16, 128, 512, 1024, 2048, 4096, 8192)
    """KV tokens per decoding sequence."""
    prefill_chunks: tuple[int, ...] = (16, 64, 128, 256, 512, 1024, 2048, 4096)
    """Prefill chunk sizes."""
    prefill_cached: tuple[int, ...] = (0, 512, 1024, 2048, 4096)
    """Cached tokens before a prefill chunk."""
    mixed: tuple[tuple[int, int, int], ...] = ((8, 1024, 256), (32, 512, 512), (64, 1024, 128), (128, 512, 1024),
                                               (16, 2048, 2048), (96, 256, 256))
    """(decodes, KV tokens each, prefill chunk) of the mixed whole steps."""
    step_decode_kv: tuple[int, ...] = (128, 1024, 4096)
    """KV tokens per sequence of the whole decode steps (every decode batch size)."""
    repeats: int = 20
    """Timed repetitions per point (after warm-up)."""
    attention_cache_bytes: int = 8 * 2**30
    """Size of the one-layer cache the attention rows read (sequences share blocks beyond it, far past the L2)."""


def _fits(model: ModelConfig, *lens: int) -> bool:
    return sum(lens) <= model.max_model_len


class _Timer:
    """Median device time of a function: CUDA-graph replays between events on a GPU, the host clock on a CPU."""

    def __init__(self, torch, device, repeats: int) -> None:
        self.torch, self.device, self.repeats = torch, device, repeats
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], object]) -> tuple[float, float, float]:
        torch = self.torch
        if not self.cuda:
            fn()
            ts = []
            for _ in range(max(3, self.repeats // 4)):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return _stats(ts)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            fn()
            fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        graph.replay()
        ts = []
        for _ in range(self.repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            graph.replay()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b) / 1e3)
        del graph
        return _stats(ts)


def _stats(ts: list[float]) -> tuple[float, float, float]:
    a = np.asarray(ts)
    return float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90))


def _row(kind: str, t: tuple[float, float, float], repeats: int, wall_s: float | None = None, graph: bool = True,
         **keys) -> dict:
    base = {c: 0 for c in COLUMNS[1:7]}
    base.update(keys)
    return {"kind": kind, **base, "graph": graph, "wall_s": t[0] if wall_s is None else wall_s, "device_s": t[0],
            "device_p10_s": t[1], "device_p90_s": t[2], "repeats": repeats}


def attention_rows(model: ModelConfig, grid: ProfileGrid, device, dtype, block_size: int, timer: _Timer) -> list[dict]:
    """One layer's KV write + paged attention over the decode and prefill grids (its own one-layer cache)."""
    import torch

    from replay.serving.executors import paged_attention as pa
    from replay.serving.executors.step_inputs import attention_tiles

    kvh, d, h = model.num_kv_heads, model.head_dim, model.num_heads
    group = h // kvh
    per_block = 2 * block_size * kvh * d * torch.finfo(dtype).bits // 8
    cap = max(8, int(grid.attention_cache_bytes // per_block))
    if device.type != "cuda":
        cap = min(cap, 4096)
    k_cache = torch.randn(cap, block_size, kvh, d, device=device).to(dtype)
    v_cache = torch.randn(cap, block_size, kvh, d, device=device).to(dtype)
    use_kernel = pa.kernel_available(device)

    def run(q_lens: list[int], seq_lens: list[int]) -> Callable[[], object]:
        nb = [-(-n // block_size) for n in seq_lens]
        width = max(nb)
        ids = (np.arange(sum(nb)) % cap).astype(np.int32)
        tables = np.full((len(nb), width), 0, dtype=np.int32)
        pos = 0
        for s, n in enumerate(nb):
            tables[s, :n] = ids[pos:pos + n]
            pos += n
        q_len_a = np.array(q_lens)
        starts = np.concatenate(([0], np.cumsum(q_len_a))).astype(np.int32)
        slots = np.concatenate([tables[s, np.arange(L - q, L) // block_size].astype(np.int64) * block_size
                                + np.arange(L - q, L) % block_size for s, (q, L) in enumerate(zip(q_lens, seq_lens))])
        t = int(starts[-1])
        dev = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(device, dt)  # noqa: E731
        qs = torch.randn(t, h, d, device=device).to(dtype)
        kn, vn = torch.randn(t, kvh, d, device=device).to(dtype), torch.randn(t, kvh, d, device=device).to(dtype)
        bt, sl, qst, sm = dev(tables, torch.int32), dev(np.array(seq_lens), torch.int32), dev(starts, torch.int32), dev(slots, torch.int64)
        bq = pa.block_q_for(group, 16 if max(q_lens) == 1 else 64)
        ts, tq = attention_tiles(q_len_a, np.arange(len(q_lens)), bq)
        ts, tq = dev(ts, torch.int32), dev(tq, torch.int32)
        out = torch.empty_like(qs)

        decode = max(q_lens) == 1

        def fn():
            pa.write_kv(k_cache, v_cache, sm, kn, vn)
            if use_kernel and decode:
                pa.decode_attention(qs, k_cache, v_cache, bt, sl, qst, ts, model.max_model_len, out)
            elif use_kernel:
                pa.paged_attention(qs, k_cache, v_cache, bt, sl, qst, ts, tq, bq, out)
            else:
                out.copy_(pa.reference_attention(qs, k_cache, v_cache, bt, sl, qst))
        return fn

    rows = []
    for b in grid.decode_batches:
        for kv in grid.decode_kv:
            if _fits(model, kv):
                rows.append(_row("attn_decode", timer(run([1] * b, [kv] * b)), timer.repeats, graph=timer.cuda, batch_size=b,
                                 kv_tokens=kv))
    for q in grid.prefill_chunks:
        for c in grid.prefill_cached:
            if _fits(model, q, c):
                rows.append(_row("attn_prefill", timer(run([q], [c + q])), timer.repeats, graph=timer.cuda, chunk_tokens=q,
                                 cached_tokens=c))
    del k_cache, v_cache
    return rows


def operator_rows(ex, grid: ProfileGrid, timer: _Timer) -> list[dict]:
    """The non-attention forward and the LM head over the token grid."""
    import torch

    m, dev = ex.model_config, ex.device
    rows = []
    for t in grid.token_counts:
        if t > m.max_model_len:
            continue
        ids = torch.randint(0, m.vocab_size, (t,), device=dev)
        pos = torch.arange(t, device=dev)
        hidden = torch.randn(t, m.hidden_size, device=dev).to(ex.dtype)
        with torch.inference_mode():
            rows.append(_row("linear", timer(lambda: ex.model.hidden(ids, pos, None, attention=False)), timer.repeats, graph=timer.cuda,
                             num_tokens=t))
            rows.append(_row("lm_head", timer(lambda: ex.model.sample(hidden)), timer.repeats, graph=timer.cuda,
                             num_tokens=t))
    return rows


def step_rows(ex, grid: ProfileGrid, repeats: int) -> list[dict]:
    """Whole `execute` calls (host clock and CUDA events) on synthetic plans with distinct KV blocks."""
    m, bs = ex.model_config, ex.block_size
    shapes = [("step_decode", dict(num_decodes=b, kv_tokens=kv, chunk_tokens=0, cached_tokens=0))
              for kv in grid.step_decode_kv for b in grid.decode_batches if _fits(m, kv)]
    shapes += [("step_prefill", dict(num_decodes=0, kv_tokens=0, chunk_tokens=q, cached_tokens=c))
               for q in grid.prefill_chunks for c in grid.prefill_cached[:3] if _fits(m, q, c)]
    shapes += [("step_mixed", dict(num_decodes=b, kv_tokens=kv, chunk_tokens=q, cached_tokens=0))
               for b, kv, q in grid.mixed if _fits(m, kv) and _fits(m, q)]
    rows = []
    for kind, keys in shapes:
        plan = step_plan_of(keys)
        need = [-(-(c.num_cached_tokens + c.num_tokens) // bs) for c in plan.chunks]
        if sum(need) > ex.num_kv_blocks:
            continue
        tables, pos = {}, 0
        for c, n in zip(plan.chunks, need):
            tables[c.req] = list(range(pos, pos + n))
            pos += n
        ex.block_table_of = tables.__getitem__
        for _ in range(2):
            ex.execute(plan)
        walls, devs = [], []
        for _ in range(repeats):
            walls.append(ex.execute(plan).duration_s)
            devs.append(ex.step_device_s[-1])
        rows.append(_row(kind, _stats(devs), repeats, wall_s=float(np.median(walls)), graph=ex.step_graph[-1], **keys))
    return rows


def ceilings(torch, device) -> dict:
    """Measured HBM copy bandwidth (bytes read + written per second) and bf16 matrix-product rate, on a GPU."""
    if device.type != "cuda":
        return {}
    timer = _Timer(torch, device, 10)
    x = torch.empty(2**30, dtype=torch.uint8, device=device)  # 1 GiB, far past the L2
    y = torch.empty_like(x)
    copy_s = timer(lambda: y.copy_(x))[0]
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    mm_s = timer(lambda: a @ b)[0]
    return {"hbm_bytes_per_s": 2 * x.numel() / copy_s, "matmul_flop_per_s": 2 * 8192**3 / mm_s}


def efficiency(model: ModelConfig, rows: list[dict], ceil: dict) -> list[dict]:
    """Decode steps against the bandwidth floor (weights + KV read once) and prefill steps against the FLOP floor."""
    if not ceil:
        return []
    out = []
    weights = weight_bytes_per_gpu(model)
    kv_tok = kv_bytes_per_token(model)
    linear_params = model.num_layers * layer_linear_param_count(model)
    pair_flops = 4 * model.num_layers * model.num_heads * model.head_dim
    for r in rows:
        if r["kind"] == "step_decode":
            floor = (weights + r["num_decodes"] * r["kv_tokens"] * kv_tok) / ceil["hbm_bytes_per_s"]
            out.append({"kind": "decode", "batch_size": r["num_decodes"], "kv_tokens": r["kv_tokens"],
                        "device_s": r["device_s"], "wall_s": r["wall_s"], "floor_s": floor,
                        "device_over_floor": r["device_s"] / floor})
        elif r["kind"] == "step_prefill" and r["cached_tokens"] == 0:
            q = r["chunk_tokens"]
            flops = 2 * linear_params * q + 2 * model.vocab_size * model.hidden_size + pair_flops * q * (q + 1) / 2
            floor = max(flops / ceil["matmul_flop_per_s"], weights / ceil["hbm_bytes_per_s"])
            out.append({"kind": "prefill", "chunk_tokens": q, "device_s": r["device_s"], "wall_s": r["wall_s"],
                        "floor_s": floor, "device_over_floor": r["device_s"] / floor})
    return out


def profile_model(model: ModelConfig, *, device: str = "cuda", block_size: int = 16, grid: ProfileGrid = ProfileGrid(),
                  weights_path: str | None = None, num_kv_blocks: int | None = None,
                  log: Callable[[str], None] = lambda s: None) -> tuple[dict[str, np.ndarray], dict]:
    """Measure every row of the module docstring; returns (columns, metadata)."""
    import torch

    from replay.serving.executors.torch_executor import TorchExecutor

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    timer = _Timer(torch, dev, grid.repeats)
    t0 = time.perf_counter()
    ceil = ceilings(torch, dev)
    log(f"ceilings {ceil}")
    rows = attention_rows(model, grid, dev, dtype, block_size, timer)
    log(f"attention: {len(rows)} rows, {time.perf_counter() - t0:.0f} s")
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    n_req = max(max(grid.decode_batches), max(b for b, _, _ in grid.mixed) if grid.mixed else 0) + 1
    max_seqs = max(grid.decode_batches)
    ex = TorchExecutor(model, prompt_tokens=np.full(n_req, model.max_model_len), true_output_tokens=np.ones(n_req),
                       num_kv_blocks=num_kv_blocks, block_size=block_size, max_model_len=model.max_model_len,
                       max_num_seqs=max_seqs, device=dev, weights_path=weights_path)
    rows += operator_rows(ex, grid, timer)
    log(f"operators: {len(rows)} rows, {time.perf_counter() - t0:.0f} s")
    rows += step_rows(ex, grid, max(3, grid.repeats // 2))
    log(f"steps: {len(rows)} rows, {time.perf_counter() - t0:.0f} s")
    from replay.serving.executors.paged_attention import triton

    meta = {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "gpu_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "triton_version": getattr(triton, "__version__", None),
        "model": asdict(model), "dtype": str(dtype).replace("torch.", ""), "block_size": block_size,
        "max_graph_batch": max(ex.graph_batch_sizes) if ex._graphs else 0, "num_kv_blocks": ex.num_kv_blocks,
        "attention_kernel": "triton" if ex.use_kernel else "reference", **ceil,
        "efficiency": efficiency(model, rows, ceil), "grid": asdict(grid),
        "created": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t0, 1),
    }
    cols = {c: np.array([r[c] for r in rows]) for c in COLUMNS}
    return cols, meta


def write_profile(path: str | Path, cols: dict[str, np.ndarray], meta: dict) -> Path:
    """Write the profile atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: cols[c] for c in COLUMNS})
    table = table.replace_schema_metadata({"tracelab.profile": json.dumps(meta, sort_keys=True)})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def default_profile_path(model: ModelConfig, gpu_name: str, root: str | Path | None = None) -> Path:
    """data/profiles/<gpu>__<model>.parquet (GPU and model canonical names, lower case)."""
    from replay.gpu import profiles_root

    slug = lambda s: s.lower().replace(" ", "-").replace("/", "-")  # noqa: E731
    return Path(root or profiles_root()) / f"{slug(gpu_name)}__{slug(model.name)}.parquet"
