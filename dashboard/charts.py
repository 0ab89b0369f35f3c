"""Plotly figure builders for the dashboard: pure (small inputs in, a Figure out), built on ``analysis.report``.

Every figure that leaves here is capped at :data:`MAX_POINTS` points per trace (:func:`thin`), so a
six-month per-minute series never reaches the browser whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import polars as pl

from analysis.report import bar_figure, cdf_figure, series_figure

MAX_POINTS = 2000
"""Most points per plotted trace."""
HEIGHT = 360
"""Figure height, pixels."""


def thin(fig: go.Figure, max_points: int = MAX_POINTS) -> go.Figure:
    """``fig`` with every scatter/bar trace longer than ``max_points`` reduced to about ``max_points`` points
    (bucket means of y at each bucket's first x, NaN-aware), in place; returns it."""
    for trace in fig.data:
        x, y = trace.x, trace.y
        if x is None or y is None or len(y) <= max_points:
            continue
        step = math.ceil(len(y) / max_points)
        xs, ys = [], []
        for k in range(0, len(y), step):
            chunk = [v for v in y[k:k + step] if v is not None and not (isinstance(v, float) and math.isnan(v))]
            xs.append(x[k])
            ys.append(sum(chunk) / len(chunk) if chunk else None)
        trace.x, trace.y = xs, ys
    return fig


def _style(fig: go.Figure) -> go.Figure:
    fig.update_layout(height=HEIGHT, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2})
    return thin(fig)


def cdfs(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, x_title: str,
         log_x: bool = False) -> go.Figure:
    """Overlaid empirical CDFs (label -> (values, probabilities)); log x only when every value is positive."""
    positive = all(v > 0 for x, _ in curves.values() for v in x)
    return _style(cdf_figure(curves, title, x_title, log_x=log_x and positive))


def series(frame: pl.DataFrame, x: str, ys: Mapping[str, str], title: str, x_title: str, y_title: str,
           kind: str = "lines") -> go.Figure:
    """Columns of ``frame`` against ``x`` (label -> column)."""
    return _style(series_figure({label: (frame[x].to_list(), frame[col].to_list()) for label, col in ys.items()},
                                title, x_title, y_title, kind=kind))


def overlay(curves: Mapping[str, pl.DataFrame], x: str, y: str, title: str, x_title: str, y_title: str) -> go.Figure:
    """One column of several frames (label -> frame) against ``x``: runs side by side."""
    return _style(series_figure({label: (f[x].to_list(), f[y].to_list()) for label, f in curves.items()},
                                title, x_title, y_title))


def bars(labels: Sequence[str], values: Mapping[str, Sequence[float | None]], title: str, y_title: str) -> go.Figure:
    """Grouped bars (one group per label, one bar per series); None is drawn as no bar."""
    clean = {k: [float("nan") if v is None else v for v in vs] for k, vs in values.items()}
    return _style(bar_figure([str(v) for v in labels], clean, title, y_title))


def metric_bars(metrics: pl.DataFrame, keys: Sequence[str], title: str) -> go.Figure:
    """Held-out metrics per model (rows of ``results.metrics_frame``), one bar group per model."""
    present = [k for k in keys if k in metrics.columns]
    return bars(metrics["model"].to_list(), {k: metrics[k].to_list() for k in present}, title, "value")


def calibration(model_metrics: Mapping[str, float | None]) -> go.Figure:
    """Observed share of truths below the p50 and p90 heads against the ideal 0.5 / 0.9."""
    return bars(["p50", "p90"], {"observed": [model_metrics.get("coverage_p50"), model_metrics.get("coverage_p90")],
                                 "ideal": [0.5, 0.9]}, "Quantile calibration: share of truths below the head",
                "share")


def helios_bands(bands: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Share of jobs within +-10/50/100/1000 % of the true duration: ours against the Helios paper."""
    keys = list(bands["paper"])
    return bars(keys, {"ours": [bands["ours"].get(k) for k in keys], "Helios paper": [bands["paper"][k] for k in keys]},
                "Error bands against the Helios paper", "share of jobs")


def importance(values: Mapping[str, float]) -> go.Figure:
    """Permutation importance per feature, largest first."""
    order = sorted(values, key=lambda k: -values[k])
    return bars(order, {"log-MAE increase when shuffled": [values[k] for k in order]}, "Permutation importance",
                "log-MAE increase")


def scatter(sample: Mapping[str, Sequence[float]], unit: str) -> go.Figure:
    """Predicted against true on an evaluation sample (``predictors.report.scatter_figure``)."""
    from predictors.report import scatter_figure  # lazy: only the Predictors page needs it

    return _style(scatter_figure(dict(sample), "Predicted vs true (test sample)", unit))


def cdf_of(frame: pl.DataFrame) -> tuple[list[float], list[float]]:
    """(values, quantiles) of a ``value``/``quantile`` frame (``data.value_cdf``)."""
    return frame["value"].to_list(), frame["quantile"].to_list()
