"""``tracelab replay fleet`` and ``tracelab replay fleet-search``: serving fleets from the command line.

``fleet`` replays one layout (colocated, disaggregated prefill/decode, mixed pools) and prints latency, SLO
attainment, KV transfers, energy and cost; ``fleet-search`` replays every candidate layout of some GPU types
and counts, picks the cheapest (or lowest-energy) one that meets the SLOs, and with ``--throughput`` finds
each layout's highest rate under the SLOs and compares throughput per $/hour and per watt with the
colocated baseline (Splitwise's comparison). Registered on the ``replay`` app by :func:`register`; it
reuses the serving commands' shared options (``replay.cli.with_base_options``), so it is imported by
``replay.cli`` (import that module, not this one, first).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from replay.cli import _fmt, _print_wide, _progress, _split, build_config, err, out, user_errors, with_base_options
from replay.fleet import search
from replay.fleet.interconnect import INFINIBAND_LATENCY_S, Link, infiniband, nvlink, pcie
from replay.fleet.topology import LAYOUTS, MIGRATION_MODES, FleetConfig, MigrationConfig, PoolConfig
from replay.metrics import SloSpec
from replay.serving.specs import UnknownSpecError, gpu_spec
from replay.sweep import scaled

F = "Fleet"
_ROUTER = PoolConfig("decode").router
_POOL_SPEC = re.compile(r"(\d+)\s*x\s*([A-Za-z0-9_.\-]+?)(?:/tp(\d+))?", re.IGNORECASE)


def parse_pool(role: str, text: str, option: str, router: str) -> PoolConfig:
    """A pool from "NxGPU" or "NxGPU/tpK" (e.g. 2xh100, 1xa100/tp2); BadParameter naming `option` otherwise."""
    m = _POOL_SPEC.fullmatch(text.strip())
    if not m:
        raise typer.BadParameter(f"{text!r} is not NxGPU or NxGPU/tpK (e.g. 1xh100, 2xa100/tp2)", param_hint=option)
    try:
        gpu = gpu_spec(m.group(2)).name
        return PoolConfig(role, int(m.group(1)), gpu, int(m.group(3) or 1), router)
    except (UnknownSpecError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def parse_link(text: str, gpu: str) -> Link:
    """infiniband (ib), nvlink or pcie (at `gpu`'s bandwidths), or a bandwidth in GB/s (10^9 bytes/s)."""
    word = text.strip().lower()
    presets = {"infiniband": infiniband, "ib": infiniband, "nvlink": lambda: nvlink(gpu), "pcie": lambda: pcie(gpu)}
    if word in presets:
        return presets[word]()
    try:
        gb_s = float(word.removesuffix("gb/s"))
        return Link(f"{gb_s:g}GB/s", gb_s * 1e9, INFINIBAND_LATENCY_S)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give infiniband, nvlink, pcie or a bandwidth in GB/s (e.g. 25)",
                                 param_hint="--link") from None


def parse_migration(mode: str) -> MigrationConfig:
    if mode not in MIGRATION_MODES:
        raise typer.BadParameter(f"{mode!r}: one of {', '.join(MIGRATION_MODES)}", param_hint="--migration")
    return MigrationConfig(mode)


def fleet_config(serve, layout: str, *, replicas: int, gpu: str, tp: int, router: str, prefill: str | None,
                 decode: str | None, mixed: str | None, link: str, migration: str) -> FleetConfig:
    """The FleetConfig the fleet options describe (BadParameter naming the option for a bad or missing spec)."""
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"{layout!r}: one of {', '.join(LAYOUTS)}", param_hint="--layout")
    given = {"prefill": prefill, "decode": decode, "mixed": mixed}
    for role, text in given.items():
        if role not in LAYOUTS[layout] and text is not None:
            raise typer.BadParameter(f"only for a layout with a {role} pool, not --layout {layout}", param_hint=f"--{role}")
        if role in LAYOUTS[layout] and text is None:
            raise typer.BadParameter(f"--layout {layout} needs a {role} pool, e.g. --{role} 1xh100", param_hint=f"--{role}")
    if layout == "colocated":
        pools = (PoolConfig("colocated", replicas, gpu_spec(gpu).name, tp, router),)
    else:
        pools = tuple(parse_pool(role, given[role], f"--{role}", router) for role in LAYOUTS[layout])
    return FleetConfig(serve=serve, layout=layout, pools=pools, link=parse_link(link, pools[0].gpu),
                       migration=parse_migration(migration))


