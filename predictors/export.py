"""Write a :class:`ModelBundle` to a folder a scheduler can load: skops + ONNX heads and a JSON card.

Layout of an export folder::

    card.json        bundle.card() + head files with sha256, export library versions, onnx/skops checks
    <head>.skops     each fitted head, skops format (no pickle), byte-canonicalized (see below)
    <head>.onnx      each head as ONNX (float32 input ``features`` of shape [None, n_features])

Everything that is not a tree (feature schema, bucket edges, history blend, training summary,
metrics) lives in the card only; :func:`predictors.runtime.load` rebuilds the bundle from card + heads.

Guarantees: the folder appears whole or not at all (built in a temporary sibling, then renamed; a
previous export at the same path stays untouched if anything fails); the ONNX heads are checked
against scikit-learn with onnxruntime before anything is written; and exporting the same bundle
twice gives byte-identical files (skops names arrays after ``id()`` and stamps zip entries with the
time, so its archive is rewritten canonically and verified by loading it back).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from predictors.bundle import CLASSIFIER_HEAD, ModelBundle
from predictors.runtime import ONNX_INPUT, OnnxHead, load_skops_head, onnx_session
from predictors.validation import sample_feature_rows

TARGET_OPSET = 17
"""ONNX opset of the exported heads (ai.onnx.ml 1 for the trees): old enough for most runtimes."""
RTOL_LOG = 1e-4
"""Relative tolerance of ONNX vs scikit-learn on the regressors' log-scale outputs."""
ATOL_LOG = 1e-5
"""Absolute tolerance on the log-scale outputs (float32 leaf sums vs scikit-learn's float64)."""
ATOL_PROBA = 1e-5
"""Absolute tolerance on the classifier's probabilities."""
SYNTHETIC_CHECK_ROWS = 256
"""Rows drawn from the feature schema (full [min, max] range, NaNs) added to every ONNX check."""
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ExportCheckError(ValueError):
    """The exported heads do not reproduce the in-process bundle; nothing was written."""


def export_bundle(bundle: ModelBundle, out_dir: str | Path, *, check_rows: np.ndarray | None = None) -> Path:
    """Export ``bundle`` to the folder ``out_dir`` (replaced atomically if it is a previous export).

    ``check_rows`` (a float matrix in feature order, ideally real held-out rows) are predicted by
    scikit-learn and by onnxruntime; export refuses (:class:`ExportCheckError`) where they differ by
    more than ``RTOL_LOG``/``ATOL_LOG`` (regressors, log scale) or ``ATOL_PROBA`` (probabilities).
    ``SYNTHETIC_CHECK_ROWS`` rows sampled from the feature schema are always checked too. The skops
    files are loaded back and must reproduce the bundle's raw outputs exactly. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    _check_destination(out_dir)
    rows, n_given = _check_matrix(bundle, check_rows)
    expected = bundle.raw(rows)

    card = _jsonable(bundle.card())
    card["versions"].update(export_library_versions())
    payloads: dict[str, bytes] = {}
    files: dict[str, Any] = {}
    onnx_diff: dict[str, float] = {}
    for name in sorted(bundle.heads):
        est = bundle.heads[name]
        is_clf = name == CLASSIFIER_HEAD
        skops_bytes = canonical_skops(_skops_dumps(est))
        reloaded = load_skops_head(skops_bytes, f"{name}.skops (export check)", classifier=is_clf)
        again = reloaded.predict_proba(rows) if is_clf else reloaded.predict(rows)
        if not np.array_equal(again, expected[name]):
            raise ExportCheckError(f"head {name!r}: the skops file does not reproduce the in-process predictions")
        onnx_bytes = head_to_onnx(est, len(bundle.features))
        classes = _jsonable(list(est.classes_)) if is_clf else None
        got = _onnx_raw(onnx_bytes, name, classes, rows)
        onnx_diff[name] = _compare(name, is_clf, got, expected[name])
        payloads[f"{name}.skops"], payloads[f"{name}.onnx"] = skops_bytes, onnx_bytes
        files[name] = {
            "kind": "classifier" if is_clf else "regressor",
            "class": type(est).__name__,
            "skops": _file_entry(f"{name}.skops", skops_bytes),
            "onnx": _file_entry(f"{name}.onnx", onnx_bytes),
        }
        if is_clf:
            files[name]["classes"] = classes
    card["files"] = files
    card["onnx"] = {"input": ONNX_INPUT, "input_dtype": "float32", "opset": TARGET_OPSET,
                    "thresholds": "rounded down to float32, so float32 inputs split exactly as in scikit-learn"}
    card["onnx_check"] = {"rows": int(len(rows)), "rows_given": n_given, "rows_synthetic": int(len(rows)) - n_given,
                          "max_abs_diff": onnx_diff, "rtol_log": RTOL_LOG, "atol_log": ATOL_LOG,
                          "atol_proba": ATOL_PROBA, "passed": True}
    card["skops_check"] = {"rows": int(len(rows)), "identical": True}
    payloads["card.json"] = (json.dumps(card, indent=2, allow_nan=False) + "\n").encode()
    _write_atomically(out_dir, payloads)
    return out_dir


def export_library_versions() -> dict[str, str]:
    """Versions of the export libraries, recorded in the card next to ``bundle.library_versions()``."""
    import onnx
    import onnxruntime
    import skl2onnx
    import skops

    return {"skops": skops.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def head_to_onnx(est: Any, n_features: int) -> bytes:
    """One fitted HistGradientBoosting head as serialized ONNX (input ``features``: float32 [None, n]).

    scikit-learn compares float64 thresholds; ONNX trees hold float32 ones, and rounding a threshold
    *up* to float32 sends an input equal to the rounded value the other way. Thresholds are therefore
    rounded *down* on a copy of the head, which keeps every float32 input on the same side.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    est = _float32_thresholds(est)
    options = {id(est): {"zipmap": False}} if hasattr(est, "predict_proba") else None
    try:
        with warnings.catch_warnings():  # skl2onnx 1.20 stores bools in int fields; protobuf 6 warns per node
            warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning)
            model = to_onnx(est, initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
                            options=options, target_opset=TARGET_OPSET)
    except TypeError as err:  # protobuf 7 breaks skl2onnx 1.20 ("Expected an int, got a boolean")
        raise RuntimeError(f"skl2onnx could not convert {type(est).__name__} ({err}); "
                           "skl2onnx 1.20 needs protobuf<7") from err
    return model.SerializeToString()


