"""The ``tracelab replay`` command line: one serving replay, a sweep, a capacity search, the known names.

Exit codes: 0 ok; 2 an unknown name or an invalid option value (the message lists the known names);
3 the trace is not in the lake (the message names the ingest command); 70 an internal error (through
``tracelab``'s ``run_app``). ``TRACELAB_DEBUG=1`` shows the traceback instead of the one-line message.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from replay.harness import COST_MODELS, ServeConfig
from replay.serving.policies import QUEUE_POLICIES, ROUTERS, VICTIM_POLICIES
from replay.serving.specs import UnknownSpecError, known_gpus, known_models
from replay.sources import TraceNotFoundError, WorkloadSpec

app = typer.Typer(help="Replay LLM-serving traces (serve, sweep, capacity) and GPU job traces (cluster, cluster-sweep).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

_C, _W = ServeConfig(), WorkloadSpec()  # defaults shown in --help come from the configs themselves


# Typer >= 0.20 vendors its own click, whose ClickException is what a standalone typer app handles;
# `tracelab`'s run_app catches the `click` package's. Inheriting from both works under either.
_TYPER_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_CLICK_EXCEPTIONS = tuple(dict.fromkeys((_TYPER_CLICK_EXCEPTION, click.ClickException)))


class ReplayUsageError(*_CLICK_EXCEPTIONS):
    """A user mistake (unknown name, bad value, missing trace): one message on stderr and a non-zero exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn config and input errors into :class:`ReplayUsageError` (kept as they are under TRACELAB_DEBUG)."""
    try:
        yield
    except (TraceNotFoundError, UnknownSpecError, ValueError) as exc:
        if os.environ.get("TRACELAB_DEBUG"):
            raise
        raise ReplayUsageError(str(exc), 3 if isinstance(exc, TraceNotFoundError) else 2) from None


# -- the options every run-making command shares ----------------------------------------------------

W, S, P, O = "Workload", "Server", "Policy", "SLO and output"


def _base_options(
    trace: Annotated[str, typer.Option(help="A requests trace in the lake (e.g. azure_llm_2023_conv), or 'generated'.", rich_help_panel=W)] = _W.trace,
    start_s: Annotated[float, typer.Option("--start-s", help="Window start, trace seconds.", rich_help_panel=W)] = _W.start_s,
    duration_s: Annotated[Optional[float], typer.Option("--duration-s", help="Window length, trace seconds (default: to the end).", rich_help_panel=W)] = None,
    max_requests: Annotated[Optional[int], typer.Option("--max-requests", help="Keep at most this many requests.", rich_help_panel=W)] = None,
    sample: Annotated[float, typer.Option(help="Keep each request with this probability.", rich_help_panel=W)] = _W.sample_fraction,
    rate_scale: Annotated[float, typer.Option("--rate-scale", help="Compress arrivals by this factor (2: twice the rate).", rich_help_panel=W)] = _W.rate_scale,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the generator.", rich_help_panel=W)] = _W.seed,
    num_requests: Annotated[int, typer.Option("--num-requests", help="Generated trace only: requests to draw.", rich_help_panel=W)] = _W.num_requests,
    gen_rate: Annotated[float, typer.Option("--gen-rate", help="Generated trace only: mean arrivals per second.", rich_help_panel=W)] = _W.rate_per_s,
    model: Annotated[str, typer.Option(help="Model shape (`tracelab replay policies` lists them).", rich_help_panel=S)] = _C.model,
    gpu: Annotated[str, typer.Option(help="GPU type.", rich_help_panel=S)] = _C.gpu,
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs per replica.", rich_help_panel=S)] = _C.tensor_parallel,
    replicas: Annotated[int, typer.Option(help="Serving replicas behind the router.", rich_help_panel=S)] = _C.num_replicas,
    cost_model: Annotated[str, typer.Option("--cost-model", help="Step-time model: roofline, table (measured profiles), linear.", rich_help_panel=S)] = _C.cost_model,
    profiles: Annotated[Optional[str], typer.Option(help="Profiles folder for the table cost model.", rich_help_panel=S)] = None,
    max_batched_tokens: Annotated[int, typer.Option("--max-batched-tokens", help="Token budget per step.", rich_help_panel=S)] = _C.max_num_batched_tokens,
    max_seqs: Annotated[int, typer.Option("--max-seqs", help="Running batch cap.", rich_help_panel=S)] = _C.max_num_seqs,
    block_size: Annotated[int, typer.Option("--block-size", help="Tokens per KV block.", rich_help_panel=S)] = _C.block_size,
    kv_blocks: Annotated[Optional[int], typer.Option("--kv-blocks", help="KV pool per replica, blocks (default: from GPU memory).", rich_help_panel=S)] = None,
    no_chunked_prefill: Annotated[bool, typer.Option("--no-chunked-prefill", help="Whole prefills in prefill-only steps.", rich_help_panel=S)] = False,
    preemption: Annotated[str, typer.Option(help="Preemption mode: recompute or swap.", rich_help_panel=S)] = _C.preemption_mode,
    cpu_swap_gib: Annotated[float, typer.Option("--cpu-swap-gib", help="CPU swap pool per replica, GiB (swap mode).", rich_help_panel=S)] = _C.cpu_swap_gib,
    kv_mode: Annotated[str, typer.Option("--kv-mode", help="paged, or static (reserve max_model_len per request).", rich_help_panel=S)] = _C.kv_mode,
    no_prefix_caching: Annotated[bool, typer.Option("--no-prefix-caching", help="Do not reuse cached prompt prefixes.", rich_help_panel=S)] = False,
    policy: Annotated[str, typer.Option(help="Queue policy.", rich_help_panel=P)] = _C.policy,
    victim_policy: Annotated[str, typer.Option("--victim-policy", help="Preemption victim policy.", rich_help_panel=P)] = _C.victim_policy,
    router: Annotated[str, typer.Option(help="Multi-replica router.", rich_help_panel=P)] = _C.router,
    predictor: Annotated[Optional[str], typer.Option(help="Predicted lengths: a path to an exported model.", rich_help_panel=P)] = None,
    oracle_lengths: Annotated[bool, typer.Option("--oracle-lengths", help="Use the true output lengths as predictions (oracle baseline; recorded in the run's config).", rich_help_panel=P)] = False,
    slo_ttft: Annotated[float, typer.Option("--slo-ttft", help="TTFT objective, seconds.", rich_help_panel=O)] = _C.slo_ttft_s,
    slo_tbt: Annotated[float, typer.Option("--slo-tbt", help="Per-request p99 TBT objective, seconds.", rich_help_panel=O)] = _C.slo_tbt_s,
    data: Annotated[Optional[Path], typer.Option(help="Data root (default: $TRACELAB_DATA or ./data).", rich_help_panel=O)] = None,
) -> None:
    """Template: its parameters are the shared options (see :func:`with_base_options`)."""


_BASE = inspect.signature(_base_options, eval_str=True).parameters


def with_base_options(*, exclude: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Give a command the shared options; it receives them as one dict ``opts`` (minus ``exclude``)."""

    def deco(func: Callable) -> Callable:
        own = inspect.signature(func, eval_str=True)
        mine = [p for name, p in own.parameters.items() if name != "opts"]
        shared = [p for name, p in _BASE.items() if name not in exclude and name not in own.parameters]
        shared_names = {p.name for p in shared}

        @functools.wraps(func)
        def wrapper(**kwargs):
            opts = {k: kwargs.pop(k) for k in list(kwargs) if k in shared_names}
            return func(opts=opts, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in mine + shared]
        wrapper.__signature__ = own.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return deco


