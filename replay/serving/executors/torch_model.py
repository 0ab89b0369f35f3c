"""A Llama-architecture decoder in plain PyTorch over a paged KV cache (random weights, or local safetensors).

RMSNorm, rotary position embeddings (non-interleaved halves, as Hugging Face's Llama), grouped-query attention
and a SwiGLU MLP, built from a `ModelConfig`. Q/K/V and gate/up projections are fused into one matrix each, so a
layer is four matrix products plus attention. One `forward` serves a whole step: prefill chunks and decodes
flattened into one token dimension; attention runs through `paged_attention` (Triton) or, where the kernel
cannot run, the dense reference. The LM head sees only the rows that produce a token and returns greedy ids.

Random weights are drawn with std 1/sqrt(fan-in) so activations stay finite in bf16; their values do not
matter for timing. `load_safetensors` reads a Hugging Face Llama checkpoint's tensors instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from replay.serving.executors import paged_attention as pa
from replay.serving.specs import ModelConfig


@dataclass
class AttentionMeta:
    """Device tensors describing one step's attention (see `step_inputs`); tiles per kernel launch."""

    slot_mapping: torch.Tensor
    query_start: torch.Tensor
    seq_lens: torch.Tensor
    block_tables: torch.Tensor
    launches: list[tuple[torch.Tensor, torch.Tensor, int]]
    """(tile_seq, tile_q0, block_q) per launch of the chunk kernel (prefill chunks); empty on the reference path."""
    use_kernel: bool
    decode_seqs: torch.Tensor | None = None
    """Sequences with one query, for the split-KV decode kernel (None: none, or the reference path)."""
    max_len: int = 0
    """Longest sequence the decode kernel's grid covers (the executor's max_model_len)."""


class LlamaWeights:
    """All parameters of the model, fused per layer: qkv [(H+2KVH)*D, E], o [E, H*D], gate_up [2F, E], down [E, F]."""

    def __init__(self, model: ModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> None:
        self.model = model
        gen = torch.Generator(device=device).manual_seed(seed)
        e, d, f = model.hidden_size, model.head_dim, model.ffn_size
        qkv_rows = (model.num_heads + 2 * model.num_kv_heads) * d

        def rand(rows: int, cols: int) -> torch.Tensor:
            w = torch.empty(rows, cols, device=device, dtype=dtype)
            return w.normal_(0.0, 1.0 / math.sqrt(cols), generator=gen)

        self.embed = torch.empty(model.vocab_size, e, device=device, dtype=dtype).normal_(0.0, 1.0, generator=gen)
        self.layers = [
            {"in_norm": torch.ones(e, device=device, dtype=dtype), "qkv": rand(qkv_rows, e),
             "o": rand(e, model.num_heads * d), "post_norm": torch.ones(e, device=device, dtype=dtype),
             "gate_up": rand(2 * f, e), "down": rand(e, f)}
            for _ in range(model.num_layers)]
        self.final_norm = torch.ones(e, device=device, dtype=dtype)
        self.lm_head = self.embed if model.tie_word_embeddings else rand(model.vocab_size, e)

    def load_safetensors(self, path: str | Path) -> None:
        """Replace the random weights with a Hugging Face Llama checkpoint (a .safetensors file or a folder of them).

        Raises ValueError naming the tensor when a name is missing or a shape differs from the config.
        """
        from safetensors.torch import load_file

        path = Path(path)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"{path}: no .safetensors files")
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            tensors.update(load_file(str(f)))
        dev, dt = self.embed.device, self.embed.dtype

        def get(name: str, shape: tuple[int, ...]) -> torch.Tensor:
            if name not in tensors:
                raise ValueError(f"{path}: tensor {name!r} missing (a Llama checkpoint for {self.model.name} expected)")
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ValueError(f"{path}: tensor {name!r} has shape {tuple(t.shape)}, expected {shape} for {self.model.name}")
            return t.to(device=dev, dtype=dt)

        m = self.model
        e, d, f, h, kvh = m.hidden_size, m.head_dim, m.ffn_size, m.num_heads, m.num_kv_heads
        self.embed = get("model.embed_tokens.weight", (m.vocab_size, e))
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            layer["in_norm"] = get(p + "input_layernorm.weight", (e,))
            layer["post_norm"] = get(p + "post_attention_layernorm.weight", (e,))
            layer["qkv"] = torch.cat([get(p + "self_attn.q_proj.weight", (h * d, e)),
                                      get(p + "self_attn.k_proj.weight", (kvh * d, e)),
                                      get(p + "self_attn.v_proj.weight", (kvh * d, e))])
            layer["o"] = get(p + "self_attn.o_proj.weight", (e, h * d))
            layer["gate_up"] = torch.cat([get(p + "mlp.gate_proj.weight", (f, e)), get(p + "mlp.up_proj.weight", (f, e))])
            layer["down"] = get(p + "mlp.down_proj.weight", (e, f))
        self.final_norm = get("model.norm.weight", (e,))
        self.lm_head = self.embed if m.tie_word_embeddings else get("lm_head.weight", (m.vocab_size, e))


