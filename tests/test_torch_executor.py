"""The PyTorch executor: paged attention against a dense reference, and a whole replay checked token by token.

CPU tests need torch (CI installs the CPU build); the kernel runs on the CPU through Triton's interpreter when
Triton is installed. Tests marked `gpu` need CUDA and skip without it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from replay.serving.executors import paged_attention as pa  # noqa: E402
from replay.serving.specs import ModelConfig  # noqa: E402

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
TINY = ModelConfig("tiny-gqa", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, head_dim=16, ffn_size=96,
                   vocab_size=101, max_model_len=64)


def random_paged_case(seed: int, chunks: list[tuple[int, int]], kvh: int, group: int, d: int, bs: int,
                      device: str, dtype) -> dict:
    """Random queries and a randomly laid-out paged cache for chunks (q tokens, c cached) of several sequences."""
    g = torch.Generator().manual_seed(seed)
    num_blocks = sum(-(-(q + c) // bs) for q, c in chunks) + 3
    perm = torch.randperm(num_blocks, generator=g).tolist()
    width = max(-(-(q + c) // bs) for q, c in chunks)
    tables = torch.full((len(chunks), width), num_blocks - 1, dtype=torch.int32)
    for s, (q, c) in enumerate(chunks):
        n = -(-(q + c) // bs)
        tables[s, :n] = torch.tensor([perm.pop() for _ in range(n)], dtype=torch.int32)
    k = torch.randn(num_blocks, bs, kvh, d, generator=g).to(device, dtype)
    v = torch.randn(num_blocks, bs, kvh, d, generator=g).to(device, dtype)
    total = sum(q for q, _ in chunks)
    qs = torch.randn(total, kvh * group, d, generator=g).to(device, dtype)
    start = torch.tensor([0] + np.cumsum([q for q, _ in chunks]).tolist(), dtype=torch.int32)
    lens = torch.tensor([q + c for q, c in chunks], dtype=torch.int32)
    return dict(q=qs, k_cache=k, v_cache=v, block_tables=tables.to(device), seq_lens=lens.to(device),
                query_start=start.to(device))


def run_kernel(case: dict, chunks, group: int, device: str) -> "torch.Tensor":
    from replay.serving.executors.step_inputs import attention_tiles

    q_lens = np.array([q for q, _ in chunks])
    out = torch.full_like(case["q"], float("nan"))  # poisoned: every row must be written
    seqs = np.arange(len(chunks))
    for mask, rows in ((q_lens == 1, 16), (q_lens > 1, 64)):
        bq = pa.block_q_for(group, rows)
        ts, tq = attention_tiles(q_lens, seqs[mask], bq)
        pa.paged_attention(case["q"], case["k_cache"], case["v_cache"], case["block_tables"], case["seq_lens"],
                           case["query_start"], torch.from_numpy(ts).to(device), torch.from_numpy(tq).to(device),
                           bq, out, block_n=32 if device == "cpu" else 64)
    return out


def run_decode_kernel(case: dict, chunks, device: str, split: int) -> "torch.Tensor":
    out = torch.full_like(case["q"], float("nan"))
    seqs = torch.arange(len(chunks), dtype=torch.int32, device=device)
    max_len = max(q + c for q, c in chunks)
    return pa.decode_attention(case["q"], case["k_cache"], case["v_cache"], case["block_tables"], case["seq_lens"],
                               case["query_start"], seqs, max_len + 5, out, split=split,
                               block_n=16 if device == "cpu" else 64)


CHUNK_SETS = [
    [(1, 5), (1, 40), (1, 1)],                      # decodes
    [(37, 0), (16, 16), (5, 70)],                   # prefill chunks with and without cache
    [(1, 33), (50, 0), (1, 100), (20, 12), (1, 3)],  # a mixed step
]


@pytest.fixture(autouse=True)
def _fix_interpreter_scalar_index(monkeypatch):
    """Under TRITON_INTERPRET=1: Triton 3.6's interpreter turns a scalar into an index with int() of a 1-element array, which numpy >= 2.3
    refuses (a loop bound read from memory then fails); wrap its patch so the scalar is taken out first."""
    if os.environ.get("TRITON_INTERPRET") != "1" or pa.triton is None:
        return
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", patched)


@pytest.mark.skipif(pa.triton is None, reason="Triton is not installed")
@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("chunks", CHUNK_SETS)
def test_kernel_matches_dense_reference_under_the_interpreter(monkeypatch, chunks, group):
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("set TRITON_INTERPRET=1 to run the Triton kernel on the CPU (slow); the gpu tests cover it on CUDA")
    case = random_paged_case(1 + group, chunks, kvh=2, group=group, d=16, bs=4, device="cpu", dtype=torch.float32)
    ref = pa.reference_attention(**case)
    got = run_kernel(case, chunks, group, "cpu")
    assert not torch.isnan(got).any()
    assert (got - ref).abs().max().item() < 1e-4
    if all(q == 1 for q, _ in chunks):  # the split-KV decode kernel, slices shorter and longer than a context
        for split in (16, 32, 128):
            got = run_decode_kernel(case, chunks, "cpu", split)
            assert not torch.isnan(got).any() and (got - ref).abs().max().item() < 1e-4, split


def test_reference_attention_is_causal_softmax_attention():
    """The reference itself, against a hand-built dense computation of one prefill chunk over its cache."""
    chunks = [(3, 5)]
    case = random_paged_case(0, chunks, kvh=1, group=2, d=8, bs=4, device="cpu", dtype=torch.float64)
    got = pa.reference_attention(**case)
    blocks = case["block_tables"][0, :2].long()
    keys = case["k_cache"][blocks].reshape(-1, 1, 8)[:8, 0]
    vals = case["v_cache"][blocks].reshape(-1, 1, 8)[:8, 0]
    for i in range(3):
        for h in range(2):
            s = keys[: 5 + i + 1] @ case["q"][i, h] / 8 ** 0.5
            want = torch.softmax(s, 0) @ vals[: 5 + i + 1]
            assert torch.allclose(got[i, h], want, atol=1e-12)


def _replay(executor_kwargs: dict, num_kv_blocks: int, prompts, outputs, max_tokens: int = 48):
    """A small replay through the real scheduler and the torch executor (virtual clock, one step at a time)."""
    from replay.serving.config import SchedulerConfig
    from replay.serving.executors.torch_executor import TorchExecutor
    from replay.serving.policies import QUEUE_POLICIES, VICTIM_POLICIES
    from replay.serving.request import Request
    from replay.serving.scheduler import Scheduler
    from replay.simulate import Replica, simulate

    cfg = SchedulerConfig(num_kv_blocks=num_kv_blocks, max_model_len=TINY.max_model_len, block_size=4,
                          max_num_batched_tokens=max_tokens, max_num_seqs=8, enable_prefix_caching=False)
    sched = Scheduler(cfg, QUEUE_POLICIES.create("fcfs"), VICTIM_POLICIES.create("last_admitted"))
    ex = TorchExecutor(TINY, prompt_tokens=np.array(prompts), true_output_tokens=np.array(outputs),
                       num_kv_blocks=num_kv_blocks, block_size=4, max_model_len=TINY.max_model_len, max_num_seqs=8,
                       block_table_of=lambda i: sched.request(i).block_table, **executor_kwargs)
    reqs = [Request(i, 0.001 * i, p) for i, p in enumerate(prompts)]
    rep = Replica(0, sched, ex, fast_decode=False)
    simulate(reqs, [rep], check=lambda r: r.scheduler.check_integrity())
    return ex, reqs


def _dense_greedy(ex, seq: np.ndarray, prompt_len: int) -> np.ndarray:
    """Greedy predictions at every position from `prompt_len - 1` on, recomputed in one chunk on a fresh cache
    (on the executor's device, with the dense reference attention)."""
    from replay.serving.executors.torch_model import AttentionMeta, LlamaModel

    dev, n = ex.device, seq.size
    model = LlamaModel(ex.weights, -(-n // 4) + 1, 4, TINY.max_model_len)
    meta = AttentionMeta(slot_mapping=torch.arange(n, device=dev),
                         query_start=torch.tensor([0, n], dtype=torch.int32, device=dev),
                         seq_lens=torch.tensor([n], dtype=torch.int32, device=dev),
                         block_tables=torch.arange(-(-n // 4), dtype=torch.int32, device=dev)[None], launches=[],
                         use_kernel=False)
    with torch.inference_mode():
        out = model.forward(torch.from_numpy(seq).to(dev), torch.arange(n, device=dev), meta,
                            torch.arange(prompt_len - 1, n, device=dev))
    return out.cpu().numpy()


def test_cpu_replay_generates_what_a_dense_recomputation_predicts():
    """Chunked prefill, mixed batches and recompute preemptions (an 18-block pool) must not change a single token:
    every generated id equals the greedy prediction of a dense forward over the request's whole sequence."""
    prompts, outputs = [30, 9, 45, 17, 5], [6, 12, 3, 9, 10]
    ex, reqs = _replay({"device": "cpu"}, num_kv_blocks=18, prompts=prompts, outputs=outputs, max_tokens=24)
    assert sum(r.num_preemptions for r in reqs) > 0, "the case should exercise preemption"
    assert len(ex.step_device_s) == len(ex.step_graph) > 0
    for r, p, o in zip(reqs, prompts, outputs):
        assert r.num_output_tokens == o
        seq = ex.tokens.span(r.idx, 0, p + o).astype(np.int64)
        assert _dense_greedy(ex, seq[:-1], p).tolist() == seq[p:].tolist()


@gpu
def test_gpu_kernel_matches_reference_in_bf16():
    for chunks in CHUNK_SETS + [[(1, 4000)] * 8, [(512, 1500), (1, 2047)]]:
        for group in (1, 4):
            case = random_paged_case(7, chunks, kvh=8, group=group, d=128, bs=16, device="cuda", dtype=torch.bfloat16)
            ref = pa.reference_attention(**case).float()
            got = run_kernel(case, chunks, group, "cuda").float()
            err = ((got - ref).norm() / ref.norm()).item()
            assert not torch.isnan(got).any() and err < 1e-2, (chunks, group, err)
            if all(q == 1 for q, _ in chunks):
                got = run_decode_kernel(case, chunks, "cuda", 512).float()
                err = ((got - ref).norm() / ref.norm()).item()
                assert not torch.isnan(got).any() and err < 1e-2, ("split", chunks, group, err)


@gpu
def test_gpu_replay_with_graphs_generates_what_a_dense_recomputation_predicts():
    prompts, outputs = [30, 9, 45, 17, 5], [6, 12, 3, 9, 10]
    ex, reqs = _replay({"device": "cuda", "dtype": torch.float32}, num_kv_blocks=18, prompts=prompts,
                       outputs=outputs, max_tokens=24)
    assert any(ex.step_graph) and not all(ex.step_graph)
    mismatches = 0
    for r, p, o in zip(reqs, prompts, outputs):
        seq = ex.tokens.span(r.idx, 0, p + o).astype(np.int64)
        mismatches += int((_dense_greedy(ex, seq[:-1], p) != seq[p:]).sum())
    assert mismatches == 0
