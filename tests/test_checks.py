"""Row checks in isolation: each rejection reason, and the first-failing-check rule."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import ingest.checks as C
from ingest.checks import parse_number, parse_time, reject_duplicates, reject_duplicates_prepass
from ingest.lines import fast_path
from ingest.lines import LINE, REASON


def frame(**cols: list) -> pl.LazyFrame:
    n = len(next(iter(cols.values())))
    return pl.LazyFrame({**cols, REASON: pl.Series([None] * n, dtype=pl.String)})


def test_parse_number_reasons() -> None:
    raw = ["7", "7.0", "", "x", "NaN", "1.5", "-3", "99999999999", "1e30", "NA"]
    out = parse_number(frame(v=raw), "v", "n", dtype=pl.Int32, min_value=0, null_values=("NA",)).collect()
    assert out["n"].to_list() == [7, 7, None, None, None, 1, -3, None, None, None]
    assert out[REASON].to_list() == [
        None,
        None,
        "missing v",
        "unparseable v 'x'",
        "NaN or infinite v",
        "non-integer v '1.5'",
        "negative v '-3'",
        "out-of-range v '99999999999' (expected a Int32 integer)",
        "out-of-range v '1e30' (expected a Int32 integer)",
        "missing v",  # NA is null, and the column is required
    ]


def test_int64_keeps_full_precision() -> None:
    out = parse_number(frame(v=["9007199254740993"]), "v", "n", dtype=pl.Int64).collect()
    assert out["n"].item() == 9007199254740993  # not rounded through float64


def test_parse_time_dst_policy() -> None:
    raw = ["2017-11-05 01:30:00", "2017-03-12 02:30:00", "2017-11-05 00:30:00"]
    out = parse_time(frame(t=raw), "t", "us", fmt="%Y-%m-%d %H:%M:%S", expected="YYYY-MM-DD HH:MM:SS",
                     time_zone="America/Los_Angeles").collect()
    # ambiguous 01:30 -> first occurrence (PDT, UTC-7); 02:30 on spring-forward day does not exist.
    assert out["us"].to_list()[0] == 1509870600_000000
    assert out["us"].to_list()[0] - out["us"].to_list()[2] == 3600_000000
    assert out[REASON].to_list()[1] == "unparseable t '2017-03-12 02:30:00' (expected YYYY-MM-DD HH:MM:SS)"


def test_first_good_row_wins_and_rejected_rows_claim_nothing() -> None:
    lf = pl.LazyFrame({"k": ["a", "a", "b", "b", "a"], REASON: [None, None, "bad", None, None]})
    out = reject_duplicates(lf, ["k"], "id").collect()
    assert out[REASON].to_list() == [None, "duplicate id 'a'", "bad", None, "duplicate id 'a'"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=40))
def test_duplicates_match_a_plain_python_model(rows: list[tuple[str, bool]]) -> None:
    lf = pl.LazyFrame({"k": [k for k, _ in rows], REASON: [None if ok else "bad" for _, ok in rows]},
                      schema={"k": pl.String, REASON: pl.String})
    got = reject_duplicates(lf, ["k"], "id").collect()[REASON].to_list()
    seen: set[str] = set()
    want = []
    for k, ok in rows:
        if not ok:
            want.append("bad")
        elif k in seen:
            want.append(f"duplicate id '{k}'")
        else:
            seen.add(k)
            want.append(None)
    assert got == want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", " a", "b ", "", None, "c"]), st.sampled_from(["1", "x", "2", None])),
                max_size=40))
def test_prepass_dedup_equals_the_whole_table_one(rows: list[tuple[str | None, str | None]]) -> None:
    """Keys padded with spaces (stripped by the checks), blank and missing keys, rows that a check
    rejects (value 'x': unparseable; missing value): the two-pass dedup gives exactly the same rows."""
    base = pl.LazyFrame(
        {LINE: list(range(1, len(rows) + 1)), "key_raw": [k for k, _ in rows], "v": [v for _, v in rows],
         REASON: [None] * len(rows)},
        schema={LINE: pl.Int64, "key_raw": pl.String, "v": pl.String, REASON: pl.String},
    )

    def checked(lf: pl.LazyFrame) -> pl.LazyFrame:
        lf = C.require(lf, "key_raw")
        lf = parse_number(lf, "v", "value", dtype=pl.Int64)
        return lf.with_columns(pl.col("key_raw").str.strip_chars().alias("k"))

    want = reject_duplicates(checked(base), ["k"], "id").collect()
    got = reject_duplicates_prepass(base, checked, {"k": pl.col("key_raw").str.strip_chars()}, "id").collect()
    assert got.equals(want)


STAMPS = st.builds(
    lambda y, mo, d, h, mi, sec, frac, tail, sep: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{sec:02d}{frac}{tail}",
    st.integers(1970, 2030), st.integers(1, 13), st.integers(1, 31), st.integers(0, 24), st.integers(0, 60),
    st.integers(0, 60), st.sampled_from(["", ".", ".5", ".123", ".020521", ".9799600", ".123456789", ".1234567890", ".x1"]),
    st.sampled_from(["", "+00:00", "+01:00", "Z", " "]), st.sampled_from([" ", "T"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STAMPS, min_size=1, max_size=20), st.sampled_from(sorted(C._FAST_LAYOUTS)),
       st.sampled_from([None, "America/Los_Angeles", "Asia/Shanghai"]))
def test_fast_timestamp_parser_is_never_more_lenient(stamps: list[str], fmt: str, zone) -> None:
    """On every input the fast parser gives the general parser's value, or rejects the row."""
    kwargs = dict(fmt=fmt, expected="x", time_zone=zone)
    general = parse_time(frame(t=stamps), "t", "us", **kwargs).collect()
    with fast_path():
        fast = parse_time(frame(t=stamps), "t", "us", **kwargs).collect()
    for g, f in zip(general["us"].to_list(), fast["us"].to_list()):
        assert f is None or f == g


