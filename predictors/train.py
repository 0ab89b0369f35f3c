"""Train and evaluate a predictor on catalog traces with a time-ordered split, baselines alongside.

Each stream (a request trace, a job trace's cluster) is split by time: its first ``train_fraction``
of rows (in arrival / submit order) train, the rest test. History features run over the whole stream,
online, so test rows see the (visible) past including earlier test rows, as a deployed model would.
The bundle that comes out is the one trained on the earlier part: its card's metrics are the
held-out figures of exactly that model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
from sklearn.inspection import permutation_importance

from predictors.bundle import ModelBundle, data_sha256
from predictors.data import JobStream, load_jobs, load_requests
from predictors.evaluate import HELIOS_BANDS, duration_metrics, length_metrics
from predictors.features import DURATION_FEATURES, HISTORY_WINDOW, LENGTH_FEATURES, duration_features, length_features
from predictors.models import GlobalMedian, GroupMedian, HistoryHeuristic, LogLinear, fit_heads

LENGTH_BUCKETS = (32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
"""Output-token bucket edges: <=32, 33-64, ..., 513-1024, >1024."""
DURATION_BUCKETS = (60.0, 600.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
"""Run-time bucket edges: <=1 min, <=10 min, <=1 h, <=4 h, <=1 day, longer."""
SAMPLE_ROWS = 1500
"""Test rows kept (evenly spaced) in the evaluation report for the predicted-vs-true plot."""
TASK_ALIASES = {"response-length": "response_length", "length": "response_length",
                "gpu-duration": "gpu_duration", "duration": "gpu_duration"}


@dataclass(frozen=True)
class TrainConfig:
    """What to train on and how."""

    task: str
    """``response_length`` (requests) or ``gpu_duration`` (jobs)."""
    traces: tuple[str, ...]
    """Catalog traces to learn from (each trace / cluster is its own stream)."""
    train_fraction: float = 0.7
    """Earlier share of each stream that trains; the rest tests."""
    history_lag_s: float = 60.0
    """Requests only: seconds after arrival at which a request's output length becomes visible."""
    max_iter: int = 200
    """Boosting iterations per head."""
    max_train_rows: int = 2_000_000
    """Train on at most this many rows (the latest of the train part: closest to the test period)."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", TASK_ALIASES.get(self.task, self.task))
        if self.task not in ("response_length", "gpu_duration"):
            raise ValueError(f"task must be response-length or gpu-duration, got {self.task!r}")
        if not self.traces:
            raise ValueError("give at least one trace")
        if not 0.1 <= self.train_fraction <= 0.95:
            raise ValueError(f"train_fraction must be in [0.1, 0.95], got {self.train_fraction}")
        if self.history_lag_s <= 0:
            raise ValueError("history_lag_s must be > 0")
        if self.max_iter < 1 or self.max_train_rows < 100:
            raise ValueError("max_iter must be >= 1 and max_train_rows >= 100")


@dataclass
class Dataset:
    """Feature matrix, target and split of all streams stacked (each stream in time order)."""

    X: np.ndarray
    y: np.ndarray
    stream: np.ndarray
    """int index into ``stream_names`` per row."""
    stream_names: list[str]
    train: np.ndarray
    """bool: row is in its stream's earlier (training) part."""
    vocabulary: list[str]
    """Services (requests) or VCs (jobs) in code order."""
    time_range_s: list[float]
    excluded: dict[str, int] = field(default_factory=dict)
    clocks: dict[str, dict] = field(default_factory=dict)
    """trace -> {origin_epoch_s, time_zone} for traces with a wall clock (replays reuse it)."""


def _split(n: int, fraction: float) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[: int(n * fraction)] = True
    return mask


def _stack(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], names: list[str], vocab: list[str],
           times: list[float], excluded: dict[str, int], clocks: dict) -> Dataset:
    X = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, 0), np.float32)
    return Dataset(X, np.concatenate([p[1] for p in parts]),
                   np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(parts)]), names,
                   np.concatenate([p[2] for p in parts]), vocab, times, excluded,
                   {t: {"origin_epoch_s": c.origin_epoch_s, "time_zone": c.time_zone} for t, c in clocks.items() if c})


def length_dataset(con: duckdb.DuckDBPyConnection, config: TrainConfig, vocab: list[str] | None = None) -> Dataset:
    """LENGTH_FEATURES over the request traces of ``config`` (service code = the trace's index in
    ``vocab``, by default the sorted traces; NaN for a trace not in it)."""
    vocab = sorted(config.traces) if vocab is None else list(vocab)
    parts, times, clocks = [], [], {}
    for trace in config.traces:
        s = load_requests(con, trace)
        X = length_features(s.arrival_s, s.prompt_tokens, s.output_tokens,
                            service=vocab.index(trace) if trace in vocab else np.nan,
                            clock=s.clock, history_lag_s=config.history_lag_s)
        parts.append((X, s.output_tokens.astype(np.float64), _split(len(s), config.train_fraction)))
        times += [float(s.arrival_s.min()), float(s.arrival_s.max())] if len(s) else []
        clocks[trace] = s.clock
    return _stack(parts, list(config.traces), vocab, [min(times), max(times)] if times else [], {}, clocks)


