"""Finding a source's input files: in a folder, in archives as downloaded, or as one plain file.

A source names its logical inputs (:class:`InputSpec`): a path suffix such as ``Venus/cluster_log.csv``
and the archives that may hold it (``data.zip``). :func:`resolve_inputs` searches the given path,
extracts archives and ``.gz`` files into the run's staging folder (streaming to disk, never into
memory), verifies published checksums, and returns local paths with display names for messages.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import ArchiveError, ChecksumError, FormatError, InputNotFoundError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


@dataclass(frozen=True)
class InputSpec:
    """One logical input file of a source."""

    key: str
    """Path suffix that identifies the file, e.g. ``AzureLLMInferenceTrace_code.csv`` or ``Venus/cluster_log.csv``."""
    containers: tuple[str, ...] = ()
    """Archive file names that may hold it (searched and extracted when the file itself is absent)."""
    required: bool = True
    """A missing required input fails the run; a missing optional one is reported and skipped."""


@dataclass(frozen=True)
class ResolvedInput:
    """A logical input found on disk."""

    spec: InputSpec
    path: Path
    """Local, uncompressed file to read."""
    display: str
    """Name for messages and quarantine rows: the file as the user knows it (``archive:member``)."""


@dataclass
class InputSet:
    """The result of resolving a source's inputs."""

    found: dict[str, ResolvedInput] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    verified: dict[str, str] = field(default_factory=dict)
    """display name -> sha256 for every file whose published checksum was checked."""

    def get(self, key: str) -> ResolvedInput | None:
        """The resolved input for ``key``, or None if it was not found (optional inputs only)."""
        return self.found.get(key)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, display: str, expected: str) -> str:
    """ChecksumError unless ``path`` hashes to ``expected``; returns the digest."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{display}: checksum mismatch: expected sha256 {expected} (published upstream), got {actual}; "
            "the file is corrupt or modified (re-download it, or pass --no-verify for a modified copy)"
        )
    return actual


def reject_lfs_pointer(path: Path, display: str) -> None:
    """FormatError if ``path`` is a Git LFS pointer file instead of the data it points to."""
    if path.stat().st_size < 1024:
        with open(path, "rb") as fh:
            if fh.read(64).startswith(b"version https://git-lfs"):
                raise FormatError(
                    f"{display}: this is a Git LFS pointer, not the data; run 'git lfs pull' in the clone "
                    "or download the file with 'ingest fetch'"
                )


def is_archive(path: Path) -> bool:
    """True for .tar.gz/.tgz/.tar/.zip files."""
    return path.name.endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract every regular file of ``archive`` below ``dest``; ArchiveError if it is truncated or corrupt."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise ArchiveError(f"{archive}: member {bad} is corrupt (CRC mismatch)")
                members = [m for m in zf.infolist() if not m.is_dir()]
                if not members:
                    raise ArchiveError(f"{archive}: the zip archive holds no files")
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:*") as tf:
                count = 0
                for member in tf:
                    if member.isfile():
                        tf.extract(member, dest, filter="data")
                        count += 1
                if count == 0:
                    raise ArchiveError(f"{archive}: the tar archive holds no files")
    except ArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(f"{archive}: truncated or corrupt archive ({exc}); expected a complete "
                           f"{'zip' if archive.name.endswith('.zip') else 'tar'} archive") from exc
    return dest


def gunzip(src: Path, dest: Path) -> Path:
    """Decompress a single-file .gz to ``dest``; ArchiveError if it is truncated or corrupt."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise ArchiveError(f"{src}: truncated or corrupt gzip file ({exc})") from exc
    return dest


def _index(root: Path, exclude: Path | None = None) -> list[Path]:
    """Files below ``root``, minus those below ``exclude`` (unless ``root`` itself is inside it)."""
    if root.is_file():
        return [root]
    if exclude is not None and root.is_relative_to(exclude):
        exclude = None  # an extraction folder in the staging area
    return sorted(p for p in root.rglob("*") if p.is_file() and not (exclude and p.is_relative_to(exclude)))


def _matches(path: Path, root: Path, key: str) -> bool:
    rel = path.as_posix() if root.is_file() else path.relative_to(root).as_posix()
    rel_plain = rel[:-3] if rel.endswith(".gz") and not rel.endswith(".tar.gz") else rel
    return rel_plain == key or rel_plain.endswith("/" + key) or (root.is_file() and path.name in (key, key + ".gz"))


def resolve_inputs(
    specs: tuple[InputSpec, ...],
    source_path: Path,
    staging: Path,
    *,
    checksums: Mapping[str, str] | None = None,
    verify: bool = True,
    exclude: Path | None = None,
) -> InputSet:
    """Find every spec under ``source_path`` (a folder, an archive, or a plain/.gz file).

    Archives are extracted into ``staging`` lazily: only when a needed input is not found as a plain file.
    ``checksums`` maps file names (archives or extracted files) to published sha256 values; every
    archive or input with such a name is verified before it is used, unless ``verify`` is False.
    Files below ``exclude`` (the data root, when it sits inside the searched folder) are ignored.
    """
    if not source_path.exists():
        raise InputNotFoundError(f"{source_path}: no such file or folder")
    result = InputSet()
    published = dict(checksums or {})

    def check(path: Path, display: str) -> None:
        reject_lfs_pointer(path, display)
        expected = published.get(path.name)
        if verify and expected and display not in result.verified:
            result.verified[display] = verify_sha256(path, display, expected)

    if source_path.is_file():
        check(source_path, str(source_path))
    roots: list[tuple[Path, str]] = []  # (folder or file to search, display prefix)
    if source_path.is_file() and is_archive(source_path):
        roots.append((extract_archive(source_path, staging / "x0"), source_path.name + ":"))
    else:
        roots.append((source_path, ""))
    extracted: set[Path] = set()
    skip = exclude

    def search(spec: InputSpec) -> ResolvedInput | None:
        for root, prefix in roots:
            for path in _index(root, skip):
                if not _matches(path, root, spec.key):
                    continue
                rel = path.name if root.is_file() else path.relative_to(root).as_posix()
                display = prefix + (str(path) if not prefix else rel)
                if path.name.endswith(".gz") and not path.name.endswith(".tar.gz"):
                    target = staging / f"gz{len(extracted)}" / path.name[:-3]
                    extracted.add(target)
                    return ResolvedInput(spec, gunzip(path, target), display)
                return ResolvedInput(spec, path, display)
        return None

    for spec in specs:
        found = search(spec)
        if found is None and spec.containers:
            for root, prefix in list(roots):
                for path in _index(root, skip):
                    if path.name in spec.containers and path not in extracted:
                        extracted.add(path)
                        shown = prefix + path.name if prefix else str(path)
                        check(path, shown)
                        dest = extract_archive(path, staging / f"x{len(extracted)}")
                        roots.append((dest, shown + ":"))
            found = search(spec)
        if found is None:
            result.missing.append(spec.key)
            continue
        check(found.path, found.display)
        result.found[spec.key] = found
    required_missing = [s.key for s in specs if s.required and s.key in result.missing]
    if required_missing:
        raise InputNotFoundError(
            f"{source_path}: missing input file(s) {', '.join(required_missing)} "
            f"(looked for them as plain files, .gz files and inside {', '.join(sorted({c for s in specs for c in s.containers})) or 'no archives'})"
        )
    if not result.found:
        raise InputNotFoundError(
            f"{source_path}: none of the expected input files was found; expected any of: "
            + ", ".join(s.key for s in specs)
        )
    return result
