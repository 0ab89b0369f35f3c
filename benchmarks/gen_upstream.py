"""Seeded, numpy-vectorized generators of full-scale trace files in the exact upstream formats.

The real files are not available offline (FORMATS.md §10), so the ingest benchmark generates files
that have the upstream layout, quirks and row counts:

* ``azure_llm_2024``: ``AzureLLMInferenceTrace_conv_1week.csv`` (FORMATS §2), 27,303,999 rows;
* ``alibaba_pai_2020``: headerless ``pai_job_table.csv`` / ``pai_task_table.csv`` (1.26 M rows) /
  ``pai_instance_table.csv`` (10 M rows) plus the ``.header`` files and ``pai_machine_spec.csv`` (§4);
* ``philly``: ``trace-data/cluster_job_log`` (one JSON array, 117,325 jobs) plus
  ``trace-data/cluster_machine_list`` (§5);
* ``helios_2020``: ``data/<Cluster>/cluster_log.csv`` for the 4 clusters (3,362,981 jobs) plus each
  cluster's ``cluster_gpu_number.csv`` (§6).

Rows are rendered as byte matrices (one fixed-width column block per field, NUL bytes for "absent"),
joined and stripped of NULs in blocks, so generation runs at tens of MB/s and holds one chunk
(~1 M rows) in memory at a time. Where ``shared/traces`` has real small files (PAI headers and machine
list, Philly machine list and VC names, Helios Venus/Earth capacity files), they are copied and their
ids reused.

CLI: ``python -m benchmarks.gen_upstream FAMILY OUTDIR [--rows N] [--scale F] [--seed S]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

GENERATOR_VERSIONS = {"azure_llm_2024": "1", "alibaba_pai_2020": "2", "philly": "1", "helios_2020": "1"}
"""Per family; bumped when that generator's output changes (invalidates the benchmark's cached files)."""
MANIFEST = ".gen.json"
"""Written last in the output folder: family, parameters, files and row counts (the cache marker)."""
CHUNK_ROWS = 1 << 20
"""Rows generated per chunk (bounds generation memory)."""
_BLOCK_ROWS = 1 << 18
"""Rows rendered to bytes at once inside a chunk."""

HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
ALNUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", np.uint8)


# ---------------------------------------------------------------- byte-matrix rendering helpers

def shared_traces() -> Path | None:
    """The offline traces folder (``$TRACELAB_TRACES`` or ``../shared/traces``), if present."""
    try:
        from ingest.paths import traces_dir

        found = traces_dir()
    except Exception:  # the generator also works outside the package
        found = None
    if found is None:
        for cand in (Path(__file__).resolve().parents[2] / "shared" / "traces", Path("/work/shared/traces")):
            if cand.is_dir():
                return cand
    return found if found is not None and found.is_dir() else None


def _lit(text: bytes, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, np.uint8), (n, len(text)))


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    pows = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // pows) % 10


def ints(values: np.ndarray, width: int | None = None) -> np.ndarray:
    """Non-negative integers as left-aligned ASCII (leading zeros become NUL = absent)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and v.min() < 0:
        raise ValueError("ints() renders non-negative values only")
    if width is None:
        width = len(str(int(v.max()))) if v.size else 1
    d = _digits(v, width)
    out = (d + 48).astype(np.uint8)
    lead = np.cumsum(d, axis=1) == 0
    lead[:, -1] = False
    out[lead] = 0
    return out


