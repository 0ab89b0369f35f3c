"""Many serving replays at once: a grid of configs run in a process pool, and a capacity search.

- :func:`expand_grid` turns a base :class:`~replay.harness.ServeConfig` and axes (``policy=[...]``,
  ``rate_scale=[...]``, ``num_replicas=[...]`` ...) into the list of configs, in a fixed order.
- :func:`sweep` runs a config list (one run folder each, as :func:`~replay.harness.run_serve` writes it),
  in a local process pool or as Ray tasks (``backend="ray"``, :mod:`ingest.ray_support`), and returns
  one row per config, in config order whatever order the runs finish in; the table goes to
  ``data/results/sweeps/<sweep id>.parquet`` and ``.json``, the sweep id being a hash of the config list.
- :func:`capacity_search` finds the highest rate scale whose SLO attainment still meets a target: the
  capacity figure Sarathi-Serve reports (the largest load a deployment sustains within its SLOs).

Workloads are read once per distinct workload spec, not once per run: a rate scale only divides the
arrival times (the window, sample and lengths do not depend on it), so every rate of one workload is
the same loaded arrays with ``arrival_s / rate_scale`` (bit-identical to loading at that rate).
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, fields, replace
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ingest.paths import data_paths
from replay import sinks
from replay.harness import ServeConfig, run_serve
from replay.serving.policies import QUEUE_POLICIES
from replay.sources import Workload, WorkloadSpec, load_workload

PARAM_COLUMNS: dict[str, pa.DataType] = {
    "trace": pa.string(), "rate_scale": pa.float64(), "seed": pa.int64(), "policy": pa.string(),
    "victim_policy": pa.string(), "router": pa.string(), "num_replicas": pa.int64(), "model": pa.string(),
    "gpu": pa.string(), "tensor_parallel": pa.int64(), "cost_model": pa.string(), "predictor": pa.string(),
    "oracle_lengths": pa.bool_(), "max_num_batched_tokens": pa.int64(), "max_num_seqs": pa.int64(),
    "block_size": pa.int64(), "num_kv_blocks": pa.int64(), "chunked_prefill": pa.bool_(), "kv_mode": pa.string(),
    "preemption_mode": pa.string(), "enable_prefix_caching": pa.bool_(), "slo_ttft_s": pa.float64(),
    "slo_tbt_s": pa.float64(),
}
"""Config parameters recorded in every sweep row (workload fields ``trace``, ``rate_scale``, ``seed``; the rest ServeConfig's)."""
FIGURE_COLUMNS: dict[str, pa.DataType] = {
    "num_arrived": pa.int64(), "num_finished": pa.int64(), "num_rejected": pa.int64(), "num_unfinished": pa.int64(),
    "num_preemptions": pa.int64(), "offered_requests_per_s": pa.float64(), "requests_per_s": pa.float64(),
    "output_tokens_per_s": pa.float64(), "goodput_requests_per_s": pa.float64(), "slo_attainment": pa.float64(),
    "ttft_p50_s": pa.float64(), "ttft_p99_s": pa.float64(), "tbt_p99_p50_s": pa.float64(), "tbt_p99_p99_s": pa.float64(),
    "tpot_p50_s": pa.float64(), "e2e_p50_s": pa.float64(), "e2e_p99_s": pa.float64(), "queue_p99_s": pa.float64(),
    "makespan_s": pa.float64(), "kv_utilization_mean": pa.float64(),
}
"""Summary figures in every sweep row (see replay.metrics.summarize), plus ``offered_requests_per_s``: arrivals / arrival span."""
SWEEP_SCHEMA = pa.schema([pa.field("run_id", pa.string(), nullable=False)]
                         + [pa.field(k, t) for k, t in {**PARAM_COLUMNS, **FIGURE_COLUMNS}.items()],
                         metadata={"tracelab.results_schema_version": sinks.RESULTS_SCHEMA_VERSION,
                                   "doc": "one replay of a sweep, in config order"})
"""Arrow schema of a sweep table (one row per config)."""
_WORKLOAD_FIELDS = {f.name for f in fields(WorkloadSpec)}
_CONFIG_FIELDS = {f.name for f in fields(ServeConfig)} - {"workload"}


# -- the grid ---------------------------------------------------------------------------------------

def expand_grid(base: ServeConfig, *, oracle: bool = False, **axes: Sequence) -> list[ServeConfig]:
    """Every combination of ``axes`` applied to ``base``, the last axis varying fastest.

    An axis is a ServeConfig field (``policy``, ``num_replicas``, ``chunked_prefill``, ``model`` ...) or a
    WorkloadSpec field (``rate_scale``, ``seed``, ``trace`` ...). A policy that orders by predicted length
    needs a predictor: when ``base.predictor`` is None that is an error, unless ``oracle=True``, which
    gives those policies (and only those) ``predictor='oracle', oracle_lengths=True``, recorded in their
    configs. No axes: ``[base]``.
    """
    unknown = sorted(set(axes) - _CONFIG_FIELDS - _WORKLOAD_FIELDS)
    if unknown:
        raise ValueError(f"unknown sweep axis {', '.join(unknown)}; axes are ServeConfig or WorkloadSpec fields: "
                         f"{', '.join(sorted(_CONFIG_FIELDS | _WORKLOAD_FIELDS))}")
    empty = [k for k, v in axes.items() if len(v) == 0]
    if empty:
        raise ValueError(f"sweep axis {', '.join(empty)} has no values")
    names = list(axes)
    configs = []
    for values in itertools.product(*(list(axes[k]) for k in names)):
        point = dict(zip(names, values))
        workload = replace(base.workload, **{k: v for k, v in point.items() if k in _WORKLOAD_FIELDS})
        changes = {k: v for k, v in point.items() if k in _CONFIG_FIELDS}
        policy = changes.get("policy", base.policy)
        predictor = changes.get("predictor", base.predictor)
        if QUEUE_POLICIES.create(policy).needs_predictions and predictor is None:
            if not oracle:
                raise ValueError(f"policy {policy!r} orders by predicted output length and the base config has no "
                                 "predictor: give one, or pass oracle=True (--oracle-lengths) to use the true lengths "
                                 "as predictions for the policies that need them (an oracle baseline)")
            changes.update(predictor="oracle", oracle_lengths=True)
        configs.append(replace(base, workload=workload, **changes))
    return configs


# -- running a config list ----------------------------------------------------------------------------

def sweep_id(configs: Sequence[ServeConfig]) -> str:
    """The sweep's id: a hash of the canonical config list (order matters: it is the row order)."""
    return sinks.run_id({"sweep": [asdict(c) for c in configs]})


def default_workers(num_runs: int) -> int:
    """CPUs this process may use, capped at the number of runs (at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, num_runs))


BACKENDS = ("local", "ray")
"""Where a sweep's runs execute: a local process pool, or Ray tasks (see :mod:`ingest.ray_support`)."""


def sweep(configs: Sequence[ServeConfig], *, workers: int | None = None, data_root: str | Path | None = None,
          on_result: Callable[[int, dict], None] | None = None, write_table: bool = True,
          backend: str = "local", ray_address: str | None = None,
          run_one: Callable[..., tuple[str, dict, float | None]] | None = None) -> list[dict]:
    """Run every config (each writes its own run folder) and return one row per config, in config order.

    ``backend="local"`` (default): ``workers`` processes (default: :func:`default_workers`) run the
    configs in a spawn-context process pool; ``workers=1`` runs them one after another in this process.
    ``backend="ray"``: each run is a Ray task (:func:`ingest.ray_support.stream_tasks`) on the cluster at
    ``ray_address`` (``"auto"``: the one this machine belongs to), or on the Ray this process is already
    connected to, or else on a local Ray started for this sweep with ``workers`` CPUs and shut down
    after it. A task whose worker dies is retried (a run that raises is not); outcomes are keyed by
    config index, so each counts once, and run folders are named by run id and written atomically, so
    a retry rewrites the same bytes: the rows, and the table's bytes, do not depend on the backend.
    ``run_one`` replaces the function that runs one config (``(config, unit workload, data root) ->
    (run id, summary, offered rate)``; default :func:`_run_one`), e.g. to inject faults in tests; it
    must be a module-level (picklable) function. Configs with the same run id run once.
    ``on_result(index, row)`` is called as each config's run completes (in completion order). A row holds ``run_id``, :data:`PARAM_COLUMNS` and :data:`FIGURE_COLUMNS`. Unless
    ``write_table`` is False the rows also go to ``<results>/sweeps/<sweep id>.parquet`` (schema
    :data:`SWEEP_SCHEMA`) and ``.json`` (sweep id, configs, rows), each written atomically.
    A failing run cancels the runs not yet started and its exception propagates.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("sweep needs at least one config")
    if backend not in BACKENDS:
        raise ValueError(f"unknown sweep backend {backend!r}; backends are {', '.join(BACKENDS)}")
    if ray_address is not None and backend != "ray":
        raise ValueError("ray_address is for backend='ray'")
    run_one = _run_one if run_one is None else run_one
    if backend == "ray":
        from ingest.ray_support import import_ray

        import_ray(ray_address)  # a missing Ray fails here, before any workload is read
    root = data_paths(data_root).root  # resolved here, once: $TRACELAB_DATA / ./data mean the same in every worker
    ids = [sinks.run_id(asdict(c)) for c in configs]
    first = {rid: i for i, rid in reversed(list(enumerate(ids)))}  # run id -> first config index with it
    workloads = {spec: load_workload(spec, root) for spec in dict.fromkeys(_unit_rate(c.workload) for c in configs)}
    tasks = {i: (configs[i], workloads[_unit_rate(configs[i].workload)], root) for i in sorted(first.values())}
    workers = default_workers(len(tasks)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    rows: list[dict | None] = [None] * len(configs)

    def done(i: int, outcome: tuple[str, dict, float | None]) -> None:
        for j, rid in enumerate(ids):
            if rid == ids[i]:
                rows[j] = _row(configs[j], *outcome)
                if on_result is not None:
                    on_result(j, rows[j])

    if backend == "ray":
        from ingest.ray_support import stream_tasks as run_tasks

        run_tasks(run_one, tasks, done, workers=workers, address=ray_address)
    elif workers == 1 or len(tasks) == 1:
        for i, args in tasks.items():
            done(i, run_one(*args))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(run_one, *args): i for i, args in tasks.items()}
            try:
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            except BaseException:  # a failed run or Ctrl-C: start nothing more
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    result = [r for r in rows if r is not None]
    if write_table:
        write_sweep(sinks.results_root(root) / "sweeps", sweep_id(configs), configs, result)
    return result


def write_sweep(folder: str | Path, sid: str, configs: Sequence[ServeConfig], rows: list[dict]) -> Path:
    """Write ``<folder>/<sid>.parquet`` and ``<folder>/<sid>.json`` (each atomically); returns the Parquet path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=SWEEP_SCHEMA)
    path = folder / f"{sid}.parquet"
    _atomic(path, lambda tmp: pq.write_table(table, tmp, **sinks.PARQUET_OPTIONS))
    text = sinks.canonical_json({"sweep_id": sid, "configs": [asdict(c) for c in configs], "rows": rows})
    _atomic(folder / f"{sid}.json", lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def offered_rate(workload: Workload) -> float | None:
    """Arrived requests per second of arrival span (None for fewer than two requests or a zero span)."""
    if len(workload) < 2:
        return None
    span_s = float(workload.arrival_s[-1] - workload.arrival_s[0])
    return len(workload) / span_s if span_s > 0 else None


def scaled(workload: Workload, rate_scale: float) -> Workload:
    """``workload`` (loaded at rate scale 1) at ``rate_scale``: the same requests, arrivals divided by it."""
    return workload if rate_scale == 1.0 else replace(workload, arrival_s=workload.arrival_s / rate_scale)


def _unit_rate(spec: WorkloadSpec) -> WorkloadSpec:
    return replace(spec, rate_scale=1.0)


def _run_one(config: ServeConfig, unit_workload: Workload, data_root: Path) -> tuple[str, dict, float | None]:
    """One run (a pool task; top level so a spawned worker can import it): (run id, summary, offered rate)."""
    workload = scaled(unit_workload, config.workload.rate_scale)
    result = run_serve(config, data_root=data_root, workload=workload)
    return result.run_id, result.summary, offered_rate(workload)


def _row(config: ServeConfig, rid: str, summary: dict, offered: float | None) -> dict:
    flat = {**asdict(config), **asdict(config.workload)}
    row: dict = {"run_id": rid}
    row.update({k: flat[k] for k in PARAM_COLUMNS})
    row.update({k: summary.get(k) for k in FIGURE_COLUMNS})
    row["offered_requests_per_s"] = offered
    return row


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- capacity ---------------------------------------------------------------------------------------

def bracket_and_bisect(passes: Callable[[float], bool], lo: float, hi: float, *, tol: float,
                       max_runs: int) -> tuple[float | None, float | None]:
    """(highest passing, lowest failing) rate scale found by at most ``max_runs`` calls of ``passes``.

    From ``lo``: if it passes, double ``hi`` until a failure; if not, halve ``lo`` until a pass; then
    bisect until the two are within ``tol`` (relative). None where no probe passed (or none failed).
    """
    runs = 0

    def probe(x: float) -> bool:
        nonlocal runs
        runs += 1
        return passes(x)

    good: float | None = None
    bad: float | None = None
    if probe(lo):
        good = lo
        while runs < max_runs:
            if not probe(hi):
                bad = hi
                break
            good, hi = hi, 2 * hi
    else:
        bad = lo
        while runs < max_runs:
            lo /= 2
            if probe(lo):
                good = lo
                break
            bad = lo
    while good is not None and bad is not None and bad - good > tol * good and runs < max_runs:
        mid = (good + bad) / 2
        if probe(mid):
            good = mid
        else:
            bad = mid
    return good, bad


def capacity_search(base: ServeConfig, *, min_attainment: float = 0.9, lo: float | None = None,
                    hi: float | None = None, tol: float = 0.05, max_runs: int = 12,
                    data_root: str | Path | None = None, write: bool = True,
                    on_probe: Callable[[dict], None] | None = None) -> dict:
    """The highest rate scale at which ``summary['slo_attainment'] >= min_attainment`` (SLOs from ``base``).

    Search: probe ``lo`` (default: the base's rate scale) and ``hi`` (default ``2 * lo``); while ``lo``
    fails, halve it; while ``hi`` passes, double it (bracketing); then bisect until
    ``hi - lo <= tol * lo`` (``tol`` is relative) or ``max_runs`` probes were spent. Each probe is a full
    run (written to its run folder unless ``write=False``); the workload is read once.

    What it assumes: that attainment falls as the rate grows, crossing the target once. That is
    usual but not guaranteed. Compressing arrivals changes which requests share a batch, so
    preemptions, prefix-cache hits and routing can make attainment wobble by a few requests between
    nearby rates; and on a finite trace, attainment flattens at high rates (the whole trace becomes one
    burst), so a small trace may pass at every rate. The answer is therefore a rate that passed with a
    failing probe within ``tol`` above it (a crossing), not necessarily the largest passing rate;
    ``probes`` holds every run so the curve can be checked.

    Returns ``max_rate_scale`` (None if no probe passed), ``requests_per_s`` (offered arrivals per
    second of arrival span at that scale), ``throughput_requests_per_s`` and ``goodput_requests_per_s``
    (the run's summary), ``slo_attainment`` and ``run_id`` of that run, ``failing_rate_scale`` (the
    lowest failing probe above it; None if none failed), ``converged`` (a crossing within ``tol`` was
    found), the targets, and ``probes`` in run order (rate_scale, slo_attainment, passed, run_id,
    offered/throughput/goodput requests/s).
    """
    if not 0 < min_attainment <= 1 or not tol > 0 or max_runs < 2:
        raise ValueError("need 0 < min_attainment <= 1, tol > 0 and max_runs >= 2")
    lo = base.workload.rate_scale if lo is None else lo
    hi = 2 * lo if hi is None else hi
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    root = data_paths(data_root).root
    unit = load_workload(_unit_rate(base.workload), root)
    probes: list[dict] = []

    def probe(rate_scale: float) -> bool:
        workload = scaled(unit, rate_scale)
        result = run_serve(base.with_rate_scale(rate_scale), data_root=root, workload=workload, write=write)
        attainment = result.summary["slo_attainment"]
        rec = {"rate_scale": rate_scale, "slo_attainment": attainment,
               "passed": attainment is not None and attainment >= min_attainment, "run_id": result.run_id,
               "requests_per_s": offered_rate(workload), "throughput_requests_per_s": result.summary["requests_per_s"],
               "goodput_requests_per_s": result.summary["goodput_requests_per_s"]}
        probes.append(rec)
        if on_probe is not None:
            on_probe(rec)
        return rec["passed"]

    good, bad = bracket_and_bisect(probe, lo, hi, tol=tol, max_runs=max_runs)
    best = next((p for p in probes if p["rate_scale"] == good), None)
    return {
        "max_rate_scale": good,
        "requests_per_s": best["requests_per_s"] if best else None,
        "throughput_requests_per_s": best["throughput_requests_per_s"] if best else None,
        "goodput_requests_per_s": best["goodput_requests_per_s"] if best else None,
        "slo_attainment": best["slo_attainment"] if best else None,
        "run_id": best["run_id"] if best else None,
        "failing_rate_scale": bad,
        "converged": good is not None and bad is not None and bad - good <= tol * good,
        "min_attainment": min_attainment, "slo_ttft_s": base.slo_ttft_s, "slo_tbt_s": base.slo_tbt_s, "tol": tol,
        "probes": probes,
    }
