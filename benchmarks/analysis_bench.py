"""Analysis benchmark: per-minute GPU utilization of a full-scale synthetic Helios trace (4 clusters,
3,362,981 jobs, 1,580,464 GPU jobs, 2020-04-01 -> 09-28) with ``analysis.utilization`` vs per-job loops.

Data: ``benchmarks.gen_upstream``'s Helios generator (the exact upstream ``cluster_log.csv`` format,
cached under ``OUT/data`` and shared with the ingest benchmark), ingested once with our pipeline into
``OUT/analysis/<tag>/`` (cached; a marker records which generated files it came from).

Each measurement runs in its own child process (so peak RSS is per method):

* ``ours``: ``utilization_series(con, 'helios')`` on the catalog (all clusters in one series; DuckDB reads
  the three job columns, numpy bins them with a difference array and ``bincount``), then the same per
  cluster (4 series, as the artifact computes them), and ``mode='touch'`` (the artifact's semantics).
* ``artifact_loop``: HeliosArtifact ``analysis/trace_parser.py::parse_sequence``'s per-job pandas loop
  (for each GPU job: floor its times to the minute, build a boolean mask over the cluster's 6-month
  minute frame, ``df.loc[mask, col] += ...`` for running jobs, GPUs, single/multi GPUs) on a random
  subset of GPU jobs of one cluster (``--baseline-jobs``); its per-job time is extrapolated to all GPU
  jobs (``extrapolated: true``). Its output on the subset is compared minute for minute with our
  ``mode='touch'`` on the same jobs (``matches_ours_touch``).
* ``slice_loop``: a stronger per-job baseline, informational: a Python loop over all GPU jobs adding
  each job's GPUs to a numpy slice of minutes (``arr[b0:b1 + 1] += g``, touch semantics), full scale.

One JSON line goes to stdout and is appended to ``OUT/analysis_bench.jsonl``.

Usage: ``python -m benchmarks.analysis_bench [--scale 1.0] [--baseline-jobs 20000] [--repeat 3]
[--skip-slice-loop] [--out bench-out]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.ingest_bench import FAMILIES, git_state, machine_info, peak_rss_mib, prepare_data, versions

from benchmarks import emit_json_line

REPO = Path(__file__).resolve().parent.parent
TRACE = "helios"
WINDOW = ("2020-04-01 00:00:00", "2020-09-28 23:59:00")
"""The artifact's minute frame (``parse_sequence``'s ``date_range``), naive China wall-clock."""
TARGET_S = 30.0
TARGET_RATIO = 100.0


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- child side

def _child_ours(spec: dict) -> dict:
    from analysis.catalog import open_catalog
    from analysis.utilization import utilization_series

    con = open_catalog(spec["data_root"])
    clusters = [r[0] for r in con.execute("SELECT DISTINCT cluster FROM jobs WHERE trace = ? ORDER BY 1",
                                          [TRACE]).fetchall()]
    runs = []
    for _ in range(spec["repeat"]):
        t0, c0 = time.perf_counter(), _cpu_s()
        series = utilization_series(con, TRACE)
        t1, c1 = time.perf_counter(), _cpu_s()
        per_cluster = [utilization_series(con, TRACE, cluster=c) for c in clusters]
        t2 = time.perf_counter()
        touch = utilization_series(con, TRACE, mode="touch")
        t3 = time.perf_counter()
        runs.append({"wall_s": t1 - t0, "cpu_s": c1 - c0, "per_cluster_wall_s": t2 - t1, "touch_wall_s": t3 - t2})
    best = min(runs, key=lambda r: r["wall_s"])
    util = series["utilization"].drop_nulls()
    return {**{k: round(v, 3) for k, v in best.items()}, "all_wall_s": [round(r["wall_s"], 3) for r in runs],
            "bins": series.height, "clusters": clusters, "bins_per_cluster": [s.height for s in per_cluster],
            "gpu_hours": round(float(series["gpus"].sum()) / 60, 1), "mean_utilization": round(float(util.mean()), 4),
            "touch_gpu_hours": round(float(touch["gpus"].sum()) / 60, 1)}


def _subset(spec: dict):
    """The baseline's GPU jobs (one cluster, a seeded random sample) as naive China wall-clock times."""
    import duckdb
    import pandas as pd

    con = duckdb.connect(str(Path(spec["data_root"]) / "catalog.duckdb"), read_only=True)
    origin_us, tz = con.execute("SELECT origin_epoch_us, time_zone FROM traces WHERE trace = ?", [TRACE]).fetchall()[0]
    df = con.execute(
        "SELECT * FROM (SELECT job_id, start_s, end_s, num_gpus FROM jobs WHERE trace = ? AND cluster = ? "
        f"AND num_gpus > 0 AND start_s IS NOT NULL AND end_s IS NOT NULL) USING SAMPLE reservoir({int(spec['jobs'])} ROWS) "
        "REPEATABLE (1) ORDER BY start_s", [TRACE, spec["cluster"]]).df()

    def local(col):
        return pd.to_datetime(origin_us // 1_000_000 + df[col], unit="s", utc=True).dt.tz_convert(tz).dt.tz_localize(None)

    log = pd.DataFrame({"gpu_num": df["num_gpus"], "start_time": local("start_s"), "end_time": local("end_s")})
    return log, df, origin_us / 1e6


def _child_artifact(spec: dict) -> dict:
    import numpy as np
    import pandas as pd

    from analysis.utilization import interval_bins

    log, raw, origin_s = _subset(spec)
    t0, c0 = time.perf_counter(), _cpu_s()
    # --- HeliosArtifact trace_parser.parse_sequence, the per-job part (verbatim logic)
    df = pd.DataFrame(pd.date_range(start=WINDOW[0], end=WINDOW[1], freq="min"), columns=["time"])
    columns = ["running_gpujob_num", "running_gpu_num", "running_gpu_multi", "running_gpu_single"]
    df[columns] = 0
    for _, job in log.iterrows():
        gnum = job["gpu_num"]
        job["start_time"] = job["start_time"].replace(second=0)
        job["end_time"] = job["end_time"].replace(second=0)
        run = (df["time"] >= job["start_time"]) & (df["time"] <= job["end_time"])
        if gnum > 0:
            df.loc[run, "running_gpujob_num"] += 1
            df.loc[run, "running_gpu_num"] += gnum
            if gnum > 1:
                df.loc[run, "running_gpu_multi"] += gnum
            else:
                df.loc[run, "running_gpu_single"] += gnum
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    # --- ours, touch mode, on the same jobs: compare minute for minute over the artifact's frame
    offset = origin_s % 60
    first, v = interval_bins(raw["start_s"].to_numpy(), raw["end_s"].to_numpy(), {"g": raw["num_gpus"].to_numpy()},
                             offset_s=offset, mode="touch")
    abs_min = first + np.arange(v["g"].size) + round((origin_s - offset) / 60)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    frame_min = ((df["time"].dt.tz_localize("Asia/Shanghai") - epoch) // pd.Timedelta(minutes=1)).to_numpy()
    ours = np.zeros(frame_min.size)
    pos = np.searchsorted(frame_min, abs_min)
    inside = (pos < frame_min.size) & (frame_min[np.minimum(pos, frame_min.size - 1)] == abs_min)
    ours[pos[inside]] = v["g"][inside]
    diff = float(np.abs(ours - df["running_gpu_num"].to_numpy(dtype=float)).max())
    n = len(log)
    return {"jobs_measured": n, "cluster": spec["cluster"], "frame_minutes": len(df), "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3), "per_job_ms": round(wall / n * 1e3, 4), "matches_ours_touch": diff == 0.0,
            "max_abs_diff_gpus": diff}


def _child_slice_loop(spec: dict) -> dict:
    import numpy as np

    from analysis.catalog import open_catalog

    con = open_catalog(spec["data_root"])
    got = con.execute("SELECT start_s, end_s, num_gpus FROM jobs WHERE trace = ? AND num_gpus > 0 "
                      "AND start_s IS NOT NULL AND end_s IS NOT NULL", [TRACE]).fetchnumpy()
    t0, c0 = time.perf_counter(), _cpu_s()
    b0 = np.floor(got["start_s"] / 60).astype(np.int64)
    b1 = np.floor(got["end_s"] / 60).astype(np.int64)
    lo = int(b0.min())
    arr = np.zeros(int(b1.max()) - lo + 1)
    for s, e, g in zip((b0 - lo).tolist(), (b1 - lo).tolist(), got["num_gpus"].tolist()):
        arr[s:e + 1] += g
    wall = time.perf_counter() - t0
    return {"jobs_measured": int(b0.size), "wall_s": round(wall, 3), "cpu_s": round(_cpu_s() - c0, 3),
            "per_job_us": round(wall / b0.size * 1e6, 3)}


CHILDREN = {"ours": _child_ours, "artifact_loop": _child_artifact, "slice_loop": _child_slice_loop}


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    try:
        res = CHILDREN[spec["method"]](spec)
        res["ok"] = True
    except Exception as exc:  # reported in the JSON line, not raised
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    res["peak_rss_mib"] = round(peak_rss_mib(), 1)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(res) + "\n")
    return 0


# ---------------------------------------------------------------- parent side

def run_child(spec: dict, timeout: float | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "benchmarks.analysis_bench", "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    marker = proc.stdout.rfind("@@RESULT@@")
    if marker < 0:
        return {"ok": False, "error": f"child exited {proc.returncode} without a result: {proc.stderr[-1500:]}"}
    return json.loads(proc.stdout[marker + len("@@RESULT@@"):].strip().splitlines()[0])


def prepare(out: Path, scale: float, seed: int) -> tuple[Path, dict]:
    """The generated Helios files, ingested once into ``OUT/analysis/<tag>/`` (reused while they match)."""
    from ingest.pipeline import run_source

    gen_dir, manifest = prepare_data(FAMILIES["helios_2020"], out, scale, seed)
    root = out / "analysis" / gen_dir.name
    marker = root / "ingested-from.json"
    stamp = {"bytes": manifest["bytes"], "generator_version": manifest["generator_version"]}
    t0 = time.perf_counter()
    if not (marker.is_file() and json.loads(marker.read_text()) == stamp and (root / "catalog.duckdb").is_file()):
        result = run_source("helios_2020", gen_dir / "data", data_root=root, verify=False)
        marker.write_text(json.dumps(stamp))
        rows = {t.table: t.rows_out for t in result.tables}
        ingest_s = round(time.perf_counter() - t0, 2)
    else:
        rows, ingest_s = None, None
    return root, {"generated": manifest, "ingest_s": ingest_s, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    ap = argparse.ArgumentParser(prog="python -m benchmarks.analysis_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full-scale Helios job count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "bench-out"))
    ap.add_argument("--baseline-jobs", type=int, default=20000, help="GPU jobs the artifact loop runs on")
    ap.add_argument("--baseline-cluster", default="Venus")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours; the fastest is reported")
    ap.add_argument("--skip-slice-loop", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root, data = prepare(out, args.scale, args.seed)
    base = {"data_root": str(root)}
    ours = run_child({**base, "method": "ours", "repeat": args.repeat}, args.timeout)
    artifact = run_child({**base, "method": "artifact_loop", "jobs": args.baseline_jobs,
                          "cluster": args.baseline_cluster}, args.timeout)
    slice_loop = (None if args.skip_slice_loop else run_child({**base, "method": "slice_loop"}, args.timeout))
    import duckdb

    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as con:
        jobs, gpu_jobs = con.execute("SELECT count(*), count(*) FILTER (num_gpus > 0 AND start_s IS NOT NULL) "
                                     "FROM jobs WHERE trace = ?", [TRACE]).fetchall()[0]
    line: dict = {"figure": "helios_per_minute_utilization", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "jobs": jobs, "gpu_jobs_binned": gpu_jobs, "data": data, "ours": ours, "artifact_loop": artifact,
                  "slice_loop": slice_loop}
    ratios, targets = {}, {}
    if ours.get("ok") and artifact.get("ok"):
        full = artifact["per_job_ms"] / 1e3 * gpu_jobs
        artifact.update(extrapolated=True, extrapolated_full_s=round(full, 1), extrapolated_full_h=round(full / 3600, 2))
        ratios["artifact_loop_vs_ours"] = round(full / ours["wall_s"], 1)
        ratios["artifact_loop_vs_ours_per_cluster"] = round(full / ours["per_cluster_wall_s"], 1)
        targets[f"at_least_{TARGET_RATIO:g}x_vs_artifact_loop"] = ratios["artifact_loop_vs_ours"] >= TARGET_RATIO
    if ours.get("ok"):
        targets[f"full_series_under_{TARGET_S:g}s"] = ours["wall_s"] < TARGET_S
    if ours.get("ok") and slice_loop and slice_loop.get("ok"):
        ratios["slice_loop_vs_ours"] = round(slice_loop["wall_s"] / ours["wall_s"], 1)
    line.update(ratios=ratios, targets=targets, definitions={
        "ours.wall_s": "utilization_series(con, 'helios'): query + binning + capacity join + DataFrame, all 4 clusters "
                       "in one per-minute series, prorated partial minutes; fastest of --repeat runs",
        "ours.per_cluster_wall_s": "the same, one call per cluster (4 series)",
        "artifact_loop.extrapolated_full_s": "per-job time on the subset x all GPU jobs with a start time",
        "ratios.artifact_loop_vs_ours": "extrapolated artifact loop over all GPU jobs / ours.wall_s",
        "slice_loop": "Python loop over all GPU jobs, numpy slice add per job (touch semantics), excluding the query"},
        machine=machine_info(), versions=versions(), git=git_state("analysis"))
    emit_json_line(line, out, "analysis_bench.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
