"""The one place where replay reaches the predictors package: lazily, and only when a run names a model."""

from __future__ import annotations

import importlib
from typing import Any


def load_predictor(loader: str, path: str, oracle_hint: str) -> Any:
    """``predictors.runtime.<loader>(path)`` (``load_length_predictor`` or ``load_duration_predictor``).

    Imported on first use: replay never imports predictors (or scikit-learn) unless a run names a model.
    A missing predictors package is a ValueError naming the oracle alternative (``oracle_hint``).
    """
    try:
        runtime = importlib.import_module("predictors.runtime")
    except ImportError as exc:
        raise ValueError(f"predictor {path!r}: the predictors runtime is not available ({exc}); "
                         f"use predictor='oracle' with {oracle_hint}") from None
    return getattr(runtime, loader)(path)