def build_config(opts: dict, **overrides) -> ServeConfig:
    """The ServeConfig the shared options describe (``overrides``: ServeConfig fields set directly).

    ``--oracle-lengths`` gives a policy that orders by predicted length ``predictor='oracle'``; for a
    policy that reads no predictions it changes nothing (and says so), as in a sweep.
    """
    o = {**opts}
    workload = WorkloadSpec(trace=o["trace"], start_s=o["start_s"], duration_s=o["duration_s"],
                            max_requests=o["max_requests"], sample_fraction=o["sample"], rate_scale=o["rate_scale"],
                            seed=o["seed"], num_requests=o["num_requests"], rate_per_s=o["gen_rate"])
    fields = dict(
        workload=workload, model=o["model"], gpu=o["gpu"], tensor_parallel=o["tp"], cost_model=o["cost_model"],
        profiles_dir=o["profiles"], policy=o["policy"], victim_policy=o["victim_policy"], router=o["router"],
        num_replicas=o.get("replicas", _C.num_replicas), predictor=o["predictor"],
        max_num_batched_tokens=o.get("max_batched_tokens", _C.max_num_batched_tokens), max_num_seqs=o["max_seqs"],
        block_size=o["block_size"], num_kv_blocks=o["kv_blocks"], chunked_prefill=not o.get("no_chunked_prefill", False),
        preemption_mode=o["preemption"], cpu_swap_gib=o["cpu_swap_gib"], kv_mode=o["kv_mode"],
        enable_prefix_caching=not o["no_prefix_caching"], slo_ttft_s=o["slo_ttft"], slo_tbt_s=o["slo_tbt"])
    fields.update(overrides)
    if QUEUE_POLICIES.create(fields["policy"]).needs_predictions and fields["predictor"] is None and not o["oracle_lengths"]:
        raise ValueError(f"policy {fields['policy']!r} orders by predicted output length: give --predictor PATH "
                         "(an exported length model), or --oracle-lengths for the oracle baseline (true lengths)")
    if fields["predictor"] == "oracle" and not o["oracle_lengths"]:
        raise ValueError("--predictor oracle uses the true output lengths: say so with --oracle-lengths instead")
    if o["oracle_lengths"]:
        if fields["predictor"] not in (None, "oracle"):
            raise ValueError(f"--oracle-lengths and --predictor {fields['predictor']} exclude one another")
        if QUEUE_POLICIES.create(fields["policy"]).needs_predictions:
            fields.update(predictor="oracle", oracle_lengths=True)
        elif fields["predictor"] is None:
            err.print(f"[dim]note: policy {fields['policy']} reads no predictions; --oracle-lengths changes nothing[/]")
    config = ServeConfig(**fields)
    config.scheduler_config()  # unknown model / GPU, or no room for KV: fail before anything runs
    return config


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal)


