"""Trained models (``<root>/models/<name>/card.json``) and replay runs (``<root>/results/...``) for the dashboard.

Pure functions of a data root or a run folder. Model cards are read as JSON (the trees are never
loaded). Run tables are read with DuckDB straight from their Parquet files, and only aggregates come
back: quantile points for CDFs and at most ``data.MAX_BINS`` time bins per series.
Serving runs live in ``<root>/results/<run id>/`` (``requests``/``steps`` Parquet, ``config.json``,
``summary.json``: :mod:`replay.sinks`), cluster runs in ``<root>/results/cluster/<run id>/``
(``jobs``/``utilization``: :mod:`replay.cluster.harness`).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from analysis.catalog import frame
from dashboard.data import CDF_POINTS, bin_width_s
from ingest.paths import data_paths

CLUSTER_SUBDIR = "cluster"
"""Cluster runs' folder under ``results/`` (``replay.cluster.harness.RESULTS_SUBDIR``)."""
FLEET_SUBDIR = "fleet"
"""Fleet runs' folder under ``results/`` (``replay.fleet.sink.fleet_results_dir``)."""
MODEL_NAMES = ("boosted", "helios_blend", "model (")
"""Metric rows whose names start with these are the trained model's; the others are baselines."""


def models_dir(root: str | Path | None) -> Path:
    """``<root>/models``."""
    return data_paths(root).root / "models"


def results_dir(root: str | Path | None) -> Path:
    """``<root>/results`` (serving runs; cluster runs under ``cluster/``)."""
    return data_paths(root).root / "results"


def stamp(folder: Path, pattern: str) -> tuple[int, float]:
    """(count, newest mtime) of the files matching ``pattern`` under ``folder``: a cache key that changes
    when a model or run is added or rewritten."""
    mtimes = [p.stat().st_mtime for p in folder.glob(pattern)] if folder.is_dir() else []
    return len(mtimes), max(mtimes, default=0.0)


# ---------------------------------------------------------------- models

def list_models(root: str | Path | None) -> pl.DataFrame:
    """One row per model folder with a card: name, task, traces, train/test rows, whether an evaluation exists."""
    out = []
    for card_path in sorted(models_dir(root).glob("*/card.json")):
        card = json.loads(card_path.read_text())
        training = card.get("training") or {}
        out.append({"name": card_path.parent.name, "task": card.get("task"),
                    "traces": ", ".join(training.get("traces", [])), "rows_train": training.get("rows_train"),
                    "rows_test": training.get("rows_test"),
                    "evaluation": (card_path.parent / "evaluation.json").is_file()})
    return pl.DataFrame(out, schema={"name": pl.String, "task": pl.String, "traces": pl.String, "rows_train": pl.Int64,
                                     "rows_test": pl.Int64, "evaluation": pl.Boolean})


def model_card(root: str | Path | None, name: str) -> dict:
    """``card`` (card.json), ``evaluation`` (evaluation.json or None) and ``html`` (the report's path or None)."""
    folder = models_dir(root) / name
    ev, html = folder / "evaluation.json", folder / "evaluation.html"
    return {"card": json.loads((folder / "card.json").read_text()),
            "evaluation": json.loads(ev.read_text()) if ev.is_file() else None,
            "html": str(html) if html.is_file() else None}


def features_frame(card: dict) -> pl.DataFrame:
    """The card's feature schema: name, dtype, description, range, nullable."""
    return pl.DataFrame([{"feature": f["name"], "dtype": f.get("dtype"), "description": f.get("description"),
                          "min": f.get("min"), "max": f.get("max"), "nullable": f.get("nullable")}
                         for f in card.get("features", [])], infer_schema_length=None)


def metrics_frame(card: dict) -> pl.DataFrame:
    """Held-out metrics, one row per model (baselines first, as trained), with a ``kind`` column."""
    test = (card.get("metrics") or {}).get("test") or {}
    return pl.DataFrame([{"model": name, "kind": "model" if name.startswith(MODEL_NAMES) else "baseline", **m}
                         for name, m in test.items()], infer_schema_length=None)


def training_summary(card: dict) -> dict:
    """The card's training record, scalars only (lists joined), for a two-column table."""
    out = {"task": card.get("task"), "target": card.get("target"), "heads": ", ".join(card.get("heads", []))}
    for key, value in (card.get("training") or {}).items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        out[key] = value
    out.update({f"version {k}": v for k, v in (card.get("versions") or {}).items()})
    return out