class LlamaModel:
    """Forward pass over a step's flattened tokens; owns the paged KV cache tensors (one K and one V per layer)."""

    def __init__(self, weights: LlamaWeights, num_blocks: int, block_size: int, max_model_len: int,
                 rope_theta: float = 10000.0, eps: float = 1e-5) -> None:
        m = weights.model
        self.w, self.model, self.eps = weights, m, eps
        dev, dt = weights.embed.device, weights.embed.dtype
        shape = (num_blocks, block_size, m.num_kv_heads, m.head_dim)
        self.k_cache = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(m.num_layers)]
        self.v_cache = [torch.zeros(shape, device=dev, dtype=dt) for _ in range(m.num_layers)]
        inv = 1.0 / (rope_theta ** (torch.arange(0, m.head_dim, 2, device=dev, dtype=torch.float32) / m.head_dim))
        angles = torch.outer(torch.arange(max_model_len, device=dev, dtype=torch.float32), inv)
        self.cos, self.sin = angles.cos(), angles.sin()  # [max_len, head_dim/2], float32
        self.scale = 1.0 / math.sqrt(m.head_dim)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    def _attention(self, layer: int, q: torch.Tensor, meta: AttentionMeta) -> torch.Tensor:
        k_cache, v_cache = self.k_cache[layer], self.v_cache[layer]
        if not meta.use_kernel:
            return pa.reference_attention(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, meta.query_start,
                                          self.scale)
        out = torch.empty_like(q)
        if meta.decode_seqs is not None:
            pa.decode_attention(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, meta.query_start,
                                meta.decode_seqs, meta.max_len, out, self.scale)
        for tile_seq, tile_q0, block_q in meta.launches:
            pa.paged_attention(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, meta.query_start, tile_seq,
                               tile_q0, block_q, out, self.scale)
        return out

    def hidden(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMeta | None,
               attention: bool = True) -> torch.Tensor:
        """Residual stream after every layer ([tokens, hidden]); `attention=False` skips attention and KV writes
        (the profiler times the other operators that way)."""
        m, w = self.model, self.w
        h, kvh, d = m.num_heads, m.num_kv_heads, m.head_dim
        x = F.embedding(input_ids, w.embed)
        cos, sin = self.cos[positions][:, None, :], self.sin[positions][:, None, :]
        for i, layer in enumerate(w.layers):
            y = F.rms_norm(x, (m.hidden_size,), layer["in_norm"], self.eps)
            qkv = F.linear(y, layer["qkv"])
            q, k, v = qkv.split((h * d, kvh * d, kvh * d), dim=-1)
            q = self._rope(q.view(-1, h, d), cos, sin)
            if attention:
                k = self._rope(k.view(-1, kvh, d), cos, sin)
                pa.write_kv(self.k_cache[i], self.v_cache[i], meta.slot_mapping, k, v.reshape(-1, kvh, d))
                o = self._attention(i, q, meta)
            else:
                o = q
            x = x + F.linear(o.reshape(-1, h * d), layer["o"])
            y = F.rms_norm(x, (m.hidden_size,), layer["post_norm"], self.eps)
            gate, up = F.linear(y, layer["gate_up"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, layer["down"])
        return x

    def sample(self, hidden_rows: torch.Tensor) -> torch.Tensor:
        """Greedy next-token ids of the given rows (final norm, LM head, argmax)."""
        y = F.rms_norm(hidden_rows, (self.model.hidden_size,), self.w.final_norm, self.eps)
        return F.linear(y, self.w.lm_head).argmax(dim=-1)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMeta,
                logits_index: torch.Tensor) -> torch.Tensor:
        """One step: next-token ids for the rows in `logits_index`."""
        return self.sample(self.hidden(input_ids, positions, meta)[logits_index])
