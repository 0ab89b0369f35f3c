"""Alibaba PAI analyses beyond the shared job characterization (Weng et al., *MLaaS in the Wild*, NSDI'22):
what tasks and instances request (fractional GPUs included), how much of it they use, and how long
they wait, by GPU request and by GPU type.

Tables (all written by ``ingest run alibaba_pai_2020``):

* ``pai_tasks``: one row per task; ``plan_cpus`` / ``plan_gpus`` / ``plan_mem_gb`` are **per instance**
  (upstream percent / 100) and ``num_instances`` is upstream ``inst_num``. A CPU task has a null (empty
  upstream) or zero ``plan_gpus``; its ``gpu_type`` may be null ("unspecified" here).
* ``pai_instances``: one row per ``worker_name`` (duplicates removed the way the official ``get_dfiw`` does).
* ``pai_instance_usage``: one row per sensor row (a lifetime average per worker), with the task's plan
  joined in. "Instances" in the usage functions are these rows, as in
  :func:`analysis.utilization.pai_request_vs_usage`: an instance counts for a resource when its request is
  positive and its use was measured; :func:`usage_coverage` says how many fall outside that.

Two waiting times, both from the upstream material (FORMATS §4.4):

* ``definition='job'`` (README): earliest task start - job submission, per job, grouped by the job's total
  GPU request (``jobs.num_gpus``, the sum of ``inst_num x plan_gpu``) or its GPU type;
* ``definition='instance'`` (official ``utils``): earliest instance start - task start, per task, grouped
  by the task's per-instance GPU request (``plan_gpus``) or its GPU type.

A negative wait (a start recorded before the submission) is kept as is, like ``jobs.queue_s``. Heavy
work runs in DuckDB; functions return small polars frames or dicts and raise
:class:`~analysis.catalog.NotAvailable` when a table or the data is missing.
"""

from __future__ import annotations

import duckdb
import polars as pl

from analysis.catalog import NotAvailable, has_view, not_available, one, require_view, rows
from analysis.jobs import QUANTILES, queue_cdf, quantile_sql, size_buckets
from analysis.utilization import PAI_RESOURCES, pai_request_vs_usage

GPU_TYPE = "coalesce(gpu_type, 'unspecified')"
"""SQL for a GPU type, with null (CPU tasks, ~8% of GPU tasks upstream) as ``'unspecified'``."""


def has_pai_tables(con: duckdb.DuckDBPyConnection, trace: str) -> bool:
    """Whether the catalog holds PAI task rows for ``trace`` (the guard for PAI-only report sections)."""
    return has_view(con, "pai_tasks") and one(con, "SELECT count(*) FROM pai_tasks WHERE trace = ?", [trace])[0] > 0


def _request_key(by: str, buckets: str, col: str) -> tuple[str, str]:
    """(key, rank) SQL expressions grouping rows by GPU request ``col`` or by GPU type."""
    if by == "request":
        return f"coalesce({col}, 0)", f"coalesce({col}, 0)"
    if by == "size":
        return size_buckets(buckets).sql(f"coalesce({col}, 0)")
    if by == "gpu_type":
        return GPU_TYPE, "0"
    raise ValueError(f"group by 'request', 'size' or 'gpu_type', not {by!r}")


def request_distribution(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020", *, by: str = "request",
                         buckets: str = "coarse", gpu_only: bool = True) -> pl.DataFrame:
    """What tasks request, per exact per-instance GPU request (``by='request'``, key like ``'0.5'``), per
    request bucket (``by='size'``, fractional requests are ``'<1'``) or per ``gpu_type``.

    Returns ``key, tasks, task_share, instances, instance_share, gpus_requested, gpu_share`` where
    instances are ``num_instances`` summed and ``gpus_requested`` is ``num_instances x plan_gpus``.
    ``gpu_only`` keeps tasks with ``plan_gpus > 0``; otherwise CPU tasks form the key ``'0'``.
    """
    require_view(con, "pai_tasks", trace)
    key, rank = _request_key(by, buckets, "plan_gpus")
    where = "trace = ?" + (" AND plan_gpus > 0" if gpu_only else "")
    got = rows(con, f"""SELECT {key} AS key, min({rank}) AS rank, count(*), sum(num_instances),
                        sum(num_instances * coalesce(plan_gpus, 0)) FROM pai_tasks WHERE {where}
                        GROUP BY 1 ORDER BY 2, 1""", [trace])
    if not got:
        raise NotAvailable(f"{trace}: no task requests a GPU" if gpu_only else f"{trace}: no tasks")
    keys = [f"{k:g}" if by == "request" else str(k) for k, *_ in got]
    df = pl.DataFrame({"key": keys, "tasks": [r[2] for r in got], "instances": [int(r[3]) for r in got],
                       "gpus_requested": [float(r[4]) for r in got]})
    total_gpus = df["gpus_requested"].sum()
    gpu_share = pl.col("gpus_requested") / total_gpus if total_gpus > 0 else pl.lit(None, pl.Float64)
    return df.select("key", "tasks", task_share=pl.col("tasks") / pl.col("tasks").sum(), instances=pl.col("instances"),
                     instance_share=pl.col("instances") / pl.col("instances").sum(),
                     gpus_requested=pl.col("gpus_requested"), gpu_share=gpu_share)


