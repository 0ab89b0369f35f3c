"""Writing canonical Parquet: exactly the canonical Arrow schema, fixed-size row groups, rebased times.

Row groups are cut at fixed row counts whatever the sizes of the batches handed in, so a file's
bytes depend only on its rows: re-running an ingest gives identical files.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.schema import Table

ROW_GROUP_ROWS = 1 << 20
"""Rows per Parquet row group."""


def rebase(tbl: pa.Table, table: Table, origin_us: int | None) -> pa.Table:
    """Staged epoch microseconds -> float seconds since ``origin_us`` in every time column."""
    for col in table.time_columns:
        values = tbl.column(col)
        if origin_us is not None:
            values = pc.divide(pc.cast(pc.subtract(values, origin_us), pa.float64()), 1e6)
        tbl = tbl.set_column(tbl.schema.get_field_index(col), col, values)
    return tbl


def column_encodings(schema: pa.Schema) -> tuple[list[str], dict[str, str]]:
    """(dictionary-encoded columns, explicit encodings of the others) for a canonical schema.

    Strings get a dictionary (traces, users, statuses repeat). Integers get DELTA_BINARY_PACKED and
    floats BYTE_STREAM_SPLIT: ids, counts and times are not worth a dictionary (it is abandoned after
    a page anyway), and these encodings leave zstd far less to do. Measured on 27.3 M Azure 2024 rows:
    request_id 28 MB -> 0.14 MB and 0.85 -> 0.23 CPU s, arrival_s 186 -> 119 MB, prompt_tokens
    0.95 -> 0.34 CPU s; DuckDB, Polars and pyarrow read both encodings.
    """
    dictionary, encodings = [], {}
    for f in schema:
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            dictionary.append(f.name)
        elif pa.types.is_integer(f.type):
            encodings[f.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(f.type):
            encodings[f.name] = "BYTE_STREAM_SPLIT"
    return dictionary, encodings


class CanonicalWriter:
    """Streams Arrow tables of one canonical table into a Parquet file in fixed-size row groups.

    Rebasing, casting and encoding run on a background thread (pyarrow releases the GIL), so the
    reader keeps parsing while a row group is compressed; tables are written in the order added.
    """

    def __init__(self, dest: Path, table: Table, metadata: dict[str, str], origin_us: int | None,
                 constants: dict[str, str] | None = None) -> None:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): v.encode() for k, v in metadata.items()})
        self.table = table
        self.schema = table.schema.with_metadata(meta)
        self.origin_us = origin_us
        self.constants = dict(constants or {})
        """String columns filled with one value here instead of being handed in (the trace)."""
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        dict_cols, encodings = column_encodings(table.schema)
        self._writer = pq.ParquetWriter(dest, self.schema, compression="zstd", use_dictionary=dict_cols,
                                        column_encoding=encodings, write_statistics=True)
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"write-{table.name}", daemon=True)
        self._thread.start()

    def add(self, tbl: pa.Table) -> None:
        """Queue rows holding the table's columns (less the constant ones), times as staged epoch microseconds."""
        if self._error is not None:
            raise self._error
        if tbl.num_rows:
            self._queue.put(tbl)

    def _run(self) -> None:
        while (tbl := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(tbl)
                except BaseException as exc:  # noqa: BLE001 - handed to the producer by add()/close()
                    self._error = exc

    def _write(self, tbl: pa.Table) -> None:
        for name, value in self.constants.items():
            tbl = tbl.append_column(name, pa.repeat(pa.scalar(value, pa.string()), tbl.num_rows))
        self._pending.append(rebase(tbl.select(self.table.columns), self.table, self.origin_us).cast(self.schema))
        self._pending_rows += tbl.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            full = pa.concat_tables(self._pending)
            self._writer.write_table(full.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
            rest = full.slice(ROW_GROUP_ROWS)
            self._pending, self._pending_rows = [rest], rest.num_rows
            self.rows += ROW_GROUP_ROWS

    def close(self) -> int:
        """Flush and close; returns the number of rows written (re-raises a write error)."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._writer.close()
            raise self._error
        if self._pending_rows:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
            self.rows += self._pending_rows
            self._pending, self._pending_rows = [], 0
        self._writer.close()
        return self.rows


def copy_canonical(src: Path, dest: Path, table: Table, metadata: dict[str, str], origin_us: int | None = None) -> int:
    """Rewrite a staged Parquet file as canonical ``dest``, batch by batch; returns the row count."""
    writer = CanonicalWriter(dest, table, metadata, origin_us)
    try:
        for batch in pq.ParquetFile(src).iter_batches(batch_size=ROW_GROUP_ROWS, columns=table.columns):
            writer.add(pa.Table.from_batches([batch]))
    finally:
        rows = writer.close()
    return rows
