"""Run Microsoft's Vidur LLM-serving simulator on a given workload, from outside.

Vidur is a *reference point* for benchmarks, never a dependency of tracelab: it lives in
its own virtual environment (``bench-out/vidur-venv``, git-ignored, Python 3.11) and is
driven through a subprocess. This module uses the standard library and numpy only, so it
runs from the project's own environment.

What is installed: PyPI ``vidur==0.0.26`` (authors "Systems for AI Lab, Georgia Tech;
Microsoft Corporation", MIT). That release is newer than the pure-Python code on
microsoft/vidur's main branch: it has a C++ extension (``vidur._native``), Mnemosyne
schedulers, and it no longer ships profiling CSVs. Its random-forest execution-time
predictor fetches them from Hugging Face datasets (``project-vajra/...``) through
``huggingface_hub.snapshot_download``, which cannot be reached here. ``prepare_profiles``
therefore lays our offline profiles out as a local Hugging Face cache snapshot and the
subprocess runs with ``HF_HUB_OFFLINE=1``, so Vidur's own loading code reads them unchanged:

* ``/work/shared/profiles/vidur_h100_llama2_7b_mlp.csv`` -- Vidur's published H100
  Llama-2-7B operator profile (non-attention operators);
* ``/work/shared/profiles/h100_llama2_7b_attention_torchsdpa.csv`` -- attention measured for
  this project in Vidur's column layout (block size 16).

Vidur's torch dependency is only for its GPU profilers; simulation never imports torch, so
no torch (and no ``nvidia-*`` package) is installed.

Timing: ``run_vidur`` reports the subprocess wall time (what ``python -m vidur.main``
costs) and a breakdown measured inside the subprocess (import, setup incl. predictor
loading, event loop, output writing). Vidur trains its random forests once per predictor
configuration and caches them under ``cache_dir``; with ``pretrain=True`` (default) that
one-off training is done by a separate 1-request run and reported as
``predictor_training_s``, so ``wall_s`` of the real run is the steady state. ``rf_grid``:
``"small"`` (default) fits one of Vidur's grid points (250 trees, depth 16, min split 2;
~1.5 min one-off on 2 cores); ``"vidur"`` runs Vidur's full 27-point grid search with
10-fold CV (measured 35 min one-off on 2 busy cores). The simulation itself only looks up the
predictions, so the grid changes predicted step times slightly, not the simulator's speed.

Usage::

    python benchmarks/vidur_runner.py 1000 --scheduler vllm
    python benchmarks/vidur_runner.py 0 --scheduler sarathi --chunk-size 512   # 0 = whole trace
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VIDUR_VERSION = "0.0.26"
DEFAULT_VENV = REPO / "bench-out" / "vidur-venv"
DEFAULT_WORK = REPO / "bench-out" / "vidur-work"
DEFAULT_PROFILES = Path(os.environ.get("TRACELAB_PROFILES_DIR", "/work/shared/profiles"))
MLP_PROFILE = "vidur_h100_llama2_7b_mlp.csv"
ATTN_PROFILE = "h100_llama2_7b_attention_torchsdpa.csv"
DEFAULT_TRACE = Path("/work/shared/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv")

MODEL = "meta-llama/Llama-2-7b-hf"
DEVICE = "h100"
NETWORK_DEVICE = "h100_dgx"
# names under which the local profile snapshots are exposed to Vidur (never fetched)
COMPUTE_DATASET = "tracelab-local/h100-llama-2-7b-hf"
NETWORK_DATASET = "tracelab-local/h100-dgx"
TRACE_DATE = "2023-11-16"  # Vidur's trace_replay keeps only rows whose Date equals --..._date

# Vidur's default random-forest grid (27 combinations x 10-fold CV, per operator model)
RF_GRID_VIDUR = {"num_estimators": [250, 500, 750], "max_depth": [8, 16, 32], "min_samples_split": [2, 5, 10]}
RF_GRID_SMALL = {"num_estimators": [250], "max_depth": [16], "min_samples_split": [2]}

# Runs inside the Vidur venv: the same steps as `python -m vidur.main`, with timers around
# them and (optionally) a copy of every inter-token gap Vidur itself records.
_WRAPPER = r"""
import json, sys, time
t0 = time.perf_counter()
from vidur.config import SimulationConfig
from vidur.simulator import Simulator
from vidur.utils.random import set_seeds
import vidur
t1 = time.perf_counter()
gaps_path = sys.argv.pop(1)
timings_path = sys.argv.pop(1)
config = SimulationConfig.create_from_cli_args()
set_seeds(config.seed)
sim = Simulator(config)
t2 = time.perf_counter()
gaps = []
if gaps_path != "-":
    from vidur.metrics.constants import TokenMetricsTimeDistribution as T
    sk = sim.metric_store._token_metrics_time_distribution[T.DECODE_TOKEN_EXECUTION_PLUS_PREMPTION_TIME]
    _put = sk.put
    def put(x, _put=_put, _app=gaps.append):
        _app(x)
        _put(x)
    sk.put = put