def job_matrix(stream: JobStream, group_index: dict[str, int] | None) -> np.ndarray:
    """DURATION_FEATURES of one job stream."""
    return duration_features(stream.submit_s, stream.run_s, stream.num_gpus, end_s=stream.end_s,
                             num_nodes=stream.num_nodes, num_cpus=stream.num_cpus, user=stream.user,
                             group=stream.group, group_index=group_index, status=stream.status, clock=stream.clock)


def duration_dataset(con: duckdb.DuckDBPyConnection, config: TrainConfig, vocab: list[str] | None = None) -> Dataset:
    """DURATION_FEATURES over every cluster of the job traces of ``config`` (VC codes: ``vocab``, by
    default the VCs seen in the train rows)."""
    streams = [s for trace in config.traces for s in load_jobs(con, trace)]
    if vocab is None:
        vocab = sorted({str(g) for s in streams if s.group is not None
                        for g in s.group[: int(len(s) * config.train_fraction)] if g is not None})
    index = {g: i for i, g in enumerate(vocab)}
    parts, times, excluded = [], [], {}
    clocks = {s.trace: s.clock for s in streams}
    for s in streams:
        parts.append((job_matrix(s, index), s.run_s, _split(len(s), config.train_fraction)))
        times += [float(s.submit_s.min()), float(s.submit_s.max())] if len(s) else []
        for k, v in s.excluded.items():
            excluded[k] = excluded.get(k, 0) + v
    return _stack(parts, [s.name for s in streams], vocab, [min(times), max(times)] if times else [], excluded, clocks)


def _col(features, name: str) -> int:
    return [f.name for f in features].index(name)


def baselines(task: str) -> dict[str, object]:
    """The baselines reported next to every model."""
    F = LENGTH_FEATURES if task == "response_length" else DURATION_FEATURES
    if task == "response_length":
        return {"global_median": GlobalMedian(), "service_median": GroupMedian(_col(F, "service")),
                "prompt_regression": LogLinear(_col(F, "prompt_tokens")),
                "history_heuristic": HistoryHeuristic((_col(F, "same_prompt_last_log_output"),
                                                       _col(F, "hist_mean_log_output")))}
    return {"global_median": GlobalMedian(), "vc_median": GroupMedian(_col(F, "group")),
            "user_history": HistoryHeuristic((_col(F, "user_size_mean_log_s"), _col(F, "user_mean_log_s"),
                                              _col(F, "group_size_mean_log_s"), _col(F, "recent_mean_log_s")))}


def blend_feature(ds: Dataset) -> str:
    """The history estimate the Helios-style blend uses: the user's history where users exist, else the VC's."""
    has_user = not np.all(np.isnan(ds.X[:, _col(DURATION_FEATURES, "user_mean_log_s")]))
    return "user_mean_log_s" if has_user else "group_size_mean_log_s"


def choose_blend_weight(X: np.ndarray, y: np.ndarray, feature: str, config: TrainConfig) -> float:
    """Blend weight minimizing log-MAE on the last fifth of the train part (trees fit on the rest)."""
    cut = int(len(y) * 0.8)
    if cut < 50 or len(y) - cut < 50:
        return 0.0
    heads = fit_heads(X[:cut], y[:cut], np.zeros(cut, np.int64), max_iter=config.max_iter, seed=config.seed,
                      heads=("point",))
    tree = heads["point"].predict(X[cut:])
    hist = X[cut:, _col(DURATION_FEATURES, feature)].astype(np.float64)
    truth = np.log1p(y[cut:])
    best_w, best = 0.0, np.inf
    for w in np.round(np.linspace(0, 1, 11), 2):
        blended = np.where(np.isnan(hist), tree, w * hist + (1 - w) * tree)
        err = float(np.mean(np.abs(blended - truth)))
        if err < best - 1e-12:
            best_w, best = float(w), err
    return best_w


