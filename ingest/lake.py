"""The lake on disk: an exclusive lock, and the atomic swap of staged partitions into place.

Layout: ``lake/<table>/trace=<trace>/part-<k>.parquet`` and ``lake/_reports/<trace>.json``. A table
of a trace built from one input (one table plan) is the single file ``part-0.parquet``; one built from
several plans (one per input file, e.g. ITP's ten cluster files) has one part per plan, in plan order,
named so that name order is plan order (:func:`part_name`: ``part-0`` ... ``part-9``, or ``part-00`` ...
``part-10`` for eleven). Readers take ``part-*.parquet`` in name order (:data:`PART_GLOB`).

A run stages every file first; :func:`commit` then swaps whole partition folders in under the lock, so
a reader sees either the old trace or the new one, and a failure before the commit changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.paths import DataPaths

PART_NAME = "part-0.parquet"
"""The file of a single-part partition (and the first part's name whenever there are fewer than 11)."""
PART_GLOB = "part-*.parquet"
"""Every part of a partition folder; sorted by name, the parts come in plan order."""


def part_name(k: int, n: int) -> str:
    """File name of part ``k`` of ``n``: zero-padded to the width of ``n - 1`` so name order is part order."""
    if not 0 <= k < n:
        raise ValueError(f"part {k} of {n}")
    return f"part-{k:0{len(str(n - 1))}d}.parquet"


def partition_parts(paths: DataPaths, table: str, trace: str) -> list[Path]:
    """The part files of one trace of one table, in order (empty if there is none)."""
    return sorted(partition_dir(paths, table, trace).glob(PART_GLOB))


def partition_dir(paths: DataPaths, table: str, trace: str) -> Path:
    """The folder holding one trace of one table."""
    return paths.lake / table / f"trace={trace}"


@contextmanager
def lake_lock(paths: DataPaths) -> Iterator[None]:
    """Hold the exclusive lake lock (blocks until other ingests release it)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def existing_tables(paths: DataPaths, trace: str) -> list[str]:
    """Tables that currently hold a partition for ``trace``."""
    if not paths.lake.is_dir():
        return []
    return sorted(d.name for d in paths.lake.iterdir() if not d.name.startswith("_") and (d / f"trace={trace}").is_dir())


def commit(paths: DataPaths, staged: dict[tuple[str, str], Path | list[Path]], reports: dict[str, dict], work: Path) -> None:
    """Swap staged files into the lake and write the traces' reports. Call under :func:`lake_lock`.

    ``staged`` maps (table, trace) to a finished Parquet file, or to the list of its parts in order
    (named :func:`part_name` in the lake; one part is ``part-0.parquet``). Every partition of a committed trace
    that the run did not produce is removed (the trace is replaced whole). On failure, already
    swapped partitions are rolled back.
    """
    traces = {trace for _, trace in staged}
    backup = work / "backup"
    backup.mkdir(parents=True, exist_ok=True)
    done: list[tuple[Path, Path | None]] = []  # (live dir, its backup or None)
    try:
        for trace in sorted(traces):
            for table in existing_tables(paths, trace):
                if (table, trace) not in staged:
                    live = partition_dir(paths, table, trace)
                    keep = backup / f"{table}__{trace}"
                    os.rename(live, keep)
                    done.append((live, keep))
        for (table, trace), files in sorted(staged.items()):
            live = partition_dir(paths, table, trace)
            fresh = work / "commit" / table / f"trace={trace}"
            fresh.mkdir(parents=True, exist_ok=True)
            parts = [files] if isinstance(files, Path) else list(files)
            if not parts:
                raise ValueError(f"internal error: no staged part for {table}/{trace}")
            for k, file in enumerate(parts):
                os.replace(file, fresh / part_name(k, len(parts)))
            live.parent.mkdir(parents=True, exist_ok=True)
            keep = None
            if live.exists():
                keep = backup / f"{table}__{trace}"
                os.rename(live, keep)
            os.rename(fresh, live)
            done.append((live, keep))
        for trace, report in sorted(reports.items()):
            atomic_write_text(paths.reports / f"{trace}.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    except BaseException:
        for live, keep in reversed(done):
            if live.exists():
                shutil.rmtree(live)
            if keep is not None and keep.exists():
                os.rename(keep, live)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def read_reports(paths: DataPaths) -> dict[str, dict]:
    """Every trace's ingest report, by trace name."""
    if not paths.reports.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(paths.reports.glob("*.json"))}
