"""Row checks: typed parsing of raw string fields, and the reasons a row is quarantined.

Every helper is a pure LazyFrame -> LazyFrame step (or an expression builder) that fills ``_reason``
only where it is still null, so a row's reason is the *first* check it fails, in declared order.
Time values are produced as absolute epoch microseconds (Int64); the pipeline rebases them to
seconds since the trace origin once the origin is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import polars as pl

from ingest.lines import LINE, REASON, in_fast_path

FAST_REJECTED = "not read by a fast parser"
"""Reason given on the fast path where a fast parser fails; its presence sends the source to the
robust path (see :mod:`ingest.lines`), so it never reaches the lake."""

Check = tuple[pl.Expr, "str | pl.Expr"]
"""(condition that means the row is bad, reason text or expression)."""


def reject_if(lf: pl.LazyFrame, *checks: Check) -> pl.LazyFrame:
    """Set ``_reason`` to the first failing check's reason, for rows that have no reason yet."""
    if not checks:
        return lf
    chain = pl.when(pl.col(REASON).is_not_null()).then(pl.col(REASON))
    for cond, reason in checks:
        chain = chain.when(cond).then(reason if isinstance(reason, pl.Expr) else pl.lit(reason))
    return lf.with_columns(chain.otherwise(pl.lit(None, pl.String)).alias(REASON))


def _blank(raw: str) -> pl.Expr:
    return pl.col(raw).is_null() | (pl.col(raw) == "")


def is_blank(col: str) -> pl.Expr:
    """True where a text field is null, empty or only spaces."""
    return pl.col(col).is_null() | (pl.col(col).str.strip_chars() == "")


def require(lf: pl.LazyFrame, *cols: str) -> pl.LazyFrame:
    """Reject rows where any of ``cols`` is blank ("missing <col>", the first such column)."""
    return reject_if(lf, *[(is_blank(c), f"missing {c}") for c in cols])


def _quoted(raw: str) -> pl.Expr:
    return pl.col(raw).str.slice(0, 60)


_INT_RANGE = {pl.Int8: 2**7, pl.Int16: 2**15, pl.Int32: 2**31, pl.Int64: 2**63}


def parse_number(
    lf: pl.LazyFrame,
    raw: str,
    out: str,
    *,
    dtype: pl.DataType = pl.Float64,
    required: bool = True,
    null_values: Sequence[str] = (),
    min_value: float | None = None,
) -> pl.LazyFrame:
    """Parse column ``raw`` into ``out`` (float-formatted integers such as ``4550879.0`` are accepted).

    Rejects: missing (when required), unparseable, NaN/inf, non-integral or out-of-range values for
    integer dtypes, values below ``min_value``. ``null_values`` (e.g. ``NA``) read as null without
    rejection. Fields are not stripped: split with ``strip=True`` where upstream pads them.
    """
    text = pl.col(raw)
    is_null = _blank(raw)
    for nv in null_values:
        is_null = is_null | (text == nv)
    checks: list[Check] = [(is_null, f"missing {raw}")] if required else []
    attempt = in_fast_path()
    if dtype.is_integer() and attempt is not None:
        # Fast path: one float cast. Integral values below 2**53 (and the dtype's range), '7', '7.0'
        # and '1e3' alike, are read exactly; anything else fails here and sends the source to the
        # robust path below, which parses it as documented.
        attempt.used = True
        as_float = text.cast(pl.Float64, strict=False)
        bound = float(min(_INT_RANGE.get(dtype, 2**63), 2**53))
        exact = (as_float == as_float.floor()) & (as_float.abs() < bound)
        lf = lf.with_columns(pl.when(~is_null & exact).then(as_float.cast(dtype, strict=False)).alias(out))
        checks.append((~is_null & pl.col(out).is_null(), FAST_REJECTED))
        if min_value is not None:
            checks.append(_below(raw, out, min_value))
        return reject_if(lf, *checks)
    as_float = text.cast(pl.Float64, strict=False)
    checks.append((~is_null & as_float.is_null(), pl.format(f"unparseable {raw} '{{}}'", _quoted(raw))))
    checks.append((~is_null & (as_float.is_nan() | as_float.is_infinite()), f"NaN or infinite {raw}"))
    if dtype.is_integer():
        bound = float(_INT_RANGE.get(dtype, 2**63))
        value = pl.coalesce(text.cast(pl.Int64, strict=False), as_float.cast(pl.Int64, strict=False))
        value = value.cast(dtype, strict=False)
        checks.append((~is_null & (as_float != as_float.floor()), pl.format(f"non-integer {raw} '{{}}'", _quoted(raw))))
        checks.append((~is_null & ((as_float < -bound) | (as_float >= bound)),
                       pl.format(f"out-of-range {raw} '{{}}' (expected a {dtype} integer)", _quoted(raw))))
    else:
        value = as_float.cast(dtype)
    lf = lf.with_columns(pl.when(is_null).then(None).otherwise(value).alias(out))
    if min_value is not None:
        checks.append(_below(raw, out, min_value))
    return reject_if(lf, *checks)


