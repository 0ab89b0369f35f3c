"""Characterization of LLM request traces: arrivals, burstiness, time-of-day patterns, token lengths.

Convention (all of ``analysis.requests`` and ``analysis.prefix``): every public function takes
``con``, a DuckDB connection on which a ``requests`` view or table in the canonical schema is
visible (normally the catalog, opened read-only by :func:`analysis.catalog.open_catalog`, re-exported
here), and ``trace``, a trace name; absolute-time analyses also read the catalog's ``traces`` table
(origin, time zone, epoch). An unknown trace is a ValueError naming the known ones.
The aggregation runs in DuckDB; what comes back is small: a polars DataFrame of at most one row per
window or quantile point, or a dict of plain numbers (JSON-able; ``None`` where a value is undefined).

Definitions used throughout:

* ``arrival_s`` counts from the trace's first arrival, so windows are ``[k*w, (k+1)*w)`` from 0 and
  the span is the last arrival (minus the first, which is 0).
* ``std`` is the sample standard deviation (n - 1). On the real traces it differs from the
  population one by < 0.01 %, so the published Splitwise constants cannot tell them apart.
* percentiles interpolate linearly between order statistics (``quantile_cont``, numpy's default).
* inter-arrival gaps are taken in (``arrival_s``, ``request_id``) order; ties give zero gaps.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl

from analysis import prefix
from analysis.catalog import open_catalog
from analysis.prefix import PERCENTILES

TOKEN_COLUMNS = ("prompt_tokens", "output_tokens")
"""The length columns the token functions accept."""

DISPERSION_WINDOWS_S = (1.0, 10.0, 60.0, 600.0)
"""Window sizes for the index of dispersion by default."""

MAX_WINDOWS = 2_000_000
"""Refuse a rate series longer than this (pick a larger window)."""

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

__all__ = [
    "open_catalog", "request_counts", "rate_series", "tokens_per_minute", "interarrival_stats", "dispersion",
    "on_off", "trace_time_base", "time_patterns", "token_stats", "token_cdf", "length_correlation",
    "characterize_requests",
]


def _num(x) -> float | int | None:
    """A JSON-able number: NaN and infinities become None."""
    if x is None:
        return None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _pct_keys() -> list[str]:
    return [f"p{q * 100:g}" for q in PERCENTILES]


def _pct_list() -> str:
    return "[" + ", ".join(repr(q) for q in PERCENTILES) + "]"


def _row(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> tuple | None:
    """The first row of a query, fully consuming the result (DuckDB 2 keeps an unread result open)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _span(con: duckdb.DuckDBPyConnection, trace: str) -> tuple[int, float]:
    """(number of requests, span in seconds); ValueError naming the known traces if there are none."""
    n, lo, hi = _row(con, "SELECT count(*), min(arrival_s), max(arrival_s) FROM requests WHERE trace = ?", [trace])
    if n == 0:
        known = [r[0] for r in con.execute("SELECT DISTINCT trace FROM requests ORDER BY 1").fetchall()]
        raise ValueError(f"no requests for trace {trace!r}; known: {', '.join(known)}")
    return n, float(hi - lo)


_GAPS = """
    SELECT arrival_s, arrival_s - lag(arrival_s) OVER (ORDER BY arrival_s, request_id) AS gap_s
    FROM requests WHERE trace = $t"""


# ---------------------------------------------------------------- counts and rates


def request_counts(con: duckdb.DuckDBPyConnection, trace: str) -> dict:
    """Requests, span, mean and peak rates, token totals, sessions and prefix-hash coverage."""
    n, span_s = _span(con, trace)
    row = _row(
        con,
        """SELECT sum(prompt_tokens), sum(output_tokens), count(DISTINCT session_id),
                  count(*) FILTER (len(prefix_block_hashes) > 0)
           FROM requests WHERE trace = ?""",
        [trace],
    )
    peaks = {}
    for name, w in (("peak_requests_per_s", 1.0), ("peak_requests_per_min", 60.0)):
        peaks[name] = _row(
            con,
            "SELECT max(c) FROM (SELECT count(*) AS c FROM requests WHERE trace = ? GROUP BY floor(arrival_s / ?))",
            [trace, w],
        )[0]
    return {
        "num_requests": n,
        "span_s": span_s,
        "mean_rate_per_s": _num(n / span_s) if span_s > 0 else None,
        **peaks,
        "total_prompt_tokens": int(row[0]),
        "total_output_tokens": int(row[1]),
        "num_sessions": int(row[2]),
        "requests_with_prefix_hashes": int(row[3]),
    }


