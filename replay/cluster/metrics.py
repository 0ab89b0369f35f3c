"""Per-job columns and the per-run summary of a cluster replay, and the utilization series.

Definitions (finished jobs only unless said otherwise):

* JCT = end - submit; queueing delay = JCT - duration (all waiting, including after preemptions).
* Slowdown = max(JCT / max(duration, ``slowdown_floor_s``), 1): the *bounded* slowdown (Feitelson), so that
  jobs of a few seconds (Philly has zero-second jobs) do not dominate the mean. Default floor 10 s.
* Size classes by GPUs: ``1``, ``2-4``, ``5-8``, ``>8``.
* Utilization: allocated GPUs / cluster GPUs, averaged over [first submit, last end] (per-minute
  series: allocated GPUs averaged over each 60 s bin, computed from the run segments, vectorized).
* Fairness: each VC's and user's share of the GPU time used; Jain's index
  (sum x)^2 / (n sum x^2) over the per-VC (and per-user) mean slowdowns: 1 = every VC is slowed
  down alike, 1/n = one VC bears it all. ``jct_mean_over_vcs_s`` is the mean of per-VC mean JCTs (as
  the Helios artifact reports VC averages).
"""

from __future__ import annotations

import math

import numpy as np

SIZE_CLASSES = (("1", 1, 1), ("2-4", 2, 4), ("5-8", 5, 8), (">8", 9, 1 << 62))
"""(label, smallest, largest GPU count) of the size classes."""
BIN_S = 60.0
"""Utilization series bin width (one minute)."""


def job_columns(submit_s, duration_s, start_s, end_s, slowdown_floor_s: float) -> dict[str, np.ndarray]:
    """queue_s, jct_s and slowdown per job (NaN where the job never ran)."""
    jct = end_s - submit_s
    with np.errstate(invalid="ignore"):
        slowdown = np.fmax(jct / np.maximum(duration_s, slowdown_floor_s), np.where(np.isnan(jct), np.nan, 1.0))
    return {"queue_s": jct - duration_s, "jct_s": jct, "slowdown": slowdown}


def utilization_series(seg_start_s: np.ndarray, seg_end_s: np.ndarray, seg_gpus: np.ndarray,
                       bin_s: float = BIN_S) -> tuple[np.ndarray, np.ndarray]:
    """(bin start times, mean allocated GPUs per bin) from run segments, bins of ``bin_s`` from 0.

    The allocation integral is piecewise linear with breakpoints at segment starts and ends; it is
    evaluated at the bin edges and differenced, so the cost is O(segments log segments + bins).
    """
    if len(seg_start_s) == 0:
        return np.zeros(0), np.zeros(0)
    num_bins = max(1, math.ceil(float(seg_end_s.max()) / bin_s))
    edges = np.arange(num_bins + 1) * bin_s
    times = np.concatenate([seg_start_s, seg_end_s])
    slopes = np.concatenate([seg_gpus, -seg_gpus]).astype(np.float64)
    order = np.argsort(times, kind="stable")
    times, slopes = times[order], slopes[order]
    rate = np.cumsum(slopes)  # allocated GPUs just after each breakpoint
    area = np.concatenate([[0.0], np.cumsum(rate[:-1] * np.diff(times))])  # integral up to each breakpoint
    k = np.searchsorted(times, edges, side="right") - 1
    kk = np.maximum(k, 0)
    at_edges = np.where(k >= 0, area[kk] + rate[kk] * (edges - times[kk]), 0.0)
    return edges[:-1], np.diff(at_edges) / bin_s


def peak_allocated(seg_start_s: np.ndarray, seg_end_s: np.ndarray, seg_gpus: np.ndarray) -> int:
    """Most GPUs held at once (a segment ending at t frees its GPUs before one starting at t takes them)."""
    if len(seg_start_s) == 0:
        return 0
    times = np.concatenate([seg_end_s, seg_start_s])
    delta = np.concatenate([-seg_gpus, seg_gpus])
    kind = np.concatenate([np.zeros(len(seg_end_s)), np.ones(len(seg_start_s))])  # ends first at a tie
    order = np.lexsort((kind, times))
    return int(np.cumsum(delta[order]).max())


def _stats(x: np.ndarray, stem: str, unit: str) -> dict:
    """``<stem>_{mean,p50,p90,p99}<unit>`` of ``x`` (None for no values; numpy's linear percentiles)."""
    if len(x) == 0:
        return {f"{stem}_{k}{unit}": None for k in ("mean", "p50", "p90", "p99")}
    values = [float(x.mean()), *(float(v) for v in np.percentile(x, [50, 90, 99]))]
    return {f"{stem}_{k}{unit}": v for k, v in zip(("mean", "p50", "p90", "p99"), values)}