def test_fast_timestamp_parser_accepts_the_upstream_layouts() -> None:
    cases = {
        "%Y-%m-%d %H:%M:%S%.f": ["2023-11-16 18:17:03.9799600", "2023-11-16 18:17:04"],
        "%Y-%m-%d %H:%M:%S%.f%:z": ["2024-05-12 00:00:00.001163+00:00", "2024-05-12 00:00:01+00:00"],
        "%Y-%m-%dT%H:%M:%S%.fZ": ["2024-10-15T12:00:00.269Z", "2024-10-15T12:00:02Z"],
        "%Y-%m-%d %H:%M:%S": ["2017-10-03 00:08:00"],
    }
    for fmt, stamps in cases.items():
        general = parse_time(frame(t=stamps), "t", "us", fmt=fmt, expected="x").collect()["us"].to_list()
        with fast_path():
            fast = parse_time(frame(t=stamps), "t", "us", fmt=fmt, expected="x").collect()["us"].to_list()
        assert fast == general and None not in fast


def test_constant_offset_zone_is_localized_like_the_general_parser() -> None:
    """Asia/Shanghai (Helios) keeps +08:00 since 1991: the fast path subtracts it inside 2000-2040 and
    leaves times outside that window (1990 had DST there) to the general parser."""
    assert C.constant_offset("America/Los_Angeles") is None
    stamps = ["2020-04-01 00:00:06", "2000-01-01 00:00:00", "2039-12-31 23:59:59", "1990-07-01 12:00:00",
              "2040-01-01 00:00:00", "2020-02-29 08:00:00"]
    kwargs = dict(fmt="%Y-%m-%d %H:%M:%S", expected="x", time_zone="Asia/Shanghai")
    general = parse_time(frame(t=stamps), "t", "us", **kwargs).collect()["us"].to_list()
    with fast_path():
        fast = parse_time(frame(t=stamps), "t", "us", **kwargs).collect()["us"].to_list()
    assert fast[:3] == general[:3] and fast[5] == general[5] and None not in general
    assert fast[3] is None and fast[4] is None  # outside the window: sent to the general parser
    assert general[0] == 1585670406 * 1_000_000  # 2020-04-01 00:00:06 +08:00


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-10**20, 10**20).map(str), st.sampled_from(["", "7.0", "1e3", "NaN", "+5", " 5", "x", "-0"])),
                min_size=1, max_size=20),
       st.sampled_from([pl.Int32, pl.Int64]), st.sampled_from([None, 0]))
def test_fast_integer_parser_is_never_more_lenient(values: list[str], dtype, min_value) -> None:
    kwargs = dict(dtype=dtype, min_value=min_value, required=False)
    robust = parse_number(frame(v=values), "v", "n", **kwargs).collect()
    with fast_path():
        fast = parse_number(frame(v=values), "v", "n", **kwargs).collect()
    for r_val, r_why, f_val, f_why in zip(robust["n"], robust[REASON], fast["n"], fast[REASON]):
        if f_why is None:  # accepted on the fast path: the robust path accepts it with the same value
            assert r_why is None and r_val == f_val
