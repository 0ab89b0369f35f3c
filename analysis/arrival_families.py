"""Inter-arrival families for workload models: exponential (Poisson), gamma and Weibull at mean 1.

Families. Gaps are fitted in rescaled time, where the window's rate is 1, so each family has one free
parameter at most: exponential none, gamma the shape ``a`` (scale ``1/a``), Weibull the shape ``k``
(scale ``1/Gamma(1 + 1/k)``). Fixing the mean at the window's count over its width, instead of
fitting shape and scale freely as ServeGen does, keeps each window's count right: a free fit on a
window whose jobs came in one early burst would find a tiny mean gap and generate hundreds of jobs
where the trace had thirty. Ties in AIC go to the simpler family; zero gaps (tied submits) are
floored at half the clock's resolution before fitting.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma, gammaln

FAMILIES = ("exponential", "gamma", "weibull")
"""Inter-arrival families, in order of preference on equal AIC; stored per window as an index here."""
NUM_PARAMS = {"exponential": 0, "gamma": 1, "weibull": 1}
"""Free parameters per family once the mean is fixed (for AIC)."""
GAMMA_SHAPE = (1e-3, 1e3)
"""Bounds of the fitted gamma shape."""
WEIBULL_SHAPE = (0.02, 50.0)
"""Bounds of the fitted Weibull shape (Gamma(1 + 1/k) overflows soon below 0.02)."""
_ITERS = 80


# ---------------------------------------------------------------- inter-arrival families


def _group_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(values, starts)


def _gamma_ll(a, n, sum_x, sum_log):
    return n * (a * np.log(a) - gammaln(a)) + (a - 1) * sum_log - a * sum_x


def _weibull_ll(k, log_x, starts, dense, n, sum_log):
    log_scale = -gammaln(1.0 + 1.0 / k)  # scale 1 / Gamma(1 + 1/k): mean 1
    sum_pow = _group_sums(np.exp(k[dense] * (log_x - log_scale[dense])), starts)
    return n * (np.log(k) - k * log_scale) + (k - 1) * sum_log - sum_pow


def fit_unit_gaps(x, group=None, families: tuple[str, ...] = FAMILIES) -> dict:
    """Fit ``families`` to the unit-mean gaps ``x`` of each group at mean 1 and choose by AIC.

    ``x``: gaps > 0 in rescaled time; ``group``: non-decreasing group index per gap (None: one
    group). Returns arrays over the groups: ``family`` (index into :data:`FAMILIES`), ``shape``
    (1.0 for exponential), ``num_gaps`` and ``aic`` (family -> array). Gamma solves its score
    equation ``log a - digamma(a) = mean(x) - mean(log x) - 1`` by bisection; Weibull maximizes over
    ``log k`` by golden section; both vectorized over the groups.
    """
    x = np.asarray(x, np.float64)
    if len(x) == 0 or not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("gaps must be a non-empty array of finite values > 0")
    if not families or any(f not in FAMILIES for f in families):
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families}")
    group = np.zeros(len(x), np.int64) if group is None else np.asarray(group, np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    n, dense, log_x = counts.astype(np.float64), np.repeat(np.arange(len(starts)), counts), np.log(x)
    sum_x, sum_log = _group_sums(x, starts), _group_sums(log_x, starts)
    ll, shapes = {"exponential": -sum_x}, {"exponential": np.ones(len(n))}
    if "gamma" in families:
        target, lo, hi = sum_x / n - sum_log / n - 1.0, *(np.full(len(n), math.log(b)) for b in GAMMA_SHAPE)
        for _ in range(_ITERS):  # log a - digamma(a) decreases in a
            mid = (lo + hi) / 2
            above = mid - digamma(np.exp(mid)) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        shapes["gamma"] = np.exp((lo + hi) / 2)
        ll["gamma"] = _gamma_ll(shapes["gamma"], n, sum_x, sum_log)
    if "weibull" in families:
        ratio, (lo, hi) = (math.sqrt(5) - 1) / 2, (np.full(len(n), math.log(b)) for b in WEIBULL_SHAPE)
        for _ in range(_ITERS):
            a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            left = (_weibull_ll(np.exp(a), log_x, starts, dense, n, sum_log)
                    >= _weibull_ll(np.exp(b), log_x, starts, dense, n, sum_log))
            lo, hi = np.where(left, lo, a), np.where(left, b, hi)
        shapes["weibull"] = np.exp((lo + hi) / 2)
        ll["weibull"] = _weibull_ll(shapes["weibull"], log_x, starts, dense, n, sum_log)
    order = [f for f in FAMILIES if f in families]
    aic = {f: 2 * NUM_PARAMS[f] - 2 * ll[f] for f in order}
    best = np.argmin(np.stack([aic[f] for f in order]), axis=0)  # the first (simplest) on ties
    return {"family": np.array([FAMILIES.index(order[i]) for i in best], np.int64),
            "shape": np.choose(best, np.stack([shapes[f] for f in order])), "num_gaps": counts, "aic": aic}


def select_gap_family(gaps_s, families: tuple[str, ...] = FAMILIES) -> tuple[str, float]:
    """(family, shape) for one sample of gaps > 0, rescaled by its mean (see :func:`fit_unit_gaps`)."""
    g = np.asarray(gaps_s, np.float64)
    if len(g) == 0 or not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("gaps must be a non-empty array of finite values > 0")
    fit = fit_unit_gaps(g / g.mean(), families=families)
    return FAMILIES[int(fit["family"][0])], float(fit["shape"][0])


def draw_unit_gaps(rng: np.random.Generator, family: int, shape: float, size: int) -> np.ndarray:
    """``size`` gaps of mean 1 from family index ``family`` with ``shape``."""
    if family == 1:
        return rng.gamma(shape, 1.0 / shape, size)
    if family == 2:
        return rng.weibull(shape, size) / math.exp(gammaln(1.0 + 1.0 / shape))
    return rng.exponential(1.0, size)
