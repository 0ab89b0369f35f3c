"""Scheduler configuration (a frozen dataclass: validated on construction, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

PREEMPTION_MODES = ("recompute", "swap")
KV_MODES = ("paged", "static")


@dataclass(frozen=True)
class SchedulerConfig:
    """One replica's batching and memory limits."""

    num_kv_blocks: int
    """GPU KV blocks in the pool (derive it with `replay.serving.specs.kv_capacity_blocks`)."""
    max_model_len: int = 4096
    """Longest sequence (prompt + output); generation stops there (finish reason 'length')."""
    block_size: int = 16
    """Tokens per KV block."""
    max_num_batched_tokens: int = 2048
    """Token budget of one step (prefill chunks plus decodes)."""
    max_num_seqs: int = 256
    """Most requests in the running batch."""
    chunked_prefill: bool = True
    """Split prefills across steps and mix them with decodes (Sarathi-Serve); off: whole prefills in prefill-only steps (vLLM v0)."""
    watermark_fraction: float = 0.01
    """Share of the pool an admission must leave free (avoids preempting right after admitting)."""
    preemption_mode: str = "recompute"
    """'recompute' (drop KV, recompute later) or 'swap' (copy KV to the CPU pool; falls back to recompute when full)."""
    num_cpu_swap_blocks: int = 0
    """Capacity of the CPU swap pool, in blocks (swap mode only)."""
    kv_mode: str = "paged"
    """'paged' (allocate blocks as tokens arrive) or 'static' (reserve max_model_len at admission, pre-vLLM style)."""
    enable_prefix_caching: bool = True
    """Reuse cached KV blocks of identical prompt prefixes (needs block hashes in the trace)."""

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.num_kv_blocks < 1:
            raise ValueError("block_size and num_kv_blocks must be >= 1")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")
        if self.max_model_len < 2:
            raise ValueError("max_model_len must be >= 2")
        if not 0 <= self.watermark_fraction < 1:
            raise ValueError("watermark_fraction must be in [0, 1)")
        if self.preemption_mode not in PREEMPTION_MODES:
            raise ValueError(f"preemption_mode must be one of {PREEMPTION_MODES}, got {self.preemption_mode!r}")
        if self.kv_mode not in KV_MODES:
            raise ValueError(f"kv_mode must be one of {KV_MODES}, got {self.kv_mode!r}")
        if self.num_cpu_swap_blocks < 0:
            raise ValueError("num_cpu_swap_blocks must be >= 0")
        if not self.chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                "without chunked prefill a recomputed request needs its whole sequence in one step: "
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= max_model_len ({self.max_model_len})"
            )
        if -(-self.max_model_len // self.block_size) > self.num_kv_blocks - self.watermark_blocks:
            raise ValueError(
                f"the KV pool ({self.num_kv_blocks} blocks of {self.block_size} tokens, {self.watermark_blocks} kept free) "
                f"cannot hold one max_model_len ({self.max_model_len}) sequence; lower max_model_len or add memory"
            )

    @property
    def watermark_blocks(self) -> int:
        return int(self.num_kv_blocks * self.watermark_fraction)

    @property
    def max_blocks_per_seq(self) -> int:
        return -(-self.max_model_len // self.block_size)
