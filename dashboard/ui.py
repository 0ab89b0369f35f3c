"""Page helpers: the data root, stamps for the caches, empty-lake messages and number tables.

An empty lake never shows a stack trace: each page asks :func:`require_catalog` (or checks for models
and runs) first, and on nothing found shows :func:`empty` with the command that fills it, then stops.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import streamlit as st

from analysis.report import flatten
from ingest.paths import data_paths

QUICKSTART = "tracelab quickstart"
INGEST = "tracelab ingest run SOURCE   (tracelab ingest list shows the sources)"
TRAIN = "tracelab predict train --task response-length --trace azure_llm_2023_conv"
SERVE = "tracelab replay serve --trace azure_llm_2023_conv --duration-s 600"
CLUSTER = "tracelab replay cluster --trace philly_sia_jobs --max-jobs 2000"
FLEET = ("tracelab replay fleet --trace azure_llm_2023_code --duration-s 120 --layout disaggregated "
         "--prefill 1xh100 --decode 1xh100 --save")


def root_from_argv(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The data root: ``--data ROOT`` (or ``--data=ROOT``) in ``argv``, else ``$TRACELAB_DATA``, else ./data."""
    chosen = None
    for k, arg in enumerate(argv):
        if arg == "--data" and k + 1 < len(argv):
            chosen = argv[k + 1]
        elif arg.startswith("--data="):
            chosen = arg.split("=", 1)[1]
    return str(data_paths(chosen or env.get("TRACELAB_DATA") or None).root)


def data_root() -> str:
    """This app's data root (``streamlit run dashboard/app.py -- --data ROOT``, or ``$TRACELAB_DATA``)."""
    return root_from_argv(sys.argv[1:], os.environ)


def catalog_stamp(root: str) -> float | None:
    """The catalog's mtime (a cache key that changes on every re-ingest), None without a catalog."""
    path = data_paths(root).catalog
    return path.stat().st_mtime if path.exists() else None


def empty(what: str, *commands: str) -> None:
    """A friendly 'nothing here yet' box naming the commands that fill it, then stop the page."""
    st.info(f"{what}\n\nTo fill it, run:\n\n" + "\n\n".join(f"`{c}`" for c in commands), icon="ℹ️")
    st.stop()


def require_catalog(root: str) -> float:
    """The catalog's stamp; an empty-lake message (and a stopped page) when there is no catalog or no trace."""
    stamp = catalog_stamp(root)
    if stamp is None:
        empty(f"The data lake at `{root}` is empty: there is no catalog yet.", QUICKSTART, INGEST)
    from dashboard import cached

    if cached.catalog_overview(root, stamp)["traces"].is_empty():
        empty(f"The catalog at `{root}` holds no traces yet.", QUICKSTART, INGEST)
    return stamp


def traces_or_stop() -> tuple[str, float, dict[str, str]]:
    """(data root, catalog stamp, request/job trace -> kind) for a page that needs a trace to explore;
    an empty-lake message (and a stopped page) when there is none."""
    from dashboard import cached

    root = data_root()
    stamp = require_catalog(root)
    kinds = cached.explorable(root, stamp)
    if not kinds:
        empty("No request or job trace is ingested yet.", QUICKSTART, INGEST)
    return root, stamp, kinds


def fmt(value: object) -> str:
    """A number for a table: thousands separators, 4 significant digits, 'n/a' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value[:12]) + (" …" if len(value) > 12 else "")
    return str(value)


def numbers_frame(numbers: Mapping) -> pl.DataFrame:
    """Nested key numbers as a two-column table (``quantity``, ``value`` formatted)."""
    flat = flatten(numbers)
    return pl.DataFrame({"quantity": list(flat), "value": [fmt(v) for v in flat.values()]},
                        schema={"quantity": pl.String, "value": pl.String})


def show_sections(sections, key: str) -> None:
    """Report sections (``analysis.report.Section``): heading, notes, key numbers, figures two per row."""
    for s_idx, section in enumerate(sections):
        st.subheader(section.title)
        for note in section.notes:
            st.caption(note)
        if section.numbers:
            with st.expander("key numbers", expanded=False):
                st.dataframe(numbers_frame(section.numbers), hide_index=True, width="stretch")
        figures = list(section.figures)
        for start in range(0, len(figures), 2):
            cols = st.columns(2)
            for col, (f_idx, fig) in zip(cols, enumerate(figures[start:start + 2], start)):
                col.plotly_chart(fig, width="stretch", key=f"{key}-{s_idx}-{f_idx}")


def sidebar(root: str) -> None:
    """The data root, shown on every page."""
    st.sidebar.caption(f"data root: `{root}`")
    st.sidebar.caption(f"catalog: {'yes' if Path(data_paths(root).catalog).exists() else 'none yet'}")