# ---------------------------------------------------------------- runs

def _run_rows(folder: Path, table: str) -> list[dict]:
    out = []
    for summary_path in sorted(folder.glob("*/summary.json")):
        run = summary_path.parent
        if run.name.startswith(".") or not (run / f"{table}.parquet").is_file():
            continue
        config = json.loads((run / "config.json").read_text())
        out.append({"run_id": run.name, "path": str(run), "config": config,
                    "summary": json.loads(summary_path.read_text()), "mtime": summary_path.stat().st_mtime})
    return sorted(out, key=lambda r: -r["mtime"])


def serve_label(config: dict) -> str:
    """'<policy> x<rate> <trace>' of a serving run's config."""
    w = config.get("workload", {})
    return f"{config.get('policy')} x{w.get('rate_scale', 1):g} {w.get('trace')}"


def fleet_label(config: dict) -> str:
    """'<pools> x<rate> <trace>' of a fleet run's config, e.g. '1xH100-SXM prefill + 1xH100-SXM decode x2 azure_llm_2023_code'."""
    pools = " + ".join(f"{p.get('num_instances')}x{p.get('gpu')} {p.get('role')}" for p in config.get("pools", []))
    w = (config.get("serve") or {}).get("workload", {})
    return f"{pools} x{w.get('rate_scale', 1):g} {w.get('trace')}"


def cluster_label(config: dict) -> str:
    """'<policy>/<placement> x<rate> <trace>' of a cluster run's config."""
    return f"{config.get('policy')}/{config.get('placement')} x{config.get('rate_scale', 1):g} {config.get('trace')}"


SERVE_COLUMNS = ("num_arrived", "num_finished", "ttft_p50_s", "ttft_p99_s", "tbt_p99_p99_s", "e2e_mean_s", "e2e_p99_s",
                 "output_tokens_per_s", "requests_per_s", "slo_attainment", "kv_utilization_mean", "mean_num_seqs")
"""Summary keys shown per serving run."""
CLUSTER_COLUMNS = ("num_jobs", "num_finished", "num_rejected", "jct_mean_s", "jct_p99_s", "queue_mean_s", "queue_p99_s",
                   "slowdown_mean", "utilization_mean", "total_gpus")
"""Summary keys shown per cluster run."""
FLEET_COLUMNS = ("num_gpus", "num_finished", "ttft_p50_s", "ttft_p99_s", "tbt_p99_p99_s", "tbt_pooled_p99_s",
                 "slo_attainment", "num_kv_transfers", "kv_transfer_mean_s", "output_tokens_per_s")
"""Summary keys shown per fleet run."""
FLEET_ENERGY_COLUMNS = ("energy_per_output_token_j", "avg_power_w", "usd_per_hour", "usd_per_1m_output_tokens")
"""Keys of a fleet run's ``summary["energy"]`` shown beside them."""
_KINDS = {"serve": ("", "steps"), "cluster": (CLUSTER_SUBDIR, "jobs"), "fleet": (FLEET_SUBDIR, "steps")}


def list_runs(root: str | Path | None, kind: str) -> pl.DataFrame:
    """Finished runs, newest first: run id, label, folder, and the key summary numbers.
    ``kind``: 'serve', 'cluster' or 'fleet' (whose energy and cost figures come along)."""
    subdir, table = _KINDS[kind]
    keys = {"serve": SERVE_COLUMNS, "cluster": CLUSTER_COLUMNS, "fleet": FLEET_COLUMNS + FLEET_ENERGY_COLUMNS}[kind]
    label = {"serve": serve_label, "cluster": cluster_label, "fleet": fleet_label}[kind]

    def figures(summary: dict) -> dict:
        flat = {**summary, **(summary.get("energy") or {})} if kind == "fleet" else summary
        return {k: flat.get(k) for k in keys}

    got = [{"run_id": r["run_id"], "label": f"{label(r['config'])} ({r['run_id'][:6]})", "path": r["path"],
            **figures(r["summary"])} for r in _run_rows(results_dir(root) / subdir, table)]
    schema = {"run_id": pl.String, "label": pl.String, "path": pl.String, **{k: pl.Float64 for k in keys}}
    return pl.DataFrame(got, schema=schema, strict=False)


def read_summary(path: str | Path) -> dict:
    """A run folder's ``summary.json``."""
    return json.loads((Path(path) / "summary.json").read_text())