def _below(raw: str, out: str, min_value: float) -> Check:
    if min_value == 0:
        return pl.col(out) < 0, pl.format(f"negative {raw} '{{}}'", _quoted(raw))
    return pl.col(out) < min_value, pl.format(f"{raw} below {min_value} '{{}}'", _quoted(raw))


def parse_time(
    lf: pl.LazyFrame,
    raw: str,
    out: str,
    *,
    fmt: str,
    expected: str,
    time_zone: str | None = None,
    required: bool = True,
    null_values: Sequence[str] = (),
) -> pl.LazyFrame:
    """Parse a wall-clock timestamp column into absolute epoch microseconds (Int64) in ``out``.

    ``fmt`` is a chrono format (``%.f`` accepts 0-9 fractional digits, truncated to microseconds).
    ``time_zone`` localizes naive values (DST: an ambiguous hour resolves to its first occurrence, a
    nonexistent time is rejected); None keeps naive values as if UTC. ``expected`` is the human form
    quoted in rejections. On the fast path (:func:`ingest.lines.fast_path`) the ISO-like layouts use
    a fixed-position parser instead, which accepts a subset of what ``fmt`` accepts.
    """
    text = pl.col(raw)
    is_null = _blank(raw)
    for nv in null_values:
        is_null = is_null | (text == nv)
    attempt = in_fast_path()
    fast = _FAST_LAYOUTS.get(fmt) if attempt is not None else None
    if fast is not None:
        attempt.used = True
        epoch_us = _fixed_layout_us(text, *fast, time_zone=time_zone)
    else:
        dt = text.str.to_datetime(fmt, strict=False, time_unit="us", cache=False)
        if time_zone is not None:
            dt = dt.dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
        epoch_us = dt.dt.epoch("us")
    lf = lf.with_columns(pl.when(is_null).then(None).otherwise(epoch_us).alias(out))
    checks: list[Check] = []
    if required:
        checks.append((is_null, f"missing {raw}"))
    unparseable = FAST_REJECTED if fast is not None else pl.format(
        f"unparseable {raw} '{{}}' (expected {expected})", _quoted(raw))
    checks.append((~is_null & pl.col(out).is_null(), unparseable))
    return reject_if(lf, *checks)


_FAST_LAYOUTS: dict[str, tuple[str, bool, str]] = {
    "%Y-%m-%d %H:%M:%S": (" ", False, ""),
    "%Y-%m-%d %H:%M:%S%.f": (" ", True, ""),
    "%Y-%m-%d %H:%M:%S%.f%:z": (" ", True, "+00:00"),
    "%Y-%m-%dT%H:%M:%S%.fZ": ("T", True, "Z"),
}
"""Formats with a fixed-position fast parser: (date/time separator, optional fraction, literal suffix).
``%:z`` is served only for ``+00:00`` (any other offset sends the source to the general parser)."""


