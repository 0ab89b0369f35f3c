"""``tracelab replay cluster`` and ``tracelab replay cluster-sweep``: job-scheduling replays from the command line.

Registered on the ``replay`` app by :func:`register`. Exit codes as for the serving commands: 2 for an
unknown name or invalid value (the message lists the known names), 3 for a trace not in the catalog.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from replay.cluster.harness import ClusterConfig
from replay.cluster.policies import POLICIES

_C = ClusterConfig()
W, C, P, O = "Workload", "Cluster", "Policy", "Output"


def config_from_options(o: dict, **overrides) -> ClusterConfig:
    """The ClusterConfig the options describe. ``--oracle`` gives a policy that needs predictions the true durations."""
    from replay.cli import _split

    thresholds = _split(o["las_thresholds"], float, "--las-thresholds") if o["las_thresholds"] else None
    fields = dict(trace=o["trace"], cluster=o["cluster"], start_s=o["start_s"], duration_s=o["duration_s"],
                  max_jobs=o["max_jobs"], rate_scale=o["rate_scale"], num_jobs=o["num_jobs"], gen_rate_per_s=o["gen_rate"],
                  seed=o["seed"], policy=o["policy"], placement=o["placement"], vc_config=o["vc_config"],
                  gpus_per_node=o["gpus_per_node"], num_nodes=o["num_nodes"], demand_fraction=o["demand_fraction"],
                  predictor=o["predictor"], las_promote_after_s=o["las_promote_after_s"])
    if thresholds:
        fields["las_thresholds_gpu_s"] = tuple(thresholds)
    fields.update(overrides)
    if fields["predictor"] == "oracle":
        raise ValueError("--predictor oracle uses the true durations: say so with --oracle instead")
    if o["oracle"]:
        if fields["predictor"] is not None:
            raise ValueError(f"--oracle and --predictor {fields['predictor']} exclude one another")
        if POLICIES.create(fields["policy"]).needs_predictions:
            fields.update(predictor="oracle", oracle=True)
    elif POLICIES.create(fields["policy"]).needs_predictions and fields["predictor"] is None:
        raise ValueError(f"policy {fields['policy']!r} orders by predicted duration: give --predictor PATH "
                         "(an exported duration model), or --oracle for the oracle baseline (true durations)")
    return ClusterConfig(**fields)


def cluster(
    trace: Annotated[str, typer.Option(help="A job trace in the catalog (philly_sia_jobs, microsoft_itp ...), or 'generated'.", rich_help_panel=W)] = _C.trace,
    cluster_name: Annotated[Optional[str], typer.Option("--cluster", help="Only this cluster of the trace (e.g. cluster04).", rich_help_panel=W)] = None,
    start_s: Annotated[float, typer.Option("--start-s", help="Window start, trace seconds.", rich_help_panel=W)] = _C.start_s,
    duration_s: Annotated[Optional[float], typer.Option("--duration-s", help="Window length, trace seconds.", rich_help_panel=W)] = None,
    max_jobs: Annotated[Optional[int], typer.Option("--max-jobs", help="Keep the first N jobs.", rich_help_panel=W)] = None,
    rate_scale: Annotated[float, typer.Option("--rate-scale", help="Compress submissions by this factor.", rich_help_panel=W)] = _C.rate_scale,
    num_jobs: Annotated[int, typer.Option("--num-jobs", help="Generated trace: jobs to draw.", rich_help_panel=W)] = _C.num_jobs,
    gen_rate: Annotated[float, typer.Option("--gen-rate", help="Generated trace: submissions per second.", rich_help_panel=W)] = _C.gen_rate_per_s,
    seed: Annotated[int, typer.Option(help="Generator seed.", rich_help_panel=W)] = _C.seed,
    vc_config: Annotated[Optional[str], typer.Option("--vc-config", help="'philly' (ingested philly_vc), a VC CSV path, or 'machines:TRACE' (one node per GPU machine of an ingested machine list, e.g. machines:philly); default: no VCs.", rich_help_panel=C)] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", help="GPUs per node.", rich_help_panel=C)] = _C.gpus_per_node,
    num_nodes: Annotated[Optional[int], typer.Option("--num-nodes", help="Without VCs: this many nodes (default: sized from demand).", rich_help_panel=C)] = None,
    demand_fraction: Annotated[float, typer.Option("--demand-fraction", help="Default sizing: this share of the peak concurrent GPU demand.", rich_help_panel=C)] = _C.demand_fraction,
    policy: Annotated[str, typer.Option(help="Ordering policy (fifo, sjf, srtf, qssf, las, easy).", rich_help_panel=P)] = _C.policy,
    placement: Annotated[str, typer.Option(help="Placement (consolidate, first-fit, spread).", rich_help_panel=P)] = _C.placement,
    predictor: Annotated[Optional[str], typer.Option(help="Predicted durations: a path to an exported duration model.", rich_help_panel=P)] = None,
    oracle: Annotated[bool, typer.Option("--oracle", help="Use the true durations as predictions (oracle baseline; recorded).", rich_help_panel=P)] = False,
    las_thresholds: Annotated[Optional[str], typer.Option("--las-thresholds", help="LAS queue thresholds, GPU-seconds, e.g. 3600,36000.", rich_help_panel=P)] = None,
    las_promote_after_s: Annotated[Optional[float], typer.Option("--las-promote-after-s", help="LAS starvation guard (seconds queued).", rich_help_panel=P)] = None,
    data: Annotated[Optional[Path], typer.Option(help="Data root (default: $TRACELAB_DATA or ./data).", rich_help_panel=O)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print run id, folder and summary as JSON.", rich_help_panel=O)] = False,
) -> None:
    """Replay a job trace through the cluster scheduler; writes data/results/cluster/<run id>/."""
    opts = {k: v for k, v in locals().items() if k not in ("as_json", "data", "cluster_name")}
    opts["cluster"] = cluster_name
    from replay.cli import _progress, user_errors
    from replay.cluster.harness import load_workload, run_cluster

    with user_errors():
        config = config_from_options(opts)
        workload = load_workload(config, data)
        with _progress() as bar:
            task = bar.add_task(f"{config.trace} · {config.policy} · {config.placement}", total=None)
            result = run_cluster(config, data_root=data, workload=workload, on_total=lambda n: bar.update(task, total=n),
                                 on_done=lambda k: bar.advance(task, k))
    if as_json:
        print(json.dumps({"run_id": result.run_id, "path": str(result.path), "wall_s": result.wall_s,
                          "summary": result.summary}, indent=2, sort_keys=True))
        return
    _print_summary(config, result)


def _print_summary(config: ClusterConfig, result) -> None:
    from replay.cli import _fmt, out

    s = result.summary
    spec = s["cluster_spec"]
    table = Table(title=f"run {result.run_id}: {s['trace']} · {config.policy} · {config.placement} · "
                        f"{spec['num_nodes']} nodes / {spec['total_gpus']} GPUs")
    for col in ("finished jobs", "mean", "p50", "p90", "p99"):
        table.add_column(col, justify="left" if col == "finished jobs" else "right")
    for label, stem, unit in (("JCT", "jct", "_s"), ("queueing", "queue", "_s"), ("slowdown", "slowdown", "")):
        table.add_row(label, *(_fmt(s.get(f"{stem}_{k}{unit}"), " s" if unit else "") for k in ("mean", "p50", "p90", "p99")))
    out.print(table)
    sizes = Table(title="by size (GPUs)", box=box.SIMPLE_HEAD)
    for col in ("size", "jobs", "JCT mean", "queue mean", "slowdown mean"):
        sizes.add_column(col, justify="right")
    for label, v in s["by_size"].items():
        sizes.add_row(label, str(v["num_jobs"]), _fmt(v["jct_mean_s"], " s"), _fmt(v["queue_mean_s"], " s"), _fmt(v["slowdown_mean"]))
    out.print(sizes)
    rejected = ", ".join(f"{n} {why}" for why, n in s["rejected_by_reason"].items()) or "-"
    fair = s["fairness"]
    for label, value in (
        ("jobs finished / rejected", f"{s['num_finished']} / {s['num_rejected']}"),
        ("rejected by reason", rejected),
        ("excluded at load", ", ".join(f"{n} {why}" for why, n in s["excluded"].items()) or "-"),
        ("preemptions", str(s["num_preemptions"])),
        ("utilization mean / peak GPUs", f"{_fmt(s['utilization_mean'])} / {s['peak_allocated_gpus']}"),
        ("JCT mean over VCs", _fmt(s.get("jct_mean_over_vcs_s"), " s")),
        ("Jain index, per-VC slowdown", _fmt(fair.get("jain_vc_slowdown"))),
        ("cluster", spec["source"]),
        ("predictions", "ORACLE (true durations)" if config.oracle else (config.predictor or "none")),
        ("simulated in", f"{result.wall_s:.2f} s ({s['num_events']} events)"),
        ("results", str(result.path) if result.path else "not written"),
    ):
        out.print(f"{label}: {value}")


def cluster_sweep(
    policies: Annotated[str, typer.Option(help="Comma-separated policies, e.g. fifo,sjf,qssf,las.")] = "fifo,sjf,srtf,las",
    placements: Annotated[str, typer.Option(help="Comma-separated placements, e.g. consolidate,first-fit.")] = _C.placement,
    trace: Annotated[str, typer.Option(help="A job trace in the catalog, or 'generated'.")] = _C.trace,
    cluster_name: Annotated[Optional[str], typer.Option("--cluster", help="Only this cluster of the trace.")] = None,
    start_s: Annotated[float, typer.Option("--start-s")] = _C.start_s,
    duration_s: Annotated[Optional[float], typer.Option("--duration-s")] = None,
    max_jobs: Annotated[Optional[int], typer.Option("--max-jobs")] = None,
    rate_scale: Annotated[float, typer.Option("--rate-scale")] = _C.rate_scale,
    num_jobs: Annotated[int, typer.Option("--num-jobs")] = _C.num_jobs,
    gen_rate: Annotated[float, typer.Option("--gen-rate")] = _C.gen_rate_per_s,
    seed: Annotated[int, typer.Option()] = _C.seed,
    vc_config: Annotated[Optional[str], typer.Option("--vc-config")] = None,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node")] = _C.gpus_per_node,
    num_nodes: Annotated[Optional[int], typer.Option("--num-nodes")] = None,
    demand_fraction: Annotated[float, typer.Option("--demand-fraction")] = _C.demand_fraction,
    predictor: Annotated[Optional[str], typer.Option(help="Exported duration model for the policies that need predictions.")] = None,
    oracle: Annotated[bool, typer.Option("--oracle", help="True durations for the policies that need predictions.")] = False,
    las_thresholds: Annotated[Optional[str], typer.Option("--las-thresholds")] = None,
    las_promote_after_s: Annotated[Optional[float], typer.Option("--las-promote-after-s")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: CPUs); 1: in this process.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Data root.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Run policies x placements on one workload (a local process pool); writes results/cluster/sweeps/<id>.json."""
    opts = {k: v for k, v in locals().items() if k not in ("policies", "placements", "workers", "data", "as_json", "cluster_name")}
    opts["cluster"] = cluster_name
    from replay.cli import _fmt, _print_wide, _progress, _split, user_errors
    from replay.cluster.sweep import expand, sweep, sweep_id

    axes = {"policy": _split(policies, str, "--policies"), "placement": _split(placements, str, "--placements")}
    with user_errors():
        base = config_from_options({**opts, "oracle": False, "policy": _C.policy, "placement": _C.placement, "predictor": None})
        configs = expand(replace(base, predictor=predictor), oracle=oracle,
                         **{k: v for k, v in axes.items() if v})
        with _progress() as bar:
            task = bar.add_task(f"cluster sweep: {len(configs)} runs", total=len(configs))
            rows = sweep(configs, workers=workers, data_root=data, on_result=lambda i, row: bar.advance(task))
    if as_json:
        print(json.dumps({"sweep_id": sweep_id(configs), "rows": rows}, indent=2, sort_keys=True))
        return
    table = Table(title=f"cluster sweep {sweep_id(configs)}: {len(rows)} runs", box=box.SIMPLE_HEAD, pad_edge=False)
    figures = {"JCT mean": "jct_mean_s", "JCT p99": "jct_p99_s", "JCT/VC": "jct_mean_over_vcs_s",
               "queue mean": "queue_mean_s", "slowdown": "slowdown_mean", "util": "utilization_mean",
               "preempt": "num_preemptions", "rejected": "num_rejected"}
    for col in ("run id", "policy", "placement", "oracle", *figures):
        table.add_column(col, justify="left" if col in ("run id", "policy", "placement") else "right")
    for r in rows:
        table.add_row(r["run_id"], r["policy"], r["placement"], _fmt(r["oracle"]), *(_fmt(r[k]) for k in figures.values()))
    _print_wide(table)


def register(app: typer.Typer) -> None:
    """Add ``cluster`` and ``cluster-sweep`` to the ``replay`` app."""
    app.command("cluster")(cluster)
    app.command("cluster-sweep")(cluster_sweep)

