"""``tracelab predict``: train, evaluate, export and serve the response-length and GPU-duration predictors.

- ``train``: fit on the earlier part of catalog traces, evaluate on the later part next to the
  baselines, and write the model folder (skops + ONNX heads, ``card.json``) with its evaluation report.
- ``evaluate``: the same evaluation without keeping a model; or, with ``--model``, an exported model
  scored on (the later part of) other traces.
- ``export``: re-export a model folder elsewhere, re-checking the ONNX heads against scikit-learn.
- ``serve``: a small HTTP service (``/health``, ``/predict``, ``/predict/batch``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from analysis.catalog import NotAvailable, open_catalog
from ingest.paths import data_paths

app = typer.Typer(help="Train, evaluate, export and serve the response-length and GPU-duration predictors.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

TaskOpt = Annotated[str, typer.Option("--task", help="response-length (requests) or gpu-duration (jobs).")]
TraceOpt = Annotated[list[str], typer.Option("--trace", help="Catalog trace to learn from (repeat for several).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Data root (default $TRACELAB_DATA or ./data).")]


class PredictError(typer.BadParameter):
    """A user error (unknown trace, bad option, a model that does not load): one line, exit code 2."""


def _run_training(task: str, traces: list[str], data: Path | None, **kw):
    from predictors.train import TrainConfig, train

    try:
        config = TrainConfig(task=task, traces=tuple(traces), **kw)
        con = open_catalog(data)
    except (ValueError, NotAvailable) as exc:
        raise PredictError(str(exc)) from None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        bar = progress.add_task("starting", total=None)
        try:
            return train(con, config, step=lambda msg: progress.update(bar, description=msg))
        except (ValueError, NotAvailable) as exc:
            raise PredictError(str(exc)) from None
        finally:
            con.close()


def print_models(report: dict) -> None:
    """The comparison table: one row per model (baselines first), the literature's metrics as columns."""
    from predictors.report import DURATION_TABLE, LENGTH_TABLE

    keys = LENGTH_TABLE if report["task"] == "response_length" else DURATION_TABLE
    table = Table(title=f"{report['task']} on {', '.join(report['traces'])}: later {report['rows']['test']:,} rows "
                        f"(trained on the earlier {report['rows']['train']:,})")
    table.add_column("model", no_wrap=True)
    for k in keys:
        table.add_column(k, justify="right")
    for name, m in report["models"].items():
        table.add_row(name, *(f"{m[k]:.1f}" if k == "mae" else f"{m[k]:.3f}" for k in keys))
    out.print(table)
    out.print(report["signal"])
    if report.get("helios_bands"):
        ours, paper = report["helios_bands"]["ours"], report["helios_bands"]["paper"]
        out.print("within +-10/50/100/1000 %: ours " + " / ".join(f"{ours[k]:.0%}" for k in paper)
                  + " · Helios paper " + " / ".join(f"{v:.0%}" for v in paper.values()))


def default_name(task: str, traces: list[str]) -> str:
    from predictors.train import TASK_ALIASES

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{TASK_ALIASES.get(task, task)}-{'+'.join(traces)}")


@app.command("train")
def train_cmd(
    task: TaskOpt, trace: TraceOpt,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Model folder (default data/models/<task>-<traces>).")] = None,
    train_fraction: Annotated[float, typer.Option(help="Earlier share of each trace that trains.")] = 0.7,
    history_lag_s: Annotated[float, typer.Option(help="Requests: seconds until an output length is visible.")] = 60.0,
    max_iter: Annotated[int, typer.Option(help="Boosting iterations per head.")] = 200,
    data: DataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model folder and metrics as JSON.")] = False,
) -> None:
    """Train a predictor, evaluate it on the later part of each trace, write the model folder."""
    from predictors.export import export_bundle
    from predictors.report import write_evaluation
    from predictors.train import evaluation_rows

    bundle, report = _run_training(task, trace, data, train_fraction=train_fraction, history_lag_s=history_lag_s,
                                   max_iter=max_iter)
    folder = out_dir or data_paths(data).root / "models" / default_name(task, trace)
    export_bundle(bundle, folder, check_rows=evaluation_rows(report))
    html_path, _ = write_evaluation(report, folder)
    if as_json:
        out.print_json(json.dumps({"model": str(folder), "report": str(html_path), "metrics": report["models"]}))
        return
    print_models(report)
    out.print(f"model: {folder} (card.json, skops and ONNX heads) · report: {html_path}\n"
              f"next: tracelab predict serve {folder}")