def train(con: duckdb.DuckDBPyConnection, config: TrainConfig,
          step: Callable[[str], None] = lambda _msg: None) -> tuple[ModelBundle, dict]:
    """Fit the bundle and the baselines on the earlier part of each stream; evaluate all on the later part.

    ``step`` is called with a short description before each long phase (progress display).
    Returns the bundle (its card carries the metrics) and the full evaluation report.
    """
    step("loading and building features")
    length = config.task == "response_length"
    ds = length_dataset(con, config) if length else duration_dataset(con, config)
    if ds.train.sum() < 100 or (~ds.train).sum() < 20:
        raise ValueError(f"too few rows to train and test: {int(ds.train.sum())} train, {int((~ds.train).sum())} test "
                         f"(need >= 100 and >= 20)")
    features = LENGTH_FEATURES if length else DURATION_FEATURES
    edges = LENGTH_BUCKETS if length else DURATION_BUCKETS
    tr = np.flatnonzero(ds.train)[-config.max_train_rows:]
    te = np.flatnonzero(~ds.train)
    Xtr, ytr = ds.X[tr], ds.y[tr]
    step(f"fitting boosted heads on {len(tr):,} rows")
    buckets = np.searchsorted(np.asarray(edges), ytr, side="left")
    heads = fit_heads(Xtr, ytr, buckets, max_iter=config.max_iter, seed=config.seed)
    blend, weight = (None, 0.0)
    if not length:
        step("choosing the history blend weight")
        blend = blend_feature(ds)
        weight = choose_blend_weight(Xtr, ytr, blend, config)
    bundle = ModelBundle(task=config.task, features=features, target="output_tokens" if length else "duration_s",
                         heads=heads, bucket_edges=edges, blend_feature=blend, blend_weight=weight)
    step(f"evaluating on {len(te):,} later rows")
    report = evaluate_bundle(bundle, ds, tr, te, config)
    bundle.training = report["training"]
    bundle.metrics = {"test": report["models"], "helios_bands": report.get("helios_bands"),
                      "importance": report["importance"]}
    return bundle, report


def evaluate_bundle(bundle: ModelBundle, ds: Dataset, tr: np.ndarray, te: np.ndarray, config: TrainConfig) -> dict:
    """Held-out metrics for the bundle (and, for the GPU-duration task, its trees without the blend) and
    the baselines, the signal each feature carries, and the training summary for the card."""
    length = bundle.task == "response_length"
    Xtr, ytr, Xte, yte = ds.X[tr], ds.y[tr], ds.X[te], ds.y[te]
    metric = length_metrics if length else duration_metrics
    kw = {"bucket_edges": bundle.bucket_edges} if length else {}
    models: dict[str, dict] = {}
    for name, est in baselines(bundle.task).items():
        models[name] = metric(yte, est.fit(Xtr, ytr).predict(Xte), **kw)
    pred = bundle.predict(Xte)
    if length:
        models["boosted"] = metric(yte, pred["point"], bucket_pred=pred.get("bucket"), p50=pred.get("p50"),
                                   p90=pred.get("p90"), **kw)
        models["boosted_p50"] = metric(yte, pred["p50"], **kw)
        prompt_only = fit_heads(Xtr[:, :1], ytr, np.zeros(len(ytr), np.int64), max_iter=config.max_iter,
                                seed=config.seed, heads=("point",))["point"]
        models["boosted_prompt_only"] = metric(yte, np.expm1(prompt_only.predict(Xte[:, :1])), **kw)
    else:
        trees_only = np.maximum(np.expm1(bundle.heads["point"].predict(Xte)), 0.0)  # without the blend
        models["boosted"] = metric(yte, trees_only)
        models["helios_blend"] = metric(yte, pred["point"], p50=pred.get("p50"), p90=pred.get("p90"))
        models["boosted_p50"] = metric(yte, pred["p50"])
        models["helios_blend"]["bucket_acc"] = float((pred["bucket"] == bundle.bucket_of(yte)).mean())
    importance = _importance(bundle, Xte, yte, config.seed)
    prompt_corr = None
    if length:
        from scipy.stats import spearmanr
        prompt_corr = float(spearmanr(Xtr[:, 0], ytr)[0]) if len(np.unique(Xtr[:, 0])) > 1 else 0.0
    pick = np.unique(np.linspace(0, len(yte) - 1, min(len(yte), SAMPLE_ROWS)).astype(np.int64))
    sample = {"true": yte[pick].tolist(), **{h: pred[h][pick].tolist() for h in ("point", "p50", "p90") if h in pred}}
    report = {
        "task": bundle.task, "traces": list(config.traces), "config": asdict(config), "sample": sample,
        "X_sample": Xte[pick],
        "rows": {"train": int(len(tr)), "test": int(len(te))},
        "models": models, "importance": importance,
        "signal": _signal_sentence(bundle.task, prompt_corr, importance, models),
        "training": {"traces": list(config.traces), "streams": ds.stream_names, "vocabulary": ds.vocabulary,
                     "rows_train": int(len(tr)), "rows_test": int(len(te)), "data_sha256": data_sha256(Xtr, ytr),
                     "time_range_s": ds.time_range_s, "train_fraction": config.train_fraction,
                     "split": "time-ordered per stream", "history_lag_s": config.history_lag_s if length else None,
                     "history_window": HISTORY_WINDOW,
                     "history_end": None if length else "end_s where known, else submit_s + duration_s",
                     "excluded": ds.excluded, "spearman_prompt_output": prompt_corr, "clocks": ds.clocks},
    }
    if not length:
        report["helios_bands"] = {"paper": HELIOS_BANDS,
                                  "ours": {k: models["helios_blend"][k] for k in HELIOS_BANDS}}
    return report


