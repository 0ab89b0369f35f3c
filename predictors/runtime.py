"""Load an exported predictor (see :mod:`predictors.export`) and predict with it, refusing mismatches.

``load(path)`` reads ``card.json``, checks it against what the caller expects (task, feature names,
order and dtypes) and against the installed libraries, verifies every head file's sha256, and
rebuilds the :class:`ModelBundle` with heads from skops (scikit-learn objects, loaded with an
allow-list of HistGradientBoosting types, never arbitrary ones) or from ONNX (onnxruntime sessions
behind the same ``predict``/``predict_proba`` interface). Both backends finish raw outputs with
``ModelBundle.finish``, so they give the same numbers up to float32 rounding in the trees.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from predictors.bundle import CLASSIFIER_HEAD, REGRESSION_HEADS, FeatureField, ModelBundle
from predictors.validation import validate_records

CARD_VERSIONS = (1,)
"""Card layouts this runtime understands."""
BACKENDS = ("skops", "onnx")
ONNX_INPUT = "features"
"""Name of the ONNX heads' float32 input, shape [None, n_features]."""
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss.loss.PinballLoss", "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.LogitLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss._loss.CyHalfSquaredError", "sklearn._loss._loss.CyPinballLoss",
    "sklearn._loss._loss.CyAbsoluteError", "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
})
"""The only types a head file may hold beyond skops' defaults: what a fitted HGB head is made of."""


class ModelLoadError(ValueError):
    """An export folder that cannot or must not be loaded; the message names the file and the mismatch."""


