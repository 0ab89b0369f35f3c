"""Ingest benchmark: our pipeline vs a plain pandas read + to_parquet vs a bare DuckDB COPY.

For each family it generates full-scale files in the upstream format (``benchmarks.gen_upstream``,
cached under ``OUT/data``), warms the page cache, then measures three methods on the same files, each in
its own child process (so peak RSS is per method):

* ``ours``: ``ingest.pipeline.run_source(source, folder, data_root=<tmp>, verify=False)``;
* ``pandas``: ``pd.read_csv(file)`` (headerless PAI: ``header=None, names=...``; Philly: ``pd.read_json``)
  then ``DataFrame.to_parquet`` (pyarrow, snappy), file by file;
* ``duckdb``: ``COPY (SELECT * FROM read_csv(file)) TO 'x.parquet' (FORMAT parquet)`` (headerless PAI:
  ``header=false, names=[...]``; Philly: ``read_json``), file by file: the practical floor.

One JSON line per family goes to stdout and is appended to ``OUT/ingest_bench.jsonl``. A family whose
source is not registered or is still a placeholder (``SOURCES = ()``) gets ``{"skipped": reason}``.

Usage: ``python -m benchmarks.ingest_bench [--only F1,F2] [--scale 1.0] [--out bench-out]
[--pandas-max-rows N] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import emit_json_line

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
RSS_TARGET_MIB = 2048
PANDAS_TARGET = 5.0
DUCKDB_TARGET = 2.0

PAI_COLUMNS = {
    "pai_job_table.csv": ["job_name", "inst_id", "user", "status", "start_time", "end_time"],
    "pai_task_table.csv": ["job_name", "task_name", "inst_num", "status", "start_time", "end_time",
                           "plan_cpu", "plan_mem", "plan_gpu", "gpu_type"],
    "pai_instance_table.csv": ["job_name", "task_name", "inst_name", "worker_name", "inst_id", "status",
                               "start_time", "end_time", "machine"],
}


@dataclass(frozen=True)
class Family:
    """One benchmarked upstream family."""

    name: str
    """Family name (``--only``; also the generator name)."""
    module: str
    """Module under ``ingest.sources`` that registers its source."""
    candidates: tuple[str, ...]
    """Preferred source names, in order; otherwise the module's source whose inputs match the files."""
    kind: str = "csv"
    """``csv`` or ``json``."""
    headerless: bool = False
    """PAI: no header row; column names come from ``PAI_COLUMNS``."""
    note: str = ""
    """What the measured file set is, for the JSON line."""
    notebook_read: dict | None = None
    """``pd.read_csv`` options of the upstream notebook's own read (the ``pandas_notebook`` method), if it
    differs from the plain read: it parses the time columns."""


FAMILIES = {
    f.name: f
    for f in (
        Family("azure_llm_2024", "azure_llm", ("azure_llm_2024",),
               note="AzureLLMInferenceTrace_conv_1week.csv only (the code file is optional and absent)",
               notebook_read={"parse_dates": ["TIMESTAMP"], "date_format": "mixed"}),
        Family("alibaba_pai_2020", "alibaba_pai", ("alibaba_pai_2020", "pai_2020", "alibaba_pai"), headerless=True,
               note="job + task + instance tables for all methods; ours also reads pai_machine_spec.csv (1,897 real "
                    "rows) and the .header files if the source wants them"),
        Family("philly", "philly", ("philly", "philly_2017"), kind="json",
               note="cluster_job_log (JSON array) for all methods; ours also reads cluster_machine_list (552 rows); "
                    "pandas uses pd.read_json (the attempts column stays nested objects), duckdb read_json"),
        Family("helios_2020", "helios", ("helios_2020", "helios"),
               note="the 4 cluster_log.csv files for all methods; ours also reads the 4 cluster_gpu_number.csv "
                    "(181 rows each) if the source wants them",
               notebook_read={"parse_dates": ["submit_time", "start_time", "end_time"]}),
    )
}


# ---------------------------------------------------------------- child side (one measurement)

