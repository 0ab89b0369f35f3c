"""The evaluation report of a trained predictor: a table per model and the plots people look at.

Built from the dict :func:`predictors.train.train` returns; rendered with :mod:`analysis.report`, so it
is one self-contained, byte-deterministic HTML file plus the same numbers as JSON.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from analysis.report import Section, bar_figure, render_html, write_report
from predictors.evaluate import HELIOS_BANDS

LENGTH_TABLE = ("mae", "acc50", "acc100", "bucket_acc", "kendall_tau", "spearman")
DURATION_TABLE = ("mae_log", "mape_log", "within_10", "within_50", "within_100", "within_1000", "spearman")


def scatter_figure(sample: dict, title: str, unit: str) -> go.Figure:
    """Predicted (point, and the p50-p90 band) against true, log axes, on the report's test sample."""
    y = np.asarray(sample["true"], dtype=np.float64)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=(y + 1).tolist(), y=(np.asarray(sample["point"]) + 1).tolist(), mode="markers",
                             name="point", marker={"size": 4, "opacity": 0.5}))
    if "p90" in sample:
        fig.add_trace(go.Scatter(x=(y + 1).tolist(), y=(np.asarray(sample["p90"]) + 1).tolist(), mode="markers",
                                 name="p90", marker={"size": 3, "opacity": 0.3}))
    lo, hi = float(max(1.0, (y + 1).min())), float((y + 1).max())
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect", line={"dash": "dash"}))
    fig.update_layout(title=title, xaxis_title=f"true {unit} + 1", yaxis_title=f"predicted {unit} + 1",
                      xaxis_type="log", yaxis_type="log", template="plotly_white")
    return fig


def build_report(report: dict) -> tuple[str, dict]:
    """HTML text and JSON numbers of an evaluation report."""
    length = report["task"] == "response_length"
    keys = LENGTH_TABLE if length else DURATION_TABLE
    models = report["models"]
    names = list(models)
    table = {name: {k: models[name].get(k) for k in keys} for name in names}
    figures = [bar_figure(names, {k: [models[n].get(k, float("nan")) for n in names]
                                  for k in (("acc50", "acc100", "bucket_acc", "kendall_tau") if length
                                            else ("within_10", "within_50", "within_100", "within_1000"))},
                          "Held-out metrics per model (higher is better)", "share / tau")]
    sections = [Section("Models on the later (held-out) part, baselines first", numbers=table, figures=figures,
                        notes=[report["signal"],
                               f"Time-ordered split per stream: {report['rows']['train']:,} earlier rows train, "
                               f"{report['rows']['test']:,} later rows test. Traces: {', '.join(report['traces'])}."])]
    if not length and report.get("helios_bands"):
        ours = report["helios_bands"]["ours"]
        sections.append(Section(
            "Error bands against the Helios paper", numbers={"ours": ours, "helios_paper": HELIOS_BANDS},
            figures=[bar_figure(list(HELIOS_BANDS), {"ours (helios_blend)": [ours[k] for k in HELIOS_BANDS],
                                                     "Helios paper": list(HELIOS_BANDS.values())},
                                "Share of jobs within +-10/50/100/1000 % of the true duration", "share of jobs")],
            notes=["Helios predicts from user and job-name history; traces without users (the derived Philly "
                   "tables, ITP) leave only VC, size and cluster-wide history, so lower shares are expected there."]))
    boosted = "boosted" if length else "helios_blend"
    cover = {k: models[boosted].get(k) for k in ("coverage_p50", "coverage_p90")}
    sections.append(Section(
        "Predicted against true, and quantile calibration", numbers={"coverage": cover, "ideal": {"coverage_p50": 0.5,
                                                                                                   "coverage_p90": 0.9}},
        figures=[scatter_figure(report["sample"], "Predicted vs true (test sample)", "tokens" if length else "seconds"),
                 bar_figure(["p50", "p90"], {"observed coverage": [cover["coverage_p50"], cover["coverage_p90"]],
                                             "ideal": [0.5, 0.9]}, "Quantile heads: share of truths below", "share")]))
    imp = report["importance"]
    order = sorted(imp, key=lambda k: -imp[k])
    sections.append(Section("What carries signal", numbers={"permutation_importance": {k: imp[k] for k in order}},
                            figures=[bar_figure(order, {"log-MAE increase when shuffled": [imp[k] for k in order]},
                                                "Permutation importance (point head, test sample)", "log-MAE increase")]))
    numbers = {k: report[k] for k in ("task", "traces", "rows", "models", "importance", "signal", "training", "sample")}
    if report.get("helios_bands"):
        numbers["helios_bands"] = report["helios_bands"]
    title = f"tracelab predictor evaluation: {report['task'].replace('_', ' ')} on {', '.join(report['traces'])}"
    return render_html(title, sections, meta={"split": "time-ordered", "train rows": report["rows"]["train"],
                                              "test rows": report["rows"]["test"]}), numbers


def write_evaluation(report: dict, out_dir: str | Path, name: str = "evaluation") -> tuple[Path, Path]:
    """Write ``<name>.html`` and ``<name>.json`` into ``out_dir`` (atomically)."""
    html_text, numbers = build_report(report)
    return write_report(out_dir, name, html_text, numbers)