def _importance(bundle: ModelBundle, X: np.ndarray, y: np.ndarray, seed: int, max_rows: int = 5000) -> dict[str, float]:
    """Permutation importance of each feature for the point head (increase of log-scale MAE when shuffled)."""
    if len(X) > max_rows:
        X, y = X[np.linspace(0, len(X) - 1, max_rows).astype(np.int64)], y[np.linspace(0, len(y) - 1, max_rows).astype(np.int64)]
    got = permutation_importance(bundle.heads["point"], X, np.log1p(y), scoring="neg_mean_absolute_error",
                                 n_repeats=3, random_state=seed)
    return {f.name: round(float(v), 6) for f, v in zip(bundle.features, got.importances_mean)}


def _signal_sentence(task: str, prompt_corr: float | None, importance: dict[str, float], models: dict) -> str:
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:3]
    tops = ", ".join(f"{k} ({v:.3f})" for k, v in top)
    if task == "response_length":
        tau = models["boosted_prompt_only"]["kendall_tau"]
        if abs(prompt_corr or 0) >= 0.2:
            how = f"Prompt and output length are correlated here (Spearman {prompt_corr:.3f} on the train part)."
        elif tau >= 0.2:
            how = (f"Prompt length is nearly uncorrelated with output length (Spearman {prompt_corr:.3f} on the train "
                   f"part), yet trees on prompt length alone rank outputs with Kendall tau {tau:.3f}: the signal is in "
                   "exact repeated prompt lengths (the same templated request recurring), not in their size.")
        else:
            how = (f"Prompt length carries almost no signal about output length here (Spearman {prompt_corr:.3f}; "
                   f"prompt-only trees: Kendall tau {tau:.3f}).")
        return f"{how} What carries signal (permutation importance, log-MAE increase): {tops}."
    return f"Most informative features (permutation importance, log-MAE increase): {tops}."


def evaluation_rows(report: dict) -> np.ndarray:
    """The test-sample feature rows kept in a report (what export checks the ONNX heads on)."""
    return np.asarray(report["X_sample"], dtype=np.float32)


def score_loaded(con: duckdb.DuckDBPyConnection, loaded, traces: list[str], train_fraction: float) -> dict:
    """An exported model (``predictors.runtime.LoadedModel``) scored on the later part of other traces,
    with features built the way its card says, next to baselines fitted on those traces' earlier part."""
    card = loaded.card
    training = card.get("training", {})
    config = TrainConfig(task=card["task"], traces=tuple(traces), train_fraction=train_fraction,
                         history_lag_s=training.get("history_lag_s") or 60.0)
    vocab = training.get("vocabulary")
    ds = (length_dataset if config.task == "response_length" else duration_dataset)(con, config, vocab)
    tr, te = np.flatnonzero(ds.train), np.flatnonzero(~ds.train)
    if len(te) < 20 or len(tr) < 20:
        raise ValueError(f"too few rows to score: {len(tr)} earlier (baselines), {len(te)} later (need >= 20 each)")
    length = config.task == "response_length"
    metric = length_metrics if length else duration_metrics
    kw = {"bucket_edges": loaded.bundle.bucket_edges} if length else {}
    models = {name: metric(ds.y[te], est.fit(ds.X[tr], ds.y[tr]).predict(ds.X[te]), **kw)
              for name, est in baselines(config.task).items()}
    pred = loaded.predict(ds.X[te])
    label = "model (" + "+".join(training.get("traces", [])) + ")"
    models[label] = metric(ds.y[te], pred["point"], p50=pred.get("p50"), p90=pred.get("p90"),
                           **({"bucket_pred": pred.get("bucket")} if length else {}), **kw)
    report = {"task": config.task, "traces": list(traces), "rows": {"train": int(len(tr)), "test": int(len(te))},
              "models": models, "signal": f"exported model trained on {', '.join(training.get('traces', []))}, "
                                          f"scored on the later part of {', '.join(traces)}"}
    if not length:
        report["helios_bands"] = {"paper": HELIOS_BANDS, "ours": {k: models[label][k] for k in HELIOS_BANDS}}
    return report