def _load(serve, data, rate_scale: float = 1.0):
    from replay.sources import load_workload

    return load_workload(replace(serve.workload, rate_scale=rate_scale), data)


# -- fleet -------------------------------------------------------------------------------------------

@with_base_options()
def fleet(
    opts: dict,
    layout: Annotated[str, typer.Option(help="colocated, disaggregated or mixed.", rich_help_panel=F)] = "colocated",
    prefill: Annotated[Optional[str], typer.Option(help="Prefill pool, NxGPU\\[/tpK], e.g. 1xh100.", rich_help_panel=F)] = None,
    decode: Annotated[Optional[str], typer.Option(help="Decode pool, e.g. 1xa100.", rich_help_panel=F)] = None,
    mixed: Annotated[Optional[str], typer.Option(help="Mixed pool (layout mixed), e.g. 1xh100.", rich_help_panel=F)] = None,
    link: Annotated[str, typer.Option(help="KV link: infiniband, nvlink, pcie or GB/s.", rich_help_panel=F)] = "infiniband",
    migration: Annotated[str, typer.Option(help="Live migration: off, load_balance, defrag.", rich_help_panel=F)] = "off",
    router: Annotated[str, typer.Option(help="Router of every pool.", rich_help_panel=F)] = _ROUTER,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fleet and energy summaries as JSON.")] = False,
    save: Annotated[bool, typer.Option("--save", help="Write the run to <data>/results/fleet/<run id>/.")] = False,
) -> None:
    """Replay one fleet layout; print latency, SLO attainment, KV transfers, energy and cost (--save writes the run)."""
    from replay.fleet.harness import run_fleet
    from replay.fleet.sink import write_fleet_run

    with user_errors():
        serve = build_config({**opts, "router": router})
        config = fleet_config(serve, layout, replicas=opts["replicas"], gpu=opts["gpu"], tp=opts["tp"], router=router,
                              prefill=prefill, decode=decode, mixed=mixed, link=link, migration=migration)
        workload = _load(serve, opts["data"], opts["rate_scale"])
        with _progress() as bar:
            task = bar.add_task(f"{workload.trace} · {search.layout_label(config)}", total=len(workload))
            result = run_fleet(config, workload, on_done=lambda k: bar.advance(task, k))
        energy = search.fleet_energy(config, result).summary
        saved = write_fleet_run(config, result, energy, data_root=opts["data"]) if save else None
    if saved is not None:
        err.print(f"wrote {saved}")
    if as_json:
        print(json.dumps({"run_id": result.run_id, "label": search.layout_label(config), "summary": result.summary,
                          "energy": energy}, indent=2, sort_keys=True))
        return
    _print_fleet(config, result.summary, energy, result.run_id)


def _print_fleet(config: FleetConfig, s: dict, e: dict, rid: str) -> None:
    lat = Table(title=f"fleet {rid}: {s['trace']} · {search.layout_label(config)} · {config.serve.model} · "
                      f"{config.link.name} · rate x{config.serve.workload.rate_scale:g}")
    for col in ("latency (finished requests)", "p50", "p99", "mean"):
        lat.add_column(col, justify="left" if col.startswith("lat") else "right")
    for label, stem in (("TTFT", "ttft"), ("TBT (per-request p99)", "tbt_p99"), ("TPOT", "tpot"), ("E2E", "e2e"),
                        ("queueing", "queue")):
        lat.add_row(label, *(_fmt(s.get(f"{stem}_{k}_s"), " s") for k in ("p50", "p99", "mean")))
    out.print(lat)
    ms = lambda v: _fmt(None if v is None else 1e3 * v, " ms")  # noqa: E731
    run = Table(show_header=False)
    run.add_column("figure")
    run.add_column("value", justify="right")
    for label, value in (
        ("requests arrived / finished / rejected / unfinished",
         f"{s['num_arrived']} / {s['num_finished']} / {s['num_rejected']} / {s['num_unfinished']}"),
        ("throughput", f"{_fmt(s['output_tokens_per_s'])} output tok/s · {_fmt(s['requests_per_s'])} req/s"),
        (f"SLO attainment (TTFT <= {s['slo_ttft_s']:g} s, p99 TBT <= {s['slo_tbt_s']:g} s)",
         f"{_fmt(s['slo_attainment'])} · goodput {_fmt(s['goodput_requests_per_s'])} req/s"),
        ("TBT over all token gaps p50 / p99", f"{ms(s['tbt_pooled_p50_s'])} / {ms(s['tbt_pooled_p99_s'])}"),
        ("KV transfers · GB moved", f"{s['num_kv_transfers']} · {_fmt(s['kv_transfer_bytes_total'] / 1e9)} GB"),
        ("KV copy mean / p99 · link wait mean · decode queue mean",
         f"{ms(s['kv_transfer_mean_s'])} / {ms(s['kv_transfer_p99_s'])} · {ms(s['kv_link_wait_mean_s'])} · "
         f"{ms(s['decode_queue_mean_s'])}"),
        ("migrations", f"{s['num_migrations']} · mean {ms(s['migration_mean_s'])}"),
        ("energy per request / per output token",
         f"{_fmt(e['energy_per_request_j'], ' J')} / {_fmt(e['energy_per_output_token_j'], ' J')}"),
        ("average power (fleet · per GPU) · busy fraction",
         f"{_fmt(e['avg_power_w'], ' W')} · {_fmt(e['avg_power_per_gpu_w'], ' W')} · {_fmt(e['busy_fraction'])}"),
        ("GPU-hours · cost · $/hour", f"{_fmt(e['gpu_hours'])} · ${_fmt(e['cost_usd'])} · ${_fmt(e['usd_per_hour'])}"),
        ("$ per 1M output tokens · per 1k requests",
         f"${_fmt(e['usd_per_1m_output_tokens'])} · ${_fmt(e['usd_per_1k_requests'])}"),
    ):
        run.add_row(label, value)
    out.print(run)


