"""Microsoft ITP (ElasticFlow raw traces): all ten real cluster files, plus tarball fixtures."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ingest.errors import ChecksumError, FormatError
from ingest.pipeline import run_source

ROWS_PER_FILE = {
    "cluster01": 1595, "cluster02": 5778, "cluster03": 3011, "cluster04": 15802, "cluster05": 3629,
    "cluster06": 2396, "cluster07": 12699, "cluster08": 13047, "cluster09": 11134, "cluster10": 260,
}  # FORMATS.md §9.3


def test_real_all_clusters(traces: Path, data_root, query) -> None:
    folder = traces / "microsoft_itp"
    result = run_source("microsoft_itp", folder, data_root=data_root.root)
    assert [(t.table, t.trace, t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables] == [
        ("jobs", "microsoft_itp", 69351, 69351, 0)
    ]
    assert dict(query("SELECT cluster, count(*) FROM jobs GROUP BY cluster")) == ROWS_PER_FILE
    (totals,) = query(
        "SELECT sum(gpu_s) / 3600, min(run_s), count(DISTINCT job_id), count(start_s), count(end_s), "
        "min(status), max(status), count(raw_status) FROM jobs_derived"
    )
    assert totals[0] == pytest.approx(1_632_719.7, abs=0.05)  # GPU-hours, as published
    assert totals[1:] == (600.0, 69351, 0, 0, "unknown", "unknown", 0)
    assert query("SELECT DISTINCT num_gpus FROM jobs WHERE cluster = 'cluster09'") == [(1.0,)]
    gpus = [r[0] for r in query("SELECT DISTINCT num_gpus FROM jobs ORDER BY 1")]
    assert gpus == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    # one clock for all clusters: the origin is cluster07's first submission (1,999 s), nothing is rebased per cluster
    (origin,) = query("SELECT origin_epoch_us, epoch FROM traces WHERE trace = 'microsoft_itp'")
    assert origin == (1_999_000_000, "seconds since collection start (2021-03-04)")
    firsts = dict(query("SELECT cluster, min(submit_s) FROM jobs GROUP BY cluster"))
    assert (firsts["cluster07"], firsts["cluster01"], firsts["cluster10"]) == (0.0, 1_932_025 - 1999.0, 2_266_647 - 1999.0)
    # the files end without a newline: the last row of every file is there
    for cluster in ROWS_PER_FILE:
        data = (folder / f"{cluster}.csv").read_bytes()
        assert not data.endswith(b"\n")
        job_id, submitted, duration, num_gpu = data.decode().rsplit("\n", 1)[1].split(",")
        assert query("SELECT submit_s, duration_s, num_gpus FROM jobs WHERE job_id = ?", [job_id]) == [
            (int(submitted) - 1999.0, float(duration), float(num_gpu))
        ]
    assert query("SELECT job_id, duration_s, num_gpus FROM jobs WHERE cluster = 'cluster10' AND submit_s = ?",
                 [5_104_565 - 1999]) == [("827822bc-4cf5-72f5-3f1e-f01352929ea1", 42698.0, 2.0)]
    verified = query("SELECT report FROM traces")[0][0]
    assert verified.count('"sha256_verified": "') == 10  # every member checked against its known sha256


HEADER = "job_id,submission_time,duration,num_gpu"
C01 = "\n".join([
    HEADER,
    "11111111-0000-0000-0000-000000000001,5000,600,8",
    "11111111-0000-0000-0000-000000000002,5100,-3,1",  # negative duration
    "11111111-0000-0000-0000-000000000003,5200,700,1.5",  # fractional GPUs
    "11111111-0000-0000-0000-000000000004,5300,800",  # too few fields
    "11111111-0000-0000-0000-000000000005,5400,900,2",  # last row, no trailing newline
])
C02 = "\n".join([
    HEADER,
    "11111111-0000-0000-0000-000000000001,3000,1200,4",  # same UUID as in cluster01: rejected (cluster01 read first)
    "22222222-0000-0000-0000-000000000001,4000,1000,4",
    ",4100,1000,4",
    "22222222-0000-0000-0000-000000000002,4200.0,1000,4",  # float-formatted integer is fine
])


def _tarball(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_tarball_fixture_and_global_duplicates(tmp_path: Path, data_root, query) -> None:
    archive = _tarball(tmp_path / "raw-traces.tar.gz", {"cluster01.csv": C01, "cluster02.csv": C02, "LICENSE": "MIT"})
    with pytest.raises(ChecksumError, match="raw-traces.tar.gz: checksum mismatch"):
        run_source("microsoft_itp", archive, data_root=data_root.root)
    result = run_source("microsoft_itp", archive, data_root=data_root.root, verify=False)
    (table,) = result.tables
    assert (table.rows_in, table.rows_out, table.rows_quarantined) == (9, 4, 5)
    assert len(result.missing_inputs) == 8
    rows = query("SELECT cluster, job_id, submit_s, duration_s, num_gpus FROM jobs ORDER BY submit_s")
    assert rows == [
        ("cluster02", "22222222-0000-0000-0000-000000000001", 0.0, 1000.0, 4.0),
        ("cluster02", "22222222-0000-0000-0000-000000000002", 200.0, 1000.0, 4.0),
        ("cluster01", "11111111-0000-0000-0000-000000000001", 1000.0, 600.0, 8.0),
        ("cluster01", "11111111-0000-0000-0000-000000000005", 1400.0, 900.0, 2.0),
    ]
    bad = query("SELECT source_file, line, reason FROM quarantine ORDER BY source_file, line")
    assert bad == [
        ("raw-traces.tar.gz:cluster01.csv", 3, "negative duration '-3'"),
        ("raw-traces.tar.gz:cluster01.csv", 4, "non-integer num_gpu '1.5'"),
        ("raw-traces.tar.gz:cluster01.csv", 5, "wrong column count: expected 4 fields, found 3"),
        ("raw-traces.tar.gz:cluster02.csv", 2, "duplicate job_id '11111111-0000-0000-0000-000000000001'"),
        ("raw-traces.tar.gz:cluster02.csv", 4, "missing job_id"),
    ]


def test_elasticflow_header_is_refused(tmp_path: Path, data_root) -> None:
    augmented = "job_id,submission_time,num_iteration,model_name,deadline,batch_size,num_gpu,duration\n" \
                "a,1,100,bert,50,32,1,600"
    (tmp_path / "cluster03.csv").write_text(augmented)
    with pytest.raises(FormatError, match=r"cluster03\.csv: line 1: expected header 'job_id,submission_time,duration,num_gpu'"):
        run_source("microsoft_itp", tmp_path, data_root=data_root.root, verify=False)
