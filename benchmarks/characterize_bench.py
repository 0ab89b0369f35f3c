"""Characterization benchmark: the full request-trace characterization of a 27 M-request trace.

Data: ``benchmarks.gen_upstream``'s Azure 2024 generator (the exact upstream week-long CSV format,
27.3 M rows, cached under ``OUT/data`` and shared with the ingest benchmark), ingested once with our
pipeline into ``OUT/characterize/`` (cached).

Two methods, each in its own child process (so peak RSS is per method), on the same canonical Parquet:

* ``ours``: ``analysis.build.report_sections(con, trace)``, i.e. ``characterize_requests`` over the DuckDB
  catalog (counts, inter-arrival statistics, dispersion at 4 windows, ON/OFF at 2 thresholds, time
  patterns, token statistics, exact correlations) plus the report's series and CDFs (single-threaded:
  the catalog connection is, for byte-identical reports).
* ``pandas``: the notebook approach: ``pd.read_parquet`` of the same file, then ``describe`` /
  percentiles of the token columns, ``diff`` of sorted arrivals for the inter-arrival CV, per-minute
  counts with ``groupby``, ``corr`` (Pearson and Spearman): a subset of what ``ours`` computes.

One JSON line goes to stdout and is appended to ``OUT/characterize_bench.jsonl``.
Usage: ``python -m benchmarks.characterize_bench [--out bench-out] [--scale 1.0]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import emit_json_line

REPO = Path(__file__).resolve().parent.parent
TRACE = "azure_llm_2024_conv"

OURS = """
import json, sys, time
t0 = time.perf_counter()
from analysis.catalog import open_catalog
from analysis.requests import characterize_requests
from analysis.build import report_sections
import resource
con = open_catalog(sys.argv[1])
sections, numbers = report_sections(con, sys.argv[2])  # characterize_requests + the report's series and CDFs
print(json.dumps({"characterize_s": time.perf_counter() - t0, "requests": numbers["counts"]["num_requests"],
                  "cv": numbers["interarrival"]["cv"], "prompt_mean": numbers["prompt_tokens"]["mean"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PANDAS = """
import json, sys, time, glob, resource
t0 = time.perf_counter()
import pandas as pd
df = pd.concat(pd.read_parquet(p, columns=["arrival_s", "prompt_tokens", "output_tokens"])
               for p in sorted(glob.glob(sys.argv[1] + "/lake/requests/trace=" + sys.argv[2] + "/*.parquet")))
stats = df[["prompt_tokens", "output_tokens"]].describe(percentiles=[.1, .25, .5, .75, .9, .99, .999])
gaps = df["arrival_s"].sort_values().diff().dropna()
cv = gaps.std() / gaps.mean()
per_minute = df.groupby((df["arrival_s"] // 60).astype("int64")).size()
pearson = df["prompt_tokens"].corr(df["output_tokens"])
spearman = df["prompt_tokens"].corr(df["output_tokens"], method="spearman")
print(json.dumps({"characterize_s": time.perf_counter() - t0, "requests": len(df), "cv": float(cv),
                  "prompt_mean": float(stats.loc["mean", "prompt_tokens"]), "minutes": len(per_minute),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    out = json.loads(res.stdout.strip().splitlines()[-1])  # the child reports its own peak RSS
    out.update(wall_s=round(wall, 2), peak_rss_mib=round(out["peak_rss_mib"], 1))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    from benchmarks import gen_upstream
    from ingest.pipeline import run_source

    src = args.out / "data" / f"azure_llm_2024-scale{args.scale:g}-seed0"
    if not any(src.glob("*.csv")):
        rows = None if args.scale == 1.0 else int(27_300_000 * args.scale)
        gen_upstream.azure_llm_2024(src, rows=rows, seed=0)
    root = args.out / "characterize" / f"scale{args.scale:g}"
    if not (root / "lake" / "requests" / f"trace={TRACE}").exists():
        run_source("azure_llm_2024", src, data_root=root, verify=False)
    pandas = _child(PANDAS, str(root), TRACE)
    ours = _child(OURS, str(root), TRACE)
    record = {"bench": "characterize", "trace": TRACE, "requests": ours["requests"], "ours": ours,
              "baseline": "pandas notebook approach (read_parquet, describe, diff CV, groupby minute, corr) "
                          "computing a subset of ours, same file, own child process",
              "pandas": pandas, "speedup_vs_pandas": round(pandas["wall_s"] / ours["wall_s"], 2),
              "cv_agrees": abs(ours["cv"] - pandas["cv"]) < 1e-6 * max(1.0, pandas["cv"])}
    emit_json_line(record, args.out, "characterize_bench.jsonl", sort_keys=True)


if __name__ == "__main__":
    main()
