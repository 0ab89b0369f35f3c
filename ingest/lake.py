"""The lake on disk: an exclusive lock, and the atomic swap of staged partitions into place.

Layout: ``lake/<table>/trace=<trace>/part-0.parquet`` and ``lake/_reports/<trace>.json``. A run
stages every file first; :func:`commit` then swaps whole partition folders in under the lock, so a
reader sees either the old trace or the new one, and a failure before the commit changes nothing.
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


def commit(paths: DataPaths, staged: dict[tuple[str, str], Path], reports: dict[str, dict], work: Path) -> None:
    """Swap staged files into the lake and write the traces' reports. Call under :func:`lake_lock`.

    ``staged`` maps (table, trace) to a finished Parquet file. Every partition of a committed trace
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
        for (table, trace), file in sorted(staged.items()):
            live = partition_dir(paths, table, trace)
            fresh = work / "commit" / table / f"trace={trace}"
            fresh.mkdir(parents=True, exist_ok=True)
            os.replace(file, fresh / PART_NAME)
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
