"""The dashboard's loaders behind ``st.cache_data``.

Each wrapper takes the data root and a ``stamp`` of the files it reads (the catalog's mtime, or the
count and newest mtime of model cards / run summaries): a re-ingest, a new model or a new run changes
the stamp, so the next render reloads instead of showing stale numbers. The stamp is only a cache
key; the functions themselves live in :mod:`dashboard.data` and :mod:`dashboard.results`.
"""

from __future__ import annotations

import streamlit as st

from analysis.build import compare_sections, report_sections
from analysis.report import Section
from dashboard import charts, data, results

TTL_S = 3600
"""Entries expire after an hour regardless (a stamp that did not change still frees memory)."""


@st.cache_data(ttl=TTL_S, show_spinner=False)
def catalog_overview(root: str, stamp: float) -> dict:
    return data.catalog_overview(root)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def explorable(root: str, stamp: float) -> dict[str, str]:
    return data.explorable(root)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trace_span(root: str, stamp: float, trace: str, kind: str) -> tuple[float, float, int]:
    return data.trace_span(root, trace, kind)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def job_options(root: str, stamp: float, trace: str) -> dict:
    return data.job_options(root, trace)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def arrival_series(root: str, stamp: float, trace: str, kind: str, window_s: tuple, jobs: data.JobFilter | None):
    return data.arrival_series(root, trace, kind, window_s, jobs)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def value_cdf(root: str, stamp: float, trace: str, kind: str, column: str, window_s: tuple,
              jobs: data.JobFilter | None):
    return data.value_cdf(root, trace, kind, column, window_s, jobs)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def window_summary(root: str, stamp: float, trace: str, kind: str, window_s: tuple, jobs: data.JobFilter | None):
    return data.window_summary(root, trace, kind, window_s, jobs)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def job_breakdown(root: str, stamp: float, trace: str, window_s: tuple, jobs: data.JobFilter | None):
    return data.job_breakdown(root, trace, window_s, jobs)


def _thinned(sections: list[Section]) -> list[Section]:
    for section in sections:
        for fig in section.figures:
            charts.thin(fig)
    return sections


@st.cache_data(ttl=TTL_S, show_spinner=False)
def characterization(root: str, stamp: float, trace: str) -> tuple[list[Section], dict]:
    """The characterization report's sections for one trace (``analysis.build.report_sections``)."""
    with data.catalog(root) as con:
        sections, numbers = report_sections(con, trace)
    return _thinned(sections), numbers


@st.cache_data(ttl=TTL_S, show_spinner=False)
def comparison(root: str, stamp: float, traces: tuple[str, ...]) -> tuple[list[Section], dict]:
    """Side-by-side sections for traces of one kind (``analysis.build.compare_sections``)."""
    with data.catalog(root) as con:
        sections, numbers = compare_sections(con, list(traces))
    return _thinned(sections), numbers


@st.cache_data(ttl=TTL_S, show_spinner=False)
def list_models(root: str, stamp: tuple) -> object:
    return results.list_models(root)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def model_card(root: str, stamp: tuple, name: str) -> dict:
    return results.model_card(root, name)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def list_runs(root: str, stamp: tuple, kind: str) -> object:
    return results.list_runs(root, kind)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def run_cdf(path: str, stamp: tuple, table: str, column: str, where: str = "true") -> tuple[list, list]:
    return results.run_cdf(path, table, column, where)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def serve_series(path: str, stamp: tuple) -> object:
    return results.serve_series(path)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def cluster_series(path: str, stamp: tuple) -> object:
    return results.cluster_series(path)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def read_summary(path: str, stamp: tuple) -> dict:
    return results.read_summary(path)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def ingest_info(root: str, stamp: float, trace: str) -> dict:
    """``ingest info TRACE``: the ingest report plus per-table spans and figures (``ingest.info.trace_info``)."""
    from ingest.info import trace_info
    from ingest.paths import data_paths

    return trace_info(data_paths(root), trace)