def floats(values: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Non-negative floats in Python ``repr`` style for short values: ``1.0``, ``600.0``, ``29.296875``."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 10**decimals).astype(np.int64)
    whole, frac = scaled // 10**decimals, scaled % 10**decimals
    fd = _digits(frac, decimals)
    fb = (fd + 48).astype(np.uint8)
    trailing = np.cumsum(fd[:, ::-1], axis=1)[:, ::-1] == 0
    trailing[:, 0] = False  # keep at least one fractional digit
    fb[trailing] = 0
    return np.concatenate([ints(whole), _lit(b".", len(frac)), fb], axis=1)


def random_ids(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray = HEX, prefix: bytes = b"") -> np.ndarray:
    """``n`` random ids of ``width`` characters from ``alphabet`` (lowercase hex by default)."""
    body = alphabet[rng.integers(0, len(alphabet), size=(n, width), dtype=np.uint8)]
    return np.concatenate([_lit(prefix, n), body], axis=1) if prefix else body


def table_of(words: Sequence[bytes | str]) -> np.ndarray:
    """A (k, maxlen) NUL-padded byte table; index it with an int array to render a choice column."""
    enc = [w.encode() if isinstance(w, str) else w for w in words]
    out = np.zeros((len(enc), max(1, max(len(w) for w in enc))), np.uint8)
    for i, w in enumerate(enc):
        out[i, : len(w)] = np.frombuffer(w, np.uint8) if w else []
    return out


def blank(col: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The column with the masked rows emptied."""
    col = np.array(col, dtype=np.uint8, copy=True)
    col[mask] = 0
    return col


def datetimes(values: np.ndarray, unit: str) -> np.ndarray:
    """``datetime64`` values as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (``unit`` ``s`` or ``us``)."""
    text = np.datetime_as_string(values.astype(f"datetime64[{unit}]"), unit=unit)
    out = text.astype(f"S{text.dtype.itemsize // 4}").view(np.uint8).reshape(len(values), -1).copy()
    out[:, 10] = ord(" ")
    return out


def write_rows(fh, fields: Sequence[np.ndarray], sep: bytes = b",", end: bytes = b"\n") -> int:
    """Join the field blocks of each row with ``sep``, end rows with ``end``, drop NULs, write; returns rows."""
    n = fields[0].shape[0]
    for lo in range(0, n, _BLOCK_ROWS):
        hi = min(n, lo + _BLOCK_ROWS)
        parts: list[np.ndarray] = []
        for i, f in enumerate(fields):
            if i:
                parts.append(_lit(sep, hi - lo))
            parts.append(f[lo:hi])
        parts.append(_lit(end, hi - lo))
        flat = np.concatenate(parts, axis=1).ravel()
        fh.write(flat[flat != 0].tobytes())
    return n


def _chunks_by_counts(counts: np.ndarray, target: int) -> list[tuple[int, int]]:
    """Split ``range(len(counts))`` into contiguous [a, b) ranges holding about ``target`` items each."""
    cum = np.cumsum(counts)
    ranges, a, done = [], 0, 0
    while a < len(counts):
        b = int(np.searchsorted(cum, done + target, side="left")) + 1
        b = max(a + 1, min(b, len(counts)))
        ranges.append((a, b))
        done = int(cum[b - 1])
        a = b
    return ranges


def _pick(rng: np.random.Generator, n: int, p: Sequence[float]) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _finish(out_dir: Path, family: str, seed: int, params: dict, files: dict[str, int], t0: float) -> dict:
    manifest = {
        "family": family,
        "generator_version": GENERATOR_VERSIONS[family],
        "seed": seed,
        "params": params,
        "files": files,
        "bytes": {f: (out_dir / f).stat().st_size for f in files},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------- Azure LLM 2024 (FORMATS §2)

AZURE_CONV_ROWS = 27_303_999
AZURE_CONV_FILE = "AzureLLMInferenceTrace_conv_1week.csv"
AZURE_START = np.datetime64("2024-05-12T00:00:00", "us")


def azure_llm_2024(out_dir: Path, rows: int | None = None, seed: int = 0) -> dict:
    """``AzureLLMInferenceTrace_conv_1week.csv``: sorted arrivals over 7 days, ~1% whole-second stamps.

    First row ``2024-05-12 00:00:00.001163+00:00``, last ``2024-05-18 23:59:59.995460+00:00`` (as the
    upstream notebook prints); diurnal + weekend rate; ContextTokens lognormal (median ~1,000, capped at
    7,999), GeneratedTokens lognormal (median ~150).
    """
    t0 = time.perf_counter()
    rows = AZURE_CONV_ROWS if rows is None else rows
    rng = np.random.default_rng([seed, 2024])
    out_dir.mkdir(parents=True, exist_ok=True)
    minutes = 7 * 1440
    m = np.arange(minutes)
    hour = (m % 1440) / 60.0
    rate = 1.0 + 0.55 * np.sin(2 * np.pi * (hour - 10.0) / 24.0)
    rate *= np.where((m // 1440 == 0) | (m // 1440 == 6), 0.75, 1.0)  # 2024-05-12 is a Sunday
    rate *= rng.lognormal(0.0, 0.15, minutes)
    counts = rng.multinomial(rows, rate / rate.sum())
    first_us, last_us = 1163, minutes * 60_000_000 - 4540
    with open(out_dir / AZURE_CONV_FILE, "wb") as fh:
        fh.write(b"TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for a, b in _chunks_by_counts(counts, CHUNK_ROWS):
            n = int(counts[a:b].sum())
            if n == 0:
                continue
            us = np.repeat(m[a:b].astype(np.int64) * 60_000_000, counts[a:b]) + rng.integers(0, 60_000_000, n)
            whole = rng.random(n) < 0.01
            us[whole] -= us[whole] % 1_000_000
            us.sort()
            if a == 0:
                us = np.maximum(us, first_us)
                us[0] = first_us
            if b == minutes:
                us = np.minimum(us, last_us)
                us[-1] = last_us
            stamp = datetimes(AZURE_START + us.astype("timedelta64[us]"), "us")
            stamp[us % 1_000_000 == 0, 19:] = 0  # whole seconds: no fractional part
            ctx = np.clip(np.rint(rng.lognormal(np.log(1000.0), 1.0, n)), 1, 7999)
            gen = np.clip(np.rint(rng.lognormal(np.log(150.0), 0.95, n)), 1, 4000)
            write_rows(fh, [np.concatenate([stamp, _lit(b"+00:00", n)], axis=1), ints(ctx), ints(gen)])
    return _finish(out_dir, "azure_llm_2024", seed, {"rows": rows}, {AZURE_CONV_FILE: rows}, t0)


# ---------------------------------------------------------------- Alibaba PAI 2020 (FORMATS §4)

PAI_TASK_ROWS = 1_260_000
PAI_INSTANCE_ROWS = 10_000_000
PAI_TASKS_PER_JOB = 1.2
PAI_DUP_FRACTION = 0.003
PAI_HEADERS = {
    "pai_job_table": "job_name,inst_id,user,status,start_time,end_time",
    "pai_task_table": "job_name,task_name,inst_num,status,start_time,end_time,plan_cpu,plan_mem,plan_gpu,gpu_type",
    "pai_instance_table": "job_name,task_name,inst_name,worker_name,inst_id,status,start_time,end_time,machine",
    "pai_machine_spec": "machine,gpu_type,cap_cpu,cap_mem,cap_gpu",
}
PAI_STATUS = table_of(["Terminated", "Failed", "Running", "Waiting"])
TERMINATED, FAILED, RUNNING, WAITING = range(4)
PAI_SINGLE_ROLES = ["tensorflow", "worker", "PyTorchWorker", "xComputeWorker", "OssToVolumeWorker", "TVMTuneMain"]
PAI_MULTI_ROLES = ["ps", "worker", "evaluator", "chief"] + [f"worker{i}" for i in range(1, 61)]
PAI_GPU_TYPES = table_of(["MISC", "T4", "P100", "V100", "V100M32", ""])


def _pai_times(rng, n, start, status, *, end=None, run_median=900.0):
    """(start, end) float seconds; Waiting: start 0/empty; Running/Waiting: end 0 or empty (half each)."""
    if end is None:
        end = start + np.rint(rng.lognormal(np.log(run_median), 1.8, n))
    zero_form = rng.random(n) < 0.5  # '0.0' vs empty for missing values (both occur upstream)
    start_missing = status == WAITING
    end_missing = (status == RUNNING) | (status == WAITING)
    start_col = floats(np.where(start_missing, 0.0, start), 1)
    end_col = floats(np.where(end_missing, 0.0, end), 1)
    start_col = blank(start_col, start_missing & ~zero_form)
    end_col = blank(end_col, end_missing & ~zero_form)
    return start_col, end_col, end


def _pai_machines(out_dir: Path, rng: np.random.Generator) -> np.ndarray:
    """Copy the real machine spec and headers from shared/traces (synthesize them if absent); machine ids."""
    src = shared_traces()
    pai = src / "alibaba_pai_2020" if src else None
    spec_csv = out_dir / "pai_machine_spec.csv"
    if pai is not None and (pai / "pai_machine_spec.tar.gz").is_file():
        with tarfile.open(pai / "pai_machine_spec.tar.gz") as tf:
            member = tf.extractfile("pai_machine_spec.csv")
            spec_csv.write_bytes(member.read())
    else:
        ids = random_ids(rng, 1897, 24)
        with open(spec_csv, "wb") as fh:
            write_rows(fh, [ids, table_of(["V100"])[np.zeros(1897, int)], ints(np.full(1897, 96)),
                            ints(np.full(1897, 512)), ints(np.full(1897, 8))])
    for table, header in PAI_HEADERS.items():
        real = pai / f"{table}.header" if pai else None
        if real is not None and real.is_file():
            shutil.copyfile(real, out_dir / f"{table}.header")
        else:
            (out_dir / f"{table}.header").write_text(header + "\n")
    names = [line.split(",")[0] for line in spec_csv.read_text().splitlines() if line]
    return table_of(names)


def alibaba_pai_2020(out_dir: Path, rows: int | None = None, seed: int = 0, instance_rows: int | None = None) -> dict:
    """Headerless job / task / instance tables (``rows`` = task rows; instances scale with it).

    Quirks: float-formatted numbers (``1.0``, ``4550879.0``, ``29.296875``); empty ``plan_gpu`` and
    ``gpu_type`` on CPU tasks and empty ``gpu_type`` on ~8% of GPU tasks; missing times as ``0.0`` or
    empty; ~0.3% duplicate ``worker_name`` rows (an earlier Failed attempt right before the final row).
    """
    t0 = time.perf_counter()
    task_rows = PAI_TASK_ROWS if rows is None else rows
    inst_rows = instance_rows if instance_rows is not None else round(task_rows * PAI_INSTANCE_ROWS / PAI_TASK_ROWS)
    n_jobs = round(task_rows / PAI_TASKS_PER_JOB)
    n_dup = int(inst_rows * PAI_DUP_FRACTION)
    unique_inst = inst_rows - n_dup
    if not (0 < n_jobs <= task_rows <= unique_inst):
        raise ValueError(f"need jobs <= tasks <= unique instances, got {n_jobs}, {task_rows}, {unique_inst}")
    rng = np.random.default_rng([seed, 2020])
    out_dir.mkdir(parents=True, exist_ok=True)
    machines = _pai_machines(out_dir, rng)

    # jobs (the table is written after the tasks: a job ends when its last task ends)
    job_name = random_ids(rng, n_jobs, 24)
    inst_id = random_ids(rng, n_jobs, 60)
    users = random_ids(rng, 1300, 12)
    user_w = 1.0 / np.arange(1, 1301) ** 1.1
    job_user = users[_pick(rng, n_jobs, user_w)]
    job_status = _pick(rng, n_jobs, [0.74, 0.18, 0.06, 0.02])
    job_submit = np.rint(rng.uniform(2_000_000, 7_300_000, n_jobs))

    # tasks: every job has one; ~12% of jobs get the extra (ps/worker/evaluator...) tasks
    multi_w = np.where(rng.random(n_jobs) < 0.12, 1.0, 0.0)
    tasks_per_job = 1 + rng.multinomial(task_rows - n_jobs, multi_w / multi_w.sum())
    t_job = np.repeat(np.arange(n_jobs), tasks_per_job)
    t_pos = np.arange(task_rows) - np.repeat(np.cumsum(tasks_per_job) - tasks_per_job, tasks_per_job)
    if t_pos.max() >= len(PAI_MULTI_ROLES):
        raise ValueError("a job got more tasks than there are role names; use a larger --rows")
    multi = tasks_per_job[t_job] > 1
    roles = table_of(PAI_SINGLE_ROLES + PAI_MULTI_ROLES)
    single_role = _pick(rng, task_rows, [0.45, 0.25, 0.15, 0.08, 0.04, 0.03])
    t_role = np.where(multi, len(PAI_SINGLE_ROLES) + t_pos, single_role)
    t_status = job_status[t_job].copy()
    t_status[(t_status == FAILED) & (rng.random(task_rows) < 0.3)] = TERMINATED
    t_start = job_submit[t_job] + np.rint(rng.lognormal(np.log(20.0), 2.0, task_rows))
    t_end = t_start + np.rint(rng.lognormal(np.log(900.0), 1.8, task_rows))
    job_end = np.maximum.reduceat(t_end, np.cumsum(tasks_per_job) - tasks_per_job) + np.rint(rng.exponential(5.0, n_jobs))
    with open(out_dir / "pai_job_table.csv", "wb") as fh:
        for lo in range(0, n_jobs, CHUNK_ROWS):
            hi = min(n_jobs, lo + CHUNK_ROWS)
            st = job_status[lo:hi]
            _, end_col, _ = _pai_times(rng, hi - lo, job_submit[lo:hi], st, end=job_end[lo:hi])
            write_rows(fh, [job_name[lo:hi], inst_id[lo:hi], job_user[lo:hi], PAI_STATUS[st], floats(job_submit[lo:hi], 1),
                            end_col])
    cpu_task = (multi & (t_pos == 0)) | (~multi & (rng.random(task_rows) < 0.08))
    # instances per task: 1 + heavy-tailed extras, summing exactly to the unique instance count
    extra_w = np.where(rng.random(task_rows) < 0.35, rng.lognormal(0.0, 1.5, task_rows), 0.0)
    inst_num = 1 + rng.multinomial(unique_inst - task_rows, extra_w / extra_w.sum())
    with open(out_dir / "pai_task_table.csv", "wb") as fh:
        for lo in range(0, task_rows, CHUNK_ROWS):
            hi = min(task_rows, lo + CHUNK_ROWS)
            n, st, cpu = hi - lo, t_status[lo:hi], cpu_task[lo:hi]
            start_col, end_col, _ = _pai_times(rng, n, t_start[lo:hi], st, end=t_end[lo:hi])
            plan_cpu = np.array([50, 100, 200, 400, 600, 800, 1200, 1600], float)[_pick(rng, n, [2, 5, 8, 20, 30, 15, 12, 8])]
            plan_mem = np.array([1.953125, 3.90625, 7.8125, 14.6484375, 29.296875, 39.0625, 58.59375, 100.0])[
                _pick(rng, n, [5, 8, 15, 20, 30, 12, 7, 3])]
            plan_gpu = np.array([25, 50, 100, 200, 400, 800], float)[_pick(rng, n, [5, 12, 65, 8, 5, 5])]
            gtype = _pick(rng, n, [20, 25, 25, 15, 15, 0])
            gtype[cpu | (rng.random(n) < 0.08)] = 5  # empty gpu_type
            write_rows(fh, [
                job_name[t_job[lo:hi]], roles[t_role[lo:hi]], floats(inst_num[lo:hi], 1), PAI_STATUS[st],
                start_col, end_col, floats(plan_cpu, 1), floats(plan_mem, 7), blank(floats(plan_gpu, 1), cpu),
                PAI_GPU_TYPES[gtype],
            ])

    # instances, task by task; duplicates are an earlier Failed copy right before the final row
    dup_at = np.sort(rng.choice(unique_inst, n_dup, replace=False))
    done = 0
    with open(out_dir / "pai_instance_table.csv", "wb") as fh:
        for a, b in _chunks_by_counts(inst_num, CHUNK_ROWS):
            task = np.repeat(np.arange(a, b), inst_num[a:b])
            n = len(task)
            local = dup_at[(dup_at >= done) & (dup_at < done + n)] - done
            done += n
            rep = np.ones(n, np.int64)
            rep[local] = 2
            row = np.repeat(np.arange(n), rep)  # unique-row index of every output row
            first_copy = np.zeros(len(row), bool)
            first_copy[(np.cumsum(rep) - rep)[local]] = True
            st = t_status[task].copy()
            st[(st == TERMINATED) & (rng.random(n) < 0.02)] = FAILED
            start = t_start[task] + np.rint(rng.exponential(5.0, n))
            end = np.maximum(start, np.minimum(start + np.rint(rng.lognormal(np.log(900.0), 1.8, n)), t_end[task]))
            start_col, end_col, _ = _pai_times(rng, n, start, st, end=end)
            machine = machines[rng.integers(0, len(machines), n)]
            machine = blank(machine, st == WAITING)
            st_out = st[row].copy()
            st_out[first_copy] = FAILED
            start_out, end_out = start_col[row].copy(), end_col[row].copy()
            earlier = np.maximum(start[row][first_copy] - 600.0, 1.0)
            start_out[first_copy] = 0
            end_out[first_copy] = 0
            start_out[first_copy, : floats(earlier, 1).shape[1]] = floats(earlier, 1)
            end_out[first_copy, : floats(earlier + 60.0, 1).shape[1]] = floats(earlier + 60.0, 1)
            inst_name = random_ids(rng, n, 60)[row]
            worker = random_ids(rng, n, 60)[row]
            job = t_job[task][row]
            write_rows(fh, [job_name[job], roles[t_role[task][row]], inst_name, worker, inst_id[job],
                            PAI_STATUS[st_out], start_out, end_out, machine[row]])
    files = {"pai_job_table.csv": n_jobs, "pai_task_table.csv": task_rows, "pai_instance_table.csv": inst_rows}
    params = {"rows": task_rows, "instance_rows": inst_rows, "job_rows": n_jobs, "duplicate_worker_rows": n_dup}
    manifest = _finish(out_dir, "alibaba_pai_2020", seed, params, files, t0)
    manifest["extra_files"] = ["pai_machine_spec.csv"] + [f"{t}.header" for t in PAI_HEADERS]
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------- Philly (FORMATS §5)

PHILLY_JOBS = 117_325
PHILLY_START = np.datetime64("2017-08-07T00:00:00", "s")
PHILLY_END = np.datetime64("2017-12-22T12:00:00", "s")


def _philly_machines(trace_dir: Path, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    src = shared_traces()
    real = src / "philly" / "cluster_machine_list" if src else None
    dest = trace_dir / "cluster_machine_list"
    if real is not None and real.is_file():
        shutil.copyfile(real, dest)
    else:
        lines = ["machineId, number of GPUs, single GPU mem"]
        lines += [f"m{i},{8 if i >= 321 else 2}, {24 if i >= 321 else 12}GB" for i in range(552)]
        dest.write_text("\r\n".join(lines) + "\r\n")
    two, eight = [], []
    for line in dest.read_text().splitlines()[1:]:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            (eight if int(parts[1]) >= 8 else two).append(parts[0])
    return two, eight


def _philly_vcs(rng: np.random.Generator) -> list[str]:
    src = shared_traces()
    vc_file = src / "philly" / "philly_vc.csv" if src else None
    vcs = []
    if vc_file is not None and vc_file.is_file():
        vcs = [line.split(",")[0] for line in vc_file.read_text().splitlines()[1:] if line.strip()]
    while len(vcs) < 15:
        vcs.append(random_ids(rng, 1, 6).tobytes().decode())
    return vcs[:15]


def philly(out_dir: Path, rows: int | None = None, seed: int = 0) -> dict:
    """``trace-data/cluster_job_log``: one JSON array (one line), written job by job.

    Keys status, vc, jobid, user, submitted_time, attempts[{start_time, end_time, detail[{ip, gpus}]}];
    ~4.5% of jobs with ``attempts: []``; 1-5 attempts otherwise; ``"None"`` start (~0.1% of attempts)
    and end (the last attempt of ~5.5% of jobs: still running); a few zero-length attempts; the GPU
    count occasionally changes between attempts. ``cluster_machine_list`` is the real one.
    """
    t0 = time.perf_counter()
    n = PHILLY_JOBS if rows is None else rows
    rng = np.random.default_rng([seed, 2017])
    trace_dir = out_dir / "trace-data"
    trace_dir.mkdir(parents=True, exist_ok=True)
    two_gpu, eight_gpu = _philly_machines(trace_dir, rng)
    vcs = _philly_vcs(rng)
    users = [u.tobytes().decode() for u in random_ids(rng, 320, 6)]
    span = int((PHILLY_END - PHILLY_START) / np.timedelta64(1, "s"))
    submit = np.sort(rng.integers(0, span, n))
    status = np.array(["Pass", "Killed", "Failed"])[_pick(rng, n, [0.62, 0.22, 0.16])]
    n_att = np.where(rng.random(n) < 0.0446, 0, 1 + _pick(rng, n, [0.87, 0.08, 0.03, 0.012, 0.008]))
    gpus = np.array([1, 2, 4, 8, 16, 32, 64])[_pick(rng, n, [0.70, 0.12, 0.09, 0.06, 0.02, 0.008, 0.002])]
    vc = _pick(rng, n, np.linspace(3, 1, 15))
    user = _pick(rng, n, 1.0 / np.arange(1, 321))
    running = rng.random(n) < 0.057
    # yarn-style ids: the resource manager restarted a few times; the sequence number grows
    rm_starts = np.sort(rng.integers(1_500_000_000_000, 1_510_000_000_000, 6))
    rm = np.minimum(submit * 6 // span, 5)
    seq = np.arange(n) + 1000
    queue = np.rint(rng.lognormal(np.log(60.0), 2.0, n))
    total_att = int(n_att.sum())
    run = np.clip(np.rint(rng.lognormal(np.log(1800.0), 2.0, total_att)), 0, 30 * 86400).astype(np.int64)
    run[rng.random(total_att) < 0.002] = 0  # non-positive durations exist upstream
    gap = np.rint(rng.lognormal(np.log(30.0), 1.5, total_att)).astype(np.int64)
    start_none = rng.random(total_att) < 0.0012
    regpu = rng.random(total_att) < 0.02
    offsets = rng.integers(0, 1 << 30, total_att)

    def fmt(t: int) -> str:
        return str(PHILLY_START + np.timedelta64(int(t), "s")).replace("T", " ")

    def detail(g: int, pick: int) -> list[dict]:
        if g <= 2:
            m = two_gpu[pick % len(two_gpu)] if g <= 2 and pick % 3 else eight_gpu[pick % len(eight_gpu)]
            first = (pick >> 8) % (2 if m in two_gpu else 8)
            first = min(first, (2 if m in two_gpu else 8) - g)
            return [{"ip": m, "gpus": [f"gpu{first + k}" for k in range(g)]}]
        if g < 8:
            first = ((pick >> 8) % (8 // g)) * g
            return [{"ip": eight_gpu[pick % len(eight_gpu)], "gpus": [f"gpu{first + k}" for k in range(g)]}]
        k = g // 8
        base = pick % len(eight_gpu)
        return [{"ip": eight_gpu[(base + j) % len(eight_gpu)], "gpus": [f"gpu{i}" for i in range(8)]} for j in range(k)]

    a = 0
    with open(trace_dir / "cluster_job_log", "w", encoding="utf-8") as fh:
        fh.write("[")
        for j in range(n):
            attempts = []
            t = int(submit[j] + queue[j])
            for i in range(n_att[j]):
                g = gpus[j] if not regpu[a] else max(1, gpus[j] // 2)
                end = t + int(run[a])
                last = i == n_att[j] - 1
                attempts.append({
                    "start_time": "None" if start_none[a] else fmt(t),
                    "end_time": "None" if (last and running[j]) else fmt(end),
                    "detail": detail(int(g), int(offsets[a])),
                })
                t = end + int(gap[a])
                a += 1
            job = {
                "status": str(status[j]),
                "vc": vcs[vc[j]],
                "jobid": f"application_{rm_starts[rm[j]]}_{seq[j]}",
                "user": users[user[j]],
                "submitted_time": fmt(int(submit[j])),
                "attempts": attempts,
            }
            fh.write((", " if j else "") + json.dumps(job))
        fh.write("]")
    return _finish(out_dir, "philly", seed, {"rows": n, "attempts": total_att},
                   {"trace-data/cluster_job_log": n}, t0)


# ---------------------------------------------------------------- Helios (FORMATS §6)

HELIOS_CLUSTERS = {"Venus": (246_708, 125_303), "Earth": (872_886, 427_148),
                   "Saturn": (1_753_078, 698_896), "Uranus": (490_309, 329_117)}
HELIOS_JOBS = sum(j for j, _ in HELIOS_CLUSTERS.values())  # 3,362,981
HELIOS_START = np.datetime64("2020-04-01T00:00:00", "s")
HELIOS_END = np.datetime64("2020-09-28T23:59:59", "s")
HELIOS_HEADER = b"job_id,user,vc,gpu_num,cpu_num,node_num,state,submit_time,start_time,end_time,duration,queue\n"
HELIOS_STATES = table_of(["COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "SUSPENDED"])


def _helios_vcs(cluster: str, dest: Path, rng: np.random.Generator, shared_vcs: list[str]) -> list[str]:
    """The cluster's VC names; copies the real capacity file (Venus, Earth) or writes one (Saturn, Uranus)."""
    src = shared_traces()
    real = src / "helios" / cluster / "cluster_gpu_number.csv" if src else None
    if real is not None and real.is_file():
        shutil.copyfile(real, dest / "cluster_gpu_number.csv")
        return real.read_text().splitlines()[0].split(",")[1:-1]
    names = shared_vcs[:3] + [("vc" + random_ids(rng, 1, 3, ALNUM).tobytes().decode()) for _ in range(25)]
    names = list(dict.fromkeys(names))[:25]
    days = np.arange(HELIOS_START.astype("datetime64[D]"), np.datetime64("2020-09-29"), dtype="datetime64[D]")
    caps = rng.integers(0, 12, size=(1, len(names))) * 8
    with open(dest / "cluster_gpu_number.csv", "w") as fh:
        fh.write(",".join(["date", *names, "total"]) + "\n")
        for d in days:
            row = caps[0] + (rng.random(len(names)) < 0.05) * 8
            fh.write(",".join([str(d), *map(str, row), str(int(row.sum()))]) + "\n")
    return names


def helios_2020(out_dir: Path, rows: int | None = None, seed: int = 0) -> dict:
    """``data/<Cluster>/cluster_log.csv`` for Venus, Earth, Saturn, Uranus (``rows`` = total jobs).

    Per-cluster job and GPU-job counts follow FORMATS §6.4 (scaled); ~53% CPU-only rows; job ids grow
    with submission; ~0.04% of submissions before 2020-04-01; ``duration = end - start`` and
    ``queue = start - submit``; one ``SUSPENDED`` row in Uranus.
    """
    t0 = time.perf_counter()
    total = HELIOS_JOBS if rows is None else rows
    rng = np.random.default_rng([seed, 2021])
    files: dict[str, int] = {}
    first_vcs: list[str] = []
    span = int((HELIOS_END - HELIOS_START) / np.timedelta64(1, "s"))
    for ci, (cluster, (jobs, gpu_jobs)) in enumerate(HELIOS_CLUSTERS.items()):
        n = round(jobs * total / HELIOS_JOBS) if rows is not None else jobs
        n_gpu = round(gpu_jobs * n / jobs)
        dest = out_dir / "data" / cluster
        dest.mkdir(parents=True, exist_ok=True)
        vcs = table_of(vc_names := _helios_vcs(cluster, dest, rng, first_vcs))
        first_vcs = first_vcs or vc_names
        users = random_ids(rng, [100, 200, 300, 150][ci], 4, ALNUM, prefix=b"u")
        early = rng.random(n) < 0.0004
        submit = np.sort(np.where(early, rng.integers(-3 * 86400, 0, n), rng.integers(0, span, n)))
        job_id = rng.integers(1000, 100_000) + np.cumsum(1 + (rng.random(n) < 0.1) * rng.integers(1, 5, n))
        is_gpu = np.zeros(n, bool)
        is_gpu[rng.choice(n, n_gpu, replace=False)] = True
        with open(dest / "cluster_log.csv", "wb") as fh:
            fh.write(HELIOS_HEADER)
            for lo in range(0, n, CHUNK_ROWS):
                hi = min(n, lo + CHUNK_ROWS)
                k, gpu = hi - lo, is_gpu[lo:hi]
                gpu_num = np.where(gpu, np.array([1, 2, 4, 8, 16, 32, 64])[_pick(rng, k, [55, 12, 12, 15, 4, 1.5, 0.5])], 0)
                cpu_num = np.where(gpu, gpu_num * np.array([4, 5, 6, 8])[_pick(rng, k, [3, 2, 3, 2])],
                                   np.array([1, 2, 4, 8, 16, 32, 64])[_pick(rng, k, [20, 15, 20, 20, 15, 7, 3])])
                node_num = np.where(gpu, np.maximum(1, (gpu_num + 7) // 8), 1 + (rng.random(k) < 0.02))
                state = _pick(rng, k, [64, 19, 16, 0.7, 0.3, 0])
                if cluster == "Uranus" and lo == 0:
                    state[k // 2] = 5  # SUSPENDED occurs once, in Uranus
                queue = np.where(rng.random(k) < 0.4, 0, np.clip(np.rint(rng.lognormal(np.log(30), 2.2, k)), 0, 5 * 86400))
                duration = np.clip(np.rint(rng.lognormal(np.log(300), 2.3, k)), 0, 14 * 86400)
                duration[rng.random(k) < 2e-5] = 14 * 86400 + rng.integers(1, 3600)
                duration[(state == 1) & (rng.random(k) < 0.15)] = 0
                sub = HELIOS_START + submit[lo:hi].astype("timedelta64[s]")
                start = sub + queue.astype(np.int64).astype("timedelta64[s]")
                end = start + duration.astype(np.int64).astype("timedelta64[s]")
                write_rows(fh, [
                    ints(job_id[lo:hi]), users[rng.integers(0, len(users), k)], vcs[rng.integers(0, len(vcs), k)],
                    ints(gpu_num), ints(cpu_num), ints(node_num), HELIOS_STATES[state],
                    datetimes(sub, "s"), datetimes(start, "s"), datetimes(end, "s"), ints(duration), ints(queue),
                ])
        files[f"data/{cluster}/cluster_log.csv"] = n
    return _finish(out_dir, "helios_2020", seed, {"rows": sum(files.values())}, files, t0)


# ---------------------------------------------------------------- CLI

GENERATORS: dict[str, tuple[Callable[..., dict], int]] = {
    "azure_llm_2024": (azure_llm_2024, AZURE_CONV_ROWS),
    "alibaba_pai_2020": (alibaba_pai_2020, PAI_TASK_ROWS),
    "philly": (philly, PHILLY_JOBS),
    "helios_2020": (helios_2020, HELIOS_JOBS),
}
"""family -> (generator, default primary row count: Azure rows, PAI task rows, Philly jobs, Helios jobs)."""


def generate(family: str, out_dir: str | Path, *, rows: int | None = None, scale: float = 1.0, seed: int = 0) -> dict:
    """Generate one family into ``out_dir``; ``rows`` overrides ``scale`` x the full-scale primary count."""
    fn, default = GENERATORS[family]
    if rows is None and scale != 1.0:
        rows = max(1, math.ceil(default * scale))
    return fn(Path(out_dir), rows=rows, seed=seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gen_upstream", description=__doc__.split("\n")[0])
    ap.add_argument("family", choices=sorted(GENERATORS))
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--rows", type=int, default=None,
                    help="primary row count (Azure rows, PAI task rows, Philly jobs, Helios total jobs)")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full-scale row counts (ignored with --rows)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    manifest = generate(args.family, args.outdir, rows=args.rows, scale=args.scale, seed=args.seed)
    json.dump(manifest, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
