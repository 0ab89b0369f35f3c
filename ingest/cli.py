"""The ``ingest`` command line (also ``tracelab ingest``).

Exit codes: 0 ok; otherwise the failing class's code (see :mod:`ingest.errors`), with one line on
stderr that names the file and what was expected. ``TRACELAB_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from ingest.errors import IngestError
from ingest.paths import data_paths

app = typer.Typer(help="Ingest public GPU-cluster and LLM-serving traces into Parquet + a DuckDB catalog.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Data root (default: $TRACELAB_DATA or ./data).")]


@app.command("list")
def list_sources(data: DataOpt = None) -> None:
    """Known sources, and the traces already ingested with their row counts."""
    from ingest.lake import read_reports
    from ingest.sources import registry

    reports = read_reports(data_paths(data))
    by_source: dict[str, list[dict]] = {}
    for rep in reports.values():
        by_source.setdefault(rep["source"], []).append(rep)
    table = Table(title="tracelab sources")
    for col in ("source", "what", "download", "ingested traces (rows out / quarantined)"):
        table.add_column(col)
    for src in registry():
        done = ", ".join(f"{r['trace']} ({r['rows_out']:,} / {r['rows_quarantined']:,})" for r in by_source.get(src.name, []))
        title = src.title + (" [derived]" if src.derived else "")
        table.add_row(src.name, title, "yes" if src.downloads else "no (by hand)", done or "-")
    out.print(table)


@app.command()
def fetch(source: str, data: DataOpt = None) -> None:
    """Download SOURCE's files from the official locations into data/raw/SOURCE (resumable, verified)."""
    from ingest.download import fetch_file
    from ingest.errors import DownloadError
    from ingest.sources import get_source

    src = get_source(source)
    if not src.downloads:
        raise DownloadError(f"{source}: no official direct download exists; get the files by hand and use 'ingest run {source} --from PATH'")
    dest = data_paths(data).raw / src.name
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeElapsedColumn(), console=err, transient=False,
                  disable=not err.is_terminal) as bar:
        for remote in src.downloads:
            task = bar.add_task(remote.name, total=remote.size_bytes)
            fetch_file(remote, dest, progress=lambda done, total, t=task: bar.update(t, completed=done, total=total))
            bar.update(task, description=f"{remote.name} ✓" + (" sha256" if remote.sha256 else ""))
    out.print(f"fetched {len(src.downloads)} file(s) into {dest}; next: ingest run {source}")


