"""Plan-to-tensor bookkeeping of the GPU executor (numpy only: runs on every machine)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.serving.executors.step_inputs import (GRAPH_BATCH_SIZES, BlockTableMirror, TokenStore, attention_tiles,
                                                  build_step_inputs, graph_bucket, record_outputs)
from replay.serving.plan import Chunk, StepPlan


def test_graph_bucket_is_the_smallest_that_holds_the_batch():
    assert graph_bucket(1) == 1
    assert graph_bucket(3) == 4
    assert graph_bucket(17) == 24
    assert graph_bucket(256) == 256
    assert graph_bucket(257) is None
    assert graph_bucket(5, (8, 2)) == 8  # first bucket >= n in the given order
    assert all(graph_bucket(b) == b for b in GRAPH_BATCH_SIZES)


def test_attention_tiles_cover_every_query_once():
    q_lens = np.array([1, 40, 1, 17, 64])
    seqs = np.array([1, 3, 4])
    tile_seq, tile_q0 = attention_tiles(q_lens, seqs, 16)
    assert tile_seq.tolist() == [1, 1, 1, 3, 3, 4, 4, 4, 4]
    assert tile_q0.tolist() == [0, 16, 32, 0, 16, 0, 16, 32, 48]
    covered = {(s, q) for s, q0 in zip(tile_seq.tolist(), tile_q0.tolist()) for q in range(q0, min(q0 + 16, q_lens[s]))}
    assert covered == {(s, q) for s in seqs.tolist() for q in range(q_lens[s])}


def test_mirror_follows_extend_and_replace():
    m = BlockTableMirror(3, 4, block_size=16, scratch_block=99)
    t = [5, 6]
    m.sync(0, t)
    assert m.rows[0].tolist() == [5, 6, 99, 99]
    t.extend([7])
    m.sync(0, t)
    assert m.rows[0].tolist() == [5, 6, 7, 99]
    m.sync(0, [1, 2, 3])  # a new list of the same length (re-admission after a preemption)
    assert m.rows[0].tolist() == [1, 2, 3, 99]
    m.sync(0, [])
    assert m.rows[0].tolist() == [99] * 4
    with pytest.raises(ValueError, match="more than the 4"):
        m.sync(1, [0] * 5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 70), st.integers(0, 90), st.booleans()), min_size=1, max_size=8),
       st.sampled_from([1, 4, 16]))
def test_step_inputs_match_a_per_token_loop(chunks, bs):
    """Positions, slots, sequence lengths and logits rows equal a plain per-token computation."""
    width = 200 // bs + 2
    rng = np.random.default_rng(len(chunks) * 7 + bs)
    n_req = len(chunks)
    prompt = np.array([q + c + 1 for q, c, _ in chunks])
    tokens = TokenStore(prompt, np.full(n_req, 5), vocab_size=1000, seed=3)
    tables = {}
    plan = StepPlan()
    for r, (q, c, produces) in enumerate(chunks):
        n_blocks = -(-(q + c) // bs)
        tables[r] = rng.choice(10_000, size=n_blocks, replace=False).tolist()
        if c > 0:
            tokens.ensure_prompt(r)
        plan.add(Chunk(r, q, c, produces, 1))
    mirror = BlockTableMirror(n_req, width, bs, scratch_block=10_000)
    inp = build_step_inputs(plan, mirror, tables.__getitem__, tokens)
    pos, slots, ids, rows = [], [], [], []
    for r, (q, c, produces) in enumerate(chunks):
        for p in range(c, c + q):
            pos.append(p)
            slots.append(tables[r][p // bs] * bs + p % bs)
            ids.append(int(tokens.span(r, p, 1)[0]))
        if produces:
            rows.append(len(pos) - 1)
    assert inp.positions.tolist() == pos
    assert inp.slot_mapping.tolist() == slots
    assert inp.input_ids.tolist() == ids
    assert inp.logits_index.tolist() == rows
    assert inp.seq_lens.tolist() == [q + c for q, c, _ in chunks]
    assert inp.query_start.tolist() == np.concatenate(([0], np.cumsum([q for q, _, _ in chunks]))).tolist()
    assert inp.block_tables.shape == (n_req, max(len(t) for t in tables.values()))  # only the columns read
    for r in range(n_req):
        assert inp.block_tables[r, :len(tables[r])].tolist() == tables[r]
        assert (inp.block_tables[r, len(tables[r]):] == 10_000).all()
    assert inp.is_decode_only == all(q == 1 and c > 0 for q, c, _ in chunks)


def test_decode_only_inputs_read_the_last_token_and_outputs_land_after_it():
    tokens = TokenStore(np.array([3, 2]), np.array([4, 4]), vocab_size=50, seed=0)
    for r in (0, 1):
        tokens.ensure_prompt(r)
    plan = StepPlan()
    plan.add(Chunk(0, 1, 3, True, 2))
    plan.add(Chunk(1, 1, 2, True, 2))
    tokens.put(np.array([0, 1]), np.array([3, 2]), np.array([41, 42]))  # each request's first output token
    mirror = BlockTableMirror(2, 2, 4, scratch_block=7)
    inp = build_step_inputs(plan, mirror, {0: [0], 1: [1]}.__getitem__, tokens)
    assert inp.is_decode_only
    assert inp.input_ids.tolist() == [41, 42]
    assert inp.slot_mapping.tolist() == [3, 6]
    record_outputs(inp, tokens, np.array([11, 12]))
    assert tokens.span(0, 3, 2).tolist() == [41, 11]
    assert tokens.span(1, 2, 2).tolist() == [42, 12]


def test_prompt_ids_are_deterministic_per_request():
    a = TokenStore(np.array([30, 30]), np.array([1, 1]), vocab_size=1000, seed=5)
    b = TokenStore(np.array([30, 30]), np.array([1, 1]), vocab_size=1000, seed=5)
    a.ensure_prompt(1)
    b.ensure_prompt(0)
    b.ensure_prompt(1)
    assert a.span(1, 0, 30).tolist() == b.span(1, 0, 30).tolist()
    assert a.span(1, 0, 30).tolist() != b.span(0, 0, 30).tolist()