def _fmt(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}" if abs(value) < 1e3 else f"{value:,.0f}{unit}"
    return f"{value}{unit}"


def _print_wide(table: Table) -> None:
    """Print a wide table whole: squeezed to the terminal on a terminal, at its natural width when piped."""
    if out.is_terminal:
        out.print(table)
    else:
        Console(file=out.file, width=max(out.width, out.measure(table, options=out.options.update(max_width=1000)).maximum), highlight=False).print(table)


# -- serve -------------------------------------------------------------------------------------------

@app.command()
@with_base_options()
def serve(opts: dict, as_json: Annotated[bool, typer.Option("--json", help="Print run id, folder and summary as JSON.")] = False) -> None:
    """Replay one configuration and write data/results/<run id>/ (requests, steps, summary, config)."""
    from replay.harness import run_serve
    from replay.sources import load_workload

    with user_errors():
        config = build_config(opts)
        workload = load_workload(config.workload, opts["data"])
        with _progress() as bar:
            task = bar.add_task(f"{config.workload.trace} · {config.policy} · x{config.workload.rate_scale:g}", total=None)
            result = run_serve(config, data_root=opts["data"], workload=workload,
                               on_total=lambda n: bar.update(task, total=n), on_done=lambda k: bar.advance(task, k))
    if as_json:
        print(json.dumps({"run_id": result.run_id, "path": str(result.path), "summary": result.summary}, indent=2, sort_keys=True))
        return
    _print_summary(config, result.summary, result.run_id, result.path)


