"""Failure classes of an ingest, each with its own CLI exit code.

Every error message names the file (and where it applies the line or column) and what was expected.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class: a failure that leaves the lake and the catalog exactly as they were."""

    exit_code = 1


class UnknownSourceError(IngestError):
    """The named source or trace does not exist."""

    exit_code = 2


class InputNotFoundError(IngestError):
    """No input was found where one was expected (missing file, missing archive member)."""

    exit_code = 3


class FormatError(IngestError):
    """A file is not in the expected format: wrong header, wrong format, empty, LFS pointer."""

    exit_code = 4


class ArchiveError(IngestError):
    """An archive is truncated or corrupt, or holds no usable member."""

    exit_code = 5


class ChecksumError(IngestError):
    """A file's sha256 or size differs from the value published upstream."""

    exit_code = 6


class DownloadError(IngestError):
    """A download failed (offline, HTTP error, interrupted)."""

    exit_code = 7


class CatalogError(IngestError):
    """The lake or the catalog could not be read or written."""

    exit_code = 8


class QuarantineError(IngestError):
    """``--strict`` was given and some rows would have been quarantined; nothing was committed."""

    exit_code = 9


class BackendError(IngestError):
    """``ingest run --backend``: the backend cannot run (unknown name, Ray not installed, bad ``--workers``)."""

    exit_code = 10
