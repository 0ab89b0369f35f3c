"""Line-level reading of delimited text: every input line becomes a row with its 1-based line number.

Reading lines first, then splitting fields, is what lets a malformed row (too many or too few fields,
a blank line) be quarantined with its exact line number instead of aborting the whole file. Polars
scans the file in streaming batches, so memory stays bounded whatever the file size.

Fast path: most real files are clean, and for them the fixed-layout timestamp parser in
:mod:`ingest.checks` is 2x cheaper than the general one. Plans built inside :func:`fast_path` use it;
it may be *stricter* than the general parser but never more lenient; where it fails it gives the
reason :data:`ingest.checks.FAST_REJECTED`, and the pipeline re-runs a source without it whenever
that reason appears, so the result (rows, reasons, bytes) is always the general path's. Every other
check is the same on both paths, so a fast attempt without that reason already is the result. (Polars' native CSV reader was tried as well and rejected: it reads a
short line's missing fields as empty strings, which would accept rows the robust path rejects.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ingest.errors import FormatError

LINE = "_line"
"""1-based line number in the source file."""
RAW = "_raw"
"""The line as read (CR stripped); null for a blank line."""
REASON = "_reason"
"""Why the row is rejected; null while it is good."""
FILE = "_file"
"""The display name of the source file."""

WRONG_COLUMN_COUNT = "wrong column count"
_UNIT_SEP = "\x1f"  # never appears in the traces: makes the CSV reader return whole lines


@dataclass
class FastPath:
    """The fast-path attempt in progress; parsers record whether they used a fast variant."""

    used: bool = False
    """True once some plan expression took a fast variant (else a robust re-run would change nothing)."""


_FAST: ContextVar[FastPath | None] = ContextVar("tracelab_ingest_fast_path", default=None)


@contextmanager
def fast_path() -> Iterator[FastPath]:
    """Build plans for the fast path inside this block (the pipeline's first attempt)."""
    state = FastPath()
    token = _FAST.set(state)
    try:
        yield state
    finally:
        _FAST.reset(token)


def in_fast_path() -> FastPath | None:
    """The fast-path attempt plans are being built for, or None on the robust path."""
    return _FAST.get()


def first_line(path: Path, display: str) -> str:
    """The first line of ``path`` without its terminator; FormatError if the file is empty."""
    with open(path, "rb") as fh:
        head = fh.readline(1 << 20)
    if not head.strip():
        raise FormatError(f"{display}: the file is empty (expected a header or data rows)")
    if head.startswith(b"version https://git-lfs"):
        raise FormatError(
            f"{display}: this is a Git LFS pointer, not the data; run 'git lfs pull' or use 'ingest fetch'"
        )
    return head.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")


def check_header(path: Path, display: str, expected: tuple[str, ...], separator: str = ",") -> None:
    """FormatError unless line 1 holds exactly ``expected`` (fields compared after stripping spaces)
    and at least one line follows it."""
    found = tuple(f.strip() for f in first_line(path, display).split(separator))
    if found != expected:
        raise FormatError(
            f"{display}: line 1: expected header {separator.join(expected)!r}, found {separator.join(found)!r}"
        )
    with open(path, "rb") as fh:
        fh.readline()
        if not fh.read(4096).strip():
            raise FormatError(f"{display}: the file has a header but no data rows")


def check_headerless(path: Path, display: str, columns: tuple[str, ...], separator: str = ",") -> None:
    """FormatError if line 1 of a headerless file looks like a header (it names the columns)."""
    fields = first_line(path, display).split(separator)
    if fields and fields[0].strip() == columns[0]:
        raise FormatError(
            f"{display}: line 1 is a header row ({fields[0]!r}...), but this upstream file is headerless; "
            f"expected data rows with {len(columns)} fields: {separator.join(columns)}"
        )


def scan_lines(path: Path, display: str, *, skip_header: bool) -> pl.LazyFrame:
    """One row per line after the optional header: ``_file``, ``_line`` (1-based), ``_raw``, ``_reason``."""
    offset = 2 if skip_header else 1
    lf = pl.scan_csv(
        path,
        has_header=False,
        skip_rows=1 if skip_header else 0,
        separator=_UNIT_SEP,
        quote_char=None,
        schema={RAW: pl.String},
        row_index_name="_idx",
        encoding="utf8-lossy",
    )
    return lf.select(
        pl.lit(display).alias(FILE),
        (pl.col("_idx").cast(pl.Int64) + offset).alias(LINE),
        pl.col(RAW),
        pl.when(pl.col(RAW).is_null())
        .then(pl.lit("blank line"))
        .otherwise(pl.lit(None, pl.String))
        .alias(REASON),
    )


def split_fields(
    lf: pl.LazyFrame,
    columns: tuple[str, ...],
    *,
    separator: str = ",",
    trailing_separator: bool = False,
    strip: bool = False,
) -> pl.LazyFrame:
    """Split ``_raw`` into one String column per name; a line with another field count is rejected.

    ``trailing_separator``: every line ends in one extra, empty field (Philly gpu_util).
    ``strip``: strip spaces around every field (Philly machine list).
    """
    n = len(columns) + (1 if trailing_separator else 0)
    names = [*columns, "_trailing"] if trailing_separator else list(columns)
    parts = pl.col(RAW).str.splitn(separator, n + 1).struct.rename_fields([*names, "_extra"])
    lf = lf.with_columns(parts.alias("_parts")).unnest("_parts")
    bad = pl.col("_extra").is_not_null() | pl.col(names[-1]).is_null()
    if trailing_separator:
        bad = bad | (pl.col("_trailing") != "")
    lf = lf.with_columns(
        pl.when(pl.col(REASON).is_null() & bad)
        .then(pl.lit(f"{WRONG_COLUMN_COUNT}: expected {n} fields"))
        .otherwise(pl.col(REASON))
        .alias(REASON)
    )
    if strip:
        lf = lf.with_columns([pl.col(c).str.strip_chars() for c in columns])
    drop = ["_extra", "_trailing"] if trailing_separator else ["_extra"]
    return lf.drop(drop)


def explain_column_count(bad: pl.LazyFrame, separator: str = ",") -> pl.LazyFrame:
    """Append how many fields a 'wrong column count' row had (run on the rejected rows only: cheap)."""
    found = pl.col(RAW).str.count_matches(separator, literal=True) + 1
    return bad.with_columns(
        pl.when(pl.col(REASON).str.starts_with(WRONG_COLUMN_COUNT))
        .then(pl.format("{}, found {}", pl.col(REASON), found))
        .otherwise(pl.col(REASON))
        .alias(REASON)
    )

