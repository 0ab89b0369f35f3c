"""Predictor benchmark: training time, prediction throughput in process vs ONNX, HTTP latency on loopback.

For both predictors (response length on Azure 2023 conv, GPU duration on the derived Philly jobs with
VCs) it measures, in one process:

- training: wall and CPU time of ``predictors.train.train`` (4 boosted heads + baselines + evaluation),
  next to the fit of one boosted point head alone (the reference the ratio is taken against);
- batch prediction throughput (rows/s) on the held-out rows: the in-process scikit-learn bundle
  (the baseline) against the exported ONNX heads under onnxruntime, both on one thread;
- single-row latency in process (sklearn, ONNX): p50 / p99 over many calls;
- the HTTP service (``tracelab predict serve``, ONNX backend, a separate process on loopback):
  p50 / p99 latency of one prediction per request, and rows/s for batches of 1,000 rows.

Prints one JSON line per predictor (appended to ``bench-out/predictors/predictors_bench.jsonl``).
Run: ``python -m benchmarks.predictors_bench [--data ROOT]``; without ``--data`` it ingests the offline
traces into ``bench-out/predictors/data`` once.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks import emit_json_line
from benchmarks.ingest_bench import git_state
from ingest.paths import traces_dir

OUT = Path("bench-out/predictors")
SETUPS = {
    "response_length": {"traces": ("azure_llm_2023_conv",), "sources": [("azure_llm_2023", "azure_llm_2023")]},
    "gpu_duration": {"traces": ("philly_sia_jobs",), "sources": [("philly_derived", "philly")]},
}


def ensure_data(root: Path) -> Path:
    """A data root with the traces the benchmark trains on (ingested once from the offline copies)."""
    from ingest.pipeline import run_source

    if not (root / "catalog.duckdb").exists():
        found = traces_dir()
        if found is None:
            sys.exit("no offline traces: set TRACELAB_TRACES or pass --data with azure_llm_2023 and philly_derived ingested")
        for setup in SETUPS.values():
            for source, folder in setup["sources"]:
                run_source(source, found / folder, data_root=root)
    return root


def latency(fn, calls: int) -> dict[str, float]:
    """p50 / p99 / mean seconds of ``fn()`` over ``calls`` calls (after 20 warm-up calls)."""
    for _ in range(20):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    t = np.asarray(times)
    return {"p50_ms": float(np.percentile(t, 50) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3),
            "mean_ms": float(t.mean() * 1e3), "calls": calls}


def http_figures(model_dir: Path, rows: list[dict], calls: int) -> dict:
    """Start ``tracelab predict serve`` on a free loopback port and measure single and batch requests."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tracelab", "predict", "serve", str(model_dir), "--port", str(port),
                             "--backend", "onnx"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the prediction service did not start")
                time.sleep(0.2)
            k = iter(range(10**9))
            single = latency(lambda: client.post("/predict", json=rows[next(k) % len(rows)]).raise_for_status(), calls)
            batch = rows[:1000]
            t = latency(lambda: client.post("/predict/batch", json={"rows": batch}).raise_for_status(), 20)
        return {"single_request": single, "batch_1000": {**t, "rows_per_s": len(batch) / (t["p50_ms"] / 1e3)}}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_task(task: str, root: Path, calls: int) -> dict:
    from analysis.catalog import open_catalog
    from predictors.export import export_bundle
    from predictors.models import fit_heads
    from predictors.runtime import load, time_predict
    from predictors.train import TrainConfig, evaluation_rows, train
    from predictors.validation import rows_to_records

    con = open_catalog(root)
    config = TrainConfig(task, SETUPS[task]["traces"])
    t0, c0 = time.perf_counter(), time.process_time()
    bundle, report = train(con, config)
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    X = evaluation_rows(report)
    Xtest = np.repeat(X, max(1, 20_000 // len(X)), axis=0)  # ~20k held-out-like rows for throughput
    t0 = time.perf_counter()
    fit_heads(Xtest, np.abs(bundle.predict(Xtest)["point"]), np.zeros(len(Xtest), np.int64), heads=("point",))
    one_head_s = time.perf_counter() - t0  # reference: one point head on a matrix of the same width
    model_dir = OUT / "models" / task
    t0 = time.perf_counter()
    export_bundle(bundle, model_dir, check_rows=X)
    export_s = time.perf_counter() - t0
    skops_model = load(model_dir, backend="skops")
    onnx_model = load(model_dir, backend="onnx", onnx_threads=1)
    in_proc = time_predict(skops_model, Xtest, repeats=5)
    onnx = time_predict(onnx_model, Xtest, repeats=5)
    one = X[:1]
    single_sklearn = latency(lambda: skops_model.predict(one), calls)
    single_onnx = latency(lambda: onnx_model.predict(one), calls)
    agree = float(np.max(np.abs(onnx_model.predict(X)["point"] - skops_model.predict(X)["point"])
                         / np.maximum(np.abs(skops_model.predict(X)["point"]), 1.0)))
    records = rows_to_records(bundle.features, X)
    http = http_figures(model_dir, records, calls)
    return {
        "bench": "predictors", "task": task, "traces": list(config.traces), "rows_train": report["rows"]["train"],
        "rows_test": report["rows"]["test"], "threads": 1,
        "train": {"wall_s": train_wall, "cpu_s": train_cpu, "rows_per_s": report["rows"]["train"] / train_wall,
                  "one_point_head_s": one_head_s, "what": "4 boosted heads + baselines + held-out evaluation"},
        "export_s": export_s,
        "batch_predict": {"rows": len(Xtest), "sklearn_rows_per_s": in_proc["rows_per_s"],
                          "onnx_rows_per_s": onnx["rows_per_s"],
                          "onnx_vs_sklearn": onnx["rows_per_s"] / in_proc["rows_per_s"]},
        "single_row": {"sklearn": single_sklearn, "onnx": single_onnx,
                       "sklearn_over_onnx_p50": single_sklearn["p50_ms"] / single_onnx["p50_ms"]},
        "onnx_max_rel_diff_point": agree, "http_onnx": http,
        "headline": {k: report["models"][k] for k in (("boosted", "global_median") if task == "response_length"
                                                      else ("helios_blend", "global_median"))},
        "baseline": "in-process scikit-learn bundle (same rows, same process, one thread)",
        "git": git_state("predictors"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="data root with the traces ingested")
    ap.add_argument("--calls", type=int, default=1000, help="single-row calls for latency percentiles")
    ap.add_argument("--task", choices=sorted(SETUPS), action="append", help="only this task (repeatable)")
    args = ap.parse_args()
    root = ensure_data(args.data or OUT / "data")
    with threadpool_limits(1):
        for task in args.task or sorted(SETUPS, reverse=True):
            emit_json_line(bench_task(task, root, args.calls), OUT, "predictors_bench.jsonl")


if __name__ == "__main__":
    main()