def _print_summary(config: ServeConfig, s: dict, rid: str, path: Path | None) -> None:
    lat = Table(title=f"run {rid}: {s['trace']} · {config.policy} · {config.model} on {config.num_replicas}x{config.gpu}"
                      f" · rate x{config.workload.rate_scale:g}")
    for col in ("latency (finished requests)", "p50", "p99", "mean"):
        lat.add_column(col, justify="left" if col.startswith("lat") else "right")
    for label, stem in (("TTFT", "ttft"), ("TBT (per-request p99)", "tbt_p99"), ("TPOT", "tpot"), ("E2E", "e2e"), ("queueing", "queue")):
        lat.add_row(label, *(_fmt(s.get(f"{stem}_{k}_s"), " s") for k in ("p50", "p99", "mean")))
    out.print(lat)
    run = Table(show_header=False)
    run.add_column("figure")
    run.add_column("value", justify="right")
    rejected = ", ".join(f"{n} {why}" for why, n in s["rejected_by_reason"].items())
    for label, value in (
        ("requests arrived / finished / rejected / unfinished",
         f"{s['num_arrived']} / {s['num_finished']} / {s['num_rejected']} / {s['num_unfinished']}"),
        ("rejected by reason", rejected or "-"),
        ("preemptions", str(s["num_preemptions"])),
        ("throughput", f"{_fmt(s['output_tokens_per_s'])} output tok/s · {_fmt(s['requests_per_s'])} req/s"),
        (f"SLO attainment (TTFT <= {s['slo_ttft_s']:g} s, p99 TBT <= {s['slo_tbt_s']:g} s)",
         f"{_fmt(s['slo_attainment'])} · goodput {_fmt(s['goodput_requests_per_s'])} req/s"),
        ("makespan", _fmt(s["makespan_s"], " s")),
        ("KV utilization mean / max", f"{_fmt(s['kv_utilization_mean'])} / {_fmt(s['kv_utilization_max'])}"),
        ("predictions", "ORACLE (true lengths)" if config.oracle_lengths else (config.predictor or "none")),
        ("results", str(path) if path else "not written"),
    ):
        run.add_row(label, value)
    out.print(run)


# -- sweep -------------------------------------------------------------------------------------------

def _split(text: str | None, cast: Callable, option: str) -> list | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [cast(t) for t in items] or None
    except ValueError:
        raise ReplayUsageError(f"{option}: cannot read {text!r} as a comma-separated list of {cast.__name__} values") from None


def on_off(text: str) -> bool:
    """'on'/'true'/'yes'/'1' or 'off'/'false'/'no'/'0'."""
    word = text.lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise ValueError(text)


SWEEP_AXES = {  # CLI list option -> (ServeConfig / WorkloadSpec field, element type)
    "policies": ("policy", str), "rate_scales": ("rate_scale", float), "replicas": ("num_replicas", int),
    "routers": ("router", str), "models": ("model", str), "gpus": ("gpu", str),
    "max_batched_tokens": ("max_num_batched_tokens", int), "chunked_prefill": ("chunked_prefill", on_off),
    "kv_modes": ("kv_mode", str), "seeds": ("seed", int),
}
L = "Sweep axes (comma-separated lists)"