def rate_series(con: duckdb.DuckDBPyConnection, trace: str, window_s: float = 60.0) -> pl.DataFrame:
    """Arrivals and tokens per window ``[k*w, (k+1)*w)``, empty windows included (zeros).

    Columns: ``window_start_s``, ``num_requests``, ``prompt_tokens``, ``output_tokens``,
    ``requests_per_s`` (``num_requests / window_s``). The last window may be partial.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    _, span_s = _span(con, trace)
    num_windows = int(span_s // window_s) + 1
    if num_windows > MAX_WINDOWS:
        raise ValueError(f"{num_windows} windows of {window_s} s: over {MAX_WINDOWS}; use a larger window")
    rel = con.sql(
        f"""WITH r AS (SELECT floor(arrival_s / $w)::BIGINT AS k, count(*) AS n,
                              sum(prompt_tokens) AS p, sum(output_tokens) AS o
                       FROM requests WHERE trace = $t GROUP BY 1)
            SELECT g.range * $w AS window_start_s, coalesce(r.n, 0)::BIGINT AS num_requests,
                   coalesce(r.p, 0)::BIGINT AS prompt_tokens, coalesce(r.o, 0)::BIGINT AS output_tokens,
                   coalesce(r.n, 0) / $w AS requests_per_s
            FROM range(0, {num_windows}) g LEFT JOIN r ON r.k = g.range ORDER BY g.range""",
        params={"w": float(window_s), "t": trace},
    )
    return rel.pl()


def tokens_per_minute(con: duckdb.DuckDBPyConnection, trace: str) -> pl.DataFrame:
    """Prompt (in) and output (out) tokens per minute: :func:`rate_series` with 60 s windows."""
    return rate_series(con, trace, 60.0).select("window_start_s", "num_requests", "prompt_tokens", "output_tokens")


# ---------------------------------------------------------------- burstiness


def interarrival_stats(con: duckdb.DuckDBPyConnection, trace: str) -> dict:
    """Inter-arrival gaps: count, mean, std, coefficient of variation (std / mean), min, max, percentiles.

    ``zero_gap_fraction`` is the share of gaps that are exactly 0 (simultaneous or quantized arrivals).
    A Poisson process has ``cv`` 1; ``cv`` >> 1 means bursts.
    """
    _span(con, trace)
    row = _row(
        con,
        f"""SELECT count(gap_s), avg(gap_s), stddev_samp(gap_s), min(gap_s), max(gap_s),
                   quantile_cont(gap_s, {_pct_list()}), avg((gap_s = 0)::INT)
            FROM ({_GAPS}) WHERE gap_s IS NOT NULL""",
        {"t": trace},
    )
    n, mean, std, lo, hi, pcts, zero = row
    return {
        "num_gaps": n,
        "mean_s": _num(mean),
        "std_s": _num(std),
        "cv": _num(std / mean) if std is not None and mean else None,
        "min_s": _num(lo),
        "max_s": _num(hi),
        **dict(zip(_pct_keys(), [_num(v) for v in (pcts or [None] * len(PERCENTILES))])),
        "zero_gap_fraction": _num(zero),
    }


def dispersion(
    con: duckdb.DuckDBPyConnection, trace: str, windows_s: tuple[float, ...] | list[float] = DISPERSION_WINDOWS_S
) -> pl.DataFrame:
    """Index of dispersion of counts (variance / mean of requests per window) for several window sizes.

    Only the complete windows ``[k*w, (k+1)*w)`` with ``(k+1)*w <= span`` are used (empty ones
    included); the variance is the sample one. Poisson arrivals give 1 at every window size;
    growth with the window size is the signature of bursts on that time scale. Columns:
    ``window_s``, ``num_windows``, ``mean_count``, ``var_count``, ``index_of_dispersion``
    (nulls when fewer than 2 complete windows fit).
    """
    _, span_s = _span(con, trace)
    rows = []
    for w in windows_s:
        if not w > 0:
            raise ValueError(f"window sizes must be > 0, got {w}")
        m = int(span_s // w)
        if m < 2:
            rows.append((float(w), m, None, None, None))
            continue
        total, total_sq = _row(
            con,
            """SELECT coalesce(sum(c), 0), coalesce(sum(c * c), 0) FROM (
                 SELECT count(*)::BIGINT AS c FROM requests WHERE trace = ? AND arrival_s < ? GROUP BY floor(arrival_s / ?))""",
            [trace, m * float(w), float(w)],
        )
        mean = total / m
        var = (total_sq - m * mean * mean) / (m - 1)
        rows.append((float(w), m, mean, var, var / mean if mean > 0 else None))
    return pl.DataFrame(
        rows, schema={"window_s": pl.Float64, "num_windows": pl.Int64, "mean_count": pl.Float64,
                      "var_count": pl.Float64, "index_of_dispersion": pl.Float64}, orient="row",
    )


def on_off(con: duckdb.DuckDBPyConnection, trace: str, idle_gap_s: float = 10.0) -> dict:
    """ON/OFF structure: the gaps between consecutive arrivals longer than ``idle_gap_s`` are OFF periods.

    Keys: ``num_gaps`` (OFF periods), ``longest_gap_s`` (the longest gap of all) and
    ``longest_gap_start_s``, ``idle_s`` (total length of the OFF gaps, counted in full),
    ``idle_fraction`` (``idle_s / span``), ``num_on_periods`` (``num_gaps + 1``),
    ``mean_on_period_s`` and ``is_on_off`` (at least one OFF gap).
    """
    _, span_s = _span(con, trace)
    num, idle, longest, start = _row(
        con,
        f"""SELECT count(*) FILTER (gap_s > $g), coalesce(sum(gap_s) FILTER (gap_s > $g), 0),
                   max(gap_s), arg_max(arrival_s - gap_s, gap_s)
            FROM ({_GAPS}) WHERE gap_s IS NOT NULL""",
        {"g": float(idle_gap_s), "t": trace},
    )
    return {
        "idle_gap_s": float(idle_gap_s),
        "num_gaps": num,
        "longest_gap_s": _num(longest),
        "longest_gap_start_s": _num(start),
        "idle_s": float(idle),
        "idle_fraction": _num(idle / span_s) if span_s > 0 else None,
        "num_on_periods": num + 1,
        "mean_on_period_s": (span_s - idle) / (num + 1),
        "is_on_off": num > 0,
    }


# ---------------------------------------------------------------- time of day, day of week


def trace_time_base(con: duckdb.DuckDBPyConnection, trace: str) -> dict:
    """The trace's origin from the catalog ``traces`` table: ``origin_epoch_us``, ``time_zone``, ``epoch``
    and ``absolute`` (True when the origin is a real Unix time, so wall-clock analyses make sense)."""
    try:
        row = _row(con, "SELECT origin_epoch_us, time_zone, epoch FROM traces WHERE trace = ?", [trace])
    except duckdb.CatalogException:
        row = None
    if row is None:
        return {"origin_epoch_us": None, "time_zone": None, "epoch": None, "absolute": False}
    origin, zone, epoch = row
    return {"origin_epoch_us": origin, "time_zone": zone, "epoch": epoch,
            "absolute": origin is not None and epoch == "unix"}


def _unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}


def time_patterns(
    con: duckdb.DuckDBPyConnection,
    trace: str,
    min_span_diurnal_s: float = 86_400.0,
    min_span_weekly_s: float = 7 * 86_400.0,
) -> dict:
    """Diurnal (hour of day) and weekly (day of week) arrival patterns, where the trace allows them.

    Arrivals are counted per clock hour (UTC hour buckets); only the hours that lie wholly between
    the first and the last arrival are used, so every hour has the same exposure. The mean count of
    those hours is then taken per local hour of day (0-23) and per local weekday (Mon-Sun) in the
    trace's time zone ("naive" wall clocks are taken as they are; a zone with a non-whole-hour
    offset is bucketed by UTC hour). Each available entry has ``requests_per_hour`` (a list by hour
    or weekday; None for one never covered), ``num_hours`` used and ``peak_to_mean``. A pattern
    needs an absolute origin and a span of at least ``min_span_diurnal_s`` / ``min_span_weekly_s``;
    otherwise its entry is ``{"available": False, "reason": ...}``.
    """
    _, span_s = _span(con, trace)
    base = trace_time_base(con, trace)
    if not base["absolute"]:
        why = f"no absolute time (epoch: {base['epoch']})" if base["epoch"] else "no absolute time (trace not in catalog)"
        return {"diurnal": _unavailable(why), "weekly": _unavailable(why)}
    out = {}
    for name, need in (("diurnal", min_span_diurnal_s), ("weekly", min_span_weekly_s)):
        if span_s < need:
            out[name] = _unavailable(f"span too short: {span_s / 3600:.2f} h < {need / 3600:g} h")
    if len(out) == 2:
        return out
    origin_s = base["origin_epoch_us"] / 1e6
    first_h, end_h = math.ceil(origin_s / 3600), math.floor((origin_s + span_s) / 3600)  # whole hours [first, end)
    counts = con.execute(
        """SELECT floor(($o + arrival_s) / 3600)::BIGINT AS b, count(*) FROM requests
           WHERE trace = $t AND $o + arrival_s >= $lo AND $o + arrival_s < $hi GROUP BY 1""",
        {"o": origin_s, "t": trace, "lo": first_h * 3600.0, "hi": end_h * 3600.0},
    ).fetchall()
    zone = "UTC" if base["time_zone"] in (None, "naive") else base["time_zone"]
    frame = (
        pl.DataFrame({"b": np.arange(first_h, end_h, dtype=np.int64)})
        .join(pl.DataFrame(counts, schema={"b": pl.Int64, "n": pl.Int64}, orient="row"), on="b", how="left")
        .with_columns(
            pl.col("n").fill_null(0),
            local=pl.from_epoch(pl.col("b") * 3600, "s").dt.replace_time_zone("UTC").dt.convert_time_zone(zone),
        )
        .with_columns(hour=pl.col("local").dt.hour(), weekday=pl.col("local").dt.weekday() - 1)
    )
    for name, key, labels in (("diurnal", "hour", list(range(24))), ("weekly", "weekday", list(WEEKDAYS))):
        if name in out:
            continue
        by_key = dict(frame.group_by(key).agg(pl.col("n").mean()).iter_rows())
        rates = [_num(float(by_key[i])) if i in by_key else None for i in range(len(labels))]
        seen = [r for r in rates if r is not None]
        mean = sum(seen) / len(seen) if seen else 0.0
        out[name] = {
            "available": True,
            "time_zone": base["time_zone"],
            key: labels,
            "requests_per_hour": rates,
            "num_hours": frame.height,
            "peak_to_mean": _num(max(seen) / mean) if mean > 0 else None,
        }
    return {"diurnal": out["diurnal"], "weekly": out["weekly"]}


# ---------------------------------------------------------------- token lengths


def _column(column: str) -> str:
    if column not in TOKEN_COLUMNS:
        raise ValueError(f"column must be one of {TOKEN_COLUMNS}, not {column!r}")
    return column


def token_stats(con: duckdb.DuckDBPyConnection, trace: str, column: str = "prompt_tokens") -> dict:
    """Distribution of one length column: ``count``, ``mean``, ``std`` (sample), ``min``, ``max``, percentiles."""
    col = _column(column)
    _span(con, trace)
    n, mean, std, lo, hi, pcts = _row(
        con,
        f"""SELECT count({col}), avg({col}), stddev_samp({col}), min({col}), max({col}),
                   quantile_cont({col}, {_pct_list()}) FROM requests WHERE trace = ?""",
        [trace],
    )
    return {"count": n, "mean": _num(mean), "std": _num(std), "min": lo, "max": hi,
            **dict(zip(_pct_keys(), [_num(v) for v in pcts]))}


def token_cdf(con: duckdb.DuckDBPyConnection, trace: str, column: str = "prompt_tokens", num_points: int = 101) -> pl.DataFrame:
    """The empirical CDF of one length column at ``num_points`` evenly spaced quantiles (0 .. 1 inclusive).

    Columns ``quantile`` and ``tokens`` (linearly interpolated, so between two integers at places).
    """
    col = _column(column)
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    _span(con, trace)
    qs = np.linspace(0.0, 1.0, num_points)
    (vals,) = _row(
        con,
        f"SELECT quantile_cont({col}, ?::DOUBLE[]) FROM requests WHERE trace = ?", [qs.tolist(), trace]
    )
    return pl.DataFrame({"quantile": qs, "tokens": np.asarray(vals, dtype=np.float64)})


def length_correlation(con: duckdb.DuckDBPyConnection, trace: str) -> dict:
    """Pearson and Spearman correlation of prompt vs output tokens (Spearman on average ranks of ties).

    DuckDB's parallel ``corr`` sums floats in a thread-dependent order, so two runs could differ in the
    last digits; here every moment is an exact integer sum (HUGEINT; ranks are doubled to stay integral)
    and the correlation is formed once in Python: the same bytes on every run.
    """
    _span(con, trace)
    # Ranks come from per-value counts (a GROUP BY, not a sort of every row): a value with `before`
    # smaller rows and `c` ties has average rank before + (c + 1) / 2, doubled to stay an integer.
    moments = _row(
        con,
        """WITH r AS (SELECT prompt_tokens AS x, output_tokens AS y FROM requests WHERE trace = ?),
                pairs AS (SELECT x, y, count(*)::HUGEINT AS c FROM r GROUP BY x, y),
                cx AS (SELECT x, sum(c) AS c FROM pairs GROUP BY x),
                cy AS (SELECT y, sum(c) AS c FROM pairs GROUP BY y),
                rx AS (SELECT x, (2 * (sum(c) OVER (ORDER BY x) - c) + c + 1)::HUGEINT AS r FROM cx),
                ry AS (SELECT y, (2 * (sum(c) OVER (ORDER BY y) - c) + c + 1)::HUGEINT AS r FROM cy),
                m AS (SELECT p.c, p.x::HUGEINT AS x, p.y::HUGEINT AS y, rx.r AS rx, ry.r AS ry
                      FROM pairs p JOIN rx USING (x) JOIN ry USING (y))
           SELECT sum(c), sum(c * x), sum(c * y), sum(c * x * x), sum(c * y * y), sum(c * x * y),
                  sum(c * rx), sum(c * ry), sum(c * rx * rx), sum(c * ry * ry), sum(c * rx * ry) FROM m""",
        [trace],
    )
    n = int(moments[0])
    return {"n": n, "pearson": _num(_corr(n, *moments[1:6])), "spearman": _num(_corr(n, *moments[6:11]))}


def _corr(n: int, sx, sy, sxx, syy, sxy) -> float | None:
    """Pearson correlation from exact integer moments (None when undefined)."""
    if n < 2:
        return None
    cov = n * int(sxy) - int(sx) * int(sy)
    vx, vy = n * int(sxx) - int(sx) ** 2, n * int(syy) - int(sy) ** 2
    if vx <= 0 or vy <= 0:
        return None
    return cov / math.sqrt(vx * vy)


# ---------------------------------------------------------------- report


def characterize_requests(
    con: duckdb.DuckDBPyConnection, trace: str, lru_capacities_blocks: tuple[int, ...] = (1_000, 10_000, 100_000)
) -> dict:
    """The key numbers of one request trace, JSON-able, for reports and the dashboard.

    Sections: ``counts``, ``interarrival``, ``dispersion`` (list of rows), ``on_off`` (10 s and
    60 s idle thresholds), ``time_patterns``, ``prompt_tokens``, ``output_tokens``,
    ``correlation`` and, for traces with prefix hashes, ``prefix`` (:func:`analysis.prefix.prefix_reuse`
    plus ``lru_hit_rate`` at ``lru_capacities_blocks``); ``prefix`` is None otherwise.
    """
    counts = request_counts(con, trace)
    out = {
        "trace": trace,
        "counts": counts,
        "interarrival": interarrival_stats(con, trace),
        "dispersion": dispersion(con, trace).to_dicts(),
        "on_off": {f"{g:g}s": on_off(con, trace, g) for g in (10.0, 60.0)},
        "time_patterns": time_patterns(con, trace),
        "prompt_tokens": token_stats(con, trace, "prompt_tokens"),
        "output_tokens": token_stats(con, trace, "output_tokens"),
        "correlation": length_correlation(con, trace),
        "prefix": None,
    }
    if counts["requests_with_prefix_hashes"]:
        out["prefix"] = prefix.prefix_reuse(con, trace, lru_capacities_blocks=lru_capacities_blocks)
    return out
