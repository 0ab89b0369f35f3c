"""Workload models for GPU-cluster job traces: characterize a ``jobs`` trace, then regenerate look-alikes.

:class:`JobWorkloadModel` has two parts, independent of each other:

* **Arrivals: per-window renewal families on a time-rescaled clock.** The span ``[0, last submit]``
  is cut into windows of ``window_s`` (hourly by default; the last window ends at the last submit);
  window ``k`` has the rate ``lambda_k = count_k / width_k``. Through the piecewise-linear cumulative
  intensity ``Lambda(t)`` the submits become a unit-rate sequence ``u_i = Lambda(t_i)``; the gap
  ``u_{i+1} - u_i`` belongs to the window of job ``i``. In every window with at least ``min_gaps``
  gaps the three families of ServeGen (exponential = Poisson, gamma, Weibull) are fitted by maximum
  likelihood at mean 1 and the one with the lowest AIC is kept with its shape (section "Families"
  below); sparser windows use the family fitted to all gaps pooled. Generation walks the windows in
  rescaled time, drawing each gap from the family of the window it starts in, and maps the result
  back through ``Lambda^-1``: the rate profile (OFF windows included) is reproduced window for
  window, at ``rate_scale`` times the rate, and repeats beyond the fitted span. Submit times are
  floored to the trace's clock (whole seconds when every submit was whole), so batch submissions
  (tied submits: 8 % of Philly's gaps, 18 % of ITP cluster04's) come back as tied submits.
* **Sizes and durations.** ``(num_gpus, cluster, group, user, status)`` is drawn from the trace's
  empirical joint distribution (unique rows with counts), so the size mix, the VC and user
  concentration and their correlation with size are kept; the run time is drawn given the size
  class (:data:`SIZE_CLASSES`: 1, 2-4, 5-8, >8 GPUs, plus 0 and <1) from that class's empirical
  run times (``duration="empirical"``, the default) or from a lognormal fitted to them (with the
  class's share of zero run times kept as a point mass). Jobs without a known run time count for the
  arrivals only.

Measured goodness of fit (20 seeds each, default parameters, regenerated over the fitted span vs the
original; median [min, max]; "daily L1" is sum |jobs per day difference| / jobs; "GPU-time share" the
largest difference in the share of GPU time of a size class):

* ``philly_sia_jobs`` (82,182 jobs, 109 days): gaps KS 0.082 [0.077, 0.085]; run-time KS 0.003
  [0.002, 0.006]; GPU-count KS <= 0.002; daily L1 0.041 [0.034, 0.047], daily correlation >= 0.997,
  hourly correlation 0.992 [0.990, 0.993]; GPU-time share 0.036 [0.015, 0.079]; top-10 % VC share of
  GPU time 0.346 in the trace, off by -0.035 [-0.066, +0.020]; job count 1.000 [0.988, 1.008].
* ``microsoft_itp`` cluster04 (15,802 jobs, 59 days): gaps KS 0.089 [0.076, 0.102]; run-time KS
  0.006 [0.003, 0.010]; GPU-count KS <= 0.008; daily L1 0.118 [0.089, 0.157], daily correlation >=
  0.958, hourly correlation 0.940 [0.927, 0.952]; GPU-time share 0.022 [0.002, 0.064]; job count
  0.996 [0.952, 1.049].

The family choice matters for the gaps: with exponential gaps only (a Poisson process per window)
the gaps KS is 0.195 on Philly and 0.333 on ITP cluster04; it pays for that with noisier counts per
window (hourly L1 0.15 vs 0.10 on Philly, 0.36 vs 0.15 on ITP), since bursty renewal gaps make a
window's count itself bursty. What no family reproduces is Philly's spike of gaps at 600 s (p95 599
s, p99 601 s: periodic submissions), most of the remaining gaps KS. The lognormal run-time option
fits worse than the bootstrap (duration KS 0.10 on Philly and 0.16 on ITP, mean run time 4.5x and
1.2x too high: the log-space fit puts too much mass in the far tail), so it is not the default. A
sparse trace (ITP cluster01: 1,595 jobs over 34 days, 54 % tied submits) fits worse: gaps KS ~0.33,
daily L1 ~0.25.

:meth:`JobWorkloadModel.to_dict` / :meth:`~JobWorkloadModel.from_dict` give a JSON form (window
counts and families, the joint rows and the per-class run times; no job ids or submit times); a round
trip generates the identical trace for the same seed. :func:`analysis.job_workload_compare.compare` measures fidelity,
:func:`~analysis.job_workload_compare.comparison_figures` draws it, and :func:`write_trace` ingests a generated table into the lake
as the trace ``synthetic_jobs`` (``ingest.sources.synthetic_jobs``).

Families: :mod:`analysis.arrival_families`.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from analysis.arrival_families import FAMILIES, draw_unit_gaps, fit_unit_gaps
from analysis.catalog import rows, trace_filter
from analysis.workload_model import check_generate_args, cumulative_intensity, inverse_intensity
from ingest.schema import JOB_STATUSES, JOBS

FORMAT = "tracelab.job_workload_model"
"""The ``format`` key of :meth:`JobWorkloadModel.to_dict`."""
FORMAT_VERSION = 1
"""Bumped whenever the dict layout changes; :meth:`JobWorkloadModel.from_dict` refuses others."""
SYNTHETIC_TRACE = "synthetic_jobs"
"""Trace name of generated tables (the lake trace :func:`write_trace` creates)."""
SIZE_CLASSES = ("0", "<1", "1", "2-4", "5-8", ">8")
"""GPU-count classes run times are drawn within (``analysis.jobs`` coarse buckets plus 0 and <1)."""
DURATIONS = ("empirical", "lognormal")
"""Run-time models."""
JOINT_COLUMNS = ("num_gpus", "cluster", "group", "user", "status")
"""Columns drawn together from the trace's empirical joint distribution."""