@app.command("sweep")
@with_base_options(exclude=("replicas", "max_batched_tokens", "no_chunked_prefill"))
def sweep_cmd(
    opts: dict,
    policies: Annotated[Optional[str], typer.Option(help="e.g. fcfs,sjf,mlfq (default: --policy).", rich_help_panel=L)] = None,
    rate_scales: Annotated[Optional[str], typer.Option("--rate-scales", help="e.g. 1,2,4 (default: --rate-scale).", rich_help_panel=L)] = None,
    replicas: Annotated[Optional[str], typer.Option(help="e.g. 1,2,4.", rich_help_panel=L)] = None,
    routers: Annotated[Optional[str], typer.Option(help="e.g. round_robin,kv_aware.", rich_help_panel=L)] = None,
    models: Annotated[Optional[str], typer.Option(rich_help_panel=L)] = None,
    gpus: Annotated[Optional[str], typer.Option(rich_help_panel=L)] = None,
    max_batched_tokens: Annotated[Optional[str], typer.Option("--max-batched-tokens", help="e.g. 512,2048.", rich_help_panel=L)] = None,
    chunked_prefill: Annotated[Optional[str], typer.Option("--chunked-prefill", help="on,off.", rich_help_panel=L)] = None,
    kv_modes: Annotated[Optional[str], typer.Option("--kv-modes", help="paged,static.", rich_help_panel=L)] = None,
    seeds: Annotated[Optional[str], typer.Option(help="e.g. 0,1,2.", rich_help_panel=L)] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: CPUs, at most one per run); 1: in this process. Ray backend: CPUs of the local Ray it starts.")] = None,
    backend: Annotated[str, typer.Option(help="local (a process pool) or ray (Ray tasks; pip install 'tracelab[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray backend: the cluster to use ('auto', or head host:port); default: a local Ray.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Run policies x rates x configs (a local process pool or Ray tasks) and write data/results/sweeps/<sweep id>.parquet."""
    from ingest.ray_support import RayNotInstalledError
    from replay.sinks import results_root
    from replay.sweep import expand_grid, sweep, sweep_id

    given = {"policies": policies, "rate_scales": rate_scales, "replicas": replicas, "routers": routers,
             "models": models, "gpus": gpus, "max_batched_tokens": max_batched_tokens,
             "chunked_prefill": chunked_prefill, "kv_modes": kv_modes, "seeds": seeds}
    axes = {}
    for option, text in given.items():
        field, cast = SWEEP_AXES[option]
        values = _split(text, cast, "--" + option.replace("_", "-"))
        if values is not None:
            axes[field] = values
    axes.setdefault("policy", [opts["policy"]])
    with user_errors():
        # The base takes the default policy: the grid sets each point's, with the oracle rule per policy.
        base = build_config({**opts, "oracle_lengths": False}, policy=_C.policy)
        configs = expand_grid(base, oracle=opts["oracle_lengths"], **axes)
        for config in configs:
            config.scheduler_config()
        with _progress() as bar:
            task = bar.add_task(f"sweep: {len(configs)} runs", total=len(configs))
            try:
                rows = sweep(configs, workers=workers, data_root=opts["data"], on_result=lambda i, row: bar.advance(task),
                             backend=backend, ray_address=ray_address)
            except RayNotInstalledError as exc:  # --backend ray without Ray: the message names the extra
                raise ReplayUsageError(str(exc), 2) from None
    path = results_root(opts["data"]) / "sweeps" / f"{sweep_id(configs)}.parquet"
    if as_json:
        print(json.dumps({"sweep_id": sweep_id(configs), "path": str(path), "rows": rows}, indent=2, sort_keys=True))
        return
    varying = [f for f in ("trace", "policy", "rate_scale", "num_replicas", "router", "model", "gpu",
                           "max_num_batched_tokens", "chunked_prefill", "kv_mode", "seed", "oracle_lengths")
               if f in axes or len({str(r[f]) for r in rows}) > 1]
    short = {"rate_scale": "rate", "num_replicas": "replicas", "max_num_batched_tokens": "budget",
             "chunked_prefill": "chunked", "oracle_lengths": "oracle"}
    figures = {"req/s": "offered_requests_per_s", "attain": "slo_attainment", "TTFT p99": "ttft_p99_s",
               "TBT p99": "tbt_p99_p99_s", "tok/s": "output_tokens_per_s", "preempt": "num_preemptions",
               "rejected": "num_rejected"}
    table = Table(title=f"sweep {sweep_id(configs)}: {len(rows)} runs", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run id", no_wrap=True)
    for f in varying:
        table.add_column(short.get(f, f))
    for label in figures:
        table.add_column(label, justify="right")
    for r in rows:
        table.add_row(r["run_id"], *(_fmt(r[f]) for f in varying), *(_fmt(r[k]) for k in figures.values()))
    _print_wide(table)
    out.print(f"table: {path} (+ .json with the configs); runs: {results_root(opts['data'])}/<run id>/")


# -- capacity ----------------------------------------------------------------------------------------

@app.command()
@with_base_options()
def capacity(
    opts: dict,
    min_attainment: Annotated[float, typer.Option("--min-attainment", help="Share of requests that must meet the SLOs.")] = 0.9,
    lo: Annotated[Optional[float], typer.Option(help="First rate scale to probe (default: --rate-scale).")] = None,
    hi: Annotated[Optional[float], typer.Option(help="Second probe (default: 2 x lo).")] = None,
    tol: Annotated[float, typer.Option(help="Stop when the bracket is within this fraction of the answer.")] = 0.05,
    max_runs: Annotated[int, typer.Option("--max-runs", help="Most probes (runs) to spend.")] = 12,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer and probes as JSON.")] = False,
) -> None:
    """The highest rate scale (and requests/s) that still meets the SLOs for --min-attainment of requests."""
    from replay.sweep import capacity_search

    with user_errors():
        base = build_config(opts)
        with _progress() as bar:
            task = bar.add_task("capacity search", total=max_runs)

            def show(p: dict) -> None:
                bar.advance(task)
                if not as_json:
                    mark = "[green]pass[/]" if p["passed"] else "[red]fail[/]"
                    out.print(f"  probe x{p['rate_scale']:.4g}: {_fmt(p['requests_per_s'])} req/s offered, "
                              f"attainment {_fmt(p['slo_attainment'])} {mark} (run {p['run_id']})")

            res = capacity_search(base, min_attainment=min_attainment, lo=lo, hi=hi, tol=tol, max_runs=max_runs,
                                  data_root=opts["data"], on_probe=show)
    if as_json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return
    table = Table(title="capacity probes, by rate", box=box.SIMPLE_HEAD)
    for col in ("rate scale", "offered req/s", "SLO attainment", "goodput req/s", "", "run id"):
        table.add_column(col, justify="left" if col in ("", "run id") else "right")
    for p in sorted(res["probes"], key=lambda p: p["rate_scale"]):
        table.add_row(f"{p['rate_scale']:.4g}", _fmt(p["requests_per_s"]), _fmt(p["slo_attainment"]),
                      _fmt(p["goodput_requests_per_s"]), "pass" if p["passed"] else "fail", p["run_id"])
    _print_wide(table)
    slo = f"TTFT <= {res['slo_ttft_s']:g} s and p99 TBT <= {res['slo_tbt_s']:g} s for >= {min_attainment:.0%} of requests"
    if res["max_rate_scale"] is None:
        out.print(f"[red]no probed rate meets {slo}[/] (lowest probe x{res['failing_rate_scale']:.4g})")
        return
    out.print(f"capacity: rate scale x{res['max_rate_scale']:.4g} = {_fmt(res['requests_per_s'])} req/s offered "
              f"(attainment {_fmt(res['slo_attainment'])}, run {res['run_id']}) meets {slo}")
    if not res["converged"]:
        above = "no failing rate found" if res["failing_rate_scale"] is None else f"fails at x{res['failing_rate_scale']:.4g}"
        out.print(f"[yellow]not converged within {len(res['probes'])} runs ({above}): raise --max-runs or --hi[/]")


# -- policies ----------------------------------------------------------------------------------------

@app.command()
def policies() -> None:
    """Registered queue policies, victim policies, routers and cost models; known models and GPUs."""
    queue = Table(title="queue policies (--policy)")
    for col in ("name", "preemptive", "needs predictions", "what"):
        queue.add_column(col)
    for name in QUEUE_POLICIES.names():
        pol = QUEUE_POLICIES.create(name)
        queue.add_row(name, "yes" if pol.preemptive else "no", "yes" if pol.needs_predictions else "no", _doc(pol))
    out.print(queue)
    for title, reg in (("victim policies (--victim-policy)", VICTIM_POLICIES), ("routers (--router)", ROUTERS)):
        table = Table(title=title)
        table.add_column("name")
        table.add_column("what")
        for name in reg.names():
            table.add_row(name, _doc(reg.create(name)))
        out.print(table)
    out.print(f"cost models (--cost-model): {', '.join(COST_MODELS.names())}")
    out.print(f"models (--model, case-insensitive): {', '.join(known_models())}")
    out.print(f"GPUs (--gpu, case-insensitive): {', '.join(known_gpus())}")


def _doc(obj: object) -> str:
    return (type(obj).__doc__ or "").strip().split("\n")[0]


# -- cluster (job scheduling): `replay cluster`, `replay cluster-sweep` ---------------------------------

from replay.cluster.cli import register as _register_cluster  # noqa: E402  (its helpers come from this module)

_register_cluster(app)


# -- serving fleets: `replay fleet`, `replay fleet-search` -------------------------------------------------

from replay.fleet.cli import register as _register_fleet  # noqa: E402  (its helpers come from this module)

_register_fleet(app)


# -- the real GPU: `replay profile`, `replay validate` ------------------------------------------------------

from replay.gpu.cli import register as _register_gpu  # noqa: E402  (its helpers come from this module)

_register_gpu(app)
