"""A trained predictor as one object: its features, its heads, how to turn head outputs into predictions.

A :class:`ModelBundle` is what ``tracelab predict train`` produces, what export writes (skops + ONNX +
a JSON model card) and what :mod:`predictors.runtime` loads back. Every head is a plain scikit-learn
estimator fitted on the same float32 feature matrix (columns in ``features`` order; NaN means
"unknown", e.g. no history yet), so each head converts to ONNX one-to-one; everything that is not a
tree ensemble (the inverse target transform, the history blend, the bucket argmax) lives in
:meth:`ModelBundle.finish`, shared by the in-process and the ONNX paths so both give the same numbers.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TASKS = ("response_length", "gpu_duration")
"""What a bundle predicts: output tokens of an LLM request, or the run time (seconds) of a GPU job."""

REGRESSION_HEADS = ("point", "p50", "p90")
"""Regressors on the transformed target: the point estimate (squared error) and two quantiles."""
CLASSIFIER_HEAD = "bucket"
"""Classifier over target buckets (``bucket_edges``)."""


@dataclass(frozen=True)
class FeatureField:
    """One input column of a bundle's feature matrix."""

    name: str
    """Column name (units in the name: ``prompt_tokens``, ``hour_of_day``, ``hist_median_log_s``...)."""
    dtype: str
    """``float``, ``int`` or ``bool``; all are fed to the heads as float32."""
    description: str
    """What the column holds and when it is known (all features are known at arrival / submit time)."""
    min: float | None = None
    """Smallest plausible value; a request outside [min, max] is refused by the service (422)."""
    max: float | None = None
    """Largest plausible value."""
    nullable: bool = False
    """NaN allowed (history features before any history exists)."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "description": self.description,
                "min": self.min, "max": self.max, "nullable": self.nullable}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "FeatureField":
        return cls(**{k: obj[k] for k in ("name", "dtype", "description", "min", "max", "nullable")})


@dataclass
class ModelBundle:
    """A trained predictor: feature schema, fitted heads and the post-processing that finishes them.

    Heads predict ``log1p(target)`` (regressors) or the bucket index (classifier). ``finish`` maps
    raw head outputs to target units: ``point``, ``p50``, ``p90`` (tokens or seconds, >= 0) and
    ``bucket`` (int index into ``bucket_edges``: bucket i holds edges[i-1] < y <= edges[i]).
    With ``blend_feature`` set, the point estimate is ``w * feature + (1 - w) * tree`` in log space
    wherever that (history) feature is known: the Helios-style blend of a history estimate and trees.
    """

    task: str
    features: tuple[FeatureField, ...]
    target: str
    """``output_tokens`` or ``duration_s``."""
    heads: dict[str, Any]
    """Head name -> fitted scikit-learn estimator (subset of REGRESSION_HEADS + ('bucket',))."""
    bucket_edges: tuple[float, ...] = ()
    """Upper edges of the target buckets, ascending; the last bucket is open (> edges[-1])."""
    blend_feature: str | None = None
    """A log1p-scale history feature blended into the point estimate, or None."""
    blend_weight: float = 0.0
    """Weight of ``blend_feature`` in the point blend (0..1), chosen on a time-ordered validation slice."""
    training: dict[str, Any] = field(default_factory=dict)
    """traces, rows, data_sha256, time_range_s, split: where the bundle learned."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation on the held-out (later) part, next to the baselines."""
    transform: str = "log1p"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        unknown = set(self.heads) - set(REGRESSION_HEADS) - {CLASSIFIER_HEAD}
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)}; known: {REGRESSION_HEADS + (CLASSIFIER_HEAD,)}")
        if self.blend_feature is not None and self.blend_feature not in self.feature_names:
            raise ValueError(f"blend feature {self.blend_feature!r} is not a feature")
        if not 0.0 <= self.blend_weight <= 1.0:
            raise ValueError(f"blend_weight must be in [0, 1], got {self.blend_weight}")

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def raw(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Raw head outputs in process: regressors' log-scale values, the classifier's probabilities."""
        X = np.asarray(X, dtype=np.float32)
        out = {}
        for name, est in self.heads.items():
            out[name] = est.predict_proba(X) if name == CLASSIFIER_HEAD else est.predict(X)
        return out

    def finish(self, raw: dict[str, np.ndarray], X: np.ndarray) -> dict[str, np.ndarray]:
        """Target-unit predictions from raw head outputs (in-process or ONNX): see the class docstring."""
        out: dict[str, np.ndarray] = {}
        for name in REGRESSION_HEADS:
            if name not in raw:
                continue
            log_pred = np.asarray(raw[name], dtype=np.float64).reshape(-1)
            if name == "point" and self.blend_feature is not None and self.blend_weight > 0:
                hist = np.asarray(X, dtype=np.float64)[:, self.feature_names.index(self.blend_feature)]
                known = ~np.isnan(hist)
                log_pred = log_pred.copy()
                log_pred[known] = self.blend_weight * hist[known] + (1 - self.blend_weight) * log_pred[known]
            out[name] = np.maximum(np.expm1(log_pred), 0.0)
        if CLASSIFIER_HEAD in raw:
            proba = np.asarray(raw[CLASSIFIER_HEAD], dtype=np.float64)
            classes = np.asarray(self.heads[CLASSIFIER_HEAD].classes_) if CLASSIFIER_HEAD in self.heads else None
            idx = np.argmax(proba, axis=1)
            out[CLASSIFIER_HEAD] = (classes[idx] if classes is not None else idx).astype(np.int64)
        return out

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Predictions in target units for a float matrix with columns in ``feature_names`` order."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected a (rows, {len(self.features)}) matrix with columns {self.feature_names}, "
                             f"got shape {X.shape}")
        return self.finish(self.raw(X), X)

    def bucket_of(self, y: np.ndarray) -> np.ndarray:
        """Bucket index of target values (bucket i: edges[i-1] < y <= edges[i]; last bucket open)."""
        return np.searchsorted(np.asarray(self.bucket_edges, dtype=np.float64), np.asarray(y, dtype=np.float64),
                               side="left").astype(np.int64)

    def card(self) -> dict[str, Any]:
        """The JSON model card: everything about the bundle except the fitted trees."""
        return {
            "card_version": 1,
            "task": self.task,
            "target": self.target,
            "transform": self.transform,
            "features": [f.to_json() for f in self.features],
            "heads": sorted(self.heads),
            "bucket_edges": list(self.bucket_edges),
            "blend": {"feature": self.blend_feature, "weight": self.blend_weight},
            "training": self.training,
            "metrics": self.metrics,
            "versions": library_versions(),
        }


def library_versions() -> dict[str, str]:
    """Versions that must match between export and load (the trees' on-disk layout depends on them)."""
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def data_sha256(*arrays: np.ndarray) -> str:
    """A content hash of the training data (the feature matrix and the target), for the model card."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