def size_class(num_gpus) -> np.ndarray:
    """Index into :data:`SIZE_CLASSES` per GPU count."""
    g = np.asarray(num_gpus, np.float64)
    return np.select([g == 0, g < 1, g <= 1, g <= 4, g <= 8], [0, 1, 2, 3, 4], 5).astype(np.int64)


# ---------------------------------------------------------------- reading jobs


def trace_jobs(con: duckdb.DuckDBPyConnection, trace: str, cluster: str | None = None) -> pa.Table:
    """The catalog's ``jobs`` of ``trace`` (optionally one cluster) as a canonical Arrow table, in
    (submit_s, job_id) order; ValueError naming the known traces when there are none."""
    where, params = trace_filter(trace, cluster)
    cols = ", ".join(f'"{c}"' for c in JOBS.columns)
    tbl = con.sql(f"SELECT {cols} FROM jobs WHERE {where} ORDER BY submit_s, job_id", params=params).to_arrow_table()
    if tbl.num_rows == 0:
        known = [r[0] for r in rows(con, "SELECT DISTINCT trace FROM jobs ORDER BY 1")]
        raise ValueError(f"no jobs for trace {trace!r}" + (f" cluster {cluster!r}" if cluster else "")
                         + f"; known: {', '.join(known)}")
    return tbl


def job_arrays(jobs: pa.Table | pl.DataFrame) -> dict[str, np.ndarray | None]:
    """Per-job numpy arrays of a jobs table: ``submit_s``, ``run_s`` (``coalesce(end_s - start_s,
    duration_s)``, NaN when unknown), ``num_gpus``, and object arrays ``cluster``, ``group``, ``user``,
    ``status`` (None where the table lacks the column)."""
    df = pl.from_arrow(jobs) if isinstance(jobs, pa.Table) else jobs
    missing = [c for c in ("submit_s", "num_gpus") if c not in df.columns]
    if missing:
        raise ValueError(f"jobs table lacks columns {missing}")
    run = pl.lit(None, pl.Float64)
    if "start_s" in df.columns and "end_s" in df.columns:
        run = pl.col("end_s").cast(pl.Float64) - pl.col("start_s").cast(pl.Float64)
    if "duration_s" in df.columns:
        run = pl.coalesce(run, pl.col("duration_s").cast(pl.Float64))
    floats = df.select(pl.col("submit_s").cast(pl.Float64), run.alias("run_s"), pl.col("num_gpus").cast(pl.Float64))
    out = {c: floats[c].to_numpy().astype(np.float64) for c in floats.columns}
    for col in JOINT_COLUMNS[1:]:
        out[col] = df[col].cast(pl.String).to_numpy().astype(object) if col in df.columns else None
    return out