def _status_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_now_mib() -> float:
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """This process image's peak RSS (``VmHWM``; Linux keeps ``ru_maxrss`` across exec, so it would
    report the parent's peak when the parent is bigger)."""
    hwm = _status_mib("VmHWM")
    return hwm if hwm == hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _child_ours(spec: dict) -> dict:
    import polars as pl

    from ingest.pipeline import run_source

    data_root = Path(spec["work"]) / "data"
    marks: list[tuple[float, float, float, str]] = []  # (wall, cpu, peak RSS so far, message)
    rss0, cpu0 = _rss_now_mib(), _cpu_s()
    t0 = time.perf_counter()

    def mark(msg: str) -> None:
        marks.append((time.perf_counter() - t0, _cpu_s() - cpu0, peak_rss_mib(), msg))

    result = run_source(spec["source"], spec["input"], data_root=data_root, verify=False, progress=mark)
    wall = time.perf_counter() - t0
    cpu = round(_cpu_s() - cpu0, 3)
    mark("end")
    # each progress message opens a stage; a stage's peak RSS is the high-water mark at its end
    stages, prev = [], (0.0, 0.0, rss0, "start (until the first progress message)")
    for t, c, hwm, msg in marks:
        stages.append({"stage": prev[3], "seconds": round(t - prev[0], 3), "cpu_s": round(c - prev[1], 3),
                       "peak_rss_mib_at_end": round(hwm, 1)})
        prev = (t, c, hwm, msg)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_after_import_mib": rss0,
        "tables": [t.__dict__ for t in result.tables],
        "missing_inputs": result.missing_inputs,
        "stages": stages,
        "output_bytes": _dir_bytes(data_root / "lake"),
        "threads": pl.thread_pool_size(),
    }


def _child_pandas(spec: dict) -> dict:
    import pandas as pd

    out = Path(spec["work"])
    cap = spec.get("max_rows")
    rows_read, per_file = 0, {}
    rss0, cpu0 = _rss_now_mib(), _cpu_s()
    t0 = time.perf_counter()
    for rel in spec["files"]:
        path = Path(spec["input"]) / rel
        if spec["kind"] == "json":
            df = pd.read_json(path)
        else:
            kw: dict = {}
            if spec["headerless"]:
                kw.update(header=None, names=PAI_COLUMNS[path.name])
            if spec["method"] == "pandas_notebook":
                kw.update(spec["notebook_read"])
            if cap:
                kw["nrows"] = cap
            df = pd.read_csv(path, **kw)
        df.to_parquet(out / (rel.replace("/", "__") + ".parquet"))
        per_file[rel] = len(df)
        rows_read += len(df)
        del df
    wall = time.perf_counter() - t0
    cpu = round(_cpu_s() - cpu0, 3)
    return {"wall_s": wall, "cpu_s": cpu, "rss_after_import_mib": rss0, "rows_read": rows_read, "rows_read_per_file": per_file,
            "output_bytes": _dir_bytes(out)}


def _child_duckdb(spec: dict) -> dict:
    import duckdb

    out = Path(spec["work"])
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    mem = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    rows, per_file = 0, {}
    rss0, cpu0 = _rss_now_mib(), _cpu_s()
    t0 = time.perf_counter()
    for rel in spec["files"]:
        path = str(Path(spec["input"]) / rel).replace("'", "''")
        dest = str(out / (rel.replace("/", "__") + ".parquet")).replace("'", "''")
        if spec["kind"] == "json":
            src = f"read_json('{path}')"
        elif spec["headerless"]:
            names = ", ".join(f"'{c}'" for c in PAI_COLUMNS[Path(rel).name])
            src = f"read_csv('{path}', header = false, names = [{names}])"
        else:
            src = f"read_csv('{path}')"
        n = con.execute(f"COPY (SELECT * FROM {src}) TO '{dest}' (FORMAT parquet)").fetchone()[0]
        per_file[rel] = int(n)
        rows += int(n)
    wall = time.perf_counter() - t0
    cpu = round(_cpu_s() - cpu0, 3)
    con.close()
    return {"wall_s": wall, "cpu_s": cpu, "rss_after_import_mib": rss0, "rows_read": rows, "rows_read_per_file": per_file,
            "output_bytes": _dir_bytes(out), "threads": threads, "memory_limit": mem}


