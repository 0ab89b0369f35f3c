"""Attention over a paged KV cache: a Triton kernel for the GPU and a dense PyTorch reference.

Layout (one pair of tensors per layer): ``k_cache`` and ``v_cache`` are ``[num_blocks, block_size, kv_heads,
head_dim]``; a sequence's token at absolute position p lives in block ``block_tables[s, p // block_size]`` at
slot ``p % block_size``. The block tables are the scheduler's own (`kv_blocks.py`), so the scheduler's
accounting and the GPU memory are the same thing.

A step's queries are flat ``[num_tokens, heads, head_dim]``, sequence after sequence (``query_start`` holds the
cumulative chunk lengths). Sequence s has ``seq_lens[s]`` tokens of KV after this step's writes; its queries are
the last ``q_len`` of them, and each attends causally to every key at or before its own position. Decodes are
chunks of one query; prefill chunks attend to their cached context plus the chunk itself.

The kernel (`paged_attention`) is one program per (query tile, KV head). A tile holds up to ``block_q`` query
tokens of one sequence times the ``heads // kv_heads`` query heads sharing that KV head (grouped-query
attention), so every key block is read once per tile. It streams the keys in ``block_n``-token slices, looking up
each slice's physical blocks in the block table, with an online softmax in float32. Tiles are listed on the host
(`step_inputs.attention_tiles`); the loop bound comes from ``seq_lens`` on the device, so a captured CUDA graph
replays with any context lengths.
"""

from __future__ import annotations

import math
import os

import torch

try:  # Triton comes with CUDA builds of PyTorch; CPU builds may lack it (the reference path is used then).
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor, k: torch.Tensor,
             v: torch.Tensor) -> None:
    """Store this step's keys and values ([tokens, kv_heads, head_dim]) at their flat slots (block * bs + offset)."""
    nb, bs, kvh, d = k_cache.shape
    k_cache.view(nb * bs, kvh, d).index_copy_(0, slot_mapping, k)
    v_cache.view(nb * bs, kvh, d).index_copy_(0, slot_mapping, v)


