"""Check feature records (JSON-like dicts) against a bundle's :class:`FeatureField` schema.

Shared by :mod:`predictors.runtime` (``LoadedModel.predict_records``) and :mod:`predictors.serve`
(422 answers): one function turns a list of records into the float32 matrix the heads expect, or
raises :class:`FeatureValidationError` listing every problem with its record index and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np

from predictors.bundle import FeatureField

_FLOAT32_MAX = float(np.finfo(np.float32).max)

MAX_LISTED_PROBLEMS = 50
"""How many problems the error message spells out; ``problems`` always holds all of them."""


@dataclass(frozen=True)
class Problem:
    """One reason a record was refused."""

    index: int
    """Position of the record in the submitted list."""
    field: str | None
    """The feature (or unknown key) at fault; None when the record itself is not an object."""
    message: str
    """What was wrong and what was expected."""

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class FeatureValidationError(ValueError):
    """Records that do not fit the feature schema; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"record {p.index}, field {p.field!r}: {p.message}" for p in problems[:MAX_LISTED_PROBLEMS]]
        if len(problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more")
        super().__init__(f"{len(problems)} invalid feature value(s):\n  " + "\n  ".join(lines))


def _check_value(f: FeatureField, value: Any) -> tuple[float, str | None]:
    """The float32-ready value of one field, or NaN and the reason it is refused."""
    if value is None:
        return (math.nan, None) if f.nullable else (math.nan, "is null but the feature is not nullable")
    if f.dtype == "bool":
        if isinstance(value, bool):
            return float(value), None
        return math.nan, f"expected a boolean (true/false), got {type(value).__name__} {value!r}"
    if isinstance(value, bool) or not isinstance(value, Real):
        return math.nan, f"expected a number ({f.dtype}), got {type(value).__name__} {value!r}"
    x = float(value)
    if math.isnan(x):
        return (x, None) if f.nullable else (x, "is NaN but the feature is not nullable")
    if math.isinf(x) or abs(x) > _FLOAT32_MAX:
        return math.nan, f"must be finite and fit in float32, got {value!r}"
    if f.dtype == "int" and not isinstance(value, Integral) and not x.is_integer():
        return x, f"expected an integer, got {value!r}"
    if f.min is not None and x < f.min:
        return x, f"value {value!r} is below the plausible minimum {f.min}"
    if f.max is not None and x > f.max:
        return x, f"value {value!r} is above the plausible maximum {f.max}"
    return x, None


def validate_records(features: Sequence[FeatureField], records: Sequence[Any]) -> np.ndarray:
    """The ``(len(records), len(features))`` float32 matrix of the records, columns in ``features`` order.

    Each record must be a dict holding exactly the feature names. Refused, all at once in one
    :class:`FeatureValidationError` naming record index and field: a missing field, an unknown extra
    field, a wrong type (a string or bool where a number is expected, a non-integral value for an
    ``int`` feature, a non-bool for a ``bool`` one), null/NaN where the feature is not nullable,
    infinities, and values outside the feature's ``[min, max]`` plausible range. Nullable nulls
    become NaN ("unknown"), which the trees route like missing values.
    """
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, Sequence):
        raise FeatureValidationError([Problem(0, None, f"expected a list of records, got {type(records).__name__}")])
    names = [f.name for f in features]
    known = set(names)
    X = np.full((len(records), len(features)), np.nan, dtype=np.float32)
    problems: list[Problem] = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append(Problem(i, None, f"expected an object of feature values, got {type(record).__name__}"))
            continue
        for j, f in enumerate(features):
            if f.name not in record:
                problems.append(Problem(i, f.name, f"missing (expected {f.dtype}: {f.description})"))
                continue
            X[i, j], reason = _check_value(f, record[f.name])
            if reason is not None:
                problems.append(Problem(i, f.name, reason))
        for key in record:
            if key not in known:
                problems.append(Problem(i, str(key), f"unknown field; expected exactly {names}"))
    if problems:
        raise FeatureValidationError(problems)
    return X


def sample_feature_rows(features: Sequence[FeatureField], n_rows: int, *, seed: int = 0,
                        null_share: float = 0.1) -> np.ndarray:
    """Random rows that pass :func:`validate_records` (for export checks and benchmarks, not training).

    Numbers are uniform in ``[min, max]`` (``[-1000, 1000]`` where a bound is missing, integral for
    ``int`` features), booleans 0/1, and nullable features are NaN in about ``null_share`` of rows.
    """
    rng = np.random.default_rng(seed)
    X = np.empty((n_rows, len(features)), dtype=np.float64)
    for j, f in enumerate(features):
        if f.dtype == "bool":
            X[:, j] = rng.integers(0, 2, n_rows)
            continue
        lo = f.min if f.min is not None else min(-1000.0, (f.max if f.max is not None else 0.0) - 2000.0)
        hi = f.max if f.max is not None else max(1000.0, lo + 2000.0)
        col = rng.uniform(lo, hi, n_rows)
        if f.dtype == "int":
            col = np.clip(np.round(col), math.ceil(lo), math.floor(hi))
        X[:, j] = col
        if f.nullable:
            X[rng.random(n_rows) < null_share, j] = np.nan
    return X.astype(np.float32)


def rows_to_records(features: Sequence[FeatureField], X: np.ndarray) -> list[dict[str, Any]]:
    """JSON-ready records of a feature matrix (NaN -> None, ints and bools as such): the inverse of
    :func:`validate_records`, for clients and benchmarks."""
    out = []
    for row in np.asarray(X, dtype=np.float64):
        rec: dict[str, Any] = {}
        for f, v in zip(features, row):
            if math.isnan(v):
                rec[f.name] = None
            elif f.dtype == "bool":
                rec[f.name] = bool(v)
            elif f.dtype == "int":
                rec[f.name] = int(v)
            else:
                rec[f.name] = float(v)
        out.append(rec)
    return out