# -- fleet-search ------------------------------------------------------------------------------------

@with_base_options(exclude=("gpu", "replicas"))
def fleet_search(
    opts: dict,
    gpus: Annotated[str, typer.Option(help="GPU types, comma-separated, e.g. h100,a100.", rich_help_panel=F)] = "h100",
    total_gpus: Annotated[str, typer.Option("--total-gpus", help="Fleet sizes in GPUs, e.g. 2,4.", rich_help_panel=F)] = "2",
    objective: Annotated[str, typer.Option(help="cost ($/hour) or energy (J/output token).", rich_help_panel=F)] = "cost",
    min_attainment: Annotated[float, typer.Option("--min-attainment", help="Share of requests that must meet the SLOs.", rich_help_panel=F)] = 0.9,
    mixed_types: Annotated[bool, typer.Option("--mixed-types/--same-types", help="Also prefill and decode pools of different GPU types.", rich_help_panel=F)] = True,
    include_mixed: Annotated[bool, typer.Option("--include-mixed", help="Also layouts with a mixed pool.", rich_help_panel=F)] = False,
    link: Annotated[str, typer.Option(help="KV link: infiniband, nvlink, pcie or GB/s.", rich_help_panel=F)] = "infiniband",
    migration: Annotated[str, typer.Option(help="Live migration: off, load_balance, defrag.", rich_help_panel=F)] = "off",
    router: Annotated[str, typer.Option(help="Router of every pool.", rich_help_panel=F)] = _ROUTER,
    throughput: Annotated[bool, typer.Option("--throughput", help="Find each layout's highest rate under the SLOs; compare per $/h and per W.", rich_help_panel=F)] = False,
    max_runs: Annotated[int, typer.Option("--max-runs", help="--throughput: runs per layout.", rich_help_panel=F)] = 8,
    tol: Annotated[float, typer.Option(help="--throughput: stop when the rate bracket is within this fraction.", rich_help_panel=F)] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows (and throughput results) as JSON.")] = False,
) -> None:
    """Replay every colocated / disaggregated layout of --gpus and --total-gpus; the cheapest that meets the SLOs."""
    types = _split(gpus, str, "--gpus") or []
    counts = _split(total_gpus, int, "--total-gpus") or []
    if objective not in search.OBJECTIVES:
        raise typer.BadParameter(f"{objective!r}: one of {', '.join(search.OBJECTIVES)}", param_hint="--objective")
    if not 0 < min_attainment <= 1:
        raise typer.BadParameter(f"{min_attainment}: must be in (0, 1]", param_hint="--min-attainment")
    with user_errors():
        serve = build_config({**opts, "router": router, "gpu": "h100", "replicas": 1})
        try:
            configs = search.candidate_layouts(types, counts, serve=serve, tensor_parallel=opts["tp"], router=router,
                                               link=parse_link(link, types[0] if types else "h100"),
                                               migration=parse_migration(migration), mixed_types=mixed_types,
                                               include_mixed=include_mixed)
        except (UnknownSpecError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--gpus / --total-gpus") from None
        slo = SloSpec(serve.slo_ttft_s, serve.slo_tbt_s)
        unit = _load(serve, opts["data"])
        with _progress() as bar:
            task = bar.add_task(f"fleet search: {len(configs)} layouts", total=len(configs))
            rows = search.evaluate(configs, scaled(unit, opts["rate_scale"]), slo,
                                   on_progress=lambda k, row: bar.advance(task))
        tput = _throughputs(configs, unit, slo, min_attainment, opts["rate_scale"], max_runs, tol) if throughput else None
    best = search.cheapest(rows, objective, min_attainment)
    if as_json:
        print(json.dumps({"objective": objective, "min_attainment": min_attainment, "rows": rows,
                          "chosen": None if best is None else best["label"], "throughput": tput},
                         indent=2, sort_keys=True, default=str))
        return
    _print_search(rows, best, objective, min_attainment, opts["rate_scale"])
    if tput is not None:
        _print_throughput(tput, min_attainment)


def _throughputs(configs, unit, slo, min_attainment, rate_scale, max_runs, tol) -> list[dict]:
    res = []
    with _progress() as bar:
        task = bar.add_task("throughput under the SLOs", total=len(configs) * max_runs)
        for config in configs:
            r = search.max_throughput(config, unit, slo, min_attainment, lo=rate_scale, max_runs=max_runs, tol=tol,
                                      on_probe=lambda p: bar.advance(task))
            res.append({k: v for k, v in r.items() if k != "row"})
    for config, r in zip(configs, res):
        base = search.baseline_for(config, configs)
        r["baseline"] = None if base is None else res[base]["label"]
        r.update(search.throughput_ratios(r, res[base]) if base is not None else {})
    return res


def _print_search(rows, best, objective, min_attainment, rate_scale) -> None:
    table = Table(title=f"fleet layouts by {objective} ({search.OBJECTIVES[objective][0]}), rate x{rate_scale:g}",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    cols = {"GPUs": "num_gpus", "$/h": "usd_per_hour", "attain": "slo_attainment", "TTFT p50": "ttft_p50_s",
            "TTFT p99": "ttft_p99_s", "TBT p99": "tbt_p99_p99_s", "E2E p99": "e2e_p99_s",
            "J/tok": "energy_per_output_token_j", "avg W": "avg_power_w", "$/1M tok": "usd_per_1m_output_tokens",
            "KV copy ms": "kv_transfer_mean_s"}
    table.add_column("")
    table.add_column("layout", no_wrap=True)
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("SLO")
    for i in search.rank(rows, objective):
        r = rows[i]
        ok = search.meets(r, min_attainment)
        cells = [_fmt(1e3 * r[k] if k == "kv_transfer_mean_s" and r[k] is not None else r[k]) for k in cols.values()]
        mark = "[bold green]*[/]" if r is best else ""
        table.add_row(mark, r["label"], *cells, "ok" if ok else "[red]FAIL[/]")
    _print_wide(table)
    if best is None:
        out.print(f"[red]{search.why_none(rows, min_attainment)}[/]")
    else:
        out.print(f"chosen (*): {best['label']} · ${_fmt(best['usd_per_hour'])}/h · "
                  f"{_fmt(best['energy_per_output_token_j'])} J/token · SLO attainment {_fmt(best['slo_attainment'])} "
                  f">= {min_attainment:g}")


def _print_throughput(res: list[dict], min_attainment: float) -> None:
    table = Table(title=f"highest rate meeting the SLOs for >= {min_attainment:.0%} of requests",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    cols = {"max rate x": "max_rate_scale", "req/s": "requests_per_s", "out tok/s": "output_tokens_per_s",
            "$/h": "usd_per_hour", "tok/$": "tokens_per_usd", "tok/J": "output_tokens_per_j",
            "tok/s per kW": "output_tokens_per_s_per_kw", "tput x": "throughput_ratio", "cost x": "cost_ratio",
            "tput @ equal $": "throughput_at_equal_cost", "$ @ equal tput": "cost_at_equal_throughput",
            "tput @ equal W": "throughput_at_equal_power"}
    table.add_column("layout", no_wrap=True)
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("vs")
    for r in res:
        table.add_row(r["label"], *(_fmt(r.get(k)) for k in cols.values()), r.get("baseline") or "-")
    _print_wide(table)
    if any(not r["converged"] for r in res):
        err.print("[yellow]some searches did not converge (see --max-runs): their rates are lower bounds or none[/]")


def register(app: typer.Typer) -> None:
    """Add ``fleet`` and ``fleet-search`` to the ``replay`` app."""
    app.command("fleet")(fleet)
    app.command("fleet-search")(fleet_search)