CHILDREN = {"ours": _child_ours, "pandas": _child_pandas, "pandas_notebook": _child_pandas, "duckdb": _child_duckdb}


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    try:
        res = CHILDREN[spec["method"]](spec)
        res["ok"] = True
    except Exception as exc:  # reported, not raised: the family's line says which method failed and why
        res = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    res["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write("\n@@RESULT@@" + json.dumps(res) + "\n")
    return 0


# ---------------------------------------------------------------- parent side

def run_child(spec: dict, timeout: float | None) -> dict:
    """Run one measurement in a fresh interpreter; the child reports its wall time and peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "benchmarks.ingest_bench", "--child", json.dumps(spec)]
    busy0, kids0, load0 = _cpu_busy_s(), _children_cpu_s(), os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"ok": False, "error": f"timed out after {timeout} s"}
    process_wall = time.perf_counter() - t0
    marker = out.rfind("@@RESULT@@")
    if marker < 0:
        return {"ok": False, "error": f"child exited {proc.returncode} without a result: {err[-1500:]}"}
    res = json.loads(out[marker + len("@@RESULT@@"):].strip().splitlines()[0])
    res["process_wall_s"] = round(process_wall, 3)
    busy, kids = _cpu_busy_s() - busy0, _children_cpu_s() - kids0
    if busy == busy:
        # CPU seconds other processes used while this child ran (the machine may be shared)
        res["other_processes_cpu_s"] = round(max(0.0, busy - kids), 1)
        res["machine_cpu_s_available"] = round(process_wall * (os.cpu_count() or 1), 1)
    res["loadavg_1m_before"] = round(load0, 2)
    return res


def _cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (from /proc/stat; NaN where unavailable)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _source_for(fam: Family, files: list[str]) -> tuple[str | None, str | None]:
    """(source name, None) or (None, reason to skip)."""
    try:
        from ingest.sources import registry

        names = registry().names()
        mod = importlib.import_module(f"ingest.sources.{fam.module}")
    except Exception as exc:
        return None, f"could not load the source registry: {type(exc).__name__}: {exc}"
    sources = list(getattr(mod, "SOURCES", ()))
    if not sources:
        return None, f"ingest/sources/{fam.module}.py is still a placeholder (SOURCES = ())"
    by_name = {s.name: s for s in sources}
    for cand in fam.candidates:
        if cand in by_name and cand in names:
            return cand, None
    for s in sources:  # a source whose inputs include one of the generated files
        keys = [spec.key for spec in s.inputs]
        if s.name in names and not getattr(s, "derived", False) and any(
                f == k or f.endswith("/" + k) or k.endswith(Path(f).name) for f in files for k in keys):
            return s.name, None
    return None, (f"no registered source in ingest/sources/{fam.module}.py reads {', '.join(files)} "
                  f"(registered there: {', '.join(sorted(by_name))})")


def prepare_data(fam: Family, out: Path, scale: float, seed: int) -> tuple[Path, dict]:
    """Generated files for the family (reused when a matching manifest is present)."""
    from benchmarks import gen_upstream as gen

    tag = f"{fam.name}-scale{scale:g}-seed{seed}"
    gen_dir = out / "data" / tag
    manifest_path = gen_dir / gen.MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("generator_version") == gen.GENERATOR_VERSIONS[fam.name] and all(
                (gen_dir / f).is_file() and (gen_dir / f).stat().st_size == b for f, b in manifest["bytes"].items()):
            manifest["cached"] = True
            return gen_dir, manifest
    shutil.rmtree(gen_dir, ignore_errors=True)
    manifest = gen.generate(fam.name, gen_dir, scale=scale, seed=seed)
    manifest["cached"] = False
    return gen_dir, manifest


def _warm(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(16 * MiB):
                pass
    return time.perf_counter() - t0


def machine_info() -> dict:
    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "mem_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_state(package: str = "ingest") -> dict:
    """The checkout's commit, and whether `package`/ has uncommitted changes (the code that was measured)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            f"{package}_uncommitted_changes": bool(git("status", "--porcelain", "--", package))}


def versions() -> dict:
    out = {}
    for mod in ("polars", "duckdb", "pyarrow", "pandas", "numpy", "psutil"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:
            out[mod] = None
    return out


def _best(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return runs[-1]
    best = dict(min(ok, key=lambda r: r["wall_s"]))
    if len(runs) > 1:
        best["all_wall_s"] = [round(r["wall_s"], 3) if r.get("ok") else None for r in runs]
        best["max_peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
    return best


def bench_family(fam: Family, args: argparse.Namespace) -> dict:
    from benchmarks import gen_upstream as gen

    line: dict = {"family": fam.name, "scale": args.scale, "seed": args.seed,
                  "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = Path(args.out).resolve()
    # the files that will be measured are known before generation: check the source first (cheap skip)
    expected = {
        "azure_llm_2024": [gen.AZURE_CONV_FILE],
        "alibaba_pai_2020": list(PAI_COLUMNS),
        "philly": ["trace-data/cluster_job_log"],
        "helios_2020": [f"data/{c}/cluster_log.csv" for c in gen.HELIOS_CLUSTERS],
    }[fam.name]
    source, why = _source_for(fam, expected)
    if source is None:
        line["skipped"] = why
        return line
    t0 = time.perf_counter()
    gen_dir, manifest = prepare_data(fam, out, args.scale, args.seed)
    files = list(manifest["files"])
    rows = dict(manifest["files"])
    total = sum(rows.values())
    line.update(source=source, input_dir=str(gen_dir), files_measured=files, rows=rows, rows_total=total,
                input_bytes=sum(manifest["bytes"].values()), generated_cached=manifest["cached"],
                generate_s=round(time.perf_counter() - t0, 2), measured_set=fam.note)
    line["warm_read_s"] = round(_warm([gen_dir / f for f in files]), 2)

    results: dict[str, dict] = {}
    for method in args.methods:
        if method == "pandas_notebook" and fam.notebook_read is None:
            continue  # the upstream notebook reads this family exactly like the plain pandas baseline
        runs = []
        for _ in range(args.repeat):
            work = out / "work" / f"{fam.name}-{method}-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            spec = {"method": method, "family": fam.name, "source": source, "input": str(gen_dir), "files": files,
                    "kind": fam.kind, "headerless": fam.headerless, "work": str(work),
                    "notebook_read": fam.notebook_read,
                    "max_rows": args.pandas_max_rows if method.startswith("pandas") else None}
            runs.append(run_child(spec, args.timeout))
            shutil.rmtree(work, ignore_errors=True)
            print(f"[{fam.name}] {method}: " + (f"{runs[-1]['wall_s']:.1f} s, peak {runs[-1]['peak_rss_mib']:.0f} MiB"
                                                 if runs[-1].get("ok") else runs[-1].get("error", "?")),
                  file=sys.stderr, flush=True)
        res = _best(runs)
        if res.get("ok"):
            measured_rows = res.get("rows_read", total) if method != "ours" else total
            res["rows_per_s"] = round(measured_rows / res["wall_s"], 1)
            res["peak_rss_mib"] = round(res["peak_rss_mib"], 1)
            res["wall_s"] = round(res["wall_s"], 3)
            if method.startswith("pandas"):
                res["extrapolated"] = res["rows_read"] < total
                if res["extrapolated"]:
                    res["wall_s_full_estimate"] = round(total / res["rows_per_s"], 1)
                    res["note"] = (f"pandas ran on the first {args.pandas_max_rows:,} rows of each file; rows/s "
                                   "extrapolated to the full files; peak RSS is for the prefix only")
            if method == "duckdb" and res.get("rows_read", total) != total:
                res["row_count_mismatch"] = True
        results[method] = res
    line.update(results)

    ours, pdr, ddb = results.get("ours", {}), results.get("pandas", {}), results.get("duckdb", {})
    ratios, targets = {}, {}
    nb = results.get("pandas_notebook", {})
    if ours.get("ok") and nb.get("ok"):
        ratios["ours_vs_pandas_notebook_throughput"] = round(ours["rows_per_s"] / nb["rows_per_s"], 2)
    if ours.get("ok") and pdr.get("ok"):
        ratios["ours_vs_pandas_throughput"] = round(ours["rows_per_s"] / pdr["rows_per_s"], 2)
        targets["at_least_5x_pandas"] = ratios["ours_vs_pandas_throughput"] >= PANDAS_TARGET
    if ours.get("ok") and ddb.get("ok"):
        ratios["ours_vs_duckdb_time"] = round(ours["wall_s"] / ddb["wall_s"], 2)
        ratios["ours_vs_duckdb_cpu"] = round(ours["cpu_s"] / max(ddb["cpu_s"], 1e-9), 2)
    if ours.get("ok") and pdr.get("ok") and not pdr.get("extrapolated"):
        ratios["ours_vs_pandas_cpu"] = round(ours["cpu_s"] / max(pdr["cpu_s"], 1e-9), 2)
        targets["within_2x_duckdb"] = ratios["ours_vs_duckdb_time"] <= DUCKDB_TARGET
    if ours.get("ok"):
        targets["peak_rss_under_2gib"] = ours["peak_rss_mib"] < RSS_TARGET_MIB
    line["ratios"], line["targets"] = ratios, targets
    line["baselines"] = {
        "pandas": "pd.read_csv(file) [PAI: header=None, names=<.header>] -> df.to_parquet(pyarrow, snappy); Philly: "
                  "pd.read_json(file) -> to_parquet; file by file in one process; no dtype or date options",
        "pandas_notebook": f"pd.read_csv(file, **{fam.notebook_read}) -> to_parquet: the upstream notebook's read, "
                           "which parses the time columns" if fam.notebook_read else None,
        "duckdb": "COPY (SELECT * FROM read_csv(file) [PAI: header=false, names=[...]]) TO 'x.parquet' "
                  "(FORMAT parquet); Philly: read_json(file); file by file, in-memory connection, default settings",
        "ours": f"ingest.pipeline.run_source('{source}', <folder>, data_root=<tmp>, verify=False): stage, rebase, "
                "write canonical zstd Parquet, commit, rebuild the catalog",
    }
    line["definitions"] = {
        "wall_s": "seconds for the operation inside the child (imports excluded)",
        "rows_per_s": "input data rows of the measured files / wall_s",
        "peak_rss_mib": "peak RSS (VmHWM) of the child process, imports included",
        "cpu_s": "user + system CPU seconds of the operation (less sensitive than wall_s to other load)",
        "other_processes_cpu_s": "CPU seconds used by other processes on the machine during the run "
                                 "(out of machine_cpu_s_available): a shared machine inflates wall_s",
        "ours_vs_pandas_throughput": "ours rows/s / pandas rows/s (target >= 5)",
        "ours_vs_duckdb_time": "ours wall_s / duckdb wall_s (target <= 2)",
        "ours_vs_duckdb_cpu, ours_vs_pandas_cpu": "the same comparisons on CPU seconds (informational)",
    }
    line["machine"], line["versions"], line["git"] = machine_info(), versions(), git_state()
    return line


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ingest_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(FAMILIES), help=f"comma-separated families ({', '.join(FAMILIES)})")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full-scale row counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "bench-out"), help="generated data, work files and the .jsonl")
    ap.add_argument("--pandas-max-rows", type=int, default=None,
                    help="run pandas on the first N rows of each CSV and extrapolate rows/s (default: full files)")
    ap.add_argument("--methods", default="duckdb,ours,pandas,pandas_notebook",
                    help="subset/order of ours, pandas, pandas_notebook (Azure, Helios only), duckdb")
    ap.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest is reported")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per child run")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in CHILDREN]
    fams = [f.strip() for f in args.only.split(",") if f.strip()]
    bad = [f for f in fams if f not in FAMILIES]
    if bad or unknown:
        ap.error(f"unknown families {bad} or methods {unknown}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in fams:
        line = bench_family(FAMILIES[name], args)
        emit_json_line(line, out, "ingest_bench.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
