"""What a source is: its upstream files, its logical inputs, and a pure plan from inputs to tables.

A source's :meth:`Source.plan` returns :class:`TablePlan` objects: lazy frames in canonical column
order, plus the bookkeeping columns ``_file``, ``_line``, ``_raw`` and ``_reason``. It reads nothing
eagerly (except small JSON inputs that have no lazy reader) and writes nothing: the pipeline
materializes, validates and commits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import polars as pl

from ingest.inputs import InputSet, InputSpec
from ingest.schema import Table


@dataclass(frozen=True)
class RemoteFile:
    """A file as published upstream."""

    name: str
    """File name as saved under ``data/raw/<source>/``."""
    url: str
    """Official download URL."""
    sha256: str | None = None
    """Published sha256 (None where upstream publishes none)."""
    size_bytes: int | None = None
    """Expected size, where known (checked after download)."""

    def __post_init__(self) -> None:
        if not self.url.startswith("https://"):
            raise ValueError(f"{self.name}: download URLs must be https, got {self.url!r}")


@dataclass(frozen=True)
class TablePlan:
    """Rows bound for one canonical table and trace."""

    table: Table
    """The canonical table the good rows go to."""
    trace: str
    """Trace name (the lake partition)."""
    frame: pl.LazyFrame
    """Canonical columns (times as absolute epoch microseconds) plus ``_file``, ``_line``, ``_raw``, ``_reason``."""
    derived: bool = False
    """Rows derived from another plan's rows (Philly attempts): no quarantine and no rows-in count of their own."""
    unique_on: tuple[str, ...] = ()
    """Fast path only: ``frame`` leaves out a whole-table duplicate check on these columns, and the
    writer verifies instead that no two good rows share them (by hash); if some do (or two hashes
    collide), the pipeline re-runs the source on the robust path, which has the check. Clean files
    then cost no dedup pass at all."""
    origin_hint: pl.LazyFrame | None = None
    """Where the pipeline guesses the trace origin: the minimum origin time over the first rows (with
    ``_reason`` null) of this frame. Give it where ``frame`` has whole-table steps (dedup, sort, joins)
    that would make even its first rows cost a full in-memory pass: the frame before those steps. A
    wrong guess costs a rewrite, never a wrong result. None: ``frame`` itself."""


@dataclass(frozen=True)
class TimeBase:
    """How a trace's absolute times are to be read (recorded in Parquet metadata and the catalog)."""

    time_zone: str
    """IANA zone of the wall clock (``UTC``, ``America/Los_Angeles``, ``Asia/Shanghai``) or ``naive``."""
    epoch: str
    """What the staged microseconds count from: ``unix`` or a description (e.g. PAI's shifted seconds)."""


class Source(ABC):
    """One upstream trace family. Subclasses set the class attributes and implement :meth:`plan`."""

    name: str
    """Registry name used on the command line, e.g. ``azure_llm_2023``."""
    title: str
    """Human title, with the paper it comes from."""
    local_dir: str
    """Sub-folder of the offline traces folder (``$TRACELAB_TRACES``) holding local copies."""
    inputs: tuple[InputSpec, ...]
    """The logical input files."""
    downloads: tuple[RemoteFile, ...] = ()
    """Official files ``ingest fetch`` downloads (empty where no direct URL exists)."""
    extra_checksums: dict[str, str] = {}
    """Published sha256 of files other than the downloads (e.g. the CSVs inside PAI archives)."""
    time_base: TimeBase = TimeBase("UTC", "unix")
    """How absolute times are to be read."""
    derived: bool = False
    """True for sources that are derived tables, not upstream originals (named as such in the catalog)."""

    @property
    def checksums(self) -> dict[str, str]:
        """Every published sha256 by file name."""
        sums = {f.name: f.sha256 for f in self.downloads if f.sha256}
        sums.update(self.extra_checksums)
        return sums

    @abstractmethod
    def plan(self, inputs: InputSet) -> list[TablePlan]:
        """Lazy table plans for the inputs that were found."""


class Registry:
    """Sources by name; registering a name twice is an error."""

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}

    def register(self, source: Source) -> Source:
        """Add ``source``; ValueError if its name is taken."""
        if source.name in self._sources:
            raise ValueError(f"source {source.name!r} is already registered")
        self._sources[source.name] = source
        return source

    def get(self, name: str) -> Source:
        """The source called ``name``; UnknownSourceError lists the known ones."""
        from ingest.errors import UnknownSourceError

        try:
            return self._sources[name]
        except KeyError:
            raise UnknownSourceError(f"unknown source {name!r}; known sources: {', '.join(sorted(self._sources))}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._sources)

    def __iter__(self):
        return iter(self._sources[n] for n in self.names())
