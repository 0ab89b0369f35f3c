"""Where the lake, the catalog and the offline trace copies live.

Two environment variables override the defaults:

* ``TRACELAB_DATA``: the data root (``raw/``, ``lake/``, ``catalog.duckdb``); default ``./data``.
* ``TRACELAB_TRACES``: a folder of local trace copies laid out like ``shared/traces``
  (``azure_llm_2023/``, ``philly/`` ...); default: ``../shared/traces`` beside the checkout, if present.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DataPaths:
    """The folders of one data root."""

    root: Path
    """The data root; everything tracelab writes goes below it."""

    @property
    def raw(self) -> Path:
        """Downloads, as fetched from upstream."""
        return self.root / "raw"

    @property
    def lake(self) -> Path:
        """Canonical Parquet: ``lake/<dataset>/trace=<name>/part-0.parquet``."""
        return self.root / "lake"

    @property
    def reports(self) -> Path:
        """One JSON ingest report per trace (rows in/out/quarantined, inputs, checksums)."""
        return self.lake / "_reports"

    @property
    def staging(self) -> Path:
        """Temporary output of runs in progress; never read by the catalog."""
        return self.root / ".staging"

    @property
    def catalog(self) -> Path:
        """The DuckDB catalog file (views over the lake; rebuildable from it)."""
        return self.root / "catalog.duckdb"

    @property
    def lock(self) -> Path:
        """The lock file that serializes lake commits and catalog rebuilds."""
        return self.root / ".lake.lock"


def data_paths(root: str | Path | None = None) -> DataPaths:
    """The data root: ``root`` if given, else ``$TRACELAB_DATA``, else ``./data``."""
    chosen = root or os.environ.get("TRACELAB_DATA") or Path.cwd() / "data"
    return DataPaths(Path(chosen).resolve())


def traces_dir() -> Path | None:
    """The folder of offline trace copies (``$TRACELAB_TRACES`` or ``../shared/traces``), or None."""
    env = os.environ.get("TRACELAB_TRACES")
    if env:
        return Path(env).resolve()
    candidate = REPO_ROOT.parent / "shared" / "traces"
    return candidate if candidate.is_dir() else None
