"""The plain-data contract between the scheduler and an executor.

The scheduler decides *what* runs in a step (`StepPlan`); the executor decides *how long* it takes
and which requests reached their true end (`StepResult`). Executors never mutate scheduler state.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Chunk:
    """One request's share of a step."""

    req: int
    """Run-local request index (position in the replayed trace)."""
    num_tokens: int
    """Tokens computed this step (1 for a decode; a prefill chunk may be shorter than what remains)."""
    num_cached_tokens: int
    """Tokens already in the KV cache before this step (the attention context besides this chunk)."""
    produces_token: bool
    """True when this chunk completes all known tokens, so the step samples one output token."""
    num_output_after: int
    """Output tokens the request will have generated after this step (the executor compares it with the truth)."""


@dataclass(slots=True)
class StepPlan:
    """What one step computes. Aggregates are maintained by `add` so cost models need no loop over decodes."""

    chunks: list[Chunk] = field(default_factory=list)
    num_decodes: int = 0
    """Chunks with one token and a non-empty context (pure decodes)."""
    decode_ctx_tokens: int = 0
    """Sum over decodes of the attention length (cached tokens + 1)."""
    prefill_chunks: list[tuple[int, int]] = field(default_factory=list)
    """(chunk tokens, cached tokens) per prefill chunk."""
    swap_in_blocks: int = 0
    """KV blocks copied CPU -> GPU before this step (charged by the cost model)."""
    swap_out_blocks: int = 0
    """KV blocks copied GPU -> CPU before this step (charged by the cost model)."""

    def add(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)
        if chunk.num_tokens == 1 and chunk.num_cached_tokens > 0:
            self.num_decodes += 1
            self.decode_ctx_tokens += chunk.num_cached_tokens + 1
        else:
            self.prefill_chunks.append((chunk.num_tokens, chunk.num_cached_tokens))

    @property
    def num_tokens(self) -> int:
        return self.num_decodes + sum(q for q, _ in self.prefill_chunks)

    @property
    def is_decode_only(self) -> bool:
        return not self.prefill_chunks and self.num_decodes > 0 and not self.swap_in_blocks and not self.swap_out_blocks


@dataclass(slots=True)
class StepResult:
    """What the executor reports after running a plan."""

    duration_s: float
    finished: list[int]
    """Request indices whose output reached its true length in this step."""


@dataclass(slots=True)
class DecodeRunResult:
    """Result of advancing several identical-shape decode steps at once (the fast path).

    Step i (0-based) of the run has every decode's context one token longer than step i-1.
    """

    step_times_s: "object"
    """numpy float64 array, one duration per executed step."""
    finished: list[int]
    """Requests that reached their true length at the last executed step (empty if the run stopped early)."""
    end_s: "object"
    """numpy float64 array: each step's end time, accumulated from the run's start like plain stepping."""
