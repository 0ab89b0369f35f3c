"""Sweep backends benchmark: a 64-run sweep on the local process pool versus Ray on the same machine.

One JSON line (also appended to ``OUT/ray_bench.jsonl``): for each backend (``local``: the spawn
process pool; ``ray``: a local Ray started for the sweep with that many CPUs, its start-up included)
and each worker count (default 1 and 2), the sweep's wall seconds, runs per second and the speedup
over 1 worker of the same backend; the Ray/local overhead ratio at each worker count (wall seconds of
Ray over local); and whether every backend and worker count gave the same table bytes.

The sweep: policies fcfs, sjf (oracle lengths) x 8 rate scales x 4 seeds of a generated workload
(``--requests`` requests each, default 1000), 64 runs; each sweep writes to a fresh data root, so no
run is reused.

Usage: ``python -m benchmarks.ray_bench [--workers 1,2] [--requests 1000] [--out bench-out]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from benchmarks import emit_json_line


def _configs(requests: int) -> list:
    from replay.harness import ServeConfig
    from replay.sources import WorkloadSpec
    from replay.sweep import expand_grid

    base = ServeConfig(workload=WorkloadSpec(num_requests=requests), model="llama-3-8b")
    return expand_grid(base, oracle=True, policy=["fcfs", "sjf"], rate_scale=[0.5, 1, 1.5, 2, 3, 4, 6, 8],
                       seed=[0, 1, 2, 3])


def _timed_sweep(configs: list, backend: str, workers: int) -> tuple[float, bytes]:
    from replay.sweep import sweep, sweep_id

    with tempfile.TemporaryDirectory(prefix="ray-bench-") as root:
        t0 = time.perf_counter()
        sweep(configs, workers=workers, data_root=root, backend=backend)
        wall = time.perf_counter() - t0
        table = Path(root) / "results" / "sweeps" / f"{sweep_id(configs)}.parquet"
        return wall, table.read_bytes()


def main(argv: list[str] | None = None) -> None:
    """Run the sweep on each backend and worker count and emit one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2", help="worker counts (comma-separated)")
    ap.add_argument("--requests", type=int, default=1000, help="generated requests per run")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    configs = _configs(args.requests)
    results: dict[str, dict[str, dict]] = {}
    tables: set[bytes] = set()
    for backend in ("local", "ray"):
        results[backend] = {}
        for w in counts:
            wall, table = _timed_sweep(configs, backend, w)
            tables.add(table)
            results[backend][str(w)] = {"wall_s": round(wall, 3), "runs_per_s": round(len(configs) / wall, 3)}
        one = results[backend][str(counts[0])]["wall_s"]
        for w in counts:
            results[backend][str(w)]["speedup_vs_%d" % counts[0]] = round(one / results[backend][str(w)]["wall_s"], 3)
    ratio = {str(w): round(results["ray"][str(w)]["wall_s"] / results["local"][str(w)]["wall_s"], 3) for w in counts}
    import ray

    emit_json_line({
        "bench": "ray_sweep", "runs": len(configs), "requests_per_run": args.requests, "workers": counts,
        "local": results["local"], "ray": results["ray"], "ray_over_local_wall": ratio,
        "same_table_bytes": len(tables) == 1, "ray_version": ray.__version__,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "host": platform.node(), "python": platform.python_version(),
    }, args.out, "ray_bench.jsonl", sort_keys=True)


if __name__ == "__main__":
    main()
