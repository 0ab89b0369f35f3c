"""From a `StepPlan` to the flat arrays a real executor feeds the GPU (numpy only: tested on any machine).

Tokens of a step are laid out sequence after sequence, in plan order. For sequence s with chunk (q tokens,
c cached): positions c..c+q-1; its K/V go to ``slot = block_table[pos // bs] * bs + pos % bs``; after the step
it holds ``seq_lens[s] = c + q`` tokens of KV; if the chunk produces a token, the hidden state of its last token
(row ``query_start[s+1] - 1``) goes to the LM head.

Block tables are mirrored into one persistent ``[num_requests, width]`` matrix (`BlockTableMirror`): the
scheduler only ever extends a request's list or replaces it with a new list, so a row is rewritten when the
list object changed and extended when it grew; a decode step then gathers its rows in one numpy indexing
operation instead of copying every request's table. Padded entries point at a scratch block that no request
owns (CUDA-graph padding rows write their K/V there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from replay.serving.plan import StepPlan

GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256)
"""Decode batch sizes captured as CUDA graphs; a batch runs in the smallest bucket that holds it."""


def graph_bucket(num_seqs: int, buckets: Sequence[int] = GRAPH_BATCH_SIZES) -> int | None:
    """The smallest captured batch size >= `num_seqs` (None when the batch is larger than every bucket)."""
    for b in buckets:
        if b >= num_seqs:
            return b
    return None


def attention_tiles(q_lens: np.ndarray, seqs: np.ndarray, block_q: int) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, first query index) of every attention tile: ceil(q_len / block_q) tiles per listed sequence."""
    q_lens = np.asarray(q_lens, dtype=np.int64)[seqs]
    n_tiles = -(-q_lens // block_q)
    tile_seq = np.repeat(np.asarray(seqs, dtype=np.int32), n_tiles)
    first = np.cumsum(n_tiles) - n_tiles  # index of each sequence's first tile
    tile_q0 = (np.arange(tile_seq.size) - np.repeat(first, n_tiles)) * block_q
    return tile_seq, tile_q0.astype(np.int32)


class BlockTableMirror:
    """Rows of the scheduler's block tables, kept up to date incrementally (see the module docstring)."""

    def __init__(self, num_requests: int, width: int, block_size: int, scratch_block: int) -> None:
        self.width = width
        self.block_size = block_size
        self.scratch_block = scratch_block
        self.rows = np.full((num_requests, width), scratch_block, dtype=np.int32)
        self._src: list[list[int] | None] = [None] * num_requests
        self._len = np.zeros(num_requests, dtype=np.int64)

    def sync(self, req: int, table: list[int]) -> None:
        """Make row `req` equal to `table` (padded with the scratch block)."""
        n = len(table)
        if n > self.width:
            raise ValueError(f"request {req} holds {n} KV blocks, more than the {self.width} a sequence may have")
        have = int(self._len[req])
        if self._src[req] is table and n >= have:
            if n > have:
                self.rows[req, have:n] = table[have:]
        else:
            self.rows[req, :n] = table
            self.rows[req, n:] = self.scratch_block
            self._src[req] = table
        self._len[req] = n

    def gather(self, reqs: np.ndarray, width: int | None = None) -> np.ndarray:
        """Rows of `reqs`, only the first `width` columns if given."""
        return self.rows[reqs, :width] if width is not None else self.rows[reqs]


class TokenStore:
    """Token ids of every request in one flat buffer: synthetic prompt ids, then the ids the model generated.

    Traces carry lengths, not text, so prompt ids are drawn from a generator seeded by (seed, request) on first
    use. Each request gets prompt + true output + 1 slots (the executor knows the true lengths).
    """

    def __init__(self, prompt_tokens: np.ndarray, true_output_tokens: np.ndarray, vocab_size: int, seed: int = 0):
        prompt = np.asarray(prompt_tokens, dtype=np.int64)
        cap = prompt + np.asarray(true_output_tokens, dtype=np.int64) + 1
        self.offset = np.concatenate(([0], np.cumsum(cap)[:-1])).astype(np.int64)
        self.prompt = prompt
        self.ids = np.zeros(int(cap.sum()), dtype=np.int32)
        self.vocab_size = vocab_size
        self.seed = seed
        self._filled = np.zeros(prompt.size, dtype=bool)

    def ensure_prompt(self, req: int) -> None:
        if not self._filled[req]:
            rng = np.random.default_rng((self.seed, req))
            a = self.offset[req]
            self.ids[a:a + self.prompt[req]] = rng.integers(0, self.vocab_size, self.prompt[req], dtype=np.int32)
            self._filled[req] = True

    def span(self, req: int, start: int, n: int) -> np.ndarray:
        a = self.offset[req] + start
        return self.ids[a:a + n]

    def at(self, reqs: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return self.ids[self.offset[reqs] + positions]

    def put(self, reqs: np.ndarray, positions: np.ndarray, token_ids: np.ndarray) -> None:
        self.ids[self.offset[reqs] + positions] = token_ids


@dataclass(slots=True)
class StepInputs:
    """Host arrays for one step (int32 unless noted); see the module docstring for the layout."""

    input_ids: np.ndarray
    positions: np.ndarray
    slot_mapping: np.ndarray  # int64
    query_start: np.ndarray
    seq_lens: np.ndarray
    block_tables: np.ndarray
    logits_index: np.ndarray
    """Token rows whose hidden state goes to the LM head (one per chunk that produces a token)."""
    produce_chunks: np.ndarray
    """Plan-chunk index of each logits row."""
    reqs: np.ndarray
    """Request index per sequence (int64)."""
    q_lens: np.ndarray
    """Chunk tokens per sequence (int64)."""
    is_decode_only: bool

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.size)


def build_step_inputs(plan: StepPlan, mirror: BlockTableMirror, block_table_of: Callable[[int], list[int]],
                      tokens: TokenStore) -> StepInputs:
    """Translate `plan` into `StepInputs`, syncing the block-table mirror and filling first-seen prompts."""
    chunks = plan.chunks
    reqs = np.fromiter((c.req for c in chunks), dtype=np.int64, count=len(chunks))
    q_lens = np.fromiter((c.num_tokens for c in chunks), dtype=np.int64, count=len(chunks))
    cached = np.fromiter((c.num_cached_tokens for c in chunks), dtype=np.int64, count=len(chunks))
    produces = np.fromiter((c.produces_token for c in chunks), dtype=bool, count=len(chunks))
    for r in reqs.tolist():
        mirror.sync(r, block_table_of(r))
    bs = mirror.block_size
    # Only the columns this step can read (a 128K-token model has 8K-column rows; the kernel reads up to seq_len).
    width = int(-(-(cached + q_lens).max() // bs)) if len(chunks) else 1
    tables = mirror.gather(reqs, width)
    query_start = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum(q_lens, out=query_start[1:])
    decode_only = bool(len(chunks)) and bool((q_lens == 1).all()) and bool((cached > 0).all())
    if decode_only:
        positions = cached
        input_ids = tokens.at(reqs, cached)
        seq_index = np.arange(len(chunks))
    else:
        seq_index = np.repeat(np.arange(len(chunks)), q_lens)
        positions = np.arange(int(query_start[-1]), dtype=np.int64) - query_start[seq_index] + cached[seq_index]
        parts = []
        for i, (r, c, q) in enumerate(zip(reqs.tolist(), cached.tolist(), q_lens.tolist())):
            if c == 0:
                tokens.ensure_prompt(r)
            parts.append(tokens.span(r, c, q))
        input_ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    slots = tables[seq_index, positions // bs].astype(np.int64) * bs + positions % bs
    return StepInputs(
        input_ids=input_ids.astype(np.int32, copy=False), positions=positions.astype(np.int32),
        slot_mapping=slots, query_start=query_start.astype(np.int32), seq_lens=(cached + q_lens).astype(np.int32),
        block_tables=tables, logits_index=(query_start[1:][produces] - 1).astype(np.int32),
        produce_chunks=np.flatnonzero(produces), reqs=reqs, q_lens=q_lens, is_decode_only=decode_only)


def record_outputs(inputs: StepInputs, tokens: TokenStore, next_ids: np.ndarray) -> None:
    """Store each produced token after its chunk (position = cached + chunk tokens)."""
    idx = inputs.produce_chunks
    if idx.size:
        tokens.put(inputs.reqs[idx], inputs.seq_lens[idx].astype(np.int64), next_ids)