def reference_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                        seq_lens: torch.Tensor, query_start: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Dense attention, one sequence at a time, in float32: gathers each sequence's keys through its block table.

    The correctness oracle for the kernel, and the CPU path of the executor (slow: a Python loop over sequences).
    """
    t, h, d = q.shape
    bs, kvh = k_cache.shape[1], k_cache.shape[2]
    group = h // kvh
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out = torch.empty_like(q)
    starts, lens = query_start.tolist(), seq_lens.tolist()
    for s, n_kv in enumerate(lens):
        a, b = starts[s], starts[s + 1]
        if a == b:
            continue
        blocks = block_tables[s, : -(-n_kv // bs)].long()
        keys = k_cache[blocks].reshape(-1, kvh, d)[:n_kv].float()
        vals = v_cache[blocks].reshape(-1, kvh, d)[:n_kv].float()
        keys = keys.repeat_interleave(group, dim=1)  # [n_kv, h, d]
        vals = vals.repeat_interleave(group, dim=1)
        qs = q[a:b].float()  # [q_len, h, d]
        scores = torch.einsum("qhd,khd->hqk", qs, keys) * scale
        q_pos = torch.arange(n_kv - (b - a), n_kv, device=q.device)
        mask = torch.arange(n_kv, device=q.device)[None, :] <= q_pos[:, None]  # [q_len, n_kv]
        scores = scores.masked_fill(~mask[None], float("-inf"))
        out[a:b] = torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), vals).to(q.dtype)
    return out


if triton is not None:

    @triton.jit
    def _paged_attention_kernel(
        Q, K, V, O, block_tables, seq_lens, query_start, tile_seq, tile_q0, scale,
        stride_qt, stride_qh, stride_ot, stride_oh, stride_kb, stride_ks, stride_kh, stride_bt,
        BLOCK_SIZE: tl.constexpr, GROUP: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_N: tl.constexpr,
        HEAD_DIM: tl.constexpr,
    ):
        tile = tl.program_id(0)
        kvh = tl.program_id(1)
        s = tl.load(tile_seq + tile)
        q0 = tl.load(tile_q0 + tile)
        qs = tl.load(query_start + s)
        q_len = tl.load(query_start + s + 1) - qs
        seq_len = tl.load(seq_lens + s)
        ctx = seq_len - q_len  # keys cached before this step's chunk

        rows = tl.arange(0, BLOCK_Q * GROUP)
        qi = q0 + rows // GROUP  # query index within the chunk
        head = kvh * GROUP + rows % GROUP
        row_ok = qi < q_len
        d = tl.arange(0, HEAD_DIM)
        q_ptr = Q + (qs + qi).to(tl.int64)[:, None] * stride_qt + head[:, None] * stride_qh + d[None, :]
        q = tl.load(q_ptr, mask=row_ok[:, None], other=0.0)
        q_pos = ctx + qi

        m_i = tl.full([BLOCK_Q * GROUP], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_Q * GROUP], tl.float32)
        acc = tl.zeros([BLOCK_Q * GROUP, HEAD_DIM], tl.float32)
        # Keys beyond the tile's last query are masked for every row: stop there.
        kv_end = tl.minimum(seq_len, ctx + q0 + BLOCK_Q)
        bt_row = block_tables + s.to(tl.int64) * stride_bt
        for start in range(0, kv_end, BLOCK_N):
            n = start + tl.arange(0, BLOCK_N)
            n_ok = n < kv_end
            page = tl.load(bt_row + n // BLOCK_SIZE, mask=n_ok, other=0).to(tl.int64)
            off = page * stride_kb + (n % BLOCK_SIZE) * stride_ks + kvh * stride_kh
            k = tl.load(K + off[None, :] + d[:, None], mask=n_ok[None, :], other=0.0)  # [HEAD_DIM, BLOCK_N]
            qk = tl.dot(q, k) * scale
            keep = (n[None, :] <= q_pos[:, None]) & n_ok[None, :]
            qk = tl.where(keep, qk, float("-inf"))
            # Key 0 is kept for every row in the first slice, so m_new is finite from there on.
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.exp(qk - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + off[:, None] + d[None, :], mask=n_ok[:, None], other=0.0)  # [BLOCK_N, HEAD_DIM]
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        acc = acc / l_i[:, None]
        o_ptr = O + (qs + qi).to(tl.int64)[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :]
        tl.store(o_ptr, acc.to(O.dtype.element_ty), mask=row_ok[:, None])


    @triton.jit
    def _decode_split_kernel(
        Q, K, V, MidO, MidL, block_tables, seq_lens, tile_seq, query_start, scale,
        stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_bt,
        BLOCK_SIZE: tl.constexpr, GROUP: tl.constexpr, ROWS: tl.constexpr, SPLIT: tl.constexpr,
        NUM_SPLITS: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, NUM_HEADS: tl.constexpr,
    ):
        """Flash-decoding: one program per (decode, KV head, slice of SPLIT keys); partial outputs + log-sum-exp."""
        tile = tl.program_id(0)
        kvh = tl.program_id(1)
        split = tl.program_id(2)
        s = tl.load(tile_seq + tile)
        seq_len = tl.load(seq_lens + s)
        start0 = split * SPLIT
        if start0 >= seq_len:
            return
        end = tl.minimum(seq_len, start0 + SPLIT)
        qt = tl.load(query_start + s)
        rows = tl.arange(0, ROWS)
        row_ok = rows < GROUP
        head = kvh * GROUP + rows
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + qt.to(tl.int64) * stride_qt + head[:, None] * stride_qh + d[None, :], mask=row_ok[:, None],
                    other=0.0)
        m_i = tl.full([ROWS], float("-inf"), tl.float32)
        l_i = tl.zeros([ROWS], tl.float32)
        acc = tl.zeros([ROWS, HEAD_DIM], tl.float32)
        bt_row = block_tables + s.to(tl.int64) * stride_bt
        for start in range(start0, end, BLOCK_N):
            n = start + tl.arange(0, BLOCK_N)
            n_ok = n < end
            page = tl.load(bt_row + n // BLOCK_SIZE, mask=n_ok, other=0).to(tl.int64)
            off = page * stride_kb + (n % BLOCK_SIZE) * stride_ks + kvh * stride_kh
            k = tl.load(K + off[None, :] + d[:, None], mask=n_ok[None, :], other=0.0)
            qk = tl.where(n_ok[None, :], tl.dot(q, k) * scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            p = tl.exp(qk - m_new[:, None])
            alpha = tl.exp(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + off[:, None] + d[None, :], mask=n_ok[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        base = (tile.to(tl.int64) * NUM_HEADS + head) * NUM_SPLITS + split
        tl.store(MidO + base[:, None] * HEAD_DIM + d[None, :], acc / l_i[:, None], mask=row_ok[:, None])
        tl.store(MidL + base, m_i + tl.log(l_i), mask=row_ok)

    @triton.jit
    def _decode_reduce_kernel(MidO, MidL, O, seq_lens, tile_seq, query_start, stride_ot, stride_oh,
                              SPLIT: tl.constexpr, NUM_SPLITS: tl.constexpr, HEAD_DIM: tl.constexpr,
                              NUM_HEADS: tl.constexpr):
        """Combine a decode's slices (one program per decode and query head)."""
        tile = tl.program_id(0)
        head = tl.program_id(1)
        s = tl.load(tile_seq + tile)
        n_splits = tl.cdiv(tl.load(seq_lens + s), SPLIT)
        d = tl.arange(0, HEAD_DIM)
        base = (tile.to(tl.int64) * NUM_HEADS + head) * NUM_SPLITS
        m = tl.load(MidL + base)  # the first slice always exists (seq_len >= 1)
        acc = tl.load(MidO + base * HEAD_DIM + d)
        l = m * 0.0 + 1.0
        for i in range(1, n_splits):
            lse = tl.load(MidL + base + i)
            o = tl.load(MidO + (base + i) * HEAD_DIM + d)
            m_new = tl.maximum(m, lse)
            a = tl.exp(m - m_new)
            b = tl.exp(lse - m_new)
            acc = acc * a + o * b
            l = l * a + b
            m = m_new
        qt = tl.load(query_start + s)
        tl.store(O + qt.to(tl.int64) * stride_ot + head * stride_oh + d, (acc / l).to(O.dtype.element_ty))


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                     seq_lens: torch.Tensor, query_start: torch.Tensor, tile_seq: torch.Tensor, max_len: int,
                     out: torch.Tensor, scale: float | None = None, split: int = 512, block_n: int = 64,
                     num_warps: int = 4) -> torch.Tensor:
    """Decodes only (one query each, listed by `tile_seq`): the keys of each decode are cut into `split`-token
    slices processed in parallel, then combined (flash-decoding), so a long context does not serialize on one
    program per KV head. The grid covers `max_len` (static, so a captured graph fits any context length)."""
    t, h, d = q.shape
    nb, bs, kvh, _ = k_cache.shape
    group = h // kvh
    n_tiles = tile_seq.shape[0]
    if n_tiles == 0:
        return out
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    num_splits = -(-max_len // split)
    mid_o = torch.empty(n_tiles * h * num_splits * d, dtype=torch.float32, device=q.device)
    mid_l = torch.empty(n_tiles * h * num_splits, dtype=torch.float32, device=q.device)
    _decode_split_kernel[(n_tiles, kvh, num_splits)](
        q, k_cache, v_cache, mid_o, mid_l, block_tables, seq_lens, tile_seq, query_start, scale,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        BLOCK_SIZE=bs, GROUP=group, ROWS=max(16, group), SPLIT=split, NUM_SPLITS=num_splits, BLOCK_N=block_n,
        HEAD_DIM=d, NUM_HEADS=h, num_warps=num_warps)
    _decode_reduce_kernel[(n_tiles, h)](mid_o, mid_l, out, seq_lens, tile_seq, query_start, out.stride(0), out.stride(1),
                                        SPLIT=split, NUM_SPLITS=num_splits, HEAD_DIM=d, NUM_HEADS=h, num_warps=1)
    return out


def kernel_available(device: torch.device | str) -> bool:
    """True when the Triton kernel can run on `device` (a CUDA device, or the CPU under TRITON_INTERPRET=1)."""
    if triton is None:
        return False
    dev = torch.device(device)
    return dev.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def block_q_for(group: int, rows: int) -> int:
    """Query tokens per tile so that tokens x query heads per KV head fill at least `rows` (>= 16, tl.dot's minimum)."""
    rows = max(16, rows, group)
    return max(1, rows // group)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                    seq_lens: torch.Tensor, query_start: torch.Tensor, tile_seq: torch.Tensor, tile_q0: torch.Tensor,
                    block_q: int, out: torch.Tensor, scale: float | None = None, block_n: int = 64,
                    num_warps: int = 4, num_stages: int = 2) -> torch.Tensor:
    """Launch the kernel over the given tiles, writing the tiles' rows of `out` ([tokens, heads, head_dim]).

    Several launches (decode tiles with a small `block_q`, prefill tiles with a large one) may fill one `out`.
    """
    t, h, d = q.shape
    nb, bs, kvh, _ = k_cache.shape
    group = h // kvh
    if (block_q * group) < 16 or d < 16 or (d & (d - 1)):
        raise ValueError(f"block_q * group must be >= 16 and head_dim a power of two >= 16 (got {block_q}*{group}, {d})")
    if q.stride(2) != 1 or k_cache.stride(3) != 1 or out.stride(2) != 1:
        raise ValueError("the head dimension must be contiguous")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    grid = (tile_seq.shape[0], kvh)
    if grid[0] == 0:
        return out
    _paged_attention_kernel[grid](
        q, k_cache, v_cache, out, block_tables, seq_lens, query_start, tile_seq, tile_q0, scale,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        BLOCK_SIZE=bs, GROUP=group, BLOCK_Q=block_q, BLOCK_N=block_n, HEAD_DIM=d,
        num_warps=num_warps, num_stages=num_stages,
    )
    return out