def usage_cdf(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020", *,
              resources: tuple[str, ...] = ("cpu", "gpu", "mem"), value: str = "ratio",
              quantiles: tuple[float, ...] = QUANTILES) -> pl.DataFrame:
    """Distribution over instances of used / requested (``value='ratio'``), of the use itself
    (``'used'``: cores, GPUs, GB) or of the request (``'requested'``), per resource of
    :data:`~analysis.utilization.PAI_RESOURCES` (cpu, gpu, mem = mean host memory, mem_peak = max host
    memory), over instances with a positive request and a measured use: long format
    ``resource, instances, p, value``. Resources without such an instance are left out."""
    require_view(con, "pai_instance_usage", trace)
    exprs = {"ratio": "{used} / {plan}", "used": "{used}", "requested": "{plan}"}
    if value not in exprs:
        raise ValueError(f"value is 'ratio', 'used' or 'requested', not {value!r}")
    unknown = set(resources) - set(PAI_RESOURCES)
    if unknown:
        raise ValueError(f"unknown resources {sorted(unknown)}; known: {', '.join(PAI_RESOURCES)}")
    parts = []
    for res in resources:
        plan, used = PAI_RESOURCES[res]
        parts.append(f"""SELECT '{res}', count(*), quantile_cont({exprs[value].format(used=used, plan=plan)},
                         {quantile_sql(quantiles)}) FROM pai_instance_usage
                         WHERE trace = ? AND {plan} > 0 AND {used} IS NOT NULL""")
    got = [r for r in rows(con, " UNION ALL ".join(parts), [trace] * len(parts)) if r[1]]
    if not got:
        raise NotAvailable(f"{trace}: no instance has both a request and a measured use")
    long = [(res, n, float(p), v) for res, n, qs in got for p, v in zip(quantiles, qs)]
    return pl.DataFrame(long, orient="row", schema={"resource": pl.String, "instances": pl.Int64, "p": pl.Float64,
                                                    "value": pl.Float64})


