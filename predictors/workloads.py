"""Predictions for whole replay workloads: what the serving and cluster replays call.

``replay`` never imports this package eagerly; when a run names a model, its harness calls
``predictors.runtime.load_length_predictor(path).predict_workload(workload)`` (serving) or
``load_duration_predictor(path).predict_jobs(jobs)`` (cluster). Both build the model's features with
the same functions training used (:mod:`predictors.features`), with the history settings from the
model card, and return one float per request / job.

History in a replay comes from the trace, not from the simulation: a request's true output length
becomes visible ``history_lag_s`` after its arrival (in replay time), a job's run time once it would
have ended had it started at submit. The replay's own completions may come later than that under
heavy load, so history can be a little fresher than a deployed predictor's.

Wall-clock features: a replay of a trace the model was trained on reuses that trace's clock from the
card (shifted by the workload's ``clock_offset_s`` if it has one: the window start); any other
workload gets NaN there, exactly as a trace without a clock. Serving workloads are rate-scaled, so
they always get NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from predictors.features import Clock, duration_features, length_features
from predictors.runtime import LoadedModel, load

LENGTH_HEADS = ("point", "p50", "p90")


class _WorkloadPredictor:
    """A loaded model of one task and the head whose predictions a replay uses."""

    task = ""

    def __init__(self, model: LoadedModel, head: str):
        if model.task != self.task:
            raise ValueError(f"{model.path}: a {model.task} model cannot serve as a {self.task} predictor")
        if head not in model.bundle.heads:
            raise ValueError(f"{model.path}: no {head!r} head (has {sorted(model.bundle.heads)})")
        self.model = model
        self.head = head


class LengthPredictor(_WorkloadPredictor):
    """Predicted output tokens per request of a replay workload (``replay.sources.Workload``)."""

    task = "response_length"

    def __init__(self, model: LoadedModel, head: str = "p50"):
        super().__init__(model, head)

    def features(self, workload: Any) -> np.ndarray:
        training = self.model.card.get("training", {})
        vocab = list(training.get("vocabulary") or [])
        service = vocab.index(workload.trace) if workload.trace in vocab else np.nan
        return length_features(workload.arrival_s, workload.prompt_tokens, workload.output_tokens,
                               service=service, clock=None, history_lag_s=float(training.get("history_lag_s") or 60.0))

    def predict_workload(self, workload: Any) -> np.ndarray:
        """float64 predicted output tokens, one per request in workload order."""
        if len(workload.arrival_s) == 0:
            return np.empty(0)
        return np.asarray(self.model.predict(self.features(workload))[self.head], dtype=np.float64)


class DurationPredictor(_WorkloadPredictor):
    """Predicted run seconds per job of a cluster replay workload (``replay.cluster.jobs.JobWorkload``)."""

    task = "gpu_duration"

    def __init__(self, model: LoadedModel, head: str = "point"):
        super().__init__(model, head)

    def features(self, jobs: Any) -> np.ndarray:
        """DURATION_FEATURES per job; one history per cluster of the trace (``jobs.cluster``), as in training."""
        training = self.model.card.get("training", {})
        vocab = {g: i for i, g in enumerate(training.get("vocabulary") or [])}
        known = (training.get("clocks") or {}).get(getattr(jobs, "trace", None))
        clock = (Clock(known["origin_epoch_s"] + float(getattr(jobs, "clock_offset_s", 0.0) or 0.0), known["time_zone"])
                 if known else None)
        clusters = getattr(jobs, "cluster", None)
        keys = np.zeros(len(jobs.submit_s), dtype=np.int64) if clusters is None else \
            np.unique(np.array([str(c) for c in clusters], dtype=object), return_inverse=True)[1]
        X = np.empty((len(jobs.submit_s), len(self.model.features)), dtype=np.float32)
        for k in np.unique(keys):
            rows = np.flatnonzero(keys == k)  # submit order within the cluster

            def pick(name: str) -> np.ndarray | None:
                values = getattr(jobs, name, None)
                return None if values is None else np.asarray(values)[rows]

            X[rows] = duration_features(jobs.submit_s[rows], jobs.duration_s[rows], jobs.num_gpus[rows],
                                        num_nodes=pick("num_nodes"), user=pick("user"), group=pick("group"),
                                        group_index=vocab, status=pick("status"), clock=clock)
        return X

    def predict_jobs(self, jobs: Any) -> np.ndarray:
        """float64 predicted run seconds, one per job in workload order."""
        if len(jobs.submit_s) == 0:
            return np.empty(0)
        return np.asarray(self.model.predict(self.features(jobs))[self.head], dtype=np.float64)


def load_length_predictor(path: str | Path, *, head: str = "p50", backend: str = "skops") -> LengthPredictor:
    """A response-length model folder as a replay's length predictor (median head by default: SJF ranks)."""
    return LengthPredictor(load(path, backend=backend, expect_task="response_length"), head)


def load_duration_predictor(path: str | Path, *, head: str = "point", backend: str = "skops") -> DurationPredictor:
    """A GPU-duration model folder as a cluster replay's duration predictor (QSSF)."""
    return DurationPredictor(load(path, backend=backend, expect_task="gpu_duration"), head)
