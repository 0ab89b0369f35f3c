"""Cluster replay benchmark: event-driven simulator speed, and a time-stepped baseline on the same jobs.

Prints ONE JSON line (also appended to ``OUT/cluster_bench.jsonl``) with:

* ``philly``: the full 111,549-job ``philly_rfold_jobs`` table (ingested into ``OUT/data`` if needed) on
  one pool of Philly's 352 nodes x 8 GPUs (the Helios QSSF simulator's Philly size; this table has no
  VCs), for FIFO, SJF (oracle), QSSF (oracle durations standing in for a model unless ``--model``
  names one), SRTF (oracle) and LAS: simulation wall seconds, simulated jobs per second, and the
  wall seconds of the whole run (load excluded, metrics included), average JCT. Target: under 10 s each
  for FIFO, SJF and QSSF.
* ``helios_scale`` (only with ``--helios``): a generated 3,362,981-job Helios-like trace (Poisson
  arrivals at 0.215/s, six months; heavy-tailed durations) on 200 x 8 GPUs, for ``--helios-policies``.
* ``baseline``: a straightforward per-minute time-stepped FIFO simulation (``benchmarks.cluster_timestep``,
  the approach of the public Helios QSSF artifact) and the event-driven FIFO on the same first
  ``--baseline-jobs`` jobs of the Philly table, same cluster and placement, in this process: wall
  seconds of each, the speed ratio, and both average JCTs with their difference (time stepping starts
  jobs on minute boundaries and notices ends at the next minute, so its JCTs are a little larger).

Usage: ``python -m benchmarks.cluster_bench [--helios] [--helios-policies fifo,qssf] [--baseline-jobs 10000]
[--model PATH] [--out bench-out]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks import emit_json_line

REPO = Path(__file__).resolve().parent.parent
PHILLY_TRACE = "philly_rfold_jobs"
PHILLY_NODES = 352
HELIOS_JOBS = 3_362_981
HELIOS_RATE_PER_S = HELIOS_JOBS / (181 * 86400)
HELIOS_NODES = 200
TARGET_S = 10.0


def _traces_dir() -> Path:
    return Path(os.environ.get("TRACELAB_TRACES", REPO.parent / "shared" / "traces"))


def _ensure_philly(data_root: Path) -> None:
    from ingest.pipeline import run_source

    if not (data_root / "lake" / "jobs" / f"trace={PHILLY_TRACE}").exists():
        run_source("philly_derived", _traces_dir() / "philly", data_root=data_root)


def _config(policy: str, model: str | None, **fields):
    """A config for ``policy``: predictions from ``model`` for QSSF when given, else the oracle where needed."""
    from replay.cluster.harness import ClusterConfig
    from replay.cluster.policies import POLICIES

    pred: dict = {}
    if POLICIES.create(policy).needs_predictions:
        pred = {"predictor": model} if (model and policy == "qssf") else {"predictor": "oracle", "oracle": True}
    return ClusterConfig(policy=policy, **pred, **fields)


def _timed_runs(policies: list[str], workload, data_root: Path, model: str | None, **fields) -> dict:
    from replay.cluster.harness import run_cluster

    out = {}
    for policy in policies:
        config = _config(policy, model, **fields)
        t0 = time.perf_counter()
        res = run_cluster(config, data_root=data_root, workload=workload, write=False)
        total = time.perf_counter() - t0
        out[policy] = {"sim_wall_s": round(res.wall_s, 3), "run_wall_s": round(total, 3),
                       "jobs_per_s": round(len(workload) / res.wall_s), "jct_mean_s": res.summary["jct_mean_s"],
                       "num_events": res.summary["num_events"], "num_preemptions": res.summary["num_preemptions"],
                       "predictions": "oracle" if config.oracle else config.predictor}
    return out


def bench_baseline(workload, num_jobs: int, num_nodes: int = PHILLY_NODES) -> dict:
    """Event-driven vs time-stepped (60 s) FIFO + consolidate on the first ``num_jobs`` jobs."""
    from benchmarks.cluster_timestep import simulate_fifo_timestep
    from replay.cluster.admission import admit
    from replay.cluster.cluster import uniform
    from replay.cluster.placement import PLACEMENTS
    from replay.cluster.policies import POLICIES, JobsView
    from replay.cluster.simulate import simulate

    submit, dur, gpus = workload.submit_s[:num_jobs], workload.duration_s[:num_jobs], workload.num_gpus[:num_jobs]
    spec = uniform(num_nodes, 8)
    partition, _ = admit(gpus, None, spec)
    t0 = time.perf_counter()
    ev = simulate(JobsView(submit, gpus), dur, partition, spec, POLICIES.create("fifo"), PLACEMENTS.create("consolidate"))
    ev_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, end_ts = simulate_fifo_timestep(submit, dur, gpus, num_nodes, 8, step_s=60.0)
    ts_s = time.perf_counter() - t0
    jct_ev, jct_ts = float(np.mean(ev.end_s - submit)), float(np.mean(end_ts - submit))
    return {"num_jobs": int(num_jobs), "cluster": f"{num_nodes} x 8 GPUs, consolidate", "step_s": 60.0,
            "event_driven_wall_s": round(ev_s, 3), "time_stepped_wall_s": round(ts_s, 3),
            "speedup_vs_time_stepped": round(ts_s / ev_s, 1), "jct_mean_event_driven_s": jct_ev,
            "jct_mean_time_stepped_s": jct_ts, "jct_mean_diff_s": jct_ts - jct_ev,
            "jct_mean_diff_rel": (jct_ts - jct_ev) / jct_ev,
            "num_steps": int(np.ceil((np.nanmax(end_ts) - submit[0]) / 60.0)) + 1}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--model", default=None, help="exported duration model for QSSF (default: oracle durations)")
    ap.add_argument("--policies", default="fifo,sjf,qssf,srtf,las")
    ap.add_argument("--helios", action="store_true", help="also run the generated 3.36 M-job trace (minutes)")
    ap.add_argument("--helios-policies", default="fifo,qssf")
    ap.add_argument("--helios-jobs", type=int, default=HELIOS_JOBS)
    ap.add_argument("--baseline-jobs", type=int, default=10_000)
    ap.add_argument("--philly-nodes", type=int, default=PHILLY_NODES, help="nodes of 8 GPUs for the Philly runs")
    args = ap.parse_args(argv)
    from replay.cluster.harness import ClusterConfig, load_workload
    from replay.cluster.jobs import generate_jobs

    out = Path(args.out)
    data_root = (out / "data").resolve()
    _ensure_philly(data_root)
    workload = load_workload(ClusterConfig(trace=PHILLY_TRACE), data_root)
    record: dict = {"bench": "cluster", "philly": {
        "trace": PHILLY_TRACE, "num_jobs": len(workload), "cluster": f"{args.philly_nodes} x 8 GPUs, consolidate, no VCs",
        "target_s": TARGET_S,
        "runs": _timed_runs(args.policies.split(","), workload, data_root, args.model, trace=PHILLY_TRACE,
                           num_nodes=args.philly_nodes)}}
    record["philly"]["fifo_sjf_qssf_under_target"] = all(
        r["sim_wall_s"] < TARGET_S for p, r in record["philly"]["runs"].items() if p in ("fifo", "sjf", "qssf"))
    record["baseline"] = bench_baseline(workload, args.baseline_jobs, args.philly_nodes)
    if args.helios:
        t0 = time.perf_counter()
        helios = generate_jobs(args.helios_jobs, 0, rate_per_s=HELIOS_RATE_PER_S)
        gen_s = time.perf_counter() - t0
        record["helios_scale"] = {"num_jobs": len(helios), "generate_wall_s": round(gen_s, 2),
                                  "cluster": f"{HELIOS_NODES} x 8 GPUs, consolidate",
                                  "runs": _timed_runs(args.helios_policies.split(","), helios, data_root, args.model,
                                                      num_nodes=HELIOS_NODES)}
    record.update(host=platform.node(), python=platform.python_version(), cpus=os.cpu_count())
    emit_json_line(record, out, "cluster_bench.jsonl", sort_keys=True)
    return record


if __name__ == "__main__":
    main()
