"""Ingest backends benchmark: a multi-file source ingested by the local backend versus Ray on the same machine.

The source: generated Helios 2020 (``benchmarks.gen_upstream.generate('helios_2020', ...)``: four
``cluster_log.csv`` plus four ``cluster_gpu_number.csv``, so 8 parts: jobs and utilization, one per
cluster), ``--scale`` x the full 3.36 M jobs (default 0.05), cached under ``OUT/data``. Each backend
ingests it ``--repeat`` times into a fresh data root (best time kept): ``local`` produces the parts one
after the other in this process; ``ray`` submits each part as a Ray task to a local Ray with
``--workers`` CPUs (default 2). Ray's start-up is timed separately (``ray_start_s``) and is not in the
ingest time; ``ratio`` = local seconds / Ray seconds (above 1: Ray is faster). The two lakes must be
byte-identical (``same_bytes``).

One JSON line on stdout, also appended to ``OUT/ingest_ray_bench.jsonl``.

Usage: ``python -m benchmarks.ingest_ray_bench [--scale 0.05] [--workers 2] [--repeat 2] [--out bench-out]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from benchmarks import emit_json_line


def _lake_digest(root: Path) -> str:
    """One sha256 over every lake file (path and bytes), in path order."""
    digest = hashlib.sha256()
    lake = root / "lake"
    for p in sorted(lake.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(lake)).encode())
            digest.update(p.read_bytes())
    return digest.hexdigest()


def _timed_ingest(folder: Path, backend: str, repeat: int, scratch: Path) -> tuple[float, str, dict]:
    """Best wall seconds of ``repeat`` ingests, the lake digest and the last run's table row counts."""
    from ingest.pipeline import run_source

    best = float("inf")
    digest = ""
    rows: dict = {}
    for i in range(repeat):
        root = scratch / f"{backend}-{i}"
        t0 = time.perf_counter()
        result = run_source("helios_2020", folder, data_root=root, verify=False, backend=backend)
        best = min(best, time.perf_counter() - t0)
        digest = _lake_digest(root)
        rows = {t.table: t.rows_out for t in result.tables}
    return best, digest, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest_ray_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.05, help="fraction of the full Helios job count (default 0.05)")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (default 2)")
    ap.add_argument("--repeat", type=int, default=2, help="ingests per backend, best kept (default 2)")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args(argv)

    from benchmarks.gen_upstream import generate
    from ingest.lake import PART_GLOB
    from ingest.ray_support import import_ray

    data = args.out / "data" / f"helios_2020-ray-{args.scale:g}"
    if not (data / ".done").exists():
        generate("helios_2020", data, scale=args.scale)
        (data / ".done").touch()
    ray = import_ray()
    with tempfile.TemporaryDirectory(prefix="ingest-ray-bench-", dir=args.out) as tmp:
        scratch = Path(tmp)
        local_s, local_digest, rows = _timed_ingest(data, "local", args.repeat, scratch)
        parts = len(list((scratch / "local-0" / "lake").glob(f"*/trace=*/{PART_GLOB}")))
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        ray_start_s = time.perf_counter() - t0
        try:
            ray_s, ray_digest, _ = _timed_ingest(data, "ray", args.repeat, scratch)
        finally:
            ray.shutdown()
    record = {
        "bench": "ingest_ray",
        "source": "helios_2020 (generated)",
        "scale": args.scale,
        "rows": rows,
        "parts": parts,
        "workers": args.workers,
        "repeat": args.repeat,
        "local_s": round(local_s, 3),
        "ray_s": round(ray_s, 3),
        "ray_start_s": round(ray_start_s, 3),
        "ratio": round(local_s / ray_s, 3),
        "same_bytes": local_digest == ray_digest,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ray": ray.__version__,
    }
    emit_json_line(record, args.out, "ingest_ray_bench.jsonl")
    return 0 if record["same_bytes"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
