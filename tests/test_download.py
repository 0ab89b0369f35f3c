"""``ingest fetch`` against a real HTTP server on loopback: resume, checksums, offline errors."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.download import fetch_file
from ingest.errors import ChecksumError, DownloadError
from ingest.sources.base import RemoteFile

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring 'Range: bytes=N-'; records the ranges asked for."""

    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        rng = self.headers.get("Range")
        RangeHandler.ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    RangeHandler.ranges = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def remote(url: str, sha: str | None = hashlib.sha256(PAYLOAD).hexdigest()) -> RemoteFile:
    # RemoteFile insists on https for real sources; tests bypass that for the loopback server.
    obj = object.__new__(RemoteFile)
    for k, v in dict(name="trace.bin", url=url, sha256=sha, size_bytes=len(PAYLOAD)).items():
        object.__setattr__(obj, k, v)
    return obj


def test_resumes_a_partial_download(server: str, tmp_path: Path) -> None:
    (tmp_path / "trace.bin.part").write_bytes(PAYLOAD[:300_000])
    seen: list[int] = []
    path = fetch_file(remote(server + "/trace.bin"), tmp_path, progress=lambda done, total: seen.append(done))
    assert path.read_bytes() == PAYLOAD
    assert RangeHandler.ranges == ["bytes=300000-"]
    assert seen[-1] == len(PAYLOAD) and seen[0] > 300_000
    assert not (tmp_path / "trace.bin.part").exists()


def test_checksum_mismatch_keeps_no_file(server: str, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="checksum mismatch: expected sha256 " + "0" * 64):
        fetch_file(remote(server + "/trace.bin", sha="0" * 64), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_says_so(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot download .* are you offline"):
        fetch_file(remote(f"http://127.0.0.1:{port}/trace.bin"), tmp_path, timeout_s=5)


def test_remote_files_must_be_https() -> None:
    with pytest.raises(ValueError, match="must be https"):
        RemoteFile("x.csv", "http://example.org/x.csv")
