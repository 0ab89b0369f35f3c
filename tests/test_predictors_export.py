"""Export (skops + ONNX + card), the runtime loader's refusals, and record validation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

import predictors.export as export_mod
from predictors.bundle import FeatureField, ModelBundle
from predictors.export import SYNTHETIC_CHECK_ROWS, ExportCheckError, canonical_skops, export_bundle
from predictors.runtime import ModelLoadError, load, time_predict
from predictors.validation import FeatureValidationError, rows_to_records, sample_feature_rows, validate_records

FEATURES = (
    FeatureField("prompt_tokens", "int", "prompt length at arrival", 1, 32768),
    FeatureField("hour_of_day", "int", "local hour of the arrival", 0, 23),
    FeatureField("is_weekend", "bool", "arrival on Saturday or Sunday"),
    FeatureField("load_share", "float", "share of busy slots at arrival", 0.0, 1.0),
    FeatureField("hist_median_log", "float", "log1p median of recent outputs; NaN before any", 0.0, 20.0, True),
)
BUCKET_EDGES = (64.0, 256.0, 1024.0)


def make_data(n_rows: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic features (NaN in the nullable history column) and an output-token target."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([
        rng.integers(1, 4000, n_rows), rng.integers(0, 24, n_rows), rng.integers(0, 2, n_rows),
        rng.random(n_rows), rng.normal(5.0, 1.0, n_rows).clip(0, 20),
    ]).astype(np.float32)
    X[rng.random(n_rows) < 0.3, 4] = np.nan
    hist = np.nan_to_num(X[:, 4], nan=5.0)
    y = np.expm1(hist + 0.3 * np.sin(X[:, 1] / 4) + 0.5 * X[:, 2]) + 0.05 * X[:, 0] + rng.gamma(2.0, 20.0, n_rows)
    return X, y


def make_bundle(n_rows: int = 3000, seed: int = 0) -> tuple[ModelBundle, np.ndarray]:
    """A small fitted bundle with all four heads and a history blend, plus its training matrix."""
    X, y = make_data(n_rows, seed)
    log_y = np.log1p(y)
    kw = {"max_iter": 15, "random_state": 0}
    heads = {
        "point": HistGradientBoostingRegressor(**kw).fit(X, log_y),
        "p50": HistGradientBoostingRegressor(loss="quantile", quantile=0.5, **kw).fit(X, log_y),
        "p90": HistGradientBoostingRegressor(loss="quantile", quantile=0.9, **kw).fit(X, log_y),
    }
    bundle = ModelBundle(task="response_length", features=FEATURES, target="output_tokens", heads=heads,
                         bucket_edges=BUCKET_EDGES, blend_feature="hist_median_log", blend_weight=0.25,
                         training={"traces": ["synthetic"], "rows": n_rows}, metrics={"mae": 12.5, "tau": None})
    bundle.heads["bucket"] = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, bundle.bucket_of(y))
    return bundle, X


class NotAHead:
    """A harmless object whose type skops does not trust: stands in for a malicious payload."""

    def __init__(self):
        self.x = 1



@pytest.fixture(scope="module")
def fitted():
    return make_bundle()


@pytest.fixture(scope="module")
def exported(fitted, tmp_path_factory) -> Path:
    bundle, X = fitted
    return export_bundle(bundle, tmp_path_factory.mktemp("export") / "model", check_rows=X[:500])


@pytest.fixture
def copy_of(exported, tmp_path) -> Path:
    """A private copy of the export, to tamper with."""
    return Path(shutil.copytree(exported, tmp_path / "model"))


def _edit_card(folder: Path, edit) -> None:
    card = json.loads((folder / "card.json").read_text())
    edit(card)
    (folder / "card.json").write_text(json.dumps(card))


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------ export and both backends


@pytest.mark.parametrize("backend", ["skops", "onnx"])
def test_backends_reproduce_the_in_process_bundle(fitted, exported, backend):
    bundle, X = fitted
    model = load(exported, backend=backend, expect_task="response_length", expect_features=FEATURES)
    want, got = bundle.predict(X), model.predict(X)
    assert set(got) == {"point", "p50", "p90", "bucket"}
    for head in ("point", "p50", "p90"):
        if backend == "skops":
            np.testing.assert_array_equal(got[head], want[head])
        else:  # float32 leaf sums in ONNX; splits are exact (thresholds rounded down to float32)
            np.testing.assert_allclose(got[head], want[head], rtol=1e-4)
    np.testing.assert_array_equal(got["bucket"], want["bucket"])
    assert model.task == "response_length" and model.backend == backend
    assert model.features == FEATURES and model.feature_names == [f.name for f in FEATURES]
    assert model.bundle.bucket_edges == BUCKET_EDGES
    assert (model.bundle.blend_feature, model.bundle.blend_weight) == ("hist_median_log", 0.25)
    records = rows_to_records(FEATURES, X[:20])
    by_record = model.predict_records(records)
    for head in got:  # onnxruntime sums trees in a batch-size dependent order: float32 rounding only
        np.testing.assert_allclose(by_record[head], got[head][:20], rtol=1e-5 if backend == "onnx" else 0)


def test_card_records_files_versions_and_checks(fitted, exported):
    import onnx
    import onnxruntime
    import skl2onnx
    import skops

    bundle, _ = fitted
    card = json.loads((exported / "card.json").read_text())
    assert card["card_version"] == 1 and card["task"] == "response_length" and card["target"] == "output_tokens"
    assert card["features"] == [f.to_json() for f in FEATURES]
    assert card["heads"] == ["bucket", "p50", "p90", "point"]
    assert card["bucket_edges"] == list(BUCKET_EDGES)
    assert card["blend"] == {"feature": "hist_median_log", "weight": 0.25}
    assert card["training"] == {"traces": ["synthetic"], "rows": 3000}
    assert card["metrics"] == {"mae": 12.5, "tau": None}
    assert card["versions"]["scikit-learn"] == sklearn.__version__
    assert card["versions"]["skops"] == skops.__version__ and card["versions"]["skl2onnx"] == skl2onnx.__version__
    assert card["versions"]["onnx"] == onnx.__version__ and card["versions"]["onnxruntime"] == onnxruntime.__version__
    for head, entry in card["files"].items():
        for fmt in ("skops", "onnx"):
            data = (exported / entry[fmt]["file"]).read_bytes()
            assert entry[fmt]["file"] == f"{head}.{fmt}"
            assert entry[fmt]["sha256"] == hashlib.sha256(data).hexdigest() and entry[fmt]["bytes"] == len(data)
    assert card["files"]["bucket"]["classes"] == [int(c) for c in bundle.heads["bucket"].classes_]
    check = card["onnx_check"]
    assert check["passed"] and check["rows_given"] == 500 and check["rows_synthetic"] == SYNTHETIC_CHECK_ROWS
    assert check["rows"] == 500 + SYNTHETIC_CHECK_ROWS
    assert set(check["max_abs_diff"]) == set(card["heads"])
    assert all(0 <= d < 1e-4 for d in check["max_abs_diff"].values())
    assert card["skops_check"] == {"rows": check["rows"], "identical": True}
    assert card["onnx"]["input"] == "features"
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        ["card.json"] + [f"{h}.{fmt}" for h in card["heads"] for fmt in ("skops", "onnx")])


def test_export_is_byte_deterministic(fitted, exported, tmp_path):
    bundle, X = fitted
    again = export_bundle(bundle, tmp_path / "again", check_rows=X[:500])
    assert _file_bytes(again) == _file_bytes(exported)


def test_canonical_skops_is_stable_and_differs_from_raw_ids(fitted):
    import skops.io as sio

    head = fitted[0].heads["point"]
    raw = sio.dumps(head)
    assert canonical_skops(raw) == canonical_skops(sio.dumps(head)) == canonical_skops(canonical_skops(raw))
    np.testing.assert_array_equal(sio.loads(canonical_skops(raw), trusted=sio.get_untrusted_types(data=raw))
                                  .predict(fitted[1]), head.predict(fitted[1]))


def _adjacent_float32_bundle() -> tuple[ModelBundle, np.ndarray]:
    """A feature whose only values are two adjacent float32 numbers: the split threshold (their float64
    midpoint) rounds *up* to the larger one in float32, which a naive conversion routes the wrong way."""
    rng = np.random.default_rng(1)
    a = np.float32(1.1)
    b = np.nextafter(a, np.float32(2))
    X = np.column_stack([np.where(np.arange(2000) % 2 == 1, b, a), rng.random(2000)]).astype(np.float32)
    y = (X[:, 0] > a) * 3.0 + X[:, 1]
    head = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(X, y)
    features = (FeatureField("x", "float", "x", 0, 10), FeatureField("z", "float", "z", 0, 1))
    return ModelBundle("gpu_duration", features, "duration_s", {"point": head}), X


def test_float32_thresholds_make_onnx_split_exactly_like_sklearn(tmp_path, monkeypatch):
    bundle, X = _adjacent_float32_bundle()
    out = export_bundle(bundle, tmp_path / "m", check_rows=X)
    got = load(out, backend="onnx").predict(X)["point"]
    np.testing.assert_allclose(got, bundle.predict(X)["point"], rtol=1e-5)
    # without the rounding the ONNX check must catch the wrong splits, and leave the old export alone
    before = _file_bytes(out)
    monkeypatch.setattr(export_mod, "_float32_thresholds", lambda est: est)
    with pytest.raises(ExportCheckError, match="head 'point': ONNX differs from scikit-learn"):
        export_bundle(bundle, out, check_rows=X)
    assert _file_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_failed_write_leaves_previous_export_and_no_temp_dirs(fitted, copy_of, monkeypatch):
    bundle, X = fitted
    before = _file_bytes(copy_of)
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError("disk full")

    monkeypatch.setattr(export_mod.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        export_bundle(bundle, copy_of, check_rows=X[:100])
    assert _file_bytes(copy_of) == before
    assert [p.name for p in copy_of.parent.iterdir()] == ["model"]


def test_export_refuses_to_replace_a_foreign_folder(fitted, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a model export folder"):
        export_bundle(fitted[0], tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_export_refuses_bad_check_rows(fitted, tmp_path):
    with pytest.raises(ValueError, match=r"check_rows must be a \(rows, 5\) matrix"):
        export_bundle(fitted[0], tmp_path / "m", check_rows=np.zeros((3, 4)))
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------ load refusals


@pytest.mark.parametrize("expect, message", [
    ([f.name for f in reversed(FEATURES)], "same names in another order"),
    ([f.name for f in FEATURES[:4]] + ["queue_len"], r"missing \['queue_len'\], unexpected \['hist_median_log'\]"),
    (FEATURES[:2] + (FeatureField("is_weekend", "float", "x"),) + FEATURES[3:], r"is_weekend: bool \(expected float"),
])
def test_load_refuses_feature_mismatch(exported, expect, message):
    with pytest.raises(ModelLoadError, match=message) as err:
        load(exported, expect_features=expect)
    assert "card.json" in str(err.value)


def test_load_refuses_task_mismatch(exported):
    with pytest.raises(ModelLoadError, match="model predicts 'response_length', expected 'gpu_duration'"):
        load(exported, backend="onnx", expect_task="gpu_duration")


@pytest.mark.parametrize("backend", ["skops", "onnx"])
def test_load_refuses_tampered_head(copy_of, backend):
    path = copy_of / f"p90.{backend}"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=rf"p90\.{backend}: sha256 .* does not match"):
        load(copy_of, backend=backend)


def test_load_refuses_other_sklearn_version_for_skops_only(copy_of, fitted):
    def older(card):
        card["versions"]["scikit-learn"] = "0.24.2"

    _edit_card(copy_of, older)
    with pytest.raises(ModelLoadError, match=r"scikit-learn 0\.24\.2, installed is .*same major\.minor"):
        load(copy_of, backend="skops")
    model = load(copy_of, backend="onnx")  # ONNX does not depend on the exporter's scikit-learn
    np.testing.assert_allclose(model.predict(fitted[1])["p50"], fitted[0].predict(fitted[1])["p50"], rtol=1e-4)


def _replace_head(folder: Path, head: str, obj) -> None:
    import skops.io as sio

    data = sio.dumps(obj)
    (folder / f"{head}.skops").write_bytes(data)

    def fix_sha(card):
        card["files"][head]["skops"]["sha256"] = hashlib.sha256(data).hexdigest()

    _edit_card(folder, fix_sha)


def test_load_refuses_untrusted_types_even_with_matching_sha(copy_of):
    _replace_head(copy_of, "point", NotAHead())
    with pytest.raises(ModelLoadError, match=r"point\.skops: holds types outside the allow-list.*NotAHead"):
        load(copy_of, backend="skops")


def test_load_refuses_trusted_object_of_the_wrong_kind(copy_of):
    X, y = make_data(200)
    _replace_head(copy_of, "p50", LinearRegression().fit(np.nan_to_num(X), y))
    with pytest.raises(ModelLoadError, match=r"p50\.skops: holds a LinearRegression, expected "
                                             "HistGradientBoostingRegressor"):
        load(copy_of, backend="skops")


def test_load_refuses_missing_or_broken_cards(copy_of, tmp_path):
    with pytest.raises(ModelLoadError, match="no model card"):
        load(tmp_path / "nowhere")
    (copy_of / "card.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"card\.json: not valid JSON"):
        load(copy_of)
    (copy_of / "card.json").write_text(json.dumps({"card_version": 99}))
    with pytest.raises(ModelLoadError, match="card_version 99 is unknown"):
        load(copy_of)


def test_load_refuses_paths_outside_the_folder(copy_of):
    def escape(card):
        card["files"]["point"]["onnx"]["file"] = "../point.onnx"

    _edit_card(copy_of, escape)
    with pytest.raises(ModelLoadError, match="must be a plain name"):
        load(copy_of, backend="onnx")


def test_time_predict_reports_rows(exported, fitted):
    stats = time_predict(load(exported, backend="onnx"), fitted[1][:100], repeats=2)
    assert stats["rows"] == 100 and stats["best_s"] <= stats["median_s"] and stats["rows_per_s"] > 0


# ------------------------------------------------------------------ record validation


def _valid_record() -> dict:
    return {"prompt_tokens": 512, "hour_of_day": 13, "is_weekend": False, "load_share": 0.5,
            "hist_median_log": None}


def test_validate_records_builds_the_matrix():
    records = [_valid_record(), {**_valid_record(), "hist_median_log": float("nan"), "prompt_tokens": 7.0},
               {**_valid_record(), "hist_median_log": 4.5, "is_weekend": True}]
    X = validate_records(FEATURES, records)
    assert X.dtype == np.float32 and X.shape == (3, 5)
    np.testing.assert_array_equal(X[:, 0], [512, 7, 512])
    assert np.isnan(X[0, 4]) and np.isnan(X[1, 4]) and X[2, 4] == 4.5 and X[2, 2] == 1.0
    sample = sample_feature_rows(FEATURES, 200, seed=3)
    np.testing.assert_array_equal(validate_records(FEATURES, rows_to_records(FEATURES, sample)), sample)


@pytest.mark.parametrize("change, field, message", [
    ({"prompt_tokens": "512"}, "prompt_tokens", "expected a number"),
    ({"load_share": True}, "load_share", "expected a number"),
    ({"is_weekend": 1}, "is_weekend", "expected a boolean"),
    ({"prompt_tokens": 12.5}, "prompt_tokens", "expected an integer"),
    ({"load_share": None}, "load_share", "not nullable"),
    ({"load_share": float("nan")}, "load_share", "NaN but the feature is not nullable"),
    ({"prompt_tokens": 10**9}, "prompt_tokens", "above the plausible maximum"),
    ({"hour_of_day": -1}, "hour_of_day", "below the plausible minimum"),
    ({"hist_median_log": float("inf")}, "hist_median_log", "must be finite"),
    ({"queue_len": 3}, "queue_len", "unknown field"),
])
def test_validate_records_refuses_each_bad_kind(change, field, message):
    with pytest.raises(FeatureValidationError, match=message) as err:
        validate_records(FEATURES, [_valid_record(), {**_valid_record(), **change}])
    assert [(p.index, p.field) for p in err.value.problems] == [(1, field)]


def test_validate_records_lists_every_problem():
    missing = _valid_record()
    del missing["hour_of_day"]
    with pytest.raises(FeatureValidationError) as err:
        validate_records(FEATURES, [missing, "not a record", {**_valid_record(), "load_share": 2.0, "x": 1}])
    assert [(p.index, p.field) for p in err.value.problems] == [
        (0, "hour_of_day"), (1, None), (2, "load_share"), (2, "x")]
    assert "record 0, field 'hour_of_day': missing" in str(err.value)
