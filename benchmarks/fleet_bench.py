"""Fleet layout benchmark: colocated vs disaggregated (Splitwise-HH / -HA) serving at equal GPU count, on the real
Azure LLM 2023 code and conv traces, with Splitwise's throughput-per-cost and per-power comparisons.

Per trace (a window of the raw CSV, ``shared/traces/azure_llm_2023/AzureLLMInferenceTrace_{code,conv}.csv``
or ``$TRACELAB_TRACES``), Llama-2-7B, roofline cost model, InfiniBand NDR between instances, every pool
routed by least outstanding tokens, ``--total-gpus`` GPUs (default 4):

- layouts: colocated N x H100 (the baseline, measured in the same run), colocated N x A100, and every split
  P prefill + D decode (P + D = N) of H100 + H100 (Splitwise-HH) and of H100 prefill + A100 decode
  (Splitwise-HA), the P = D split named ``hh`` / ``ha``;
- at one common load (the baseline's highest rate under the SLOs, found first): p99 TBT, TTFT p50/p99,
  SLO attainment, J per output token, $ per 1M output tokens of every layout;
- per layout: the highest rate under the SLOs (``replay.fleet.search.max_throughput``), its output
  tokens/s, tokens per $ and per J, and Splitwise's ratios against the baseline: throughput ratio, cost
  ratio, throughput at equal cost, cost at equal throughput, throughput at equal (provisioned) power;
- the best split of each family by throughput per $ (the split search).

Prints ONE JSON line (also appended to ``OUT/fleet_bench.jsonl``), or ``{"bench": "fleet", "skipped": why}``
when the traces are absent. Usage: ``python -m benchmarks.fleet_bench [--traces code,conv] [--start-s 600]
[--duration-s 300] [--total-gpus 4] [--workers 2] [--max-runs 10] [--out bench-out]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks import emit_json_line

REPO = Path(__file__).resolve().parent.parent


def _traces_dir() -> Path:
    return Path(os.environ.get("TRACELAB_TRACES", REPO.parent / "shared" / "traces"))


def azure_csv_window(path: Path, start_s: float, duration_s: float, max_total_tokens: int):
    """Requests of the raw Azure 2023 CSV (TIMESTAMP, ContextTokens, GeneratedTokens) arriving in the window
    whose prompt + output fit in `max_total_tokens` (the model's context; longer ones could only be rejected
    or cut, in every layout alike), and how many were left out for that."""
    from replay.sources import Workload

    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    stamps = np.array([np.datetime64(r[0].strip().replace(" ", "T")[:29], "ns") for r in rows])
    t = (stamps - stamps.min()) / np.timedelta64(1, "ns") / 1e9
    prompt = np.array([int(r[1]) for r in rows], np.int64)
    output = np.array([int(r[2]) for r in rows], np.int64)
    window = (t >= start_s) & (t < start_s + duration_s) & (prompt > 0) & (output > 0)
    keep = np.nonzero(window & (prompt + output <= max_total_tokens))[0]
    keep = keep[np.argsort(t[keep], kind="stable")]
    name = "azure_llm_2023_" + path.stem.rsplit("_", 1)[-1]
    return Workload(name, np.array([str(i) for i in keep], dtype=object), t[keep] - start_s, prompt[keep],
                    output[keep], np.zeros(len(keep), np.int64)), int(window.sum() - keep.size)


def layouts(total_gpus: int, model: str):
    """(name, FleetConfig): colocated H100 (chunked prefill: the baseline), colocated A100, colocated H100 with
    whole prefills (vLLM as of 2023, Splitwise's baseline), then the HH and HA splits."""
    from dataclasses import replace

    from replay.fleet.search import candidate_layouts
    from replay.harness import ServeConfig

    serve = ServeConfig(model=model, cost_model="roofline")
    all_ = candidate_layouts(["h100", "a100"], total_gpus, serve=serve)
    whole = replace(all_[0], serve=replace(serve, chunked_prefill=False, max_num_batched_tokens=4096))
    keep = [("colocated_h100_unchunked", whole)]
    for c in all_:
        if c.layout == "colocated":
            keep.append((f"colocated_{c.pools[0].gpu.split('-')[0].lower()}", c))
        else:
            p, d = c.pool("prefill"), c.pool("decode")
            fam = {("H100-SXM", "H100-SXM"): "hh", ("H100-SXM", "A100-80G"): "ha"}.get((p.gpu, d.gpu))
            if fam:
                even = p.num_instances == d.num_instances
                keep.append((fam if even else f"{fam}_{p.num_instances}p{d.num_instances}d", c))
    return keep[1:3] + keep[:1] + keep[3:]


def _max_tput(args):
    from replay.fleet.search import max_throughput

    config, workload, slo, min_att, lo, max_runs, tol = args
    t0 = time.perf_counter()
    res = max_throughput(config, workload, slo, min_att, lo=lo, max_runs=max_runs, tol=tol)
    res["wall_s"] = time.perf_counter() - t0
    return res


def _r(x, digits=4):
    return None if x is None else round(float(x), digits)


def bench_trace(path: Path, args, pool) -> dict:
    from replay.fleet.search import evaluate, throughput_ratios
    from replay.metrics import SloSpec
    from replay.serving.specs import model_config
    from replay.sweep import scaled

    t0 = time.perf_counter()
    unit, dropped = azure_csv_window(path, args.start_s, args.duration_s, model_config(args.model).max_model_len)
    slo = SloSpec(args.slo_ttft, args.slo_tbt)
    named = layouts(args.total_gpus, args.model)
    jobs = [(c, unit, slo, args.min_attainment, args.lo, args.max_runs, args.tol) for _, c in named]
    tputs = dict(zip((n for n, _ in named), pool.map(_max_tput, jobs) if pool else map(_max_tput, jobs)))
    base, whole = tputs["colocated_h100"], tputs["colocated_h100_unchunked"]
    load = base["max_rate_scale"] or args.lo
    rows = evaluate([c for _, c in named], scaled(unit, load), slo)
    out = {"requests": len(unit), "dropped_over_context": dropped, "window_s": [args.start_s, args.start_s + args.duration_s],
           "trace_rate_requests_per_s": _r(len(unit) / args.duration_s, 3),
           "mean_prompt_tokens": _r(unit.prompt_tokens.mean(), 1), "mean_output_tokens": _r(unit.output_tokens.mean(), 1),
           "common_load_rate_scale": load, "layouts": {}}
    for (name, _), row in zip(named, rows):
        tp = tputs[name]
        out["layouts"][name] = {
            "label": row["label"], "usd_per_hour": _r(row["usd_per_hour"], 3),
            "at_common_load": {k: _r(row[k]) for k in ("slo_attainment", "ttft_p50_s", "ttft_p99_s", "tbt_p99_p99_s",
                                                       "tbt_pooled_p99_s", "energy_per_output_token_j",
                                                       "usd_per_1m_output_tokens", "avg_power_w", "kv_transfer_mean_s")},
            "max_rate_scale": _r(tp["max_rate_scale"]), "converged": tp["converged"], "runs": len(tp["probes"]),
            "max_requests_per_s": _r(tp["requests_per_s"], 3), "max_output_tokens_per_s": _r(tp["output_tokens_per_s"], 1),
            "tokens_per_usd": _r(tp["tokens_per_usd"], 0), "output_tokens_per_j": _r(tp["output_tokens_per_j"]),
            "output_tokens_per_s_per_kw": _r(tp["output_tokens_per_s_per_kw"], 1),
            "energy_per_output_token_j_at_max": _r(tp["energy_per_output_token_j"]),
            "vs_colocated_chunked": {k: _r(v) for k, v in throughput_ratios(tp, base).items()},
            "vs_colocated_unchunked": {k: _r(v) for k, v in throughput_ratios(tp, whole).items()},
        }
    for fam in ("hh", "ha"):
        cands = [n for n in out["layouts"] if n == fam or n.startswith(fam + "_")]
        best = max(cands, key=lambda n: out["layouts"][n]["vs_colocated_chunked"]["throughput_at_equal_cost"] or 0.0)
        out[f"best_{fam}_split_by_throughput_per_usd"] = {
            "layout": out["layouts"][best]["label"],
            **{k: out["layouts"][best][k] for k in ("vs_colocated_chunked", "vs_colocated_unchunked")}}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", default="code,conv")
    ap.add_argument("--start-s", type=float, default=600.0, help="window start, trace seconds")
    ap.add_argument("--duration-s", type=float, default=300.0, help="window length, trace seconds")
    ap.add_argument("--total-gpus", type=int, default=4)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--slo-ttft", type=float, default=2.0)
    ap.add_argument("--slo-tbt", type=float, default=0.2, help="per-request p99 TBT objective, s")
    ap.add_argument("--min-attainment", type=float, default=0.9)
    ap.add_argument("--lo", type=float, default=4.0, help="first rate scale probed")
    ap.add_argument("--max-runs", type=int, default=10, help="runs per layout for the throughput search")
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=2, help="processes for the per-layout searches (1: none)")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    record: dict = {"bench": "fleet", "model": args.model, "cost_model": "roofline", "link": "infiniband-ndr",
                    "total_gpus": args.total_gpus,
                    "slo": {"ttft_s": args.slo_ttft, "tbt_p99_s": args.slo_tbt, "min_attainment": args.min_attainment},
                    "baseline": f"colocated {args.total_gpus}xH100 (chunked prefill, 2048-token budget; and whole "
                                "prefills, 4096-token budget), same run, same window and SLOs"}
    folder = _traces_dir() / "azure_llm_2023"
    paths = {k: folder / f"AzureLLMInferenceTrace_{k}.csv" for k in args.traces.split(",")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        record["skipped"] = f"Azure LLM 2023 trace not found: {', '.join(missing)} (set TRACELAB_TRACES)"
    else:
        from replay.serving.specs import gpu_spec
        from replay.fleet.cost import price_per_gpu_hour

        record["usd_per_gpu_hour"] = {g: price_per_gpu_hour(g) for g in ("h100", "a100")}
        record["tdp_w"] = {g: gpu_spec(g).peak_power_w for g in ("h100", "a100")}
        t0 = time.perf_counter()
        pool = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) if args.workers > 1 else None
        try:
            for kind, path in paths.items():
                record[kind] = bench_trace(path, args, pool)
        finally:
            if pool:
                pool.shutdown()
        record["wall_s"] = round(time.perf_counter() - t0, 1)
    record.update(host=platform.node(), python=platform.python_version())
    emit_json_line(record, args.out, "fleet_bench.jsonl", sort_keys=True)
    return record


if __name__ == "__main__":
    main()
