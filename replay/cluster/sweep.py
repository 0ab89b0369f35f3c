"""Cluster sweeps: policies x placements (x any ClusterConfig field) in a local process pool.

Each config writes its own run folder (``<results>/cluster/<run id>/``); the sweep's rows (run id, the
varied fields and the headline figures) go to ``<results>/cluster/sweeps/<sweep id>.json``, written
atomically. The workload is read once per distinct (trace, window) in the parent and shipped to the
workers, as in ``replay.sweep``.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, fields, replace
from multiprocessing import get_context
from pathlib import Path

from ingest.paths import data_paths
from replay import sinks
from replay.cluster.harness import RESULTS_SUBDIR, ClusterConfig, load_workload, run_cluster
from replay.cluster.jobs import JobWorkload
from replay.cluster.policies import POLICIES
from replay.sweep import default_workers

FIGURES = ("num_finished", "num_rejected", "num_preemptions", "jct_mean_s", "jct_p99_s", "jct_mean_over_vcs_s",
           "queue_mean_s", "slowdown_mean", "utilization_mean")
"""Summary figures copied into every sweep row."""
_FIELDS = {f.name for f in fields(ClusterConfig)}


def expand(base: ClusterConfig, *, oracle: bool = False, **axes: Sequence) -> list[ClusterConfig]:
    """Every combination of ``axes`` (ClusterConfig fields) applied to ``base``, the last axis fastest.

    A policy that needs predicted durations gets ``base.predictor``; when that is None, ``oracle=True``
    gives those policies (and only those) the true durations, recorded in their configs; otherwise
    such a policy is an error.
    """
    unknown = sorted(set(axes) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown sweep axis {', '.join(unknown)}; axes are ClusterConfig fields: {', '.join(sorted(_FIELDS))}")
    if any(len(v) == 0 for v in axes.values()):
        raise ValueError("every sweep axis needs at least one value")
    names = list(axes)
    out = []
    for values in itertools.product(*(list(axes[k]) for k in names)):
        point = dict(zip(names, values))
        policy, predictor = point.get("policy", base.policy), point.get("predictor", base.predictor)
        if POLICIES.create(policy).needs_predictions and predictor is None:
            if not oracle:
                raise ValueError(f"policy {policy!r} needs predicted durations: give a predictor, "
                                 "or --oracle for the oracle baseline (true durations)")
            point.update(predictor="oracle", oracle=True)
        out.append(replace(base, **point))
    return out


def sweep_id(configs: Sequence[ClusterConfig]) -> str:
    """A hash of the canonical config list (order matters: it is the row order)."""
    return sinks.run_id({"cluster_sweep": [asdict(c) for c in configs]})


def sweep(configs: Sequence[ClusterConfig], *, workers: int | None = None, data_root: str | Path | None = None,
          on_result: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Run every config (spawned process pool; ``workers=1``: in this process) and return one row per config."""
    configs = list(configs)
    if not configs:
        raise ValueError("sweep needs at least one config")
    root = data_paths(data_root).root
    loads = {_load_key(c): load_workload(c, root) for c in configs}
    workers = default_workers(len(configs)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    rows: list[dict | None] = [None] * len(configs)

    def done(i: int, summary_and_id: tuple[str, dict]) -> None:
        rows[i] = _row(configs[i], *summary_and_id)
        if on_result is not None:
            on_result(i, rows[i])

    if workers == 1 or len(configs) == 1:
        for i, c in enumerate(configs):
            done(i, _run_one(c, loads[_load_key(c)], root))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(configs)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_run_one, c, loads[_load_key(c)], root): i for i, c in enumerate(configs)}
            try:
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    result = [r for r in rows if r is not None]
    folder = sinks.results_root(root) / RESULTS_SUBDIR / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    text = sinks.canonical_json({"sweep_id": sweep_id(configs), "configs": [asdict(c) for c in configs], "rows": result})
    fd, tmp = tempfile.mkstemp(prefix=".sweep.tmp-", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / f"{sweep_id(configs)}.json")
    return result


def _load_key(c: ClusterConfig) -> tuple:
    return (c.trace, c.cluster, c.start_s, c.duration_s, c.max_jobs, c.rate_scale, c.num_jobs, c.gen_rate_per_s, c.seed)


def _run_one(config: ClusterConfig, workload: JobWorkload, root: Path) -> tuple[str, dict]:
    result = run_cluster(config, data_root=root, workload=workload)
    return result.run_id, result.summary


def _row(config: ClusterConfig, rid: str, summary: dict) -> dict:
    row = {"run_id": rid, "policy": config.policy, "placement": config.placement, "oracle": config.oracle,
           "predictor": config.predictor, "trace": config.trace}
    row.update({k: summary.get(k) for k in FIGURES})
    return row