write_output = sim._write_output
sim._write_output = lambda: None
sim.run()
t3 = time.perf_counter()
write_output()
t4 = time.perf_counter()
if gaps_path != "-":
    import numpy as np
    np.save(gaps_path, np.asarray(gaps, dtype=np.float64))
with open(timings_path, "w") as f:
    json.dump({"import_s": t1 - t0, "setup_s": t2 - t1, "simulate_s": t3 - t2,
               "write_s": t4 - t3, "sim_end_time_s": sim._time,
               "output_dir": config.metrics_config.output_dir,
               "vidur_version": getattr(vidur, "__version__", None)}, f)
"""


class VidurUnavailable(RuntimeError):
    """Vidur's venv could not be created or is unusable."""


def _log(msg: str) -> None:
    print(f"[vidur_runner] {msg}", file=sys.stderr, flush=True)


def _venv_python(path: Path) -> Path:
    return Path(path) / "bin" / "python"


def _vidur_version(python: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m, vidur.main; print(m.version('vidur'))"],
            capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_vidur_venv(path: str | Path = DEFAULT_VENV, *, python: str = "python3.11",
                      version: str = VIDUR_VERSION) -> Path:
    """Make sure ``path`` is a venv with ``vidur==version`` importable; return its python.

    Idempotent: an existing working venv is left alone. Creates the venv with ``python``
    and installs vidur (and its pure-Python dependencies) from the package registry; torch
    is not installed (Vidur imports it only in its GPU profilers). Raises VidurUnavailable
    with the reason when that is impossible (no python3.11, no network, ...).
    """
    path = Path(path)
    py = _venv_python(path)
    if py.exists():
        have = _vidur_version(py)
        if have == version:
            _log(f"vidur {have} already usable in {path}")
            return py
        _log(f"{path} exists but vidur {version} is not importable there (found {have!r}); installing")
    else:
        exe = shutil.which(python)
        if exe is None:
            raise VidurUnavailable(f"{python} not found: Vidur needs Python 3.10-3.12 for its native wheel")
        _log(f"creating venv {path} with {exe}")
        r = subprocess.run([exe, "-m", "venv", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            raise VidurUnavailable(f"could not create venv {path}: {r.stderr.strip()[-2000:]}")
    _log(f"pip install vidur=={version} into {path} (a few minutes; needs the package registry)")
    r = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", f"vidur=={version}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise VidurUnavailable(
            f"pip install vidur=={version} failed (no network to the package registry?):\n{r.stderr.strip()[-3000:]}")
    lst = subprocess.run([str(py), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    nvidia = [ln for ln in lst.splitlines() if ln.lower().startswith("nvidia")]
    if nvidia:
        _log(f"WARNING: CUDA packages were pulled into {path}: {nvidia}")
    have = _vidur_version(py)
    if have != version:
        raise VidurUnavailable(f"vidur installed into {path} but `import vidur.main` fails")
    _log(f"vidur {have} ready in {path}")
    return py


# --------------------------------------------------------------------------- workload
def write_vidur_trace(path: str | Path, arrival_s, prompt_tokens, output_tokens, *,
                      date: str = TRACE_DATE) -> Path:
    """Write a trace in the format of Vidur's ``trace_replay`` request generator.

    Columns: ``Date`` (all rows ``date``; Vidur keeps rows equal to its ``--..._date``),
    ``Time`` (arrival, seconds), ``PromptTokenCount``, ``CompletionTokenCount``. Row order
    is kept; Vidur numbers requests 0..n-1 in that order ("Request Id" in its output).
    Vidur itself then clips each request to ``max_tokens`` in total by shortening the
    prompt (see ``run_vidur``).
    """
    a = np.asarray(arrival_s, dtype=np.float64)
    p = np.asarray(prompt_tokens, dtype=np.int64)
    o = np.asarray(output_tokens, dtype=np.int64)
    if not (a.shape == p.shape == o.shape and a.ndim == 1):
        raise ValueError("arrival_s, prompt_tokens and output_tokens must be 1-D and of equal length")
    if len(a) == 0:
        raise ValueError("empty workload")
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise ValueError("arrival times must be finite and >= 0")
    if p.min() < 1 or o.min() < 1:
        raise ValueError("prompt and output token counts must be >= 1")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Date", "Time", "PromptTokenCount", "CompletionTokenCount"])
        for t, pi, oi in zip(a.tolist(), p.tolist(), o.tolist()):
            w.writerow([date, repr(t), pi, oi])
    return path


def load_azure_conv(path: str | Path = DEFAULT_TRACE, n: int | None = None):
    """First ``n`` rows (all if n is falsy) of an Azure LLM 2023 trace as numpy arrays."""
    ts, ctx, gen = [], [], []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if n and i >= n:
                break
            ts.append(row["TIMESTAMP"])
            ctx.append(int(row["ContextTokens"]))
            gen.append(int(row["GeneratedTokens"]))

    def parse(s: str) -> float:  # '2023-11-16 18:15:46.6805900' (7 fractional digits)
        base, _, frac = s.partition(".")
        return _dt.datetime.fromisoformat(base).timestamp() + (float("0." + frac) if frac else 0.0)

    t = np.array([parse(s) for s in ts], dtype=np.float64)
    return t - t[0], np.array(ctx, dtype=np.int64), np.array(gen, dtype=np.int64)


# --------------------------------------------------------------------------- profiles
def _file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _write_snapshot(hf_cache: Path, repo_id: str, commit: str, files: dict) -> None:
    """Lay files out as huggingface_hub's cache for dataset ``repo_id`` at ``commit``."""
    org, name = repo_id.split("/")
    root = hf_cache / f"datasets--{org}--{name}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        target = snap / fname
        if fname.endswith(".xz"):
            with lzma.open(target, "wb") as f:
                f.write(content)
        else:
            target.write_bytes(content)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)  # read back verbatim: no newline


def prepare_profiles(cache_dir: Path, profiles_dir: Path = DEFAULT_PROFILES) -> None:
    """Expose the offline profiles to Vidur as cached HF dataset snapshots in ``cache_dir``.

    Vidur reads ``{cache_dir}/profiling_data/compute/`` (mlp.csv.xz, attention.csv.xz,
    config.json with model and device) and ``{cache_dir}/profiling_data/network/``
    (all_reduce/send_recv, only read for TP>1 / PP>1, so header-only files here).
    """
    mlp, attn = Path(profiles_dir) / MLP_PROFILE, Path(profiles_dir) / ATTN_PROFILE
    for p in (mlp, attn):
        if not p.exists():
            raise FileNotFoundError(f"profile {p} missing (see /work/shared/profiles/README.md)")
    commit = _file_digest(mlp, attn)[:40]
    marker = cache_dir / "profiling_data" / "compute" / f".tracelab-{commit}"
    if marker.exists():
        return
    _write_snapshot(cache_dir / "profiling_data" / "compute", COMPUTE_DATASET, commit, {
        "config.json": json.dumps({"model": MODEL, "device_sku": DEVICE,
                                   "source": [str(mlp), str(attn)]}).encode(),
        "mlp.csv.xz": mlp.read_bytes(),
        "attention.csv.xz": attn.read_bytes(),
    })
    net_header = b"collective,num_workers,devices_per_node,size,time_stats.all_reduce.median,time_stats.send_recv.median\n"
    _write_snapshot(cache_dir / "profiling_data" / "network", NETWORK_DATASET, "0" * 40, {
        "config.json": json.dumps({"sku": NETWORK_DEVICE}).encode(),
        "all_reduce.csv.xz": net_header,
        "send_recv.csv.xz": net_header,
    })
    marker.touch()


# --------------------------------------------------------------------------- running
def _vidur_args(*, trace_csv: Path, date: str, scheduler: str, chunk_size: int, max_batch_tokens: int,
                max_num_seqs: int, block_size: int, max_tokens: int, out_dir: Path, cache_dir: Path,
                pred_max_batch: int, pred_max_tokens: int, kv_granularity: int, rf_grid: dict,
                token_metrics: bool, seed: int, extra_args) -> list[str]:
    rf = "--random_forrest_execution_time_predictor_config_"
    args = [
        "--seed", str(seed),
        "--log_level", "warning",
        "--cluster_config_num_replicas", "1",
        "--replica_config_model_name", MODEL,
        "--replica_config_device", DEVICE,
        "--replica_config_network_device", NETWORK_DEVICE,
        "--replica_config_tensor_parallel_size", "1",
        "--replica_config_num_pipeline_stages", "1",
        "--cache_config_block_size", str(block_size),
        "--global_scheduler_config_type", "round_robin",
        "--replica_scheduler_config_type", scheduler,
        "--request_generator_config_type", "trace_replay",
        "--trace_request_generator_config_trace_file", str(trace_csv),
        "--trace_request_generator_config_date", date,
        "--trace_request_generator_config_max_tokens", str(max_tokens),
        "--trace_request_generator_config_prefill_scale_factor", "1",
        "--trace_request_generator_config_decode_scale_factor", "1",
        "--trace_request_generator_config_time_scale_factor", "1",
        "--execution_time_predictor_config_type", "random_forrest",
        rf + "model_profiling_dataset", COMPUTE_DATASET,
        rf + "network_profiling_dataset", NETWORK_DATASET,
        rf + "cache_dir", str(cache_dir),
        rf + "prediction_max_tokens_per_request", str(pred_max_tokens),
        rf + "prediction_max_batch_size", str(pred_max_batch),
        rf + "prediction_max_prefill_chunk_size", str(pred_max_tokens),
        rf + "kv_cache_prediction_granularity", str(kv_granularity),
        rf + "num_estimators", *map(str, rf_grid["num_estimators"]),
        rf + "max_depth", *map(str, rf_grid["max_depth"]),
        rf + "min_samples_split", *map(str, rf_grid["min_samples_split"]),
        "--metrics_config_output_dir", str(out_dir),
        "--no-metrics_config_store_plots",
        "--no-metrics_config_enable_chrome_trace",
        "--no-metrics_config_write_json_trace",
        "--no-metrics_config_save_table_to_wandb",
        "--metrics_config_store_request_metrics",
        ("--" if token_metrics else "--no-") + "metrics_config_store_token_completion_metrics",
    ]
    if scheduler == "vllm":
        args += ["--vllm_scheduler_config_batch_size_cap", str(max_num_seqs),
                 "--vllm_scheduler_config_max_tokens_in_batch", str(max_batch_tokens)]
    elif scheduler == "sarathi":
        args += ["--sarathi_scheduler_config_batch_size_cap", str(max_num_seqs),
                 "--sarathi_scheduler_config_chunk_size", str(chunk_size)]
    elif scheduler == "orca":
        args += ["--orca_scheduler_config_batch_size_cap", str(max_num_seqs)]
    else:
        raise ValueError(f"unsupported scheduler {scheduler!r} (vllm, sarathi, orca)")
    return args + list(extra_args or [])


def _env() -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_MODE": "disabled",
                "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
    env.pop("PYTHONPATH", None)
    return env


def _invoke(python: Path, args: list[str], work: Path, gaps_path: str, timeout: float | None):
    timings_path = work / "timings.json"
    log_path = work / "vidur.log"
    cmd = [str(python), "-c", _WRAPPER, gaps_path, str(timings_path), *args]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=_env(), timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"Vidur exited {r.returncode}; log {log_path}:\n{tail}")
    return wall, json.loads(timings_path.read_text()), log_path


def _read_request_metrics(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: int(float(r["Request Id"])))
    col = lambda name: np.array([float(r[name]) if r[name] != "" else np.nan for r in rows])  # noqa: E731
    return {
        "request_id": col("Request Id").astype(np.int64),
        "e2e_s": col("request_e2e_time"),
        "ttft_s": col("prefill_e2e_time"),
        "scheduling_delay_s": col("request_scheduling_delay"),
        "prompt_tokens": col("request_num_prefill_tokens").astype(np.int64),
        "output_tokens": col("request_num_decode_tokens").astype(np.int64),
        "num_restarts": col("request_num_restarts").astype(np.int64),
        "columns": list(rows[0].keys()) if rows else [],
    }


def run_vidur(trace_csv, *, scheduler: str, chunk_size: int, max_batch_tokens: int, max_num_seqs: int,
              block_size: int = 16, out_dir, vidur_python=None, max_tokens: int = 4096,
              cache_dir=None, profiles_dir=DEFAULT_PROFILES, kv_granularity: int = 256,
              rf_grid: str | dict = "small", token_metrics: bool = True, pretrain: bool = True,
              seed: int = 42, timeout: float | None = None, extra_args=()) -> dict:
    """Simulate ``trace_csv`` (see ``write_vidur_trace``) with Vidur: one H100 replica of
    Llama-2-7B, TP1/PP1, random-forest execution-time predictor on the offline profiles.

    Returns a dict:
      wall_s               subprocess wall time of the simulation run (steady state: cached predictor)
      predictor_training_s one-off training of Vidur's random forests for this predictor config, done
                           by a separate 1-request run (None when they were already cached)
      phases               inside the subprocess: import_s, setup_s (config, predictor cache load,
                           trace load), simulate_s (event loop), write_s (metrics files)
      ttft_s, e2e_s        per request, in trace order (Vidur's prefill_e2e_time / request_e2e_time)
      tbt_s                every inter-token gap Vidur records (decode tokens 2..n of each request:
                           completion of token k minus completion of token k-1), flat, in
                           completion-event order -- not per request; empty if token_metrics=False
      tbt_mean_per_request_s  per request (e2e - ttft) / (output_tokens - 1); nan where output_tokens == 1
      prompt_tokens, output_tokens  as Vidur used them (prompt clipped so prompt + output <= max_tokens)
      num_requests, num_prompts_clipped, num_restarts, sim_end_time_s, vidur_version, config, out_dir
    """
    trace_csv = Path(trace_csv).resolve()
    out_dir = Path(out_dir).resolve()
    python = Path(vidur_python) if vidur_python else _venv_python(DEFAULT_VENV)
    if not python.exists():
        raise VidurUnavailable(f"{python} missing: call ensure_vidur_venv() first")
    grid = {"vidur": RF_GRID_VIDUR, "small": RF_GRID_SMALL}[rf_grid] if isinstance(rf_grid, str) else dict(rf_grid)
    pred_max_batch = max(256, max_num_seqs)
    pred_max_tokens = max(4096, max_tokens, max_batch_tokens, chunk_size)
    key_src = json.dumps({"grid": grid, "kv": kv_granularity, "block": block_size, "b": pred_max_batch,
                          "t": pred_max_tokens, "profiles": _file_digest(Path(profiles_dir) / MLP_PROFILE,
                                                                         Path(profiles_dir) / ATTN_PROFILE)},
                         sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    # one cache dir per predictor configuration: Vidur's own cache key ignores the RF grid and
    # the kv granularity, so a shared dir could silently serve stale models/predictions
    cache_dir = Path(cache_dir).resolve() if cache_dir else (DEFAULT_WORK / "predictor-cache" / key)
    cache_dir.mkdir(parents=True, exist_ok=True)
    prepare_profiles(cache_dir, Path(profiles_dir))

    with open(trace_csv, newline="") as f:
        first = next(csv.DictReader(f), None)
    if first is None:
        raise ValueError(f"{trace_csv} has no requests")
    date = first["Date"]

    common = dict(date=date, scheduler=scheduler, chunk_size=chunk_size, max_batch_tokens=max_batch_tokens,
                  max_num_seqs=max_num_seqs, block_size=block_size, max_tokens=max_tokens, cache_dir=cache_dir,
                  pred_max_batch=pred_max_batch, pred_max_tokens=pred_max_tokens, kv_granularity=kv_granularity,
                  rf_grid=grid, seed=seed, extra_args=extra_args)
    out_dir.mkdir(parents=True, exist_ok=True)

    training_s = None
    trained_marker = cache_dir / ".tracelab-trained"
    if pretrain and not trained_marker.exists():
        warm = out_dir / "pretrain"
        warm.mkdir(parents=True, exist_ok=True)
        warm_trace = write_vidur_trace(warm / "trace.csv", [0.0], [16], [2], date=date)
        _log(f"training Vidur's random forests once for predictor config {key} (cache {cache_dir}) ...")
        training_s, _, _ = _invoke(python, _vidur_args(trace_csv=warm_trace, out_dir=warm / "out",
                                                       token_metrics=False, **common), warm, "-", timeout)
        trained_marker.write_text(json.dumps({"training_wall_s": training_s, "key": json.loads(key_src)}))
        _log(f"predictor training took {training_s:.1f}s")

    gaps_path = out_dir / "tbt_gaps.npy"
    args = _vidur_args(trace_csv=trace_csv, out_dir=out_dir / "vidur_output", token_metrics=token_metrics, **common)
    wall, phases, log_path = _invoke(python, args, out_dir, str(gaps_path) if token_metrics else "-", timeout)
    log_text = log_path.read_text(errors="replace")
    if training_s is None and "Trained model" in log_text:
        _log("note: Vidur trained its predictor inside this run (no pretrain); wall_s includes it")
    vout = Path(phases["output_dir"])
    m = _read_request_metrics(vout / "request_metrics.csv")
    tbt = np.load(gaps_path) if token_metrics else np.array([], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_req = np.where(m["output_tokens"] > 1, (m["e2e_s"] - m["ttft_s"]) / (m["output_tokens"] - 1), np.nan)
    with open(trace_csv, newline="") as f:
        raw = [(int(r["PromptTokenCount"]), int(r["CompletionTokenCount"]))
               for r in csv.DictReader(f) if r["Date"] == date]
    n_clipped = int(sum(1 for p, o in raw if p + o > max_tokens))

    return {
        "wall_s": wall,
        "predictor_training_s": training_s,
        "phases": {k: phases[k] for k in ("import_s", "setup_s", "simulate_s", "write_s")},
        "ttft_s": m["ttft_s"],
        "tbt_s": tbt,
        "tbt_mean_per_request_s": per_req,
        "e2e_s": m["e2e_s"],
        "scheduling_delay_s": m["scheduling_delay_s"],
        "prompt_tokens": m["prompt_tokens"],
        "output_tokens": m["output_tokens"],
        "num_requests": int(len(m["e2e_s"])),
        "num_prompts_clipped": n_clipped,
        "num_restarts": int(m["num_restarts"].sum()),
        "sim_end_time_s": phases["sim_end_time_s"],
        "vidur_version": phases.get("vidur_version") or VIDUR_VERSION,
        "out_dir": str(vout),
        "config": {
            "model": MODEL, "device": DEVICE, "tensor_parallel": 1, "pipeline_stages": 1, "replicas": 1,
            "scheduler": scheduler,
            "chunk_size": chunk_size if scheduler == "sarathi" else None,
            "max_batch_tokens": max_batch_tokens if scheduler == "vllm" else None,
            "token_budget_note": ("vllm: prefill-only batches capped at max_batch_tokens" if scheduler == "vllm"
                                  else "sarathi: chunk_size is the per-step token budget; max_batch_tokens unused"),
            "max_num_seqs": max_num_seqs, "block_size": block_size, "max_tokens_per_request": max_tokens,
            "watermark_blocks_fraction": 0.01, "memory_margin_fraction": 0.1,
            "predictor": "random_forrest", "rf_grid": grid, "kv_cache_prediction_granularity": kv_granularity,
            "prediction_max_batch_size": pred_max_batch, "prediction_max_tokens": pred_max_tokens,
            "profiles": [str(Path(profiles_dir) / MLP_PROFILE), str(Path(profiles_dir) / ATTN_PROFILE)],
            "predictor_cache": str(cache_dir), "token_metrics": token_metrics, "seed": seed,
        },
    }


def _pct(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {}
    q = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
            "max": float(x.max()), "n": int(len(x))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run Vidur on the first N requests of an Azure LLM 2023 trace")
    ap.add_argument("n", type=int, nargs="?", default=1000, help="number of requests (0 = all)")
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--scheduler", default="vllm", choices=["vllm", "sarathi", "orca"])
    ap.add_argument("--chunk-size", type=int, default=512)
    ap.add_argument("--max-batch-tokens", type=int, default=4096)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=4096, help="Vidur's per-request token cap (prompt clipped)")
    ap.add_argument("--rf-grid", default="small", choices=["vidur", "small"],
                    help="random-forest grid: 'small' (1 setting, ~1.5 min one-off) or Vidur's default "
                         "27-setting grid search (~35 min one-off on 2 cores); predictions differ by ~1%%")
    ap.add_argument("--kv-granularity", type=int, default=256)
    ap.add_argument("--no-token-metrics", action="store_true")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--venv", default=str(DEFAULT_VENV))
    ap.add_argument("--ensure-venv", action="store_true", help="create/install the Vidur venv if missing")
    a = ap.parse_args(argv)

    py = ensure_vidur_venv(a.venv) if a.ensure_venv else _venv_python(Path(a.venv))
    arrival, prompt, output = load_azure_conv(a.trace, a.n or None)
    out_dir = Path(a.out_dir) if a.out_dir else (
        DEFAULT_WORK / "runs" / f"{Path(a.trace).stem}_{len(arrival)}_{a.scheduler}_{int(time.time())}")
    trace_csv = write_vidur_trace(out_dir / "vidur_trace.csv", arrival, prompt, output)
    r = run_vidur(trace_csv, scheduler=a.scheduler, chunk_size=a.chunk_size, max_batch_tokens=a.max_batch_tokens,
                  max_num_seqs=a.max_num_seqs, block_size=a.block_size, out_dir=out_dir, vidur_python=py,
                  max_tokens=a.max_tokens, rf_grid=a.rf_grid, kv_granularity=a.kv_granularity,
                  token_metrics=not a.no_token_metrics)
    print(json.dumps({
        "tool": "vidur", "trace": a.trace, "num_requests": r["num_requests"], "scheduler": a.scheduler,
        "wall_s": round(r["wall_s"], 3), "predictor_training_s": r["predictor_training_s"],
        "phases": {k: round(v, 3) for k, v in r["phases"].items()},
        "sim_end_time_s": r["sim_end_time_s"], "num_prompts_clipped": r["num_prompts_clipped"],
        "num_restarts": r["num_restarts"],
        "ttft_s": _pct(r["ttft_s"]), "tbt_s": _pct(r["tbt_s"]),
        "tbt_mean_per_request_s": _pct(r["tbt_mean_per_request_s"]), "e2e_s": _pct(r["e2e_s"]),
        "vidur_version": r["vidur_version"], "config": r["config"], "out_dir": r["out_dir"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