def canonical_skops(data: bytes) -> bytes:
    """A skops archive rewritten so that equal objects give equal bytes.

    skops names array files and tags objects with ``id()`` (memory addresses) and stamps each zip entry
    with the current time. Here ids are renumbered 1, 2, ... in order of first appearance in
    ``schema.json`` (a bijection, so shared-object references survive), array files renamed to match,
    and entries written in a fixed order with a fixed time. Callers verify the result loads back.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        members = {n: src.read(n) for n in src.namelist() if n != "schema.json"}
    ids: dict[int, int] = {}
    names: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "__id__" and isinstance(value, int) and not isinstance(value, bool):
                out[key] = ids.setdefault(value, len(ids) + 1)  # 0 would read as "no id" in skops
            elif key == "file" and isinstance(value, str) and value in members:
                out[key] = names.setdefault(value, f"{len(names) + 1}{Path(value).suffix}")
            else:
                out[key] = walk(value)
        return out

    schema = walk(schema)
    if set(names) != set(members):
        raise ExportCheckError(f"skops archive has unreferenced members {sorted(set(members) - set(names))}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as dst:
        for old, new in sorted(names.items(), key=lambda kv: int(Path(kv[1]).stem)):
            dst.writestr(_zip_info(new), members[old])
        dst.writestr(_zip_info("schema.json"), json.dumps(schema, indent=2))
    return buf.getvalue()


def _skops_dumps(est: Any) -> bytes:
    import skops.io as sio

    return sio.dumps(est)


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.external_attr = 0o644 << 16
    return info


def _float32_thresholds(est: Any) -> Any:
    """A copy of a HistGradientBoosting head whose numeric thresholds are float32 values rounded down."""
    est = copy.deepcopy(est)
    for predictors in getattr(est, "_predictors", []):
        for predictor in predictors:
            nodes = predictor.nodes
            split = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
            t64 = nodes["num_threshold"][split]
            t32 = t64.astype(np.float32)
            up = t32.astype(np.float64) > t64
            t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
            nodes["num_threshold"][split] = t32.astype(np.float64)
    return est


def _onnx_raw(onnx_bytes: bytes, name: str, classes: list | None, rows: np.ndarray) -> np.ndarray:
    head = OnnxHead(onnx_session(onnx_bytes, f"{name}.onnx (export check)"), classes)
    return head.predict_proba(rows) if classes is not None else head.predict(rows)


def _compare(name: str, is_clf: bool, got: np.ndarray, expected: np.ndarray) -> float:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        raise ExportCheckError(f"head {name!r}: ONNX output shape {got.shape} != scikit-learn {expected.shape}")
    diff = np.abs(got - expected)
    allowed = ATOL_PROBA if is_clf else ATOL_LOG + RTOL_LOG * np.abs(expected)
    bad = ~(diff <= allowed)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ExportCheckError(f"head {name!r}: ONNX differs from scikit-learn on {int(bad.any(axis=-1).sum())} "
                               f"check row(s), e.g. row {row}: {got[row]} vs {expected[row]} "
                               f"(max abs diff {float(diff.max()):.3g})")
    return float(diff.max()) if diff.size else 0.0


def _check_matrix(bundle: ModelBundle, check_rows: np.ndarray | None) -> tuple[np.ndarray, int]:
    synthetic = sample_feature_rows(bundle.features, SYNTHETIC_CHECK_ROWS, seed=0)
    if check_rows is None:
        return synthetic, 0
    given = np.asarray(check_rows, dtype=np.float32)
    if given.ndim != 2 or given.shape[1] != len(bundle.features):
        raise ValueError(f"check_rows must be a (rows, {len(bundle.features)}) matrix with columns "
                         f"{bundle.feature_names}, got shape {given.shape}")
    return np.concatenate([given, synthetic]), int(len(given))


def _check_destination(out_dir: Path) -> None:
    if out_dir.exists() and not (out_dir.is_dir() and ((out_dir / "card.json").is_file() or
                                                        not any(out_dir.iterdir()))):
        raise FileExistsError(f"{out_dir} exists and is not a model export folder (no card.json); "
                              "refusing to replace it")


def _write_atomically(out_dir: Path, payloads: dict[str, bytes]) -> None:
    """Write ``payloads`` into a temporary sibling of ``out_dir``, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        for name, data in payloads.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "export")
            try:
                os.rename(tmp, out_dir)
            except BaseException:
                os.rename(old / "export", out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _file_entry(name: str, data: bytes) -> dict[str, Any]:
    return {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, tuples as lists, NaN/inf as null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