class OnnxHead:
    """An onnxruntime session with the scikit-learn head interface ``bundle.raw`` and ``finish`` use."""

    def __init__(self, session: Any, classes: Sequence | None = None):
        self.session = session
        self.classes_ = None if classes is None else np.asarray(classes)
        outputs = [o.name for o in session.get_outputs()]
        self._output = "probabilities" if classes is not None else outputs[0]
        if self._output not in outputs:
            raise ModelLoadError(f"ONNX classifier has outputs {outputs}, expected 'probabilities'")

    def _run(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        return self.session.run([self._output], {ONNX_INPUT: X})[0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regressors: the log-scale values; classifiers: the most probable class."""
        out = self._run(X)
        if self.classes_ is not None:
            return self.classes_[np.argmax(out, axis=1)]
        return out.reshape(-1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Classifier probabilities, columns in ``classes_`` order."""
        return self._run(X)


@dataclass
class LoadedModel:
    """A loaded export: its card, schema and rebuilt bundle, ready to predict."""

    path: Path
    card: dict[str, Any]
    backend: str
    bundle: ModelBundle

    @property
    def task(self) -> str:
        return self.bundle.task

    @property
    def features(self) -> tuple[FeatureField, ...]:
        return self.bundle.features

    @property
    def feature_names(self) -> list[str]:
        return self.bundle.feature_names

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Head name -> predictions in target units for a float matrix with columns in feature order."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 2 and X.shape == (0, len(self.features)):  # scikit-learn refuses empty input
            return {h: np.empty(0, np.int64 if h == CLASSIFIER_HEAD else np.float64)
                    for h in (*REGRESSION_HEADS, CLASSIFIER_HEAD) if h in self.bundle.heads}
        return self.bundle.predict(X)

    def predict_records(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Predictions for JSON-like records, validated first (raises ``FeatureValidationError``)."""
        return self.predict(validate_records(self.features, records))


def load(path: str | Path, *, backend: str = "skops", expect_task: str | None = None,
         expect_features: Sequence[FeatureField] | Sequence[str] | None = None,
         onnx_threads: int = 0) -> LoadedModel:
    """Load the export folder ``path`` with heads from ``backend`` (``skops`` or ``onnx``).

    Refuses (:class:`ModelLoadError`) a missing or invalid card, an unknown card version, a task
    other than ``expect_task``, features whose names, order or dtypes differ from
    ``expect_features`` (FeatureFields, or bare names to check names and order only), for skops a
    scikit-learn major.minor other than the exporter's, a head file whose sha256 differs from the
    card, and skops files holding types outside ``TRUSTED_SKOPS_TYPES``. ``onnx_threads`` sets
    onnxruntime's intra-op threads (0: its default).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    folder = Path(path)
    card_path = folder / "card.json"
    card = _read_card(card_path)
    features = _card_features(card, card_path)
    if expect_task is not None and card["task"] != expect_task:
        raise ModelLoadError(f"{card_path}: model predicts {card['task']!r}, expected {expect_task!r}")
    if expect_features is not None:
        _check_features(features, expect_features, card_path)
    if backend == "skops":
        _check_sklearn_version(card, card_path)
    if not isinstance(card["heads"], list) or not isinstance(card["files"], dict):
        raise ModelLoadError(f"{card_path}: 'heads' must be a list and 'files' an object")
    heads = {}
    for name in card["heads"]:
        entry = card["files"].get(name)
        spec = entry.get(backend) if isinstance(entry, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("sha256"), str):
            raise ModelLoadError(f"{card_path}: no {backend} file with a sha256 listed for head {name!r}")
        file_name = str(spec.get("file", ""))
        if not file_name or Path(file_name).name != file_name:
            raise ModelLoadError(f"{card_path}: head {name!r} file {file_name!r} must be a plain name in the folder")
        file = folder / file_name
        data = _read_verified(file, spec["sha256"], card_path)
        is_clf = name == CLASSIFIER_HEAD
        if backend == "skops":
            heads[name] = load_skops_head(data, str(file), classifier=is_clf)
        else:
            heads[name] = OnnxHead(onnx_session(data, str(file), threads=onnx_threads, n_features=len(features)),
                                   entry.get("classes") if is_clf else None)
    try:
        bundle = ModelBundle(task=card["task"], features=features, target=card["target"], heads=heads,
                             bucket_edges=tuple(card["bucket_edges"]), blend_feature=card["blend"]["feature"],
                             blend_weight=float(card["blend"]["weight"]), training=card.get("training", {}),
                             metrics=card.get("metrics", {}), transform=card["transform"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{card_path}: cannot rebuild the bundle: {err}") from err
    return LoadedModel(path=folder, card=card, backend=backend, bundle=bundle)


def load_skops_head(data: bytes, where: str, *, classifier: bool) -> Any:
    """A HistGradientBoosting head from skops bytes, trusting only ``TRUSTED_SKOPS_TYPES``."""
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as err:  # a corrupt archive: zipfile, json or skops errors
        raise ModelLoadError(f"{where}: not a readable skops file ({err})") from err
    refused = [t for t in untrusted if t not in TRUSTED_SKOPS_TYPES]
    if refused:
        raise ModelLoadError(f"{where}: holds types outside the allow-list of scikit-learn HistGradientBoosting "
                             f"types: {refused}; refusing to load it")
    try:
        est = sio.loads(data, trusted=untrusted)
    except Exception as err:
        raise ModelLoadError(f"{where}: skops could not load it ({err})") from err
    expected = HistGradientBoostingClassifier if classifier else HistGradientBoostingRegressor
    if type(est) is not expected:
        raise ModelLoadError(f"{where}: holds a {type(est).__name__}, expected {expected.__name__}")
    return est


def onnx_session(data: bytes, where: str, *, threads: int = 0, n_features: int | None = None) -> Any:
    """An onnxruntime CPU session for ONNX bytes, checking its input is ``features`` [None, n_features]."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ModelLoadError(f"{where}: onnxruntime {ort.__version__} cannot run this model ({err})") from err
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != ONNX_INPUT or (
            n_features is not None and inputs[0].shape[-1] != n_features):
        got = [(i.name, i.shape) for i in inputs]
        raise ModelLoadError(f"{where}: ONNX inputs {got}, expected one {ONNX_INPUT!r} of shape [None, {n_features}]")
    return session


def time_predict(model: LoadedModel | ModelBundle, X: np.ndarray, *, repeats: int = 5) -> dict[str, float]:
    """Best and median wall time of ``model.predict(X)`` over ``repeats`` calls, and rows/s at the best
    (for benchmarks: compare a skops- and an onnx-loaded model, or the in-process bundle)."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model.predict(X)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"rows": float(len(X)), "best_s": best, "median_s": float(np.median(times)),
            "rows_per_s": len(X) / best if best > 0 else float("inf")}


def _read_card(card_path: Path) -> dict[str, Any]:
    if not card_path.is_file():
        raise ModelLoadError(f"{card_path}: no model card; {card_path.parent} is not a model export folder")
    try:
        card = json.loads(card_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{card_path}: not valid JSON ({err})") from err
    if not isinstance(card, dict):
        raise ModelLoadError(f"{card_path}: expected a JSON object, got {type(card).__name__}")
    if card.get("card_version") not in CARD_VERSIONS:
        raise ModelLoadError(f"{card_path}: card_version {card.get('card_version')!r} is unknown to this runtime "
                             f"(knows {list(CARD_VERSIONS)})")
    required = ("task", "target", "transform", "features", "heads", "bucket_edges", "blend", "versions", "files")
    missing = [k for k in required if k not in card]
    if missing:
        raise ModelLoadError(f"{card_path}: missing {missing}")
    if card["transform"] != "log1p":
        raise ModelLoadError(f"{card_path}: target transform {card['transform']!r}; this runtime knows 'log1p'")
    return card


def _card_features(card: dict[str, Any], card_path: Path) -> tuple[FeatureField, ...]:
    try:
        return tuple(FeatureField.from_json(f) for f in card["features"])
    except (KeyError, TypeError) as err:
        raise ModelLoadError(f"{card_path}: malformed feature list ({err!r})") from err


def _check_features(got: tuple[FeatureField, ...], expect: Sequence[FeatureField] | Sequence[str],
                    card_path: Path) -> None:
    names = [f.name for f in got]
    want = [e if isinstance(e, str) else e.name for e in expect]
    if names != want:
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        detail = f"missing {missing}, unexpected {extra}" if missing or extra else "same names in another order"
        raise ModelLoadError(f"{card_path}: features {names} do not match the expected {want} ({detail})")
    wrong = [f"{f.name}: {f.dtype} (expected {e.dtype})" for f, e in zip(got, expect)
             if not isinstance(e, str) and f.dtype != e.dtype]
    if wrong:
        raise ModelLoadError(f"{card_path}: feature dtypes differ: {wrong}")


def _check_sklearn_version(card: dict[str, Any], card_path: Path) -> None:
    import sklearn

    saved = str(card["versions"].get("scikit-learn", "?"))
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelLoadError(f"{card_path}: heads were exported with scikit-learn {saved}, installed is "
                             f"{sklearn.__version__}; the skops backend needs the same major.minor "
                             "(load with backend='onnx', or re-export)")


def _read_verified(file: Path, sha256: str, card_path: Path) -> bytes:
    if not file.is_file():
        raise ModelLoadError(f"{file}: missing (listed in {card_path})")
    data = file.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelLoadError(f"{file}: sha256 {actual} does not match {sha256} in {card_path}; "
                             "the file was changed after export")
    return data


# ---------------------------------------------------------------------------------------------------
# Workload-level loaders (owned by the lead): load_length_predictor / load_duration_predictor compute
# features from requests / jobs and satisfy replay's LengthPredictor / DurationPredictor protocols.
# ---------------------------------------------------------------------------------------------------


def load_length_predictor(path: str | Path, **kw: Any):
    """A response-length model as a serving replay's predictor (see :mod:`predictors.workloads`)."""
    from predictors.workloads import load_length_predictor as _load

    return _load(path, **kw)


def load_duration_predictor(path: str | Path, **kw: Any):
    """A GPU-duration model as a cluster replay's predictor (see :mod:`predictors.workloads`)."""
    from predictors.workloads import load_duration_predictor as _load

    return _load(path, **kw)
