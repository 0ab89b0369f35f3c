"""Characterization reports: the analysis functions' numbers and figures, assembled per trace or compared.

`report_sections(con, trace)` picks the family from the catalog (a `requests` trace or a `jobs` trace)
and returns report Sections plus the JSON key numbers; `compare_sections` overlays several traces of one
kind (Azure code vs conv, Philly vs Helios vs PAI, as the papers do).
"""

from __future__ import annotations

import duckdb
import polars as pl

from analysis import prefix as prefix_mod
from analysis import requests as rq
from analysis.report import Section, bar_figure, cdf_figure, series_figure


def trace_kind(con: duckdb.DuckDBPyConnection, trace: str) -> str:
    """'requests' or 'jobs', from the catalog; ValueError naming the ingested traces otherwise."""
    kinds = {}
    for view in ("requests", "jobs"):
        try:
            names = [r[0] for r in con.sql(f"SELECT DISTINCT trace FROM {view}").fetchall()]
        except duckdb.Error:
            names = []
        for name in names:
            kinds[name] = view
    if trace not in kinds:
        known = ", ".join(sorted(kinds)) or "none (run `ingest run <source>` first)"
        raise ValueError(f"trace {trace!r} is not in the catalog; ingested traces: {known}")
    return kinds[trace]


def _cdf(df) -> tuple[list, list]:
    return df["tokens"].to_list(), df["quantile"].to_list()


def request_sections(con: duckdb.DuckDBPyConnection, trace: str) -> tuple[list[Section], dict]:
    numbers = rq.characterize_requests(con, trace)
    rate = rq.rate_series(con, trace, 60.0)
    sections = [
        Section("Overview", numbers["counts"]),
        Section("Arrivals", {"inter-arrival": numbers["interarrival"], "on/off": numbers["on_off"]},
                [series_figure({"requests/min": (rate["window_start_s"].to_list(), rate["num_requests"].to_list())},
                               f"{trace}: arrivals per minute", "seconds since trace start", "requests")],
                ["Index of dispersion > 1 means burstier than Poisson at that window size."]),
    ]
    disp = pl.DataFrame(numbers["dispersion"])
    sections[-1].figures.append(series_figure(
        {"index of dispersion": (disp[disp.columns[0]].to_list(), disp[disp.columns[-1]].to_list())},
        f"{trace}: index of dispersion of counts", "window (s)", "variance / mean"))
    patterns = numbers["time_patterns"]
    for name, labels in (("diurnal", [str(h) for h in range(24)]), ("weekly", list(rq.WEEKDAYS))):
        pat = patterns.get(name, {})
        if pat.get("available", True) and pat.get("requests_per_hour"):
            sections[-1].figures.append(bar_figure(labels, {"requests/hour": pat["requests_per_hour"]},
                                                   f"{trace}: {name} pattern (local time)", "requests per hour"))
        else:
            sections[-1].notes.append(f"{name} pattern not available: {pat.get('reason', 'unknown')}")
    prompt, output = rq.token_cdf(con, trace, "prompt_tokens"), rq.token_cdf(con, trace, "output_tokens")
    tpm = rq.tokens_per_minute(con, trace)
    sections.append(Section(
        "Prompt and output lengths",
        {"prompt_tokens": numbers["prompt_tokens"], "output_tokens": numbers["output_tokens"],
         "correlation": numbers["correlation"]},
        [cdf_figure({"prompt": _cdf(prompt), "output": _cdf(output)}, f"{trace}: token CDFs", "tokens", log_x=True),
         series_figure({"prompt tokens/min": (tpm["window_start_s"].to_list(), tpm["prompt_tokens"].to_list()),
                        "output tokens/min": (tpm["window_start_s"].to_list(), tpm["output_tokens"].to_list())},
                       f"{trace}: tokens per minute", "seconds since trace start", "tokens")]))
    if numbers.get("prefix"):
        curve = prefix_mod.lru_curve(con, trace)
        if curve.height:
            sections.append(Section(
                "Prefix reuse", numbers.get("prefix", {}),
                [series_figure({"LRU hit rate": (curve["capacity_blocks"].to_list(), curve["hit_rate"].to_list())},
                               f"{trace}: LRU block-cache hit rate vs capacity", "cache capacity (blocks)", "hit rate")]))
    return sections, numbers


def report_sections(con: duckdb.DuckDBPyConnection, trace: str) -> tuple[list[Section], dict]:
    """Sections and key numbers for one trace of either kind."""
    if trace_kind(con, trace) == "requests":
        return request_sections(con, trace)
    from analysis.build_jobs import job_sections  # the cluster half lives beside its analysis module

    return job_sections(con, trace)


def compare_sections(con: duckdb.DuckDBPyConnection, traces: list[str]) -> tuple[list[Section], dict]:
    """Side-by-side sections for several traces of the same kind."""
    kinds = {t: trace_kind(con, t) for t in traces}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"--compare needs traces of one kind, got {kinds}")
    if next(iter(kinds.values())) == "jobs":
        from analysis.build_jobs import compare_job_sections

        return compare_job_sections(con, traces)
    numbers = {t: rq.characterize_requests(con, t) for t in traces}
    curves = {col: {t: _cdf(rq.token_cdf(con, t, col)) for t in traces} for col in ("prompt_tokens", "output_tokens")}
    stats = {t: {"prompt": n["prompt_tokens"], "output": n["output_tokens"], "interarrival_cv": n["interarrival"].get("cv")}
             for t, n in numbers.items()}
    sections = [
        Section("Key numbers", stats),
        Section("Lengths", {}, [cdf_figure(curves["prompt_tokens"], "prompt tokens", "tokens", log_x=True),
                                cdf_figure(curves["output_tokens"], "output tokens", "tokens", log_x=True)]),
    ]
    return sections, numbers
