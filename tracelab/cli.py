"""The ``tracelab`` command: the umbrella over every stage (``tracelab ingest`` is ``ingest``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from analysis.cli import analyze as analyze_command
from ingest.cli import app as ingest_app
from ingest.cli import run_app
from ingest.paths import data_paths
from predictors.cli import app as predict_app
from replay.cli import app as replay_app

app = typer.Typer(help="tracelab: ingest, characterize, predict and replay GPU-cluster and LLM-serving traces.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(ingest_app, name="ingest")
app.command("analyze")(analyze_command)
app.add_typer(predict_app, name="predict")
app.add_typer(replay_app, name="replay")
out = Console()


@app.command()
def quickstart(
    main_only: Annotated[bool, typer.Option("--main-only", help="Ingest only the main trace (Azure 2023).")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never download; use local copies or a generated workload.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Data root (default: $TRACELAB_DATA or ./data).")] = None,
) -> None:
    """Ingest a real trace (else a generated one), characterize it, train the length predictor, replay it."""
    from tracelab.quickstart import REPLAY_RATE_SCALE
    from tracelab.quickstart import quickstart as run_quickstart

    paths = data_paths(data)
    with Progress(SpinnerColumn(), TextColumn("[bold]quickstart[/] step {task.completed:.0f}"), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=out, transient=True) as progress:
        step = progress.add_task("starting", total=None)

        def say(message: str) -> None:  # every step: a line that stays, and the live bar moves on
            progress.console.print(f"[dim]·[/] {message}")
            progress.update(step, description=message[:70], advance=1)

        result = run_quickstart(paths, all_offline=not main_only, no_download=offline, say=say)
    table = Table(title=f"tracelab quickstart: main trace from {result.main_data}")
    for col in ("source", "trace", "table", "rows out", "quarantined"):
        table.add_column(col, justify="right" if col in ("rows out", "quarantined") else "left")
    for run in result.runs:
        for t in run.tables:
            table.add_row(run.source, t.trace, t.table, f"{t.rows_out:,}", f"{t.rows_quarantined:,}")
    out.print(table)
    for name, why in result.skipped.items():
        out.print(f"[yellow]skipped[/] {name}: {why}")
    if result.main_data == "GENERATED":
        out.print("[bold red]The main trace is GENERATED (no offline copy, download failed): figures are not real.[/]")
    out.print(f"lake: {paths.lake}\ncatalog: {paths.catalog} (DuckDB: views per table, plus traces and quarantine_summary)")
    if result.report is not None:
        out.print(f"characterization report: {result.report} (open it in a browser; JSON numbers beside it)")
    if result.model is not None:
        m = result.model_metrics
        out.print(f"response-length model: {result.model} (trained on the earlier 70% of {result.replay_trace}); "
                  f"on the later 30%: Kendall tau {m['boosted']['kendall_tau']:.2f} (prompt regression "
                  f"{m['prompt_regression']['kendall_tau']:.2f}), MAE {m['boosted_p50']['mae']:.0f} tokens (global median "
                  f"{m['global_median']['mae']:.0f}); report: {result.model / 'evaluation.html'}")
    if result.replays:
        rt = Table(title=f"serving replay of the held-out part of {result.replay_trace} (from "
                         f"{result.replay_start_s:,.0f} s, x{REPLAY_RATE_SCALE:g} rate, simulated H100, Llama-2-7B)")
        for col in ("policy", "TTFT p50 s", "TTFT p99 s", "E2E mean s", "E2E p99 s", "SLO met"):
            rt.add_column(col, justify="left" if col == "policy" else "right")
        for label, s, path in result.replays:
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            rt.add_row(label, fmt(s["ttft_p50_s"]), fmt(s["ttft_p99_s"]), fmt(s["e2e_mean_s"]), fmt(s["e2e_p99_s"]),
                       fmt(s["slo_attainment"]))
        out.print(rt)
        out.print(f"per-request metrics, step logs and summaries: {result.replays[0][2].parent}/<run id>/\n"
                  "oracle rows use the true output lengths (an upper bound for a length predictor); "
                  "more: tracelab replay --help")
    main_trace = result.runs[0].tables[-1].trace if result.runs and result.runs[0].tables else "TRACE"
    out.print(f"next: ingest info {main_trace} · tracelab analyze TRACE · tracelab predict --help · "
              "tracelab replay cluster --help · tracelab dashboard")


@app.command()
def dashboard(
    data: Annotated[Optional[Path], typer.Option("--data", help="Data root (default: $TRACELAB_DATA or ./data).")] = None,
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
) -> None:
    """Start the Streamlit dashboard (catalog, explorer, characterization, predictors, replay) and serve it."""
    import os

    import dashboard

    root = str(data_paths(data).root)
    app_py = Path(dashboard.__file__).resolve().parent / "app.py"
    out.print(f"dashboard on http://{host}:{port} (data root {root}); Ctrl-C stops it")
    argv = [sys.executable, "-m", "streamlit", "run", str(app_py), "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--", "--data", root]
    os.execve(sys.executable, argv, {**os.environ, "TRACELAB_DATA": root})


def main() -> None:
    """Console-script entry point for ``tracelab``."""
    sys.exit(run_app(app))
