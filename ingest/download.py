"""Downloading upstream files: resume, size and sha256 checks, a progress bar, a clear offline message.

A download goes to ``<name>.part`` first; an interrupted one resumes with an HTTP Range request.
Only a complete file that passes its checks is renamed to its final name, so ``data/raw`` never
holds a half-written or unverified file under a real name.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ingest.errors import ChecksumError, DownloadError
from ingest.inputs import sha256_file
from ingest.sources.base import RemoteFile

ProgressHook = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None)."""

CHUNK_BYTES = 1 << 20


def fetch_file(remote: RemoteFile, dest_dir: Path, *, progress: ProgressHook | None = None, timeout_s: float = 30.0) -> Path:
    """Download ``remote`` into ``dest_dir`` (resuming a ``.part`` file) and verify it; returns the path.

    An existing final file that passes its checks is kept without downloading.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.name
    if final.exists():
        try:
            _verify(final, remote)
            return final
        except ChecksumError:
            final.unlink()
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"User-Agent": "tracelab-ingest"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            if have and resp.status != 206:  # server ignored the range: start over
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else remote.size_bytes
            with open(part, "ab" if have else "wb") as fh:
                done = have
                while block := resp.read(CHUNK_BYTES):
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{remote.url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"{remote.url}: cannot download ({reason}); are you offline? "
            f"Download it by hand into {dest_dir} or pass --from PATH to 'ingest run'"
        ) from exc
    _verify(part, remote, shown=remote.url)
    os.replace(part, final)
    return final


def _verify(path: Path, remote: RemoteFile, shown: str | None = None) -> None:
    label = shown or str(path)
    if remote.size_bytes is not None and path.stat().st_size != remote.size_bytes:
        size = path.stat().st_size
        if path.name.endswith(".part"):
            path.unlink()
        raise ChecksumError(f"{label}: expected {remote.size_bytes} bytes, got {size}")
    if remote.sha256 is not None:
        actual = sha256_file(path)
        if actual != remote.sha256:
            if path.name.endswith(".part"):
                path.unlink()
            raise ChecksumError(f"{label}: checksum mismatch: expected sha256 {remote.sha256} (published upstream), got {actual}")
