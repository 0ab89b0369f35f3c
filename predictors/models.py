"""Baselines and boosted heads, scikit-learn style (``fit`` returns self; fitted state ends in ``_``).

Every model here takes the feature matrix of :mod:`predictors.features` (NaN = unknown) and predicts
in target units (tokens or seconds). Baselines read one or two named columns; the boosted heads are
HistGradientBoosting models on the log1p target, which is what a :class:`~predictors.bundle.ModelBundle`
carries and exports.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression


class GlobalMedian(BaseEstimator, RegressorMixin):
    """Predicts the training median for everything."""

    def fit(self, X, y):
        self.median_ = float(np.median(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.median_)


class GroupMedian(BaseEstimator, RegressorMixin):
    """Median of the training target per value of one code column (service, VC); global median otherwise."""

    def __init__(self, column: int = 0):
        self.column = column

    def fit(self, X, y):
        codes = np.asarray(X, dtype=np.float64)[:, self.column]
        self.median_ = float(np.median(y))
        self.medians_ = {float(c): float(np.median(y[codes == c])) for c in np.unique(codes[~np.isnan(codes)])}
        return self

    def predict(self, X):
        codes = np.asarray(X, dtype=np.float64)[:, self.column]
        return np.array([self.medians_.get(float(c), self.median_) for c in codes])


class LogLinear(BaseEstimator, RegressorMixin):
    """Linear regression of log1p(target) on log1p(one column): the prompt-length regression."""

    def __init__(self, column: int = 0):
        self.column = column

    def fit(self, X, y):
        x = np.log1p(np.asarray(X, dtype=np.float64)[:, [self.column]])
        self.model_ = LinearRegression().fit(x, np.log1p(y))
        return self

    def predict(self, X):
        x = np.log1p(np.asarray(X, dtype=np.float64)[:, [self.column]])
        return np.maximum(np.expm1(self.model_.predict(x)), 0.0)


class HistoryHeuristic(BaseEstimator, RegressorMixin):
    """The first known of some log1p-scale history columns (e.g. the last same-prompt output, then the
    stream's recent mean), else the training median: what history alone says, without learning."""

    def __init__(self, columns: tuple[int, ...] = ()):
        self.columns = columns

    def fit(self, X, y):
        self.median_ = float(np.median(y))
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=np.float64)
        out = np.full(len(X), np.nan)
        for c in self.columns:
            fill = np.isnan(out) & ~np.isnan(X[:, c])
            out[fill] = np.expm1(X[fill, c])
        out[np.isnan(out)] = self.median_
        return out


def regressor(*, loss: str = "squared_error", quantile: float | None = None, max_iter: int = 200,
              seed: int = 0) -> HistGradientBoostingRegressor:
    """A boosted head on the log1p target. No early stopping: its validation split would be random,
    not time-ordered, so the number of trees is fixed instead."""
    kw = {"quantile": quantile} if loss == "quantile" else {}
    return HistGradientBoostingRegressor(loss=loss, max_iter=max_iter, learning_rate=0.08, max_leaf_nodes=31,
                                         min_samples_leaf=40, l2_regularization=1.0, early_stopping=False,
                                         random_state=seed, **kw)


def classifier(*, max_iter: int = 200, seed: int = 0) -> HistGradientBoostingClassifier:
    """The bucket head."""
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.08, max_leaf_nodes=31,
                                          min_samples_leaf=40, l2_regularization=1.0, early_stopping=False,
                                          random_state=seed)


def fit_heads(X: np.ndarray, y: np.ndarray, buckets: np.ndarray, *, max_iter: int = 200, seed: int = 0,
              heads: tuple[str, ...] = ("point", "p50", "p90", "bucket")) -> dict:
    """Fit the bundle heads on float32 features and the target in units (log1p applied here)."""
    X = np.array(X, dtype=np.float32)
    # A column with no known value at all (e.g. users in a trace without users) makes the binner fail;
    # as a constant it is never split on, so NaN at prediction time takes the same path.
    X[:, np.all(np.isnan(X), axis=0)] = 0.0
    log_y = np.log1p(np.asarray(y, dtype=np.float64))
    out = {}
    for name in heads:
        if name == "point":
            out[name] = regressor(max_iter=max_iter, seed=seed).fit(X, log_y)
        elif name in ("p50", "p90"):
            out[name] = regressor(loss="quantile", quantile=int(name[1:]) / 100, max_iter=max_iter, seed=seed).fit(X, log_y)
        elif name == "bucket":
            out[name] = classifier(max_iter=max_iter, seed=seed).fit(X, buckets)
        else:
            raise ValueError(f"unknown head {name!r}")
    return out
