"""Metrics in the style of the literature, computed on the held-out (later) part of a trace.

Response length (tokens):
- ``mae``; ``acc50`` / ``acc100``: share of predictions within 50 / 100 tokens of the truth
  ("Response Length Perception and Sequence Scheduling", Zheng et al. 2023);
- ``bucket_acc``: share of requests whose predicted bucket is the true one (proxy-model SJF work);
- ``kendall_tau``: mean Kendall tau-b between predicted and true order within windows of
  consecutive arrivals (what a scheduler ranks at once; learning-to-rank scheduling, Fu et al. 2024);
  a constant predictor has no order, scored 0;
- ``spearman``: rank correlation over the whole test set;
- ``coverage_p50`` / ``coverage_p90``: share of truths at or below the quantile heads (calibrated:
  0.5 and 0.9).

GPU duration (seconds):
- ``mae_log`` (mean |ln(1+pred) - ln(1+true)|) and ``mape_log`` (that error relative to ln(1+true));
- ``within_10`` ... ``within_1000``: share of jobs with |pred - true| <= x% of true (the Helios paper's
  bands: it reports 10 / 50 / 70 / 90 percent at +-10 / 50 / 100 / 1000 %);
- ``spearman``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau, spearmanr

HELIOS_BANDS = {"within_10": 0.10, "within_50": 0.50, "within_100": 0.70, "within_1000": 0.90}
"""The share of jobs within each error band that the Helios paper (SC'21, Fig. 15) reports for QSSF."""

KENDALL_WINDOW = 32
"""Consecutive test arrivals ranked together for ``kendall_tau`` (a scheduler's queue at once)."""
MAX_WINDOWS = 2000


def _rank_corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0
    value = fn(a, b)[0]
    return 0.0 if np.isnan(value) else float(value)


def window_kendall(y: np.ndarray, pred: np.ndarray, window: int = KENDALL_WINDOW) -> float:
    """Mean Kendall tau-b within consecutive windows (at most MAX_WINDOWS, evenly spread)."""
    starts = np.arange(0, len(y) - window + 1, window)
    if len(starts) == 0:
        return _rank_corr(kendalltau, pred, y)
    if len(starts) > MAX_WINDOWS:
        starts = starts[np.linspace(0, len(starts) - 1, MAX_WINDOWS).astype(np.int64)]
    return float(np.mean([_rank_corr(kendalltau, pred[s:s + window], y[s:s + window]) for s in starts]))


def length_metrics(y: np.ndarray, pred: np.ndarray, *, bucket_edges=(), bucket_pred: np.ndarray | None = None,
                   p50: np.ndarray | None = None, p90: np.ndarray | None = None) -> dict[str, float]:
    """Response-length metrics of point predictions ``pred`` against true outputs ``y`` (arrival order)."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    err = np.abs(pred - y)
    edges = np.asarray(bucket_edges, dtype=np.float64)
    true_bucket = np.searchsorted(edges, y, side="left")
    got_bucket = np.searchsorted(edges, pred, side="left") if bucket_pred is None else bucket_pred
    out = {
        "mae": float(err.mean()), "acc50": float((err <= 50).mean()), "acc100": float((err <= 100).mean()),
        "bucket_acc": float((got_bucket == true_bucket).mean()),
        "kendall_tau": window_kendall(y, pred), "spearman": _rank_corr(spearmanr, pred, y),
    }
    if p50 is not None:
        out["coverage_p50"] = float((y <= p50).mean())
    if p90 is not None:
        out["coverage_p90"] = float((y <= p90).mean())
    return out


def duration_metrics(y: np.ndarray, pred: np.ndarray, *, p50: np.ndarray | None = None,
                     p90: np.ndarray | None = None) -> dict[str, float]:
    """GPU-duration metrics of predicted run seconds ``pred`` against true ``y``."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.maximum(np.asarray(pred, dtype=np.float64), 0.0)
    log_err = np.abs(np.log1p(pred) - np.log1p(y))
    rel = np.abs(pred - y) / np.maximum(y, 1.0)  # a 0 s job: error relative to 1 s
    with np.errstate(divide="ignore", invalid="ignore"):
        mape = np.where(y > 0, log_err / np.log1p(y), np.nan)
    out = {"mae_log": float(log_err.mean()), "mape_log": float(np.nanmean(mape)) if np.any(y > 0) else float("nan")}
    for name, frac in (("within_10", 0.1), ("within_50", 0.5), ("within_100", 1.0), ("within_1000", 10.0)):
        out[name] = float((rel <= frac).mean())
    out["spearman"] = _rank_corr(spearmanr, pred, y)
    if p50 is not None:
        out["coverage_p50"] = float((y <= p50).mean())
    if p90 is not None:
        out["coverage_p90"] = float((y <= p90).mean())
    return out
