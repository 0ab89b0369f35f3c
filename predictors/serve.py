"""A small HTTP service around a loaded predictor (FastAPI + uvicorn): health, single and batch predictions.

The feature schema is dynamic (it comes from the model card), so bodies are read as plain JSON and
checked with :func:`predictors.validation.validate_records`; every problem comes back in one 422
answer naming the record index and field. Endpoints:

- ``GET /health``: status, task, backend, feature schema, heads and the card's training summary.
- ``POST /predict``: one JSON object of feature values -> ``{"predictions": {head: value}}``.
- ``POST /predict/batch``: ``{"rows": [object, ...]}`` -> ``{"predictions": {head: [values]}}``;
  more than ``max_batch_rows`` rows -> 413.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from predictors.runtime import LoadedModel, load
from predictors.validation import FeatureValidationError, Problem, validate_records

DEFAULT_MAX_BATCH_ROWS = 10_000
"""Largest batch ``POST /predict/batch`` accepts (413 above it)."""


def create_app(model: LoadedModel, *, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS) -> FastAPI:
    """The FastAPI app serving ``model``; batches above ``max_batch_rows`` rows are refused with 413."""
    if max_batch_rows < 1:
        raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
    app = FastAPI(title=f"tracelab {model.task} predictor", version=str(model.card.get("card_version")))
    health = {
        "status": "ok",
        "task": model.task,
        "target": model.card.get("target"),
        "backend": model.backend,
        "features": model.feature_names,
        "feature_schema": [f.to_json() for f in model.features],
        "heads": sorted(model.bundle.heads),
        "bucket_edges": list(model.bundle.bucket_edges),
        "training": model.card.get("training", {}),
        "max_batch_rows": max_batch_rows,
    }

    @app.get("/health")
    def get_health() -> dict[str, Any]:
        return health

    @app.post("/predict")
    async def predict_one(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        X = _validated(model, [body])
        preds = model.predict(X)
        return {"predictions": {head: _scalar(v[0]) for head, v in preds.items()}}

    @app.post("/predict/batch")
    async def predict_batch(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list) or (isinstance(body, dict) and set(body) != {"rows"}):
            raise _unprocessable([Problem(0, "rows", 'expected a body {"rows": [object, ...]} and nothing else')])
        if len(rows) > max_batch_rows:
            raise HTTPException(413, detail={"error": "batch too large",
                                             "message": f"{len(rows)} rows; at most {max_batch_rows} per request"})
        X = _validated(model, rows)
        preds = await run_in_threadpool(model.predict, X)
        return {"predictions": {head: [_scalar(x) for x in v] for head, v in preds.items()}}

    return app


def run_server(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str = "onnx", *,
               max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, log_level: str = "info") -> None:
    """Load the export at ``model_path`` and serve it with uvicorn until interrupted."""
    import uvicorn

    app = create_app(load(model_path, backend=backend), max_batch_rows=max_batch_rows)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _unprocessable([Problem(0, None, f"body is not valid JSON ({err})")]) from err


def _validated(model: LoadedModel, records: list[Any]) -> np.ndarray:
    try:
        return validate_records(model.features, records)
    except FeatureValidationError as err:
        raise _unprocessable(err.problems) from err


def _unprocessable(problems: list[Problem]) -> HTTPException:
    return HTTPException(422, detail={"error": "invalid input", "message": str(FeatureValidationError(problems)),
                                      "problems": [p.to_json() for p in problems]})


def _scalar(x: Any) -> float | int | None:
    x = x.item() if isinstance(x, np.generic) else x
    return None if isinstance(x, float) and not math.isfinite(x) else x
