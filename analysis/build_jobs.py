"""Report sections for cluster job traces (the `jobs` half of `analysis.build`).

A part the trace cannot support (no queueing times, no users, no wall clock, no capacity) becomes a
note saying why, never an empty or invented figure.
"""

from __future__ import annotations

import duckdb
import polars as pl

from analysis import jobs as jb
from analysis import pai
from analysis import utilization as ut
from analysis.catalog import NotAvailable, not_available
from analysis.report import Section, bar_figure, cdf_figure, series_figure


def _cdf_curves(df: pl.DataFrame) -> dict[str, tuple[list, list]]:
    return {str(k): (g["value_s"].to_list(), g["p"].to_list())
            for (k,), g in df.group_by("key", maintain_order=True)}


def _try_fig(section: Section, build, what: str) -> None:
    try:
        section.figures.append(build())
    except NotAvailable as exc:
        section.notes.append(f"{what}: {not_available(exc)}")


def _utilization_figures(con, trace: str, section: Section) -> None:
    try:
        series = ut.utilization_series(con, trace)
        fallback = None
    except NotAvailable:
        try:  # traces without start times: place jobs at submission (no queueing), and say so
            series = ut.utilization_series(con, trace, start_fallback="submit")
            fallback = "jobs placed at their submit time (the trace has no start times)"
        except NotAvailable as exc:
            section.notes.append(f"utilization: {not_available(exc)}")
            return
    if fallback:
        section.notes.append(f"utilization: {fallback}")
    col = "utilization" if series["utilization"].null_count() < series.height else "gpus"
    hourly = series.group_by(hour=(pl.col("time_s") // 3600)).agg(pl.col(col).mean()).sort("hour")
    section.figures.append(series_figure({col: ((hourly["hour"] / 24).to_list(), hourly[col].to_list())},
                                         f"{trace}: GPU {col} (hourly mean)", "days since trace start", col))
    try:
        d = ut.diurnal_profile(series)
        section.figures.append(bar_figure([str(h) for h in d["hour"]], {col: d[col].to_list()},
                                          f"{trace}: diurnal {col} (local time)", col))
    except NotAvailable as exc:
        section.notes.append(f"diurnal pattern: {not_available(exc)}")


def job_sections(con: duckdb.DuckDBPyConnection, trace: str) -> tuple[list[Section], dict]:
    numbers = {"jobs": jb.characterize_jobs(con, trace), "utilization": ut.characterize_utilization(con, trace)}
    overview = {k: v for k, v in numbers["jobs"].items() if not isinstance(v, dict) or k == "columns_present"}
    durations = Section("Durations and queueing", {"duration_s": numbers["jobs"]["duration_s"],
                                                   "queue_s": numbers["jobs"]["queue_s"]})
    _try_fig(durations, lambda: cdf_figure(_cdf_curves(jb.duration_cdf(con, trace, by="size")),
                                           f"{trace}: job duration by GPU count", "seconds", log_x=True), "durations")
    _try_fig(durations, lambda: cdf_figure(_cdf_curves(jb.queue_cdf(con, trace, by="size")),
                                           f"{trace}: queueing delay by GPU count", "seconds", log_x=True), "queueing")
    shares = Section("Status, size and concentration", {"status": numbers["jobs"]["status"],
                                                         "size": numbers["jobs"]["size"],
                                                         "user_concentration": numbers["jobs"]["user_concentration"],
                                                         "vc_concentration": numbers["jobs"]["vc_concentration"]})

    def size_fig():
        s = jb.size_distribution(con, trace, buckets="coarse")
        return bar_figure(s["key"].to_list(), {"share of jobs": s["job_share"].to_list(),
                                               "share of GPU time": s["gpu_time_share"].to_list()},
                          f"{trace}: job size", "share")

    def concentration_fig():
        curves = {}
        for by in ("user", "group"):
            try:
                c = jb.concentration(con, trace, by=by)
                curves[by] = (c["top_frac"].to_list(), c["gpu_time_share"].to_list())
            except NotAvailable:
                pass
        if not curves:
            raise NotAvailable("no users or VCs in this trace")
        return series_figure(curves, f"{trace}: share of GPU time held by the top fraction", "top fraction",
                             "share of GPU time")

    _try_fig(shares, size_fig, "size distribution")
    _try_fig(shares, concentration_fig, "concentration")
    util = Section("Utilization", numbers["utilization"])
    _utilization_figures(con, trace, util)
    sections = [Section("Overview", overview), durations, shares, util]
    if pai.has_pai_tables(con, trace):  # PAI only: task requests, requested vs used, waits by request and type
        numbers["pai"] = pai.characterize_pai(con, trace)
        sections.append(_pai_section(con, trace, numbers["pai"]))
    return sections, numbers


def _pai_section(con, trace: str, numbers: dict) -> Section:
    section = Section("PAI: GPU requests, requested vs used, waiting", numbers)

    def requests_fig():
        d = pai.request_distribution(con, trace, by="request")
        return bar_figure(d["key"].to_list(), {"share of GPU instances": d["instance_share"].to_list(),
                                               "share of requested GPUs": d["gpu_share"].to_list()},
                          f"{trace}: GPUs requested per instance", "share")

    def usage_fig():
        u = pai.usage_cdf(con, trace, quantiles=tuple(i / 20 for i in range(21)))
        curves = {r: (g["value"].to_list(), g["p"].to_list()) for (r,), g in u.group_by("resource", maintain_order=True)}
        return cdf_figure(curves, f"{trace}: used / requested per instance", "used / requested")

    _try_fig(section, requests_fig, "GPU requests")
    _try_fig(section, usage_fig, "requested vs used")
    for by in ("size", "gpu_type"):
        title = f"{trace}: instance wait (first instance start - task start) by {by}"
        _try_fig(section, lambda by=by, title=title: cdf_figure(
            _cdf_curves(pai.wait_cdf(con, trace, by=by, definition="instance")), title, "seconds", log_x=True),
            f"instance wait by {by}")
    return section


def compare_job_sections(con: duckdb.DuckDBPyConnection, traces: list[str]) -> tuple[list[Section], dict]:
    numbers = {t: jb.characterize_jobs(con, t) for t in traces}
    key = Section("Key numbers", {t: {k: n.get(k) for k in ("jobs", "gpu_jobs", "gpu_hours", "users", "vcs")}
                                  for t, n in numbers.items()})
    curves = Section("Distributions")
    for what, fn in (("job duration", jb.duration_cdf), ("queueing delay", jb.queue_cdf)):
        data = {}
        for t in traces:
            try:
                df = fn(con, t)
                data[t] = (df["value_s"].to_list(), df["p"].to_list())
            except NotAvailable as exc:
                curves.notes.append(f"{t} {what}: {not_available(exc)}")
        if data:
            curves.figures.append(cdf_figure(data, what, "seconds", log_x=True))
    return [key, curves], numbers
