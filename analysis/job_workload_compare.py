"""How close a regenerated job trace is to the original: distances, rate errors, shares, and figures.

Used with :class:`analysis.job_workload_model.JobWorkloadModel` (see its module docstring for measured values).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from analysis.jobs import lorenz_top
from analysis.job_workload_model import SIZE_CLASSES, job_arrays, size_class
from analysis.workload_model import ks_distance, side_by_side

# ---------------------------------------------------------------- comparison, figures, lake


def _top_share(labels: np.ndarray | None, gpu_s: np.ndarray, fraction: float = 0.10) -> float | None:
    """Share of GPU time held by the top ``fraction`` of labels (``analysis.jobs`` Lorenz convention)."""
    if labels is None or not np.any(labels != None):  # noqa: E711
        return None
    df = pl.DataFrame({"e": pl.Series(labels.tolist(), dtype=pl.String), "g": gpu_s}).drop_nulls("e")
    per = np.sort(df.group_by("e").agg(pl.col("g").fill_nan(0).sum())["g"].to_numpy())[::-1]
    return float(lorenz_top(per, np.array([fraction]))[0]) if per.sum() > 0 else None


def _window_error(ta: np.ndarray, tb: np.ndarray, window_s: float) -> dict:
    """Per-window counts over the complete windows both cover: relative L1 error and correlation."""
    m = int(min(ta[-1], tb[-1]) // window_s)
    if m < 1:
        return {"window_s": window_s, "windows": 0, "rel_l1_error": None, "corr": None}
    ca, cb = (np.bincount((t[t < m * window_s] // window_s).astype(np.int64), minlength=m) for t in (ta, tb))
    corr = float(np.corrcoef(ca, cb)[0, 1]) if m > 1 and ca.std() > 0 and cb.std() > 0 else None
    error = float(np.abs(ca - cb).sum() / max(ca.sum(), 1))
    return {"window_s": window_s, "windows": m, "rel_l1_error": error, "corr": corr}


def _shares(d: dict) -> dict[str, tuple[float, float]]:
    """Size class -> (share of jobs, share of GPU time)."""
    gpu_s, cls = np.nan_to_num(d["run_s"]) * d["num_gpus"], size_class(d["num_gpus"])
    total = gpu_s.sum() if gpu_s.sum() > 0 else 1.0
    return {c: (float(np.mean(cls == i)), float(gpu_s[cls == i].sum() / total)) for i, c in enumerate(SIZE_CLASSES)}


def _cv(g: np.ndarray) -> float | None:
    return float(g.std() / g.mean()) if len(g) and g.mean() > 0 else None


def compare(original: pa.Table | pl.DataFrame, regenerated: pa.Table | pl.DataFrame, window_s: float = 3600.0,
            gpu_only: bool = True) -> dict:
    """Fidelity numbers of ``regenerated`` against ``original`` (jobs tables), JSON-able.

    ``interarrival``: ``ks`` of the submit gaps, ``cv`` and ``zero_gap_fraction`` pairs; ``duration``:
    ``ks`` and mean/p50/p90/p99 pairs (known run times); ``num_gpus``: ``ks`` and mean; ``rate`` and
    ``daily_rate``: relative L1 error and correlation of jobs per ``window_s`` and per day;
    ``job_share`` and ``gpu_time_share`` by size class of the original (pairs) and
    ``gpu_time_share_max_abs_diff``; ``top10pct_user_share`` / ``top10pct_group_share`` (GPU time of
    the top 10 % of users / VCs; None when the original has no such labels). ``gpu_only`` compares
    GPU jobs only (as the model fits them).
    """
    a, b = job_arrays(original), job_arrays(regenerated)
    if gpu_only:
        a, b = ({k: None if v is None else v[d["num_gpus"] > 0] for k, v in d.items()} for d in (a, b))
    if min(len(a["submit_s"]), len(b["submit_s"])) < 2:
        raise ValueError("compare needs at least two jobs on each side")
    ta, tb = (np.sort(d["submit_s"]) - d["submit_s"].min() for d in (a, b))
    ga, gb = np.diff(ta), np.diff(tb)
    ra, rb = (d["run_s"][~np.isnan(d["run_s"])] for d in (a, b))
    out = {"num_jobs": side_by_side(len(ta), len(tb)), "span_s": side_by_side(float(ta[-1]), float(tb[-1])),
           "mean_rate_per_h": side_by_side(*(len(t) / t[-1] * 3600 if t[-1] > 0 else None for t in (ta, tb))),
           "interarrival": {"ks": ks_distance(ga, gb), "cv": side_by_side(_cv(ga), _cv(gb)),
                            "zero_gap_fraction": side_by_side(float(np.mean(ga == 0)), float(np.mean(gb == 0)))},
           "duration": {"ks": ks_distance(ra, rb) if len(ra) and len(rb) else None},
           "num_gpus": {"ks": ks_distance(a["num_gpus"], b["num_gpus"]),
                        "mean": side_by_side(float(a["num_gpus"].mean()), float(b["num_gpus"].mean()))},
           "rate": _window_error(ta, tb, window_s), "daily_rate": _window_error(ta, tb, 86400.0)}
    if len(ra) and len(rb):
        out["duration"]["mean"] = side_by_side(float(ra.mean()), float(rb.mean()))
        for q in (50, 90, 99):
            out["duration"][f"p{q}"] = side_by_side(float(np.percentile(ra, q)), float(np.percentile(rb, q)))
    sa, sb = _shares(a), _shares(b)
    present = [c for c in SIZE_CLASSES if sa[c][0] > 0]
    out["job_share"] = {c: side_by_side(sa[c][0], sb[c][0]) for c in present}
    out["gpu_time_share"] = {c: side_by_side(sa[c][1], sb[c][1]) for c in present}
    out["gpu_time_share_max_abs_diff"] = max(abs(sa[c][1] - sb[c][1]) for c in SIZE_CLASSES)
    for col in ("user", "group"):
        top = [_top_share(d[col], np.nan_to_num(d["run_s"]) * d["num_gpus"]) for d in (a, b)]
        out[f"top10pct_{col}_share"] = side_by_side(*top) if top[0] is not None else None
    return out


def _cdf_points(x: np.ndarray, points: int = 200) -> tuple[list, list]:
    """(values, probabilities) of the empirical CDF at ``points`` quantiles (empty for no values)."""
    if len(x) == 0:
        return [], []
    p = np.linspace(0, 1, points)
    return np.quantile(x, p).tolist(), p.tolist()


def comparison_figures(original, regenerated, window_s: float = 3600.0,
                       labels: tuple[str, str] = ("original", "regenerated")) -> list:
    """Plotly figures of ``regenerated`` against ``original`` (jobs tables), drawn with
    ``analysis.report``: CDFs of the submit gaps and of the run times (log x, positive values), and
    jobs per ``window_s`` over time."""
    from analysis.report import cdf_figure, series_figure

    sides = dict(zip(labels, (job_arrays(original), job_arrays(regenerated))))
    gaps, runs, rate = {}, {}, {}
    for label, d in sides.items():
        t = np.sort(d["submit_s"]) - d["submit_s"].min()
        g, r = np.diff(t), d["run_s"][~np.isnan(d["run_s"])]
        gaps[label], runs[label] = _cdf_points(g[g > 0]), _cdf_points(r[r > 0])
        c = np.bincount((t // window_s).astype(np.int64))
        rate[label] = ((np.arange(len(c)) * window_s / 86400).tolist(), c.tolist())
    return [cdf_figure(gaps, "Inter-arrival gaps (> 0)", "gap (s)", log_x=True),
            cdf_figure(runs, "Run times (> 0)", "run time (s)", log_x=True),
            series_figure(rate, f"Jobs per {window_s:g} s", "day", "jobs")]