@app.command("evaluate")
def evaluate_cmd(
    task: Annotated[Optional[str], typer.Option("--task", help="response-length or gpu-duration (not with --model).")] = None,
    trace: TraceOpt = [],  # noqa: B006 - typer needs a literal default
    model: Annotated[Optional[Path], typer.Option("--model", help="Score this exported model instead of training.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where the HTML/JSON report goes.")] = None,
    train_fraction: Annotated[float, typer.Option(help="Earlier share of each trace (training, or skipped with --model).")] = 0.7,
    max_iter: Annotated[int, typer.Option(help="Boosting iterations per head.")] = 200,
    data: DataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Evaluate with a time-ordered split (baselines alongside), or score an exported model on other traces."""
    from predictors.report import write_evaluation

    if not trace:
        raise PredictError("give at least one --trace")
    if model is not None:
        if task is not None:
            raise PredictError("--model carries its own task; drop --task")
        report = _score_model(model, trace, data, train_fraction)
    else:
        if task is None:
            raise PredictError("give --task (response-length or gpu-duration) or --model")
        _, report = _run_training(task, trace, data, train_fraction=train_fraction, max_iter=max_iter)
        folder = out_dir or data_paths(data).root / "results" / "predictors"
        html_path, _ = write_evaluation(report, folder, name=default_name(task, trace))
        if not as_json:
            out.print(f"report: {html_path}")
    if as_json:
        out.print_json(json.dumps({"task": report["task"], "traces": report["traces"], "models": report["models"]}))
    else:
        print_models(report)


def _score_model(model: Path, traces: list[str], data: Path | None, train_fraction: float) -> dict:
    from predictors.runtime import ModelLoadError, load
    from predictors.train import score_loaded

    try:
        loaded = load(model)
        con = open_catalog(data)
    except (ModelLoadError, NotAvailable, ValueError) as exc:
        raise PredictError(str(exc)) from None
    try:
        return score_loaded(con, loaded, traces, train_fraction)
    except (ValueError, NotAvailable) as exc:
        raise PredictError(str(exc)) from None
    finally:
        con.close()


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Argument(help="A model folder written by `tracelab predict train`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Destination folder.")],
) -> None:
    """Re-export a model folder (skops + ONNX + card), re-checking ONNX against scikit-learn."""
    from predictors.export import export_bundle
    from predictors.runtime import ModelLoadError, load

    try:
        loaded = load(model, backend="skops")
    except (ModelLoadError, ValueError) as exc:
        raise PredictError(str(exc)) from None
    export_bundle(loaded.bundle, out_dir)  # checks ONNX on rows spread over every feature's range
    out.print(f"exported {model} -> {out_dir} (ONNX heads re-checked against scikit-learn)")


@app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Argument(help="A model folder written by `tracelab predict train`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[str, typer.Option(help="onnx (onnxruntime) or skops (scikit-learn).")] = "onnx",
) -> None:
    """Serve predictions over HTTP: GET /health, POST /predict, POST /predict/batch."""
    from predictors.runtime import ModelLoadError
    from predictors.serve import run_server

    try:
        run_server(model, host=host, port=port, backend=backend)
    except (ModelLoadError, ValueError) as exc:
        raise PredictError(str(exc)) from None