def _parquet(path: str | Path, table: str) -> str:
    return "read_parquet('" + str(Path(path) / f"{table}.parquet").replace("'", "''") + "')"


def run_cdf(path: str | Path, table: str, column: str, where: str = "true", points: int = CDF_POINTS) -> tuple[list, list]:
    """(values, quantiles) of ``column`` of a run table over rows matching ``where`` (non-null only)."""
    qs = [k / (points - 1) for k in range(points)]
    con = duckdb.connect()
    try:
        got = con.execute(f'SELECT quantile_cont("{column}", {qs!r}) FROM {_parquet(path, table)} '
                          f'WHERE {where} AND "{column}" IS NOT NULL AND isfinite("{column}")').fetchall()
    finally:
        con.close()
    values = got[0][0] if got and got[0][0] is not None else []
    return [float(v) for v in values], qs[: len(values)]


def serve_series(path: str | Path) -> pl.DataFrame:
    """Per time bin of a serving run: mean KV use (share of blocks), mean batch size, computed tokens/s and
    finished requests/s (step start times binned; at most ``MAX_BINS`` bins)."""
    con = duckdb.connect()
    try:
        span = con.execute(f"SELECT max(start_s + duration_s) FROM {_parquet(path, 'steps')}").fetchall()[0][0] or 0.0
        width = bin_width_s(max(span, 1.0))
        steps = frame(con,
            f"SELECT floor(start_s / ?)::BIGINT AS b, avg(kv_blocks_used / kv_blocks_total) AS kv_use, "
            f"avg(num_seqs) AS batch, sum(num_tokens) / ? AS tokens_per_s FROM {_parquet(path, 'steps')} "
            "GROUP BY 1 ORDER BY 1", [width, width])
        done = frame(con, f"SELECT floor(finish_s / ?)::BIGINT AS b, count(*) / ? AS finished_per_s "
                           f"FROM {_parquet(path, 'requests')} WHERE finish_s IS NOT NULL GROUP BY 1",
                     [width, width])
    finally:
        con.close()
    out = steps.join(done, on="b", how="left").with_columns(pl.col("finished_per_s").fill_null(0.0),
                                                            (pl.col("b") * width).cast(pl.Float64).alias("time_s"))
    return out.drop("b").sort("time_s")


def cluster_series(path: str | Path) -> pl.DataFrame:
    """Allocated share of the cluster's GPUs over time (``time_s``, ``allocated_gpus``, ``utilization``), in at
    most ``MAX_BINS`` bins."""
    con = duckdb.connect()
    try:
        src = _parquet(path, "utilization")
        span = con.execute(f"SELECT max(time_s) FROM {src}").fetchall()[0][0] or 0.0
        width = bin_width_s(max(span, 60.0))
        return frame(con, f"SELECT (floor(time_s / ?) * ?)::DOUBLE AS time_s, avg(allocated_gpus) AS allocated_gpus, "
                           f"avg(allocated_gpus / total_gpus) AS utilization FROM {src} GROUP BY 1 ORDER BY 1",
                     [width, width])
    finally:
        con.close()


def by_size_frame(summaries: dict[str, dict]) -> pl.DataFrame:
    """Cluster runs' ``by_size`` summaries (label -> summary) as rows: run, size class, jobs, mean JCT, mean queue."""
    out = [{"run": label, "size": size, **{k: v.get(k) for k in ("num_jobs", "jct_mean_s", "queue_mean_s", "slowdown_mean")}}
           for label, s in summaries.items() for size, v in (s.get("by_size") or {}).items()]
    return pl.DataFrame(out, schema={"run": pl.String, "size": pl.String, "num_jobs": pl.Int64, "jct_mean_s": pl.Float64,
                                     "queue_mean_s": pl.Float64, "slowdown_mean": pl.Float64})


def pivot_sizes(sizes: pl.DataFrame, column: str) -> tuple[list[str], dict[str, list]]:
    """(size classes, run -> values per class) of one ``by_size_frame`` column, for grouped bars."""
    classes = list(dict.fromkeys(sizes["size"].to_list()))
    table = {(r["run"], r["size"]): r[column] for r in sizes.iter_rows(named=True)}
    runs = list(dict.fromkeys(sizes["run"].to_list()))
    return classes, {run: [table.get((run, c)) for c in classes] for run in runs}