# ---------------------------------------------------------------- the model


class JobWorkloadModel:
    """Per-window renewal arrivals and empirical sizes with size-conditional run times (module doc).

    Parameters (stored only; validated here): ``window_s``, the rate windows in seconds;
    ``min_gaps``, the fewest gaps a window needs for a family of its own (else the pooled fit);
    ``families``, the candidate inter-arrival families; ``duration``, ``"empirical"`` or
    ``"lognormal"``; ``gpu_only``, fit GPU jobs only (``num_gpus > 0``, as ``analysis.jobs``).

    Fitted attributes: ``trace_``, ``num_jobs_`` (jobs the arrivals were fitted on),
    ``num_unknown_run_`` (of those, jobs without a run time: arrivals only), ``num_excluded_``
    (CPU-only jobs dropped by ``gpu_only``), ``span_s_``, ``submit_resolution_s_`` and
    ``duration_resolution_s_`` (1.0 when every value was a whole second, else 0.0),
    ``window_counts_``, ``window_widths_s_``, ``window_family_`` (index into :data:`FAMILIES`, -1 for
    empty windows), ``window_shape_``, ``window_own_fit_`` (bool), ``pooled_family_``,
    ``pooled_shape_``, ``joint_`` (polars DataFrame: :data:`JOINT_COLUMNS` plus ``count``),
    ``durations_`` (size class -> (values, counts)) and ``lognormal_`` (size class -> (mu, sigma,
    zero share)).
    """

    def __init__(self, window_s: float = 3600.0, min_gaps: int = 10, families: tuple[str, ...] = FAMILIES,
                 duration: str = "empirical", gpu_only: bool = True) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be finite and > 0, got {window_s}")
        if int(min_gaps) != min_gaps or min_gaps < 1:
            raise ValueError(f"min_gaps must be an integer >= 1, got {min_gaps}")
        if not families or any(f not in FAMILIES for f in families):
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families}")
        if duration not in DURATIONS:
            raise ValueError(f"unknown duration model {duration!r}; use one of {', '.join(DURATIONS)}")
        self.window_s, self.min_gaps, self.families = float(window_s), int(min_gaps), tuple(families)
        self.duration, self.gpu_only = duration, bool(gpu_only)

    # ------------------------------------------------------------ fitting

    def fit_trace(self, con: duckdb.DuckDBPyConnection, trace: str, cluster: str | None = None) -> JobWorkloadModel:
        """Fit on the catalog's ``trace`` (one ``cluster`` of it if given). Returns self."""
        return self.fit_table(trace_jobs(con, trace, cluster), trace=trace)

    def fit_table(self, jobs: pa.Table | pl.DataFrame, trace: str | None = None) -> JobWorkloadModel:
        """Fit on a canonical jobs table (see :func:`job_arrays`). Returns self."""
        a = job_arrays(jobs)
        if trace is None:
            df = pl.from_arrow(jobs) if isinstance(jobs, pa.Table) else jobs
            trace = str(df["trace"][0]) if "trace" in df.columns and df.height else SYNTHETIC_TRACE
        return self.fit(a["submit_s"], a["run_s"], a["num_gpus"], cluster=a["cluster"], group=a["group"],
                        user=a["user"], status=a["status"], trace=trace)

    def fit(self, submit_s, run_s, num_gpus, *, cluster=None, group=None, user=None, status=None,
            trace: str = SYNTHETIC_TRACE) -> JobWorkloadModel:
        """Fit on per-job arrays (any order; times are shifted so the first submit is at 0). Returns self.

        ``run_s``: NaN where unknown (such jobs count for the arrivals only); ``cluster``, ``group``,
        ``user``, ``status``: optional per-job labels (None: absent). ValueError for an empty trace,
        arrays of different lengths, non-finite submits, negative or NaN GPU counts, negative or
        infinite run times, unknown statuses, fewer than two jobs at distinct times, or no run time.
        """
        t, run, gpus = (np.asarray(v, np.float64).ravel() for v in (submit_s, run_s, num_gpus))
        n = len(t)
        labels = {c: np.full(n, None, object) if v is None else np.asarray(v, object).ravel()
                  for c, v in zip(JOINT_COLUMNS[1:], (cluster, group, user, status))}
        if n == 0:
            raise ValueError(f"cannot fit a job workload model on an empty trace ({trace!r} has no jobs)")
        if any(len(v) != n for v in (run, gpus, *labels.values())):
            raise ValueError(f"arrays differ in length: {n} submits, {len(run)} run times, {len(gpus)} GPU counts")
        if not np.all(np.isfinite(t)):
            raise ValueError("submit_s must be finite")
        if np.any(np.isnan(gpus) | (gpus < 0)) or np.any(np.isinf(gpus)):
            raise ValueError("num_gpus must be finite and >= 0")
        if np.any(run < 0) or np.any(np.isinf(run)):
            raise ValueError("run times must be >= 0 and finite (NaN for unknown)")
        labels["status"] = np.where(labels["status"] == None, "unknown", labels["status"])  # noqa: E711
        bad = set(labels["status"].tolist()) - set(JOB_STATUSES)
        if bad:
            raise ValueError(f"unknown statuses {sorted(bad)}; expected {', '.join(JOB_STATUSES)}")
        keep = gpus > 0 if self.gpu_only else np.ones(n, bool)
        order = np.flatnonzero(keep)[np.argsort(t[keep], kind="stable")]
        t, run, gpus = t[order], run[order], gpus[order]
        labels = {c: v[order] for c, v in labels.items()}
        if len(t) < 2 or t[-1] == t[0]:
            raise ValueError(f"need at least two jobs at distinct times to fit arrivals; got {len(t)}"
                             + (" GPU jobs (gpu_only=True)" if self.gpu_only else ""))
        known = ~np.isnan(run)
        if not known.any():
            raise ValueError(f"no job of {trace!r} has a run time")
        self.trace_, self.num_jobs_, self.num_excluded_ = trace, len(t), int(n - len(t))
        self.num_unknown_run_ = int((~known).sum())
        self.submit_resolution_s_ = 1.0 if np.all(t == np.floor(t)) else 0.0
        self.duration_resolution_s_ = 1.0 if np.all(run[known] == np.floor(run[known])) else 0.0
        self._fit_arrivals(t - t[0])
        self._fit_sizes(gpus[known], run[known], {c: v[known] for c, v in labels.items()})
        return self

    def _fit_arrivals(self, t: np.ndarray) -> None:
        span = float(t[-1])
        num_windows = max(1, math.ceil(span / self.window_s))
        k = np.minimum((t // self.window_s).astype(np.int64), num_windows - 1)
        counts = np.bincount(k, minlength=num_windows).astype(np.int64)
        widths = np.full(num_windows, self.window_s)
        widths[-1] = span - (num_windows - 1) * self.window_s
        self.span_s_, self.window_counts_, self.window_widths_s_ = span, counts, widths
        # rescaled gaps, each in the window of the job it follows; ties floored at half the clock's tick
        gk = k[:-1]
        tick_s = self.submit_resolution_s_ / 2 if self.submit_resolution_s_ else 1e-6
        gaps = np.maximum(np.diff(cumulative_intensity(t, counts, widths)), (counts / widths)[gk] * tick_s)
        pooled = fit_unit_gaps(gaps, families=self.families)
        self.pooled_family_, self.pooled_shape_ = int(pooled["family"][0]), float(pooled["shape"][0])
        family = np.where(counts > 0, self.pooled_family_, -1).astype(np.int64)
        shape = np.where(counts > 0, self.pooled_shape_, 1.0)
        own = np.bincount(gk, minlength=num_windows) >= self.min_gaps
        if own.any():
            rich = own[gk]
            per = fit_unit_gaps(gaps[rich], gk[rich], families=self.families)
            family[own], shape[own] = per["family"], per["shape"]
        self.window_family_, self.window_shape_, self.window_own_fit_ = family, shape, own

    def _fit_sizes(self, gpus: np.ndarray, run: np.ndarray, labels: dict[str, np.ndarray]) -> None:
        df = pl.DataFrame({"num_gpus": gpus, **{c: pl.Series(c, v.tolist(), pl.String) for c, v in labels.items()}})
        self.joint_ = df.group_by(list(JOINT_COLUMNS)).len("count").sort(list(JOINT_COLUMNS), nulls_last=True)
        cls = size_class(gpus)
        self.durations_, self.lognormal_ = {}, {}
        for c, label in enumerate(SIZE_CLASSES):
            x = run[cls == c]
            if len(x) == 0:
                continue
            values, value_counts = np.unique(x, return_counts=True)
            self.durations_[label] = (values, value_counts.astype(np.int64))
            pos = np.log(x[x > 0])
            mu, sigma = (float(pos.mean()), float(pos.std())) if len(pos) else (0.0, 0.0)
            self.lognormal_[label] = (mu, sigma, float(np.mean(x == 0)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "window_counts_"):
            raise RuntimeError("JobWorkloadModel is not fitted: call fit(), fit_table(), fit_trace() or from_dict()")

    # ------------------------------------------------------------ generation

    def generate(self, num_jobs: int | None = None, duration_s: float | None = None, rate_scale: float = 1.0,
                 seed: int = 0, trace: str = SYNTHETIC_TRACE) -> pa.Table:
        """A synthetic canonical jobs table (schema ``ingest.schema.JOBS``), deterministic for (model, arguments).

        Give ``num_jobs`` or ``duration_s`` (submits in ``[0, duration_s)``), not both; neither means
        the fitted span (the job count then varies around the fitted one: for a bursty trace a fixed
        count can end long before or after the span, e.g. at 53 % of it on ITP cluster01).
        ``rate_scale`` multiplies every window's rate while the windows keep their clock. The first job
        is submitted at 0; ``start_s``/``end_s`` are null and the run time is ``duration_s``, as in ITP.
        """
        self._check_fitted()
        check_generate_args("num_jobs", num_jobs, duration_s, rate_scale, seed)
        arrival_rng, size_rng, duration_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        counts, widths = self.window_counts_, self.window_widths_s_
        if num_jobs is None and duration_s is None:
            duration_s = self.span_s_
        if duration_s is not None:
            if not (math.isfinite(duration_s) and duration_s > 0):
                raise ValueError(f"duration_s must be finite and > 0, got {duration_s}")
            horizon_u = float(cumulative_intensity(np.array([duration_s]), counts, widths, rate_scale)[0])
            u = self._unit_arrivals(arrival_rng, rate_scale, horizon_u=horizon_u)
            t = self._floor(inverse_intensity(u[u < horizon_u], counts, widths, rate_scale))
            t = t[t < duration_s]
        else:
            n = int(num_jobs)
            if n < 1:
                raise ValueError(f"num_jobs must be >= 1, got {num_jobs}")
            u = self._unit_arrivals(arrival_rng, rate_scale, num=n)[:n]
            t = self._floor(inverse_intensity(u, counts, widths, rate_scale))
        return self._table(t, size_rng, duration_rng, trace)

    def _floor(self, t: np.ndarray) -> np.ndarray:
        res = self.submit_resolution_s_
        return np.floor(t / res) * res if res else t

    def _unit_arrivals(self, rng: np.random.Generator, rate_scale: float, num: int | None = None,
                       horizon_u: float | None = None) -> np.ndarray:
        """Rescaled arrivals from 0, each gap drawn from the family of the window it starts in; whole
        windows are generated until ``num`` arrivals or ``horizon_u`` is passed (so the draws, and a
        shorter run's arrivals, do not depend on where the run stops)."""
        cum = np.concatenate([[0.0], np.cumsum(self.window_counts_)]) * rate_scale
        parts, last, got, offset = [np.zeros(1)], 0.0, 1, 0.0
        while True:
            for k, (family, shape) in enumerate(zip(self.window_family_.tolist(), self.window_shape_.tolist())):
                hi = offset + cum[k + 1]
                while last < hi:
                    p = last + np.cumsum(draw_unit_gaps(rng, family, shape, int((hi - last) * 1.25) + 16))
                    p = p[: np.searchsorted(p, hi, side="left") + 1]  # up to the first arrival past the window
                    parts.append(p)
                    last, got = float(p[-1]), got + len(p)
                if (num is not None and got >= num) or (horizon_u is not None and last >= horizon_u):
                    return np.concatenate(parts)
            offset += cum[-1]

    def _table(self, t: np.ndarray, size_rng, duration_rng, trace: str) -> pa.Table:
        n = len(t)
        cum = np.cumsum(self.joint_["count"].to_numpy())
        picks = np.searchsorted(cum, size_rng.integers(0, cum[-1], size=n), side="right")
        gpus = self.joint_["num_gpus"].to_numpy()[picks]
        cls, run = size_class(gpus), np.zeros(n)
        for c, label in enumerate(SIZE_CLASSES):
            idx = np.flatnonzero(cls == c)
            if len(idx) == 0:
                continue
            if self.duration == "empirical":
                values, value_counts = self.durations_[label]
                vc = np.cumsum(value_counts)
                run[idx] = values[np.searchsorted(vc, duration_rng.integers(0, vc[-1], size=len(idx)), side="right")]
            else:
                mu, sigma, zero = self.lognormal_[label]
                x = np.exp(mu + sigma * duration_rng.standard_normal(len(idx)))
                x[duration_rng.random(len(idx)) < zero] = 0.0
                run[idx] = np.round(x) if self.duration_resolution_s_ else x
        text = {c: pa.array(self.joint_[c].to_numpy().astype(object)[picks].tolist(), pa.string())
                for c in JOINT_COLUMNS[1:]}
        null = {name: pa.nulls(n, JOBS.schema.field(name).type) for name in
                ("start_s", "end_s", "num_cpus", "num_nodes", "gpu_type", "raw_status")}
        columns = {"trace": pa.array([trace] * n, pa.string()),
                   "job_id": pa.array([str(i) for i in range(n)], pa.string()),
                   "submit_s": pa.array(t, pa.float64()), "duration_s": pa.array(run, pa.float64()),
                   "num_gpus": pa.array(gpus, pa.float64()), **text, **null}
        return pa.table({name: columns[name] for name in JOBS.columns}, schema=JOBS.schema)

    # ------------------------------------------------------------ persistence and summary

    def to_dict(self) -> dict:
        """A JSON-able dict of the parameters and fitted state (no job ids or submit times)."""
        self._check_fitted()
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "params": {"window_s": self.window_s, "min_gaps": self.min_gaps, "families": list(self.families),
                       "duration": self.duration, "gpu_only": self.gpu_only},
            "fitted": {
                "trace": self.trace_, "num_jobs": self.num_jobs_, "num_unknown_run": self.num_unknown_run_,
                "num_excluded": self.num_excluded_, "span_s": self.span_s_,
                "submit_resolution_s": self.submit_resolution_s_, "duration_resolution_s": self.duration_resolution_s_,
                "window_counts": self.window_counts_.tolist(), "window_widths_s": self.window_widths_s_.tolist(),
                "window_family": self.window_family_.tolist(), "window_shape": self.window_shape_.tolist(),
                "window_own_fit": self.window_own_fit_.tolist(),
                "pooled_family": self.pooled_family_, "pooled_shape": self.pooled_shape_,
                "joint": self.joint_.to_dict(as_series=False),
                "durations": {c: {"values": v.tolist(), "counts": k.tolist(), "lognormal": list(self.lognormal_[c])}
                              for c, (v, k) in self.durations_.items()},
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> JobWorkloadModel:
        """The model :meth:`to_dict` described; ValueError for another format or version."""
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} dict: format {data.get('format')!r}, "
                             f"version {data.get('version')!r}")
        p, f = data["params"], data["fitted"]
        model = cls(**{**p, "families": tuple(p["families"])})
        model.trace_, model.num_jobs_, model.num_unknown_run_ = f["trace"], f["num_jobs"], f["num_unknown_run"]
        model.num_excluded_, model.span_s_ = f["num_excluded"], float(f["span_s"])
        model.submit_resolution_s_, model.duration_resolution_s_ = f["submit_resolution_s"], f["duration_resolution_s"]
        model.window_counts_ = np.asarray(f["window_counts"], np.int64)
        model.window_widths_s_ = np.asarray(f["window_widths_s"], np.float64)
        model.window_family_ = np.asarray(f["window_family"], np.int64)
        model.window_shape_ = np.asarray(f["window_shape"], np.float64)
        model.window_own_fit_ = np.asarray(f["window_own_fit"], bool)
        model.pooled_family_, model.pooled_shape_ = int(f["pooled_family"]), float(f["pooled_shape"])
        schema = {"num_gpus": pl.Float64, **{c: pl.String for c in JOINT_COLUMNS[1:]}, "count": pl.UInt32}
        model.joint_ = pl.DataFrame(f["joint"], schema=schema)
        model.durations_ = {c: (np.asarray(d["values"], np.float64), np.asarray(d["counts"], np.int64))
                            for c, d in f["durations"].items()}
        model.lognormal_ = {c: tuple(float(v) for v in d["lognormal"]) for c, d in f["durations"].items()}
        return model

    def summary(self) -> dict:
        """The fitted numbers a reader needs to judge the model, JSON-able."""
        self._check_fitted()
        own, counts = self.window_own_fit_, self.window_counts_
        fam, shape = self.window_family_[own], self.window_shape_[own]
        jobs, cls = self.joint_["count"].to_numpy(), size_class(self.joint_["num_gpus"].to_numpy())
        return {
            "trace": self.trace_, "num_jobs": self.num_jobs_, "num_unknown_run": self.num_unknown_run_,
            "num_excluded": self.num_excluded_, "span_s": self.span_s_,
            "mean_rate_per_h": self.num_jobs_ / self.span_s_ * 3600, "window_s": self.window_s,
            "num_windows": len(counts), "empty_window_fraction": float(np.mean(counts == 0)),
            "windows_own_fit": int(own.sum()),
            "family_shares": {f: float(np.mean(fam == i)) if len(fam) else 0.0 for i, f in enumerate(FAMILIES)},
            "median_shape": {f: float(np.median(shape[fam == i])) if np.any(fam == i) else None
                             for i, f in enumerate(FAMILIES)},
            "pooled": {"family": FAMILIES[self.pooled_family_], "shape": self.pooled_shape_},
            "job_share_by_size": {c: float(jobs[cls == i].sum() / jobs.sum())
                                  for i, c in enumerate(SIZE_CLASSES) if c in self.durations_},
            "median_run_s_by_size": {c: float(v[np.searchsorted(np.cumsum(k), k.sum() // 2, side="right")])
                                     for c, (v, k) in self.durations_.items()},
            "lognormal_by_size": {c: dict(zip(("mu", "sigma", "zero_share"), v)) for c, v in self.lognormal_.items()},
            **{f"num_{c}s": int(self.joint_[c].drop_nulls().n_unique()) for c in ("user", "group")},
        }


def write_trace(jobs: pa.Table | pl.DataFrame, data_root: str | Path | None = None):
    """Ingest a generated jobs table into the lake as the trace ``synthetic_jobs`` (replacing any
    earlier one) through ``ingest.synth.write_synthetic_jobs`` and the ``synthetic_jobs`` source, so
    the catalog, the analyses and the cluster replay read it like a real trace. Returns the ingest
    ``RunResult``."""
    from ingest.paths import data_paths
    from ingest.pipeline import run_source
    from ingest.synth import write_synthetic_jobs

    paths = data_paths(data_root)
    folder = write_synthetic_jobs(paths.raw / SYNTHETIC_TRACE, jobs).parent
    return run_source(SYNTHETIC_TRACE, folder, data_root=paths.root, verify=False)
