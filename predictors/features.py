"""Features known at arrival (requests) or at submit (jobs), computed vectorized over a whole trace.

Nothing here looks at the future. History features see a completed item only once it is visible:

- an LLM request's output length becomes visible ``history_lag_s`` seconds after its arrival (the
  traces record arrivals only; 60 s by default covers the completion of almost every request at the
  loads these traces were served at, and the lag is a parameter recorded on the model card);
- a job's run time becomes visible when it ends (``end_s``, strictly before the submit being
  predicted). Traces without start times (the derived Philly tables, ITP) record only submit and
  duration; there the end is taken as ``submit_s + duration_s``, the earliest the job could have
  finished, so a duration may become visible slightly before it really was (by the job's unknown
  queueing delay). Said on the card as ``history_end``.

The same functions build training matrices and the runtime's matrices for a replay, so the two
cannot drift apart. Feature order is the order of the ``*_FEATURES`` tuples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from predictors.bundle import FeatureField

HISTORY_WINDOW = 100
"""Completed items in the rolling history window (requests of one stream, jobs of one cluster)."""
COUNT_CAP = 100
"""History counts are capped: uncapped, a count grows with the trace and becomes a clock that the test
period (always later) lies outside of; capped, it only says how much history backs a mean."""


@dataclass(frozen=True)
class Clock:
    """Where a trace's seconds start on the wall clock, for hour-of-day and weekday features."""

    origin_epoch_s: float
    """Unix seconds of the trace's time 0."""
    time_zone: str = "UTC"
    """IANA zone of the local wall clock (``naive`` is read as UTC)."""

    def hour_and_weekday(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local hour of day (0..23, fractional) and weekday (0 = Monday) of trace times."""
        zone = ZoneInfo("UTC" if self.time_zone in ("naive", "") else self.time_zone)
        # DST shifts the offset by whole hours at most a few times a trace: compute it per hour bucket.
        hours = np.floor((self.origin_epoch_s + t_s) / 3600.0)
        uniq, inverse = np.unique(hours, return_inverse=True)
        offsets = np.array([datetime.fromtimestamp(h * 3600.0, zone).utcoffset() / timedelta(seconds=1)
                            for h in uniq.tolist()])
        local = self.origin_epoch_s + t_s + offsets[inverse]
        days = np.floor(local / 86400.0)
        hour = (local - days * 86400.0) / 3600.0
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        return hour, weekday.astype(np.float64)


def _f(name: str, dtype: str, description: str, lo: float | None, hi: float | None, nullable: bool = False):
    return FeatureField(name, dtype, description, lo, hi, nullable)


_CLOCK = (
    _f("hour_of_day", "float", "local hour of day at arrival (NaN when the trace has no wall clock)", 0, 24, True),
    _f("day_of_week", "int", "local weekday at arrival, 0 = Monday (NaN without a wall clock)", 0, 6, True),
)

LENGTH_FEATURES: tuple[FeatureField, ...] = (
    _f("prompt_tokens", "int", "prompt (input) tokens of the request", 1, 10_000_000),
    *_CLOCK,
    _f("service", "int", "index of the request's trace/service in the card's training services (NaN: unseen)",
       0, 1000, True),
    _f("hist_count", "int", f"visible completed requests of the stream in the window (<= {HISTORY_WINDOW})",
       0, HISTORY_WINDOW),
    _f("hist_mean_log_output", "float", "mean log1p(output tokens) of the last visible completions", 0, 20, True),
    _f("hist_std_log_output", "float", "std of log1p(output tokens) of the last visible completions", 0, 20, True),
    _f("same_prompt_last_log_output", "float",
       "log1p(output tokens) of the latest visible request with exactly this prompt length", 0, 20, True),
    _f("same_prompt_count", "int", "visible earlier requests with exactly this prompt length (capped at COUNT_CAP)", 0, 1e9),
)

DURATION_FEATURES: tuple[FeatureField, ...] = (
    _f("num_gpus", "float", "GPUs requested (fractional for PAI)", 0, 100_000),
    _f("num_nodes", "int", "nodes requested (NaN when the trace does not say)", 0, 100_000, True),
    _f("num_cpus", "float", "CPUs requested (NaN when the trace does not say)", 0, 1e7, True),
    *_CLOCK,
    _f("group", "int", "index of the job's VC/group in the card's training groups (NaN: unknown/unseen)",
       0, 1e6, True),
    _f("user_count", "int", "the user's earlier jobs that had ended by submit time (capped at COUNT_CAP)", 0, 1e9),
    _f("user_mean_log_s", "float", "mean log1p(run seconds) of the user's ended jobs", 0, 30, True),
    _f("user_last_log_s", "float", "log1p(run seconds) of the user's most recently ended job", 0, 30, True),
    _f("user_fail_rate", "float", "share of the user's ended jobs that failed or were killed", 0, 1, True),
    _f("user_size_mean_log_s", "float", "mean log1p(run seconds) of the user's ended jobs of this GPU count",
       0, 30, True),
    _f("group_size_mean_log_s", "float", "mean log1p(run seconds) of ended jobs of this VC and GPU count",
       0, 30, True),
    _f("group_size_count", "int", "ended jobs of this VC and GPU count (capped at COUNT_CAP)", 0, 1e9),
    _f("recent_mean_log_s", "float", f"mean log1p(run seconds) of the cluster's last {HISTORY_WINDOW} ended jobs",
       0, 30, True),
)


def _clock_columns(t_s: np.ndarray, clock: Clock | None) -> tuple[np.ndarray, np.ndarray]:
    if clock is None:
        nan = np.full(len(t_s), np.nan)
        return nan, nan.copy()
    return clock.hour_and_weekday(t_s)


def _window_stats(values: np.ndarray, visible: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """Count, mean and std of ``values[max(0, v - window):v]`` for each visible-prefix length ``v``."""
    c1 = np.concatenate([[0.0], np.cumsum(values)])
    c2 = np.concatenate([[0.0], np.cumsum(values * values)])
    lo = np.maximum(visible - window, 0)
    n = (visible - lo).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[visible] - c1[lo]) / n
        var = (c2[visible] - c2[lo]) / n - mean * mean
    std = np.sqrt(np.maximum(var, 0.0))
    mean[n == 0] = np.nan
    std[n == 0] = np.nan
    return n, mean, std


def length_features(arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray, *,
                    service: float = np.nan, clock: Clock | None = None, history_lag_s: float = 60.0,
                    window: int = HISTORY_WINDOW) -> np.ndarray:
    """The LENGTH_FEATURES matrix (float32) of one request stream, rows in input order.

    ``arrival_s`` must be ascending (trace order). ``output_tokens`` feed only the history columns,
    each request's own output never reaches its own row: it becomes visible ``history_lag_s`` > 0
    seconds after arrival.
    """
    if history_lag_s <= 0:
        raise ValueError(f"history_lag_s must be > 0 (a request's own output must stay invisible), got {history_lag_s}")
    arrival = np.asarray(arrival_s, dtype=np.float64)
    if len(arrival) > 1 and np.any(np.diff(arrival) < 0):
        raise ValueError("arrival_s must be ascending")
    prompt = np.asarray(prompt_tokens, dtype=np.int64)
    log_out = np.log1p(np.asarray(output_tokens, dtype=np.float64))
    visible = np.searchsorted(arrival, arrival - history_lag_s, side="right")
    count, mean, std = _window_stats(log_out, visible, window)
    hour, weekday = _clock_columns(arrival, clock)

    # latest visible request with the same prompt length: an as-of join keyed by the prompt length
    idx = np.arange(len(arrival))
    earlier = pl.DataFrame({"prompt": prompt, "t": arrival, "last": log_out}).with_columns(
        seen=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("prompt"))
    queries = pl.DataFrame({"i": idx, "prompt": prompt, "t": arrival - history_lag_s}).sort("t")
    matched = queries.join_asof(earlier, on="t", by="prompt", strategy="backward",
                                check_sortedness=False).sort("i")
    same_last = matched["last"].fill_null(np.nan).to_numpy()
    same_count = np.minimum(matched["seen"].fill_null(0).to_numpy().astype(np.float64), COUNT_CAP)

    cols = [prompt.astype(np.float64), hour, weekday, np.full(len(arrival), service, dtype=np.float64),
            count, mean, std, same_last, same_count]
    return np.column_stack(cols).astype(np.float32) if len(arrival) else np.empty((0, len(cols)), np.float32)


FAILED_STATUSES = ("failed", "killed")


def duration_features(submit_s: np.ndarray, duration_s: np.ndarray, num_gpus: np.ndarray, *,
                      end_s: np.ndarray | None = None, num_nodes: np.ndarray | None = None,
                      num_cpus: np.ndarray | None = None, user: np.ndarray | None = None,
                      group: np.ndarray | None = None, group_index: dict[str, int] | None = None,
                      status: np.ndarray | None = None, clock: Clock | None = None,
                      window: int = HISTORY_WINDOW) -> np.ndarray:
    """The DURATION_FEATURES matrix (float32) of one job trace (one cluster), rows in input order.

    A job's run time enters other jobs' history once it has ended: ``end_s`` where known (NaN
    entries fall back), else ``submit_s + duration_s`` (see the module docstring), strictly before
    the submit time being predicted, so a job never sees itself.
    """
    n = len(submit_s)
    submit = np.asarray(submit_s, dtype=np.float64)
    dur = np.maximum(np.asarray(duration_s, dtype=np.float64), 0.0)
    gpus = np.asarray(num_gpus, dtype=np.float64)
    end = submit + dur if end_s is None else np.where(np.isnan(end_s), submit + dur, np.asarray(end_s, np.float64))
    log_d = np.log1p(dur)
    if status is not None and all(v in (None, "unknown") for v in np.asarray(status, dtype=object)):
        status = None  # a trace that records no outcome: fail rates unknown, not zero
    failed = (np.isin(np.asarray(status, dtype=object), FAILED_STATUSES).astype(np.float64)
              if status is not None else np.full(n, np.nan))
    users = np.asarray(user, dtype=object) if user is not None else None
    groups = np.asarray(group, dtype=object) if group is not None else None

    order = np.argsort(end, kind="stable")
    visible = np.searchsorted(end[order], submit, side="left")  # strictly earlier ends
    _, recent_mean, _ = _window_stats(log_d[order], visible, window)

    def keyed(keys: dict[str, np.ndarray]) -> pl.DataFrame:
        """Cumulative count / mean log duration / fail rate / last duration of ended jobs per key."""
        ev = pl.DataFrame({**{k: v[order] for k, v in keys.items()}, "t": end[order], "x": log_d[order],
                           "f": failed[order]})
        ev = ev.with_columns(cnt=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(list(keys)),
                             sx=pl.col("x").cum_sum().over(list(keys)),
                             sf=pl.col("f").cum_sum().over(list(keys)))
        q = pl.DataFrame({"i": np.arange(n), **keys, "t": submit}).sort("t")
        return q.join_asof(ev, on="t", by=list(keys), strategy="backward", allow_exact_matches=False,
                           check_sortedness=False).sort("i")

    nan = np.full(n, np.nan)
    user_count, user_mean, user_last, user_fail, user_size = np.zeros(n), nan, nan, nan, nan
    if users is not None:
        ukey = np.array([str(u) for u in users], dtype=object)
        got = keyed({"k": ukey})
        user_total = got["cnt"].fill_null(0).to_numpy().astype(np.float64)
        user_count = np.minimum(user_total, COUNT_CAP)
        with np.errstate(invalid="ignore", divide="ignore"):
            user_mean = got["sx"].fill_null(np.nan).to_numpy() / user_total
            user_fail = got["sf"].fill_null(np.nan).to_numpy() / user_total
        user_last = got["x"].fill_null(np.nan).to_numpy()
        sized = keyed({"k": ukey, "g": gpus})
        with np.errstate(invalid="ignore", divide="ignore"):
            user_size = sized["sx"].fill_null(np.nan).to_numpy() / sized["cnt"].fill_null(0).to_numpy()
    gkey = (np.array([str(g) for g in groups], dtype=object) if groups is not None
            else np.full(n, "", dtype=object))
    gs = keyed({"k": gkey, "g": gpus})
    group_size_total = gs["cnt"].fill_null(0).to_numpy().astype(np.float64)
    group_size_count = np.minimum(group_size_total, COUNT_CAP)
    with np.errstate(invalid="ignore", divide="ignore"):
        group_size_mean = gs["sx"].fill_null(np.nan).to_numpy() / group_size_total
    group_code = (np.array([group_index.get(str(g), np.nan) if g is not None else np.nan for g in groups],
                           dtype=np.float64) if groups is not None and group_index is not None else nan)
    hour, weekday = _clock_columns(submit, clock)
    cols = [gpus, _opt(num_nodes, n), _opt(num_cpus, n), hour, weekday, group_code, user_count, user_mean,
            user_last, user_fail, user_size, group_size_mean, group_size_count, recent_mean]
    return np.column_stack(cols).astype(np.float32) if n else np.empty((0, len(cols)), np.float32)


def _opt(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, np.nan) if values is None else np.asarray(values, dtype=np.float64)
