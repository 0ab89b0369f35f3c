"""The prediction service over a real loopback socket: uvicorn in a background thread, httpx as client."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from test_predictors_export import FEATURES, make_bundle

from predictors.export import export_bundle
from predictors.runtime import load
from predictors.serve import create_app
from predictors.validation import rows_to_records

MAX_BATCH_ROWS = 50



@pytest.fixture(scope="module")
def fitted():
    return make_bundle(n_rows=2000, seed=1)


@pytest.fixture(scope="module", params=["onnx", "skops"])
def server(request, fitted, tmp_path_factory):
    """(base url, loaded model) of a live server for each backend; shut down after the module."""
    bundle, X = fitted
    path = export_bundle(bundle, tmp_path_factory.mktemp("serve") / "model", check_rows=X[:200])
    model = load(path, backend=request.param, expect_features=FEATURES, onnx_threads=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held by us until uvicorn takes the socket over
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(model, max_batch_rows=MAX_BATCH_ROWS), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", model
    srv.should_exit = True
    thread.join(timeout=30)
    sock.close()
    assert not thread.is_alive(), "server did not shut down"


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def _record(**change) -> dict:
    return {"prompt_tokens": 900, "hour_of_day": 9, "is_weekend": True, "load_share": 0.25,
            "hist_median_log": 5.5, **change}


def test_health(server, client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["task"] == "response_length"
    assert body["backend"] == server[1].backend
    assert body["features"] == [f.name for f in FEATURES]
    assert body["feature_schema"][4]["nullable"] is True
    assert body["heads"] == ["bucket", "p50", "p90", "point"]
    assert body["training"] == {"traces": ["synthetic"], "rows": 2000}
    assert body["max_batch_rows"] == MAX_BATCH_ROWS


def test_single_prediction_matches_in_process(server, client, fitted):
    bundle = fitted[0]
    for record in (_record(), _record(hist_median_log=None, is_weekend=False)):
        resp = client.post("/predict", json=record)
        assert resp.status_code == 200, resp.text
        got = resp.json()["predictions"]
        X = np.array([[np.nan if v is None else float(v) for v in record.values()]], dtype=np.float32)
        want = bundle.predict(X)
        assert set(got) == set(want)
        for head in ("point", "p50", "p90"):
            assert got[head] == pytest.approx(float(want[head][0]), rel=1e-4)
        assert got["bucket"] == int(want["bucket"][0])


def test_batch_prediction_matches_in_process(server, client, fitted):
    bundle, X = fitted
    rows = X[:MAX_BATCH_ROWS]
    resp = client.post("/predict/batch", json={"rows": rows_to_records(FEATURES, rows)})
    assert resp.status_code == 200, resp.text
    got = resp.json()["predictions"]
    want = bundle.predict(rows)
    for head in ("point", "p50", "p90"):
        np.testing.assert_allclose(got[head], want[head], rtol=1e-4)
    np.testing.assert_array_equal(got["bucket"], want["bucket"])
    # the served numbers are the loaded model's numbers, to the last bit the JSON carries
    local = server[1].predict(rows)
    np.testing.assert_array_equal(got["point"], local["point"])


@pytest.mark.parametrize("record, field, message", [
    (_record(load_share="high"), "load_share", "expected a number"),
    ({k: v for k, v in _record().items() if k != "hour_of_day"}, "hour_of_day", "missing"),
    (_record(prompt_tokens=5_000_000), "prompt_tokens", "above the plausible maximum"),
    (_record(load_share=float("nan")), "load_share", "NaN but the feature is not nullable"),
    (_record(extra_field=1), "extra_field", "unknown field"),
])
def test_invalid_single_record_gives_422_naming_the_field(client, record, field, message):
    resp = client.post("/predict", content=json.dumps(record), headers={"content-type": "application/json"})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert [(p["index"], p["field"]) for p in detail["problems"]] == [(0, field)]
    assert message in detail["problems"][0]["message"] and field in detail["message"]


def test_invalid_batch_lists_every_bad_row(client):
    rows = [_record(), _record(is_weekend="yes"), _record(), _record(hour_of_day=99, load_share=None)]
    resp = client.post("/predict/batch", json={"rows": rows})
    assert resp.status_code == 422
    assert [(p["index"], p["field"]) for p in resp.json()["detail"]["problems"]] == [
        (1, "is_weekend"), (3, "hour_of_day"), (3, "load_share")]


def test_malformed_bodies_give_422(client):
    bad_json = client.post("/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "not valid JSON" in bad_json.json()["detail"]["message"]
    not_object = client.post("/predict", json=[1, 2])
    assert not_object.status_code == 422 and "expected an object" in not_object.json()["detail"]["message"]
    no_rows = client.post("/predict/batch", json={"records": [_record()]})
    assert no_rows.status_code == 422 and no_rows.json()["detail"]["problems"][0]["field"] == "rows"


def test_batch_over_the_limit_gives_413(client):
    resp = client.post("/predict/batch", json={"rows": [_record()] * (MAX_BATCH_ROWS + 1)})
    assert resp.status_code == 413
    assert f"at most {MAX_BATCH_ROWS}" in resp.json()["detail"]["message"]
    assert client.post("/predict/batch", json={"rows": []}).json() == {
        "predictions": {"bucket": [], "p50": [], "p90": [], "point": []}}


def test_run_server_serves_an_export_in_a_subprocess(fitted, tmp_path):
    """``run_server`` end to end: a separate process loads the export (ONNX) and answers on loopback."""
    import subprocess
    import sys

    bundle, X = fitted
    path = export_bundle(bundle, tmp_path / "model", check_rows=X[:100])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from predictors.serve import run_server; run_server({str(path)!r}, port={port}, log_level='warning')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "run_server did not come up within 60 s"
                time.sleep(0.1)
        assert health.json()["backend"] == "onnx"
        got = httpx.post(f"http://127.0.0.1:{port}/predict", json=_record(), timeout=30).json()["predictions"]
        assert got["bucket"] == int(bundle.predict(np.array([list(_record().values())], dtype=np.float32))["bucket"][0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
