"""`tracelab analyze`: characterization reports (HTML with plotly figures + JSON key numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

err = Console(stderr=True)
out = Console()


class AnalyzeError(typer.BadParameter):
    """A user error (unknown trace, mixed kinds): one line and exit code 2, no traceback."""


def analyze(
    traces: Annotated[list[str], typer.Argument(help="Trace names in the catalog (see `ingest list`).")],
    compare: Annotated[bool, typer.Option("--compare", help="One side-by-side report for all traces (same kind).")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Report folder (default: <data>/reports).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Data root (default: $TRACELAB_DATA or ./data).")] = None,
) -> None:
    """Write a self-contained HTML report and a JSON of key numbers per trace (or one comparison)."""
    from analysis.build import compare_sections, report_sections
    from analysis.catalog import open_catalog
    from analysis.report import render_html, write_report
    from ingest.paths import data_paths

    paths = data_paths(data)
    if not paths.catalog.exists():
        raise AnalyzeError(f"no catalog at {paths.catalog}: ingest a trace first (`ingest run azure_llm_2023`)")
    target = out_dir or paths.root / "reports"
    con = open_catalog(paths.root)
    jobs = [("compare_" + "_vs_".join(traces), traces)] if compare else [(t, [t]) for t in traces]
    for name, group in jobs:
        with err.status(f"characterizing {', '.join(group)}"):
            try:
                sections, numbers = compare_sections(con, group) if compare else report_sections(con, group[0])
            except ValueError as exc:
                raise AnalyzeError(str(exc)) from None
            html_path, json_path = write_report(target, name, render_html(f"tracelab: {' vs '.join(group)}", sections,
                                                                          {"traces": ", ".join(group)}), numbers)
        out.print(f"{name}: {html_path} ({len(sections)} sections) · numbers: {json_path}")
