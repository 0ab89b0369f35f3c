"""Per-request latency columns and the run summary: latency percentiles, throughput, SLO goodput, KV use.

Inputs are the numpy column dicts of :mod:`replay.schema` (``REQUEST_METRICS`` / ``STEP_LOG``), with
NaN for a missing float. Percentiles use numpy's default (linear interpolation). The summary holds
only JSON-able values: ints, floats, strings, dicts, and None where a quantity is undefined (nothing
finished, no steps, a zero makespan).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

STATS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))
"""Percentiles reported for every latency column (plus the mean)."""
LATENCY_COLUMNS = ("ttft_s", "tpot_s", "e2e_s", "queue_s", "tbt_p50_s", "tbt_p99_s", "tbt_max_s")
"""Per-request columns summarized over finished requests as ``<name>_<stat>_s``, e.g. ``tbt_p99_p50_s``."""


@dataclass(frozen=True)
class SloSpec:
    """Per-request service-level objectives; a request meets the SLO only if it finished within all of them."""

    ttft_s: float
    """Largest acceptable time to first token."""
    tbt_s: float
    """Largest acceptable per-request p99 gap between output tokens (requests with < 2 tokens pass)."""
    e2e_s: float | None = None
    """Largest acceptable end-to-end latency; None: not checked."""

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tbt_s", "e2e_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"SloSpec.{name} must be finite and > 0, got {value}")


def latency_columns(arrival_s: np.ndarray, first_scheduled_s: np.ndarray, first_token_s: np.ndarray,
                    finish_s: np.ndarray, num_generated_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """``ttft_s``, ``e2e_s``, ``queue_s``, ``tpot_s`` from the timestamps (NaN in, NaN out; tpot NaN below 2 tokens)."""
    generated = np.asarray(num_generated_tokens, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(generated >= 2, (finish_s - first_token_s) / (generated - 1), np.nan)
    return {"ttft_s": first_token_s - arrival_s, "e2e_s": finish_s - arrival_s,
            "queue_s": first_scheduled_s - arrival_s, "tpot_s": tpot}


_TBT_QUANTILES = (("tbt_p50_s", 0.5), ("tbt_p90_s", 0.9), ("tbt_p99_s", 0.99))


def tbt_stats(token_times_s: np.ndarray) -> dict[str, float]:
    """``tbt_p50_s``, ``tbt_p90_s``, ``tbt_p99_s``, ``tbt_max_s`` of one request's output-token times (NaN if < 2).

    Percentiles interpolate linearly between order statistics, as numpy's default method does.
    """
    return dict(zip(TBT_COLUMNS, _tbt_row(np.asarray(token_times_s, dtype=np.float64))))


TBT_COLUMNS = ("tbt_p50_s", "tbt_p90_s", "tbt_p99_s", "tbt_max_s")
_NAN_ROW = (math.nan,) * 4


def _tbt_row(times_s: np.ndarray) -> tuple[float, float, float, float]:
    n = times_s.size - 1
    if n < 1:
        return _NAN_ROW
    gaps = np.diff(times_s)
    gaps.sort()
    # One take + tolist, then plain floats: this runs once per request (a million times in big replays).
    pos = [q * (n - 1) for _, q in _TBT_QUANTILES]
    lo = [int(p) for p in pos]
    at = np.take(gaps, [*lo, *(min(x + 1, n - 1) for x in lo), n - 1]).tolist()
    return (*(at[k] + (at[3 + k] - at[k]) * (pos[k] - lo[k]) for k in range(3)), at[6])


def tbt_columns(token_times: list[np.ndarray]) -> dict[str, np.ndarray]:
    """TBT_COLUMNS for many requests at once (one list of token times per request)."""
    rows = np.array([_tbt_row(t) for t in token_times], dtype=np.float64).reshape(len(token_times), 4)
    return {name: rows[:, k].copy() for k, name in enumerate(TBT_COLUMNS)}


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _per_second(amount: float, seconds: float | None) -> float | None:
    return None if not seconds else _num(amount / seconds)


def _describe(values: np.ndarray, name: str) -> dict[str, float | None]:
    """``<name>_<stat>_s`` for p50/p90/p99/mean over the non-NaN values (None when there are none)."""
    stem = name.removesuffix("_s")
    values = values[~np.isnan(values)]
    out: dict[str, float | None] = {}
    for label, q in STATS:
        out[f"{stem}_{label}_s"] = _num(np.percentile(values, q)) if values.size else None
    out[f"{stem}_mean_s"] = _num(values.mean()) if values.size else None
    return out


def _time_weighted(values: np.ndarray, weights_s: np.ndarray) -> float | None:
    """Mean of ``values`` weighted by step durations (a plain mean if every step took 0 s)."""
    if values.size == 0:
        return None
    total_s = float(weights_s.sum())
    return _num((values * weights_s).sum() / total_s) if total_s > 0 else _num(values.mean())


def summarize(requests: dict[str, np.ndarray], steps: dict[str, np.ndarray], slo: SloSpec) -> dict:
    """The run summary (flat keys, units in names; ``rejected_by_reason`` is the one nested dict).

    Latency stats are over finished requests. ``makespan_s`` = last finish - first arrival; throughput,
    requests/s and goodput are per makespan second. ``slo_attainment`` is the share of *arrived* requests
    that finished within every SLO (rejected and unfinished requests count as misses). KV utilization and
    ``mean_num_seqs`` are weighted by step duration.
    """
    status = np.asarray(requests["status"], dtype=object)
    finished = status == "finished"
    rejected = status == "rejected"
    reasons = [r if isinstance(r, str) else "unknown" for r in np.asarray(requests["reject_reason"], dtype=object)[rejected]]
    by_reason = dict(sorted(Counter(reasons).items()))
    col = {k: np.asarray(requests[k], dtype=np.float64) for k in
           ("arrival_s", "finish_s", "prompt_tokens", "num_generated_tokens", "num_preemptions", *LATENCY_COLUMNS)}
    out: dict = {
        "num_arrived": int(status.size),
        "num_finished": int(finished.sum()),
        "num_rejected": int(rejected.sum()),
        "num_unfinished": int(status.size - finished.sum() - rejected.sum()),
        "rejected_by_reason": by_reason,
        "num_preemptions": int(col["num_preemptions"].sum()),
    }
    for name in LATENCY_COLUMNS:
        out.update(_describe(col[name][finished], name))

    makespan_s = None
    if finished.any():
        makespan_s = _num(np.nanmax(col["finish_s"][finished]) - col["arrival_s"].min())
    gen_tokens = float(col["num_generated_tokens"][finished].sum())
    all_tokens = gen_tokens + float(col["prompt_tokens"][finished].sum())
    out.update({
        "makespan_s": makespan_s,
        "output_tokens_per_s": _per_second(gen_tokens, makespan_s),
        "total_tokens_per_s": _per_second(all_tokens, makespan_s),
        "requests_per_s": _per_second(float(finished.sum()), makespan_s),
    })

    met = finished & (col["ttft_s"] <= slo.ttft_s) & ~(col["tbt_p99_s"] > slo.tbt_s)  # NaN tbt (<2 tokens) passes
    if slo.e2e_s is not None:
        met &= col["e2e_s"] <= slo.e2e_s
    out.update({f"slo_{k}": v for k, v in asdict(slo).items()})
    out.update({
        "num_slo_met": int(met.sum()),
        "slo_attainment": _num(met.sum() / status.size) if status.size else None,
        "goodput_requests_per_s": _per_second(float(met.sum()), makespan_s),
    })

    duration_s = np.asarray(steps.get("duration_s", ()), dtype=np.float64)
    used = np.asarray(steps.get("kv_blocks_used", ()), dtype=np.float64)
    total = np.asarray(steps.get("kv_blocks_total", ()), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(total > 0, used / total, np.nan)
    util_ok = ~np.isnan(util)
    out.update({
        "num_steps": int(duration_s.size),
        "busy_s": _num(duration_s.sum()),
        "kv_utilization_mean": _time_weighted(util[util_ok], duration_s[util_ok]),
        "kv_utilization_max": _num(util[util_ok].max()) if util_ok.any() else None,
        "mean_num_seqs": _time_weighted(np.asarray(steps.get("num_seqs", ()), dtype=np.float64), duration_s),
    })
    return out
