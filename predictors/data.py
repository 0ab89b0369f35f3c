"""Training data from the catalog: one time-ordered stream per request trace or per job cluster.

A stream is the unit of history (features only look back within their own stream) and of the
time-ordered split (each stream's earlier part trains, its later part tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from analysis.catalog import NotAvailable, arrays, has_view, rows, trace_info
from predictors.features import Clock


@dataclass
class RequestStream:
    """The requests of one trace, in arrival order."""

    trace: str
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    clock: Clock | None

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass
class JobStream:
    """The jobs of one trace's cluster with a known run time, in submit order."""

    trace: str
    cluster: str | None
    submit_s: np.ndarray
    run_s: np.ndarray
    end_s: np.ndarray
    """NaN where the trace has no end time (features then use submit + run)."""
    num_gpus: np.ndarray
    num_nodes: np.ndarray | None
    num_cpus: np.ndarray | None
    user: np.ndarray | None
    group: np.ndarray | None
    status: np.ndarray | None
    clock: Clock | None
    excluded: dict[str, int]

    def __len__(self) -> int:
        return len(self.submit_s)

    @property
    def name(self) -> str:
        return self.trace if self.cluster is None else f"{self.trace}/{self.cluster}"


def clock_of(con: duckdb.DuckDBPyConnection, trace: str) -> Clock | None:
    """The trace's wall clock, or None when its times are relative (no hour-of-day then)."""
    info = trace_info(con, trace)
    return Clock(info.origin_s, info.time_zone or "UTC") if info.wall_clock or info.epoch == "unix" else None


def request_traces(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Request traces in the catalog."""
    if not has_view(con, "requests"):
        return []
    return [r[0] for r in rows(con, "SELECT DISTINCT trace FROM requests ORDER BY 1")]


def job_traces(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Job traces in the catalog with at least one known run time."""
    if not has_view(con, "jobs_derived"):
        return []
    return [r[0] for r in rows(con, "SELECT DISTINCT trace FROM jobs_derived "
                                    "WHERE coalesce(run_s, duration_s) IS NOT NULL ORDER BY 1")]


def load_requests(con: duckdb.DuckDBPyConnection, trace: str) -> RequestStream:
    """One request trace as a stream (NotAvailable naming the known traces if absent)."""
    known = request_traces(con)
    if trace not in known:
        raise NotAvailable(f"no request trace {trace!r} in the catalog (request traces: {', '.join(known) or 'none'}); "
                           "ingest one with `tracelab ingest run SOURCE`")
    got = arrays(con, "SELECT arrival_s, prompt_tokens, output_tokens FROM requests WHERE trace = ? "
                      "ORDER BY arrival_s, request_id", [trace])
    return RequestStream(trace, got["arrival_s"].astype(np.float64), got["prompt_tokens"].astype(np.int64),
                         got["output_tokens"].astype(np.int64), clock_of(con, trace))


def load_jobs(con: duckdb.DuckDBPyConnection, trace: str) -> list[JobStream]:
    """One stream per cluster of a job trace; jobs without a final run time are counted, not kept."""
    known = job_traces(con)
    if trace not in known:
        raise NotAvailable(f"no job trace {trace!r} with run times in the catalog (job traces: "
                           f"{', '.join(known) or 'none'}); ingest one with `tracelab ingest run SOURCE`")
    clusters = [r[0] for r in rows(con, "SELECT DISTINCT cluster FROM jobs_derived WHERE trace = ? ORDER BY 1 NULLS FIRST",
                                   [trace])]
    clock = clock_of(con, trace)
    out = []
    for cluster in clusters:
        where = "trace = ? AND cluster IS NULL" if cluster is None else "trace = ? AND cluster = ?"
        params = [trace] if cluster is None else [trace, cluster]
        got = arrays(con, f"""
            SELECT submit_s, coalesce(run_s, duration_s) AS run, coalesce(end_s, 'NaN'::DOUBLE) AS end_s,
                   coalesce(num_gpus, 0) AS gpus, coalesce(num_nodes, -1) AS nodes,
                   coalesce(num_cpus, 'NaN'::DOUBLE) AS cpus, "user", "group", status,
                   count(num_nodes) OVER () AS has_nodes, count(num_cpus) OVER () AS has_cpus,
                   count("user") OVER () AS has_user, count("group") OVER () AS has_group,
                   count(*) FILTER (status <> 'unknown') OVER () AS has_status,
                   (status IN ('running', 'pending')) AS unfinished
            FROM jobs_derived WHERE {where} AND submit_s IS NOT NULL
            ORDER BY submit_s, job_id""", params)
        run = got["run"]
        missing = np.ma.getmaskarray(run) if np.ma.isMaskedArray(run) else np.zeros(len(run), bool)
        run = np.ma.filled(run, np.nan).astype(np.float64)
        unfinished = np.asarray(got["unfinished"], dtype=bool)
        bad = np.isnan(run) | (run < 0)
        keep = ~(missing | bad | unfinished)
        excluded = {"no_run_time": int((missing | bad).sum()), "unfinished": int((unfinished & ~(missing | bad)).sum())}
        n_all = len(run)

        def col(name: str, flag: str) -> np.ndarray | None:
            if n_all == 0 or int(got[flag][0]) == 0:
                return None
            return np.asarray(np.ma.filled(got[name], None) if np.ma.isMaskedArray(got[name]) else got[name],
                              dtype=object)[keep]

        nodes = got["nodes"].astype(np.float64)
        nodes[nodes < 0] = np.nan
        out.append(JobStream(
            trace=trace, cluster=cluster, submit_s=got["submit_s"].astype(np.float64)[keep], run_s=run[keep],
            end_s=got["end_s"].astype(np.float64)[keep], num_gpus=got["gpus"].astype(np.float64)[keep],
            num_nodes=nodes[keep] if n_all and int(got["has_nodes"][0]) else None,
            num_cpus=got["cpus"].astype(np.float64)[keep] if n_all and int(got["has_cpus"][0]) else None,
            user=col("user", "has_user"), group=col("group", "has_group"),
            status=col("status", "has_status"), clock=clock, excluded=excluded))
    return out