@app.command()
def run(
    source: str,
    from_path: Annotated[Optional[Path], typer.Option("--from", help="A folder, an archive as downloaded (.tar.gz/.zip), or a file (.csv/.gz).")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the published-checksum check (modified or generated copies).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Commit nothing if any row would be quarantined (exit 9).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's reports as JSON on stdout.")] = False,
    backend: Annotated[str, typer.Option("--backend", help="local: parts one after the other here; ray: each part a Ray task (pip install 'tracelab[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to use with --backend ray (e.g. auto or HOST:6379; default: start a local Ray).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="CPUs of the local Ray started by --backend ray (default: all cores).")] = None,
    data: DataOpt = None,
) -> None:
    """Ingest SOURCE into the lake and refresh the catalog (replaces the traces it produces).

    Each table plan (one per input file where a trace has several, e.g. ITP's ten cluster files) is one
    Parquet part; --backend ray produces the parts in parallel as Ray tasks, with the same bytes.
    """
    from ingest.pipeline import run_source

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task(f"{source}: starting")
        result = run_source(source, from_path, data_root=data, verify=not no_verify, strict=strict,
                            progress=lambda msg: bar.update(task, description=f"{source}: {msg}"),
                            backend=backend, workers=workers, ray_address=ray_address)
    if as_json:
        print(json.dumps(result.reports, indent=2, sort_keys=True))
        return
    table = Table(title=f"ingest {source} from {result.input_path}")
    for col in ("trace", "table", "rows in", "rows out", "quarantined"):
        table.add_column(col, justify="right" if col.startswith(("rows", "quar")) else "left")
    for t in result.tables:
        table.add_row(t.trace, t.table, "-" if t.rows_in is None else f"{t.rows_in:,}", f"{t.rows_out:,}", f"{t.rows_quarantined:,}")
    out.print(table)
    for trace, rep in result.reports.items():
        for reason, n in rep["quarantine_by_reason"].items():
            out.print(f"  [yellow]quarantined[/] {trace}: {n:,} × {reason}")
    if result.missing_inputs:
        out.print(f"  not found (optional): {', '.join(result.missing_inputs)}")
    out.print(f"catalog: {data_paths(data).catalog}")


@app.command()
def validate(traces: Annotated[Optional[list[str]], typer.Argument(help="Traces to check (default: all).")] = None,
             data: DataOpt = None) -> None:
    """Check every lake file against its canonical schema and its trace's ingest report."""
    from ingest.errors import CatalogError
    from ingest.validate import validate_lake

    problems, checked = validate_lake(data_paths(data), traces)
    for p in problems:
        err.print(f"{p.where}: {p.what}", soft_wrap=True)
    if problems:
        raise CatalogError(f"{len(problems)} problem(s) in {checked} file(s)")
    out.print(f"ok: {checked} Parquet file(s) match their canonical schemas and ingest reports")


@app.command()
def info(trace: str, as_json: Annotated[bool, typer.Option("--json")] = False, data: DataOpt = None) -> None:
    """What was ingested for TRACE: tables, rows, time span, quarantine reasons, inputs."""
    from ingest.info import trace_info

    rep = trace_info(data_paths(data), trace)
    if as_json:
        print(json.dumps(rep, indent=2, sort_keys=True, default=str))
        return
    out.print(f"[bold]{trace}[/] from source {rep['source']}{' (derived)' if rep.get('derived') else ''}")
    out.print(f"rows in {rep['rows_in']:,} = out {rep['rows_out']:,} + quarantined {rep['rows_quarantined']:,}")
    out.print(f"time origin: {rep.get('origin', rep.get('origin_epoch_us'))} ({rep['time_zone']}, epoch: {rep['epoch']})")
    for name, stats in rep["stats"].items():
        out.print(f"  {name}: {rep['tables'][name]['rows_out']:,} rows  {json.dumps(stats, default=str)}")
    for reason, n in rep["quarantine_by_reason"].items():
        out.print(f"  quarantined: {n:,} × {reason}")
    for inp in rep["inputs"]:
        out.print(f"  input: {inp['file']} ({inp['bytes']:,} B{', sha256 verified' if inp['sha256_verified'] else ''})")


@app.command("rebuild-catalog")
def rebuild_catalog(data: DataOpt = None) -> None:
    """Recreate data/catalog.duckdb from the lake (e.g. after moving the data folder)."""
    from ingest import catalog
    from ingest.lake import lake_lock

    paths = data_paths(data)
    with lake_lock(paths):
        path = catalog.rebuild(paths)
    out.print(f"rebuilt {path}")


def _is_click_exception(exc: Exception) -> bool:
    """True for click's ClickException, whichever click raised it (recent typer bundles its own copy)."""
    return any(c.__name__ == "ClickException" for c in type(exc).__mro__)


def run_app(application: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a Typer app, mapping IngestError to its exit code and one line on stderr."""
    try:
        application(args=argv, standalone_mode=False)
    except IngestError as exc:
        err.print(f"error: {exc}", soft_wrap=True, markup=False, highlight=False)
        if os.environ.get("TRACELAB_DEBUG"):
            raise
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted", markup=False)
        return 130
    except Exception as exc:  # click usage errors and the rest
        if _is_click_exception(exc):
            exc.show()
            return exc.exit_code
        err.print(f"internal error: {type(exc).__name__}: {exc} (set TRACELAB_DEBUG=1 for the traceback)", soft_wrap=True, markup=False)
        if os.environ.get("TRACELAB_DEBUG"):
            raise
        return 70
    return 0


def main() -> None:
    """Console-script entry point for ``ingest``."""
    sys.exit(run_app(app))