def usage_coverage(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020") -> dict:
    """How much of the trace the requested-vs-used figures cover, as a JSON-able dict.

    ``sensor_rows``, ``sensor_workers`` (distinct worker_name), ``duplicate_sensor_workers`` (with more
    than one row), ``no_task_plan`` (rows without any plan: no accepted task row matches); where the
    instance table was ingested also ``instances``, ``instances_without_sensor`` and
    ``sensor_workers_without_instance``; and per resource ``{measured: request > 0 and use known (the
    rows the usage figures use), zero_request, no_request (null: CPU tasks for gpu), no_use}``.
    """
    require_view(con, "pai_instance_usage", trace)
    n_rows, workers, dups, no_plan = one(con, """SELECT sum(n), count(*), count(*) FILTER (n > 1), sum(no_plan)
        FROM (SELECT worker_name, count(*) AS n,
                     count(*) FILTER (plan_cpus IS NULL AND plan_gpus IS NULL AND plan_mem_gb IS NULL) AS no_plan
              FROM pai_instance_usage WHERE trace = ? GROUP BY 1)""", [trace])
    if not n_rows:
        raise NotAvailable(f"{trace}: no sensor rows")
    out: dict = {"sensor_rows": int(n_rows), "sensor_workers": workers, "duplicate_sensor_workers": dups,
                 "no_task_plan": int(no_plan)}
    if has_view(con, "pai_instances"):
        inst, missing, orphan = one(con, """WITH i AS (SELECT DISTINCT worker_name FROM pai_instances WHERE trace = ?),
            s AS (SELECT DISTINCT worker_name FROM pai_instance_usage WHERE trace = ?)
            SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM i ANTI JOIN s USING (worker_name)),
                   (SELECT count(*) FROM s ANTI JOIN i USING (worker_name))""", [trace, trace])
        out.update(instances=inst, instances_without_sensor=missing, sensor_workers_without_instance=orphan)
    parts = [f"""SELECT '{res}', count(*) FILTER ({plan} > 0 AND {used} IS NOT NULL), count(*) FILTER ({plan} = 0),
                 count(*) FILTER ({plan} IS NULL), count(*) FILTER ({used} IS NULL)
                 FROM pai_instance_usage WHERE trace = ?""" for res, (plan, used) in PAI_RESOURCES.items()]
    out["resources"] = {r[0]: dict(zip(("measured", "zero_request", "no_request", "no_use"), r[1:]))
                        for r in rows(con, " UNION ALL ".join(parts), [trace] * len(parts))}
    return out


def _instance_wait(con, trace: str, *, by: str | None, buckets: str, quantiles: tuple[float, ...],
                   gpu_only: bool) -> pl.DataFrame:
    for view in ("pai_tasks", "pai_instances"):
        require_view(con, view, trace)
    key, rank = ("'all'", "0") if by is None else _request_key(by, buckets, "plan_gpus")
    got = rows(con, f"""
        WITH w AS (SELECT t.plan_gpus, t.gpu_type, min(i.start_s) - t.start_s AS wait_s
                   FROM pai_tasks t JOIN pai_instances i
                   ON i.trace = t.trace AND i.job_id = t.job_id AND i.task_name = t.task_name
                   WHERE t.trace = ? AND t.start_s IS NOT NULL AND i.start_s IS NOT NULL
                   {'AND t.plan_gpus > 0' if gpu_only else ''}
                   GROUP BY t.job_id, t.task_name, t.plan_gpus, t.gpu_type, t.start_s)
        SELECT {key} AS key, min({rank}) AS rank, count(*) AS n, avg(wait_s),
               quantile_cont(wait_s, {quantile_sql(quantiles)}) FROM w GROUP BY 1 ORDER BY rank, n DESC, key""",
                [trace])
    if not got:
        raise NotAvailable(f"{trace}: no task has both a start time and a started instance")
    long = [(str(k), n, mean, float(p), v) for k, _, n, mean, qs in got for p, v in zip(quantiles, qs)]
    return pl.DataFrame(long, orient="row", schema={"key": pl.String, "tasks": pl.Int64, "mean_s": pl.Float64,
                                                    "p": pl.Float64, "value_s": pl.Float64})


def wait_cdf(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020", *, by: str | None = "size",
             definition: str = "job", buckets: str = "coarse", quantiles: tuple[float, ...] = QUANTILES,
             gpu_only: bool = True) -> pl.DataFrame:
    """Waiting time quantiles by GPU request bucket (``by='size'``), ``'gpu_type'`` or overall (``None``),
    under either definition of the module docstring. Long format ``key, jobs|tasks, mean_s, p, value_s``
    (``jobs`` for ``definition='job'``, ``tasks`` for ``'instance'``). ``gpu_only`` keeps GPU jobs (tasks);
    otherwise CPU ones form the key ``'0'``. The job definition leaves out jobs without a GPU type when
    ``by='gpu_type'``; the instance definition keys them ``'unspecified'``."""
    if by not in (None, "size", "gpu_type"):
        raise ValueError(f"wait_cdf groups by None, 'size' or 'gpu_type', not {by!r}")
    if definition == "job":  # analysis.utilization.wait_by_request, with gpu_only and the overall CDF too
        return queue_cdf(con, trace, by=by, buckets=buckets, quantiles=quantiles, gpu_only=gpu_only)
    if definition == "instance":
        return _instance_wait(con, trace, by=by, buckets=buckets, quantiles=quantiles, gpu_only=gpu_only)
    raise ValueError(f"definition is 'job' or 'instance', not {definition!r}")


def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NotAvailable as exc:
        return not_available(exc)


def _medians(df: pl.DataFrame | str) -> dict | str:
    return df if isinstance(df, str) else dict(zip(*df.filter(pl.col("p") == 0.5).select("key", "value_s")))


def characterize_pai(con: duckdb.DuckDBPyConnection, trace: str = "alibaba_pai_2020") -> dict:
    """Key PAI numbers as a JSON-able dict: GPU requests (share of GPU instances asking for a fraction,
    exactly one, more than one GPU; instance share per GPU type), requested vs used per resource
    (share below request, median ratio) with its coverage, and median waits by GPU request and type
    under both definitions. A part the trace cannot support is ``'not available: <reason>'``."""
    out: dict = {"trace": trace}
    req = _try(request_distribution, con, trace, by="request")
    if isinstance(req, str):
        out["gpu_requests"] = req
    else:
        g = req.with_columns(v=pl.col("key").cast(pl.Float64))
        total = g["instances"].sum()
        out["gpu_requests"] = {"gpu_tasks": int(g["tasks"].sum()), "gpu_instances": int(total),
                               **{f"instance_share_{k}": float(g.filter(cond)["instances"].sum() / total)
                                  for k, cond in (("fractional", pl.col("v") < 1), ("one", pl.col("v") == 1),
                                                  ("multi", pl.col("v") > 1))}}
        types = request_distribution(con, trace, by="gpu_type")
        out["gpu_requests"]["instance_share_by_gpu_type"] = dict(zip(types["key"], types["instance_share"]))
    usage = _try(pai_request_vs_usage, con, trace)
    if isinstance(usage, str):
        out["usage"] = usage
    else:
        out["usage"] = {r["resource"]: {"instances": r["instances"], "share_below_request": r["share_below_request"],
                                        "median_used_over_requested": r["ratio_p50"]}
                        for r in usage.iter_rows(named=True) if r["instances"]}
        out["usage_coverage"] = usage_coverage(con, trace)
    for definition in ("job", "instance"):
        out[f"median_wait_s_{definition}"] = {
            by: _medians(_try(wait_cdf, con, trace, by=by, definition=definition, quantiles=(0.5,)))
            for by in ("size", "gpu_type")}
    return out