_OFFSET_WINDOW = (datetime(2000, 1, 1), datetime(2040, 1, 1))


@lru_cache(maxsize=None)
def constant_offset(time_zone: str) -> tuple[int, int, int] | None:
    """(start, end, offset) in naive local microseconds if ``time_zone`` keeps one UTC offset over
    2000-2040 (Asia/Shanghai: +08:00), else None.

    Sampled daily: zones never switch offset and back within a day. Inside the window, localizing is
    then a subtraction (Helios, 3 times per row: replace_time_zone ran on one thread, 1 of 13 CPU s).
    """
    zone = ZoneInfo(time_zone)
    start, end = _OFFSET_WINDOW
    offsets = {zone.utcoffset(start + timedelta(days=d)) for d in range((end - start).days + 1)}
    if len(offsets) != 1:
        return None
    epoch = datetime(1970, 1, 1)
    to_us = lambda t: (t - epoch) // timedelta(microseconds=1)  # noqa: E731
    return to_us(start), to_us(end), offsets.pop() // timedelta(microseconds=1)


def _fixed_layout_us(s: pl.Expr, sep: str, fraction: bool, suffix: str, *, time_zone: str | None) -> pl.Expr:
    """Epoch microseconds of ``YYYY-MM-DD<sep>HH:MM:SS[.f{1,9}]<suffix>``, null for anything else."""
    whole = 19 + len(suffix)
    n = s.str.len_bytes()
    # cache=True: parse each distinct second once. Azure 2024 has ~45 requests a second (27.3 M rows:
    # 1-2 of 20 CPU s saved); on mostly distinct values (Helios job times) it costs about nothing.
    base = s.str.slice(0, 19).str.to_datetime(f"%Y-%m-%d{sep}%H:%M:%S", strict=False, time_unit="us", cache=True)
    base_us = base.dt.epoch("us")
    if time_zone is not None:
        fixed = constant_offset(time_zone)
        if fixed is None:
            base_us = base.dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null").dt.epoch("us")
        else:  # no transition in the window: local - offset, and null (the general parser) outside it
            lo_us, hi_us, offset_us = fixed
            base_us = pl.when(base_us.is_between(lo_us, hi_us, closed="left")).then(base_us - offset_us)
    ok = n == whole
    value = base_us
    if fraction:
        digits_n = n - whole - 1
        digits = s.str.slice(20, digits_n.clip(0, 9)).cast(pl.UInt64, strict=False).cast(pl.Int64)
        frac_us = (
            pl.when(digits_n <= 6)
            .then(digits * pl.lit(10, pl.Int64).pow(6 - digits_n.clip(1, 6)))
            .otherwise(digits // pl.lit(10, pl.Int64).pow(digits_n.clip(6, 9) - 6))
        )
        has_frac = (s.str.slice(19, 1) == ".") & digits_n.is_between(1, 9) & digits.is_not_null()
        ok = ok | has_frac
        value = pl.when(n == whole).then(base_us).otherwise(base_us + frac_us)
    if suffix:
        ok = ok & s.str.ends_with(suffix)
    return pl.when(ok).then(value)


def seconds_to_us(expr: pl.Expr) -> pl.Expr:
    """Float seconds to integer microseconds (rounded), the staging representation of times."""
    return (expr * 1_000_000).round(0).cast(pl.Int64)


def map_status(lf: pl.LazyFrame, raw: str, out: str, mapping: Mapping[str, str]) -> pl.LazyFrame:
    """Map upstream status values to the canonical vocabulary; a missing or unknown value rejects the row.

    A when/then chain, not ``replace_strict``: streaming a 10 M-row table, peak memory was 0.45 GB
    instead of 1.07 GB.
    """
    known = list(mapping)
    chain = pl.when(pl.lit(False)).then(pl.lit(None, pl.String))
    for value, canonical in mapping.items():
        chain = chain.when(pl.col(raw) == value).then(pl.lit(canonical))
    lf = lf.with_columns(chain.otherwise(pl.lit(None, pl.String)).alias(out))
    return reject_if(
        lf,
        (_blank(raw), f"missing {raw}"),
        (pl.col(out).is_null(), pl.format(f"unknown {raw} '{{}}' (expected one of {', '.join(known)})", _quoted(raw))),
    )


def reject_duplicates(lf: pl.LazyFrame, keys: Sequence[str], what: str) -> pl.LazyFrame:
    """Reject every good row whose key was already taken by an earlier good row (the first one wins).

    Rows rejected for other reasons do not claim their key. Run this after every other check.
    """
    ok = pl.col(REASON).is_null()
    first = pl.struct([*keys, ok.alias("_ok")]).is_first_distinct()
    key_text = pl.concat_str([pl.col(k).cast(pl.String) for k in keys], separator="/", ignore_nulls=True)
    return lf.with_columns(
        pl.when(ok & ~first)
        .then(pl.format(f"duplicate {what} '{{}}'", key_text))
        .otherwise(pl.col(REASON))
        .alias(REASON)
    )


def reject_order(lf: pl.LazyFrame, first: str, second: str, what: str) -> pl.LazyFrame:
    """Reject rows where both times exist and ``second`` is before ``first`` (e.g. end before start)."""
    return reject_if(lf, (pl.col(second) < pl.col(first), what))


def reject_duplicates_prepass(
    base: pl.LazyFrame,
    checked: Callable[[pl.LazyFrame], pl.LazyFrame],
    keys: Mapping[str, pl.Expr],
    what: str,
) -> pl.LazyFrame:
    """``reject_duplicates(checked(base), keys, what)``, decided before the main pass so that it streams.

    :func:`reject_duplicates` is a whole-table operation: with it, Polars runs the entire plan of a
    big file in memory on one thread (Helios, 3.4 M rows: 14.5 CPU s in 14.4 s). Here, at plan time:

    1. one pass over ``base`` (fields split, nothing parsed) finds the key hashes that occur more than
       once among rows with a full key: a superset of the keys repeated among good rows;
    2. one pass parses and checks only the rows holding such a key (the filter sits below the checks,
       so the other rows are never parsed) and decides, with the same rule, which good rows lose.

    The main plan then rejects those lines through a join on the line number, streaming. ``keys``
    maps each key column of ``checked``'s output to the expression computing it from ``base``'s columns (the same
    value). Reasons and rows are exactly :func:`reject_duplicates`' (tests compare the two).
    """
    names = list(keys)
    full = pl.all_horizontal([e.is_not_null() for e in keys.values()])
    hashed = pl.struct([e.alias(k) for k, e in keys.items()]).hash(0)  # a collision only adds candidates
    repeated = (
        base.filter(full).select(hashed.alias("_h")).group_by("_h").agg(pl.len().alias("_n"))
        .filter(pl.col("_n") > 1).collect(engine="streaming")["_h"]
    )
    lf = checked(base)
    if repeated.is_empty():
        return lf
    candidates = (
        checked(base.filter(hashed.is_in(repeated.implode())))
        .select(*names, LINE, REASON).collect(engine="streaming").sort(LINE)
    )
    decided = reject_duplicates(candidates.lazy(), names, what).collect()
    losers = decided.filter(candidates.get_column(REASON).is_null() & decided.get_column(REASON).is_not_null())
    if losers.is_empty():
        return lf
    # A join, not replace_strict: Polars streams the join, but runs a replace_strict plan in memory.
    lost = losers.select(LINE, pl.col(REASON).alias("_dup")).lazy()
    return lf.join(lost, on=LINE, how="left", maintain_order="left").with_columns(
        pl.coalesce(REASON, "_dup").alias(REASON)
    ).drop("_dup")