def jain(x: np.ndarray) -> float | None:
    """Jain's fairness index of non-negative values (None for none; 1 when all are equal)."""
    x = np.asarray(x, np.float64)
    if len(x) == 0 or not np.any(x):
        return None
    return float(x.sum() ** 2 / (len(x) * np.square(x).sum()))


def _groups(keys: np.ndarray | None, finished: np.ndarray, gpu_s: np.ndarray, slowdown: np.ndarray, jct: np.ndarray):
    """Per-group share of GPU time, mean slowdown and mean JCT over finished jobs, groups sorted by name."""
    if keys is None or all(v is None for v in keys):
        return None
    k = np.asarray(keys[finished], dtype=object)
    k = np.where(np.array([v is None for v in k], bool), "(none)", k).astype(str)
    names, inv = np.unique(k, return_inverse=True)
    count = np.bincount(inv, minlength=len(names))
    used = np.bincount(inv, weights=gpu_s[finished], minlength=len(names))
    sd = np.bincount(inv, weights=slowdown[finished], minlength=len(names)) / count
    jc = np.bincount(inv, weights=jct[finished], minlength=len(names)) / count
    share = used / used.sum() if used.sum() > 0 else used
    return names, count, share, sd, jc


def summarize(cols: dict[str, np.ndarray], *, total_gpus: int, seg_start_s, seg_end_s, seg_gpus) -> dict:
    """The run summary (module doc) from the per-job columns (``replay.cluster.schema.JOB_METRICS`` names)."""
    status = cols["status"]
    fin = status == "finished"
    jct, queue, sd = cols["jct_s"][fin], cols["queue_s"][fin], cols["slowdown"][fin]
    gpus = cols["num_gpus"]
    reasons, counts = np.unique(cols["reject_reason"][~fin].astype(str), return_counts=True)
    s: dict = {"num_jobs": int(len(status)), "num_finished": int(fin.sum()), "num_rejected": int((~fin).sum()),
               "rejected_by_reason": {str(r): int(c) for r, c in zip(reasons, counts)},
               "num_preemptions": int(cols["num_preemptions"].sum())}
    s.update(_stats(jct, "jct", "_s"))
    s.update(_stats(queue, "queue", "_s"))
    s.update(_stats(sd, "slowdown", ""))
    by_size = {}
    for label, lo, hi in SIZE_CLASSES:
        m = fin & (gpus >= lo) & (gpus <= hi)
        by_size[label] = {"num_jobs": int(m.sum()),
                          "jct_mean_s": float(cols["jct_s"][m].mean()) if m.any() else None,
                          "queue_mean_s": float(cols["queue_s"][m].mean()) if m.any() else None,
                          "slowdown_mean": float(cols["slowdown"][m].mean()) if m.any() else None}
    s["by_size"] = by_size
    gpu_s = cols["duration_s"] * gpus
    first = float(cols["submit_s"][fin].min()) if fin.any() else 0.0
    last = float(cols["end_s"][fin].max()) if fin.any() else 0.0
    span = last - first
    s["makespan_s"] = span
    s["gpu_time_s"] = float(gpu_s[fin].sum())
    s["utilization_mean"] = float(gpu_s[fin].sum() / (total_gpus * span)) if span > 0 else None
    s["peak_allocated_gpus"] = peak_allocated(seg_start_s, seg_end_s, seg_gpus)
    s["total_gpus"] = int(total_gpus)
    fair: dict = {}
    for name, key in (("vc", "vc"), ("user", "user")):
        got = _groups(cols.get(key), fin, gpu_s, cols["slowdown"], cols["jct_s"])
        if got is None:
            continue
        names, count, share, sdm, jcm = got
        fair[f"num_{name}s"] = int(len(names))
        fair[f"jain_{name}_slowdown"] = jain(sdm)
        if name == "vc":
            fair["vc"] = {str(v): {"num_jobs": int(c), "gpu_share": float(sh), "slowdown_mean": float(a), "jct_mean_s": float(b)}
                          for v, c, sh, a, b in zip(names, count, share, sdm, jcm)}
            s["jct_mean_over_vcs_s"] = float(jcm.mean()) if len(jcm) else None
        else:
            top = np.argsort(-share, kind="stable")[:10]
            fair["user_gpu_share_top10"] = {str(names[i]): float(share[i]) for i in top}
    s["fairness"] = fair
    return s
