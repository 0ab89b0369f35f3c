"""Serving replay benchmark: simulator speed, linearity in requests, and Vidur on the same work.

Figures (one JSON line each, also appended to ``OUT/replay_bench.jsonl``):

* ``speed``: the full Azure 2023 conv trace (19,366 requests; ingested into ``OUT/data`` if needed)
  replayed with the decode fast path and, in the same process, with plain step-by-step simulation
  (the baseline): wall and CPU seconds, simulated requests per wall second, microseconds per simulated
  step and per scheduler event, and the two runs' summaries compared (they must be identical).
* ``scaling``: generated workloads of growing size (default 10k, 100k, 1M requests at a fixed rate
  and load), wall seconds per request at each size; linear cost means a flat per-request time.
* ``vidur``: Vidur (``benchmarks.vidur_runner``, its own virtual environment, never our dependency)
  and tracelab on the same requests, model (Llama-2-7B), GPU (H100), one replica, with a vLLM-style
  (whole prefills) and a Sarathi-style (chunked, 512-token chunks) scheduler: wall-time ratio and
  TTFT / TBT / E2E percentiles side by side. tracelab uses the table cost model built from the same
  H100 profiles Vidur reads, so differences come from the simulators, not from the cost inputs.

Usage: ``python -m benchmarks.replay_bench [--only speed,scaling,vidur] [--sizes 10000,100000,1000000]
[--vidur-requests N] [--out bench-out]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks import emit_json_line

REPO = Path(__file__).resolve().parent.parent
SPEED_TARGET_S = 5.0
SCALE_TARGET_S = 300.0
VIDUR_TARGET = 20.0


def _emit(out: Path, record: dict) -> None:
    record = {"bench": "replay", **record, "host": platform.node(), "python": platform.python_version()}
    emit_json_line(record, out, "replay_bench.jsonl", sort_keys=True)


def _traces_dir() -> Path:
    return Path(os.environ.get("TRACELAB_TRACES", REPO.parent / "shared" / "traces"))


def _ensure_conv(data_root: Path) -> None:
    from ingest.pipeline import run_source

    if not (data_root / "lake" / "requests" / "trace=azure_llm_2023_conv").exists():
        run_source("azure_llm_2023", _traces_dir() / "azure_llm_2023", data_root=data_root)


def _timed(config, data_root, workload=None):
    from replay.harness import run_serve

    w0, c0 = time.perf_counter(), time.process_time()
    result = run_serve(config, data_root=data_root, write=False, workload=workload)
    return result, time.perf_counter() - w0, time.process_time() - c0


def bench_speed(out: Path, data_root: Path) -> None:
    from replay.harness import ServeConfig
    from replay.sources import WorkloadSpec, load_workload

    _ensure_conv(data_root)
    base = ServeConfig(workload=WorkloadSpec(trace="azure_llm_2023_conv"), model="llama-2-7b", gpu="h100")
    workload = load_workload(base.workload, data_root)
    fast, fast_wall, fast_cpu = _timed(base, data_root, workload)
    slow, slow_wall, slow_cpu = _timed(replace(base, fast_decode=False), data_root, workload)
    steps = fast.summary["num_steps"]
    same = json.dumps(fast.summary, sort_keys=True) == json.dumps(slow.summary, sort_keys=True)
    _emit(out, {
        "figure": "speed", "trace": "azure_llm_2023_conv", "requests": len(workload),
        "config": {"model": base.model, "gpu": base.gpu, "cost_model": base.cost_model, "policy": base.policy},
        "wall_s": round(fast_wall, 3), "cpu_s": round(fast_cpu, 3),
        "requests_per_wall_s": round(len(workload) / fast_wall, 1),
        "us_per_simulated_step": round(1e6 * fast_wall / steps, 3), "simulated_steps": steps,
        "baseline": "plain step-by-step simulation (fast_decode=False), same process",
        "baseline_wall_s": round(slow_wall, 3), "baseline_cpu_s": round(slow_cpu, 3),
        "speedup_vs_baseline": round(slow_wall / fast_wall, 2), "summaries_identical": same,
        "target_wall_s": SPEED_TARGET_S, "meets_target": fast_wall < SPEED_TARGET_S,
    })


def bench_scaling(out: Path, sizes: list[int]) -> None:
    from replay.harness import ServeConfig
    from replay.sources import WorkloadSpec, generate_workload

    rows = []
    for n in sizes:
        spec = WorkloadSpec(trace="generated", num_requests=n, rate_per_s=5.0, seed=1)
        config = ServeConfig(workload=spec, model="llama-2-7b", gpu="h100")
        workload = generate_workload(spec)
        result, wall, cpu = _timed(config, None, workload)
        rows.append({"requests": n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "us_per_request": round(1e6 * wall / n, 1), "steps": result.summary["num_steps"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    per = [r["us_per_request"] for r in rows]
    _emit(out, {
        "figure": "scaling", "rows": rows,
        "baseline": f"the smallest size ({sizes[0]} requests): per-request cost ratio largest/smallest",
        "per_request_ratio_largest_vs_smallest": round(per[-1] / per[0], 3),
        "target_1m_wall_s": SCALE_TARGET_S,
        "meets_target": all(r["wall_s"] < SCALE_TARGET_S for r in rows if r["requests"] <= 1_000_000),
    })


def _pcts(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    return {f"p{q}": round(float(np.percentile(x, q)), 5) for q in (50, 90, 99)} if len(x) else {}


def bench_vidur(out: Path, data_root: Path, num_requests: int) -> None:
    """Both simulators on the same requests; our config mirrors Vidur's where Vidur's semantics are known.

    Matched: Llama-2-7B on one H100, the same operator profiles, block size 16, 256 sequences, FCFS,
    Vidur's KV capacity (7,424 blocks: 29 slots of 4,096 tokens from 90% of 80 GiB), no per-step CPU
    overhead (Vidur models none), requests that fit in 4,096 tokens (Vidur clips longer prompts; we
    keep only those that fit, for both). vllm: whole prefills in prefill-only steps of up to 4,096 tokens;
    sarathi: a 512-token budget per step shared by decodes and prefill chunks. Not matched: Vidur skips
    embedding and LM head and rounds token counts and KV sizes up to its grid (8 / 32 / 256); our
    table model interpolates and charges an estimated LM head. TBT is compared as the per-request mean
    gap ((E2E - TTFT) / (tokens - 1)), which both report.
    """
    from benchmarks import vidur_runner
    from replay.harness import ServeConfig
    from replay.sources import WorkloadSpec, load_workload

    _ensure_conv(data_root)
    spec = WorkloadSpec(trace="azure_llm_2023_conv", max_requests=num_requests or None)
    workload = load_workload(spec, data_root)
    keep = workload.prompt_tokens + workload.output_tokens <= 4096
    trace_csv = out / "vidur" / f"conv_{len(workload)}.csv"
    trace_csv.parent.mkdir(parents=True, exist_ok=True)
    vidur_runner.write_vidur_trace(trace_csv, workload.arrival_s[keep], workload.prompt_tokens[keep],
                                   workload.output_tokens[keep])
    sub = _subset(workload, keep)
    for name, chunked, budget in (("vllm", False, 4096), ("sarathi", True, 512)):
        vid = vidur_runner.run_vidur(trace_csv, scheduler=name, chunk_size=budget, max_batch_tokens=budget,
                                     max_num_seqs=256, block_size=16, out_dir=out / "vidur" / name)
        config = ServeConfig(workload=spec, model="llama-2-7b", gpu="h100", cost_model="table",
                             chunked_prefill=chunked, max_num_batched_tokens=budget, max_num_seqs=256,
                             max_model_len=4096, num_kv_blocks=7424, step_overhead_s=0.0)
        ours, wall, cpu = _timed(config, data_root, sub)
        done = ours.requests["status"] == "finished"
        mine = {"ttft_s": ours.requests["ttft_s"][done], "tbt_mean_per_request_s": ours.requests["tpot_s"][done],
                "e2e_s": ours.requests["e2e_s"][done]}
        theirs = {k: np.asarray(vid[k], dtype=np.float64) for k in mine}
        _emit(out, {
            "figure": "vidur", "scheduler": name, "requests": int(keep.sum()), "ours_finished": int(done.sum()),
            "ours_wall_s": round(wall, 3), "ours_cpu_s": round(cpu, 3),
            "vidur_wall_s": round(vid["wall_s"], 3), "vidur_phases": vid.get("phases"),
            "vidur_predictor_training_s": vid.get("predictor_training_s"),
            "speedup_vs_vidur": round(vid["wall_s"] / wall, 1), "target_speedup": VIDUR_TARGET,
            "ours": {k: _pcts(v) for k, v in mine.items()}, "vidur": {k: _pcts(v) for k, v in theirs.items()},
            "relative_diff_p50_p99": {k: [round(_pcts(mine[k])[q] / _pcts(theirs[k])[q] - 1, 3) for q in ("p50", "p99")]
                                      for k in mine},
            "vidur_version": vid.get("vidur_version"), "vidur_num_restarts": vid.get("num_restarts"),
            "ours_preemptions": ours.summary["num_preemptions"],
            "baseline": "Vidur 0.0.26 (own venv) on the same requests, model, GPU and profiles, same session",
        })


def _subset(workload, keep: np.ndarray):
    from dataclasses import replace as dc_replace

    fields = {k: getattr(workload, k)[keep] for k in ("request_id", "arrival_s", "prompt_tokens", "output_tokens", "priority")}
    if workload.session_id is not None:
        fields["session_id"] = workload.session_id[keep]
    if workload.prefix_hashes is not None:
        fields["prefix_hashes"] = [h for h, k in zip(workload.prefix_hashes, keep) if k]
    return dc_replace(workload, **fields)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="speed,scaling,vidur")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--vidur-requests", type=int, default=0, help="first N conv requests (0: all 19,366)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    args = ap.parse_args(argv)
    data_root = args.out / "data"
    only = set(args.only.split(","))
    if "speed" in only:
        bench_speed(args.out, data_root)
    if "scaling" in only:
        bench_scaling(args.out, [int(s) for s in args.sizes.split(",")])
    if "vidur" in only:
        bench_vidur(args.out, data_root, args.vidur_requests)


if __name__ == "__main__":
    main()
