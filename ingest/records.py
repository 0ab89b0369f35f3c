"""JSON inputs: streaming readers for JSON arrays and JSON Lines, and records -> lazy frame.

JSON has no lazy columnar reader that keeps line numbers and survives a malformed record, so JSON
sources parse records in Python (streaming, one record at a time) into plain dicts holding the
canonical columns plus ``_line``, ``_raw`` and ``_reason``, and turn them into a frame in chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import ijson
import polars as pl

from ingest.errors import FormatError
from ingest.lines import FILE, LINE, RAW, REASON, first_line


def iter_jsonl(path: Path, display: str) -> Iterator[tuple[int, str | None, Any, str | None]]:
    """Yield ``(line, raw, obj, reason)`` per line; ``reason`` says why a line is not a JSON object."""
    first_line(path, display)  # empty file / LFS pointer checks
    with open(path, "rb") as fh:
        for number, data in enumerate(fh, start=1):
            raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
            if not raw.strip():
                yield number, None, None, "blank line"
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield number, raw, None, f"malformed JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(obj, dict):
                yield number, raw, None, f"expected a JSON object, found {type(obj).__name__}"
                continue
            yield number, raw, obj, None


def iter_json_array(path: Path, display: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, item)`` (1-based) for each item of a top-level JSON array, streaming.

    FormatError (naming the file and the byte offset) if the file is not one JSON array or is
    truncated: a structural error means nothing can be trusted, so nothing is ingested.
    """
    head = first_line(path, display).lstrip()
    if not head.startswith("["):
        raise FormatError(f"{display}: expected one JSON array of job objects (file must start with '['), found {head[:40]!r}")
    with open(path, "rb") as fh:
        try:
            for index, item in enumerate(ijson.items(fh, "item", use_float=True), start=1):
                yield index, item
        except ijson.common.IncompleteJSONError as exc:
            raise FormatError(f"{display}: truncated or malformed JSON near byte {fh.tell()}: {exc}") from exc
        except ijson.common.JSONError as exc:
            raise FormatError(f"{display}: malformed JSON near byte {fh.tell()}: {exc}") from exc


def records_frame(records: Iterable[dict], schema: dict[str, pl.DataType], display: str, chunk: int = 100_000) -> pl.LazyFrame:
    """Build a lazy frame from record dicts (canonical columns + ``_line``/``_raw``/``_reason``).

    Records are converted in chunks, so peak memory is the finished frame plus one chunk of dicts.
    """
    full = {**schema, LINE: pl.Int64, RAW: pl.String, REASON: pl.String}
    frames: list[pl.DataFrame] = []
    buf: list[dict] = []
    for rec in records:
        buf.append(rec)
        if len(buf) >= chunk:
            frames.append(pl.DataFrame(buf, schema=full, strict=False))
            buf = []
    if buf or not frames:
        frames.append(pl.DataFrame(buf, schema=full, strict=False))
    df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    return df.lazy().with_columns(pl.lit(display).alias(FILE))


def clip(raw: str, limit: int = 2000) -> str:
    """A raw record for the quarantine table, cut to ``limit`` characters."""
    return raw if len(raw) <= limit else raw[:limit] + "..."
