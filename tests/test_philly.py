"""Philly source: the real machine list, and fixtures in the exact upstream format for the other four files."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from ingest.errors import ChecksumError, FormatError
from ingest.pipeline import run_source

ORIGIN_EPOCH_S = 1506877200  # 2017-10-01 10:00:00 PDT, the earliest good submission in JOB_LOG
HOUR_S = 3600.0


def _job(jobid, submitted, attempts, status="Pass", vc="ee9e8c", user="ce2f4c"):
    return {"status": status, "vc": vc, "jobid": jobid, "attempts": attempts, "submitted_time": submitted, "user": user}


def _att(start, end, *placement):
    return {"start_time": start, "end_time": end,
            "detail": [{"ip": ip, "gpus": [f"gpu{k}" for k in range(n)]} for ip, n in placement]}


JOB_LOG = [
    # 1: two attempts with different GPU counts; the first attempt spans two machines
    _job("application_1506638472019_00001", "2017-10-01 10:00:00",
         [_att("2017-10-01 10:00:30", "2017-10-01 10:10:00", ("m1", 2), ("m2", 2)),
          _att("2017-10-01 10:11:00", "2017-10-01 12:00:00", ("m3", 1))]),
    # 2: never scheduled
    _job("application_1506638472019_00002", "2017-10-02 08:00:00", [], status="Killed", vc="6214e9", user="aaaaaa"),
    # 3: still running at snapshot time: last end is the string "None"
    _job("application_1506638472019_00003", "2017-10-02 09:00:00",
         [_att("2017-10-02 09:01:00", "2017-10-02 09:30:00", ("m4", 1)),
          _att("2017-10-02 09:31:00", "None", ("m5", 2))], status="Failed"),
    # 4, 5: submitted_time "None" and JSON null
    _job("application_1506638472019_00004", "None", []),
    _job("application_1506638472019_00005", None, []),
    # 6: start "" and end null inside one attempt: both missing, kept (and running: no last end)
    _job("application_1506638472019_00006", "2017-10-02 10:00:00", [_att("", None, ("m6", 1))]),
    # 7: an attempt that ends before it starts
    _job("application_1506638472019_00007", "2017-10-02 11:00:00",
         [_att("2017-10-02 11:05:00", "2017-10-02 11:04:59", ("m7", 1))]),
    # 8: a zero-length attempt: kept
    _job("application_1506638472019_00008", "2017-10-02 12:00:00",
         [_att("2017-10-02 12:00:05", "2017-10-02 12:00:05", ("m8", 8))]),
    # 9: duplicate of job 1
    _job("application_1506638472019_00001", "2017-10-03 00:00:00", []),
    # 10: unknown status
    _job("application_1506638472019_00010", "2017-10-03 00:00:00", [], status="Running"),
    # 11: submitted in the first 01:xx of 2017-11-05, started in the second one
    _job("application_1506638472019_00011", "2017-11-05 01:50:00",
         [_att("2017-11-05 01:10:00", "2017-11-05 01:40:00", ("m9", 1))]),
    # 12: ambiguous submission without attempts: first occurrence (PDT)
    _job("application_1506638472019_00012", "2017-11-05 01:30:00", []),
    # 13: unparseable submission; 14: first start before submission; 15: not an object
    _job("application_1506638472019_00013", "2017-13-01 00:00:00", []),
    _job("application_1506638472019_00014", "2017-10-04 10:00:00", [_att("2017-10-04 09:59:00", "2017-10-04 11:00:00", ("m1", 1))]),
    "oops",
    # 16: a wall-clock time skipped by the spring-forward change
    _job("application_1506638472019_00016", "2017-03-12 02:30:00", []),
]

GPU_HEADER = "time,machineId," + ",".join(f"gpu{k}_util" for k in range(8)) + "\n"
GPU_UTIL = GPU_HEADER + (
    "2017-10-03 00:08:00 PDT,m29,60.8,NA,100.0,99.366666667,0.0,50,NA,NA,\n"
    "2017-10-03 00:08:00 PDT,m0,10.0,20.0,,,,,,,\n"  # a 2-GPU machine: empty columns
    "2017-10-03 00:09:00 PDT,m1,NA,NA,NA,NA,NA,NA,NA,NA,\n"
    "2017-11-05 01:30:00 PDT,m29,1,2,3,4,5,6,7,8,\n"
    "2017-11-05 01:30:00 PST,m29,1,2,3,4,5,6,7,8,\n"
    "2017-10-03 00:10:00 PDT,m29,1,2,3,4,5,6,7,8\n"  # no trailing comma
    "2017-12-01 00:00:00 PDT,m29,1,2,3,4,5,6,7,8,\n"  # PDT is not in force in December
    "2017-10-03 00:10:00 UTC,m29,1,2,3,4,5,6,7,8,\n"
    "2017-10-03 00:11:00 PDT,m29,1,2,3,abc,5,6,7,8,\n"
)
CPU_UTIL = "time,machine_id,cpu_util\n2017-11-27 00:04:00 PST,m29,31.845\n2017-11-05 01:30:00 PST,m29,NA\n2017-11-27 00:05:00 PST,,5\n"
MEM_UTIL = ("time,machine_id,mem_total,mem_free\n2017-10-03 00:06:00 PDT,m29,528272672.0,2030730.6667\n"
            "2017-10-03 00:07:00 PDT,m30,0,0\n2017-10-03 00:08:00 PDT,m31,NA,NA\n2017-10-03 00:09:00 PDT,m32,1,2,3\n")
MACHINE_LIST = "machineId, number of GPUs, single GPU mem\nm0,2, 12GB\nm29,8, 24GB\nm29,8, 24GB\nm30,x, 24GB\nm31,8, 24MB\n"
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:2037ccf63a725a02be718b0e1aeee6142c90b7f62d0d849295120e9f6ba13d2c\nsize 1055988361\n")


def write_trace_data(folder: Path, job_log: list | None = None) -> Path:
    """The five upstream files, as ``trace-data/`` holds them (no extensions)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster_job_log").write_text(json.dumps(JOB_LOG if job_log is None else job_log, indent=4))
    for name, text in (("cluster_gpu_util", GPU_UTIL), ("cluster_cpu_util", CPU_UTIL),
                       ("cluster_mem_util", MEM_UTIL), ("cluster_machine_list", MACHINE_LIST)):
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def ingested(tmp_path: Path, data_root):
    return run_source("philly", write_trace_data(tmp_path / "trace-data"), data_root=data_root.root)


def test_real_machine_list_only(traces: Path, data_root, query) -> None:
    result = run_source("philly", traces / "philly", data_root=data_root.root)
    assert [(t.table, t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables] == [("machines", 552, 552, 0)]
    assert sorted(result.missing_inputs) == ["cluster_cpu_util", "cluster_gpu_util", "cluster_job_log", "cluster_mem_util"]
    assert query("SELECT num_gpus, gpu_mem_gb, count(*) FROM machines GROUP BY ALL ORDER BY 1") == [(2, 12.0, 321), (8, 24.0, 231)]
    assert query("SELECT sum(num_gpus), count(DISTINCT machine_id) FROM machines") == [(2490, 552)]
    assert query("SELECT machine_id, num_gpus, gpu_mem_gb FROM machines WHERE machine_id = 'm31'") == [("m31", 8, 24.0)]


def test_job_log_jobs_and_quarantine(ingested, query) -> None:
    jobs = {t.table: t for t in ingested.tables}["jobs"]
    assert (jobs.rows_in, jobs.rows_out, jobs.rows_quarantined) == (16, 7, 9)
    rows = {r[0][-2:]: r[1:] for r in query(
        "SELECT job_id, cluster, \"group\", \"user\", submit_s, start_s, end_s, num_gpus, num_nodes, status, raw_status "
        "FROM jobs ORDER BY job_id")}
    assert sorted(rows) == ["01", "02", "03", "06", "08", "11", "12"]
    assert rows["01"] == ("ee9e8c", "ee9e8c", "ce2f4c", 0.0, 30.0, 2 * HOUR_S, 4.0, 2, "completed", "Pass")
    assert rows["02"] == ("6214e9", "6214e9", "aaaaaa", 22 * HOUR_S, None, None, 0.0, None, "killed", "Killed")
    assert rows["03"][4:] == (23 * HOUR_S + 60, None, 1.0, 1, "running", "Failed")
    assert rows["06"][4:] == (None, None, 1.0, 1, "running", "Pass")  # missing last end: running
    assert rows["08"][4:8] == (26 * HOUR_S + 5, 26 * HOUR_S + 5, 8.0, 1)
    assert query("SELECT line, reason FROM quarantine WHERE dataset = 'jobs' ORDER BY line") == [
        (4, "missing submitted_time"),
        (5, "missing submitted_time"),
        (7, "end before start: attempts[0].end_time '2017-10-02 11:04:59' < start_time '2017-10-02 11:05:00'"),
        (9, "duplicate jobid 'application_1506638472019_00001'"),
        (10, "unknown status 'Running' (expected one of Pass, Killed, Failed)"),
        (13, "unparseable submitted_time '2017-13-01 00:00:00' (expected YYYY-MM-DD HH:MM:SS)"),
        (14, "start before submit: attempts[0].start_time '2017-10-04 09:59:00' < submitted_time '2017-10-04 10:00:00'"),
        (15, "expected a JSON object, found str"),
        (16, "nonexistent local time submitted_time '2017-03-12 02:30:00' (skipped by the DST change in America/Los_Angeles)"),
    ]
    (raw,) = query("SELECT raw FROM quarantine WHERE line = 10")[0]
    assert json.loads(raw)["status"] == "Running"


def test_job_log_attempts(ingested, query) -> None:
    rows = query("SELECT job_id, attempt, start_s, end_s, num_gpus, machines, gpus FROM attempts ORDER BY job_id, attempt")
    by_job = {(r[0][-2:], r[1]): r[2:] for r in rows}
    assert sorted(by_job) == [("01", 0), ("01", 1), ("03", 0), ("03", 1), ("06", 0), ("08", 0), ("11", 0)]
    assert by_job[("01", 0)] == (30.0, 600.0, 4, ["m1", "m2"], ["m1/gpu0", "m1/gpu1", "m2/gpu0", "m2/gpu1"])
    assert by_job[("01", 1)] == (660.0, 2 * HOUR_S, 1, ["m3"], ["m3/gpu0"])
    assert by_job[("03", 1)] == (23 * HOUR_S + 31 * 60, None, 2, ["m5"], ["m5/gpu0", "m5/gpu1"])
    assert by_job[("06", 0)][:2] == (None, None)
    assert query("SELECT DISTINCT cluster FROM attempts WHERE job_id LIKE '%03'") == [("ee9e8c",)]


def test_job_log_repeated_dst_hour(ingested, query) -> None:
    # 2017-11-05 01:50 PDT = 08:50 UTC; the attempt at 01:10/01:40 can only be the PST hour (09:10/09:40 UTC)
    submit_11 = 34 * 86400 + 15 * HOUR_S + 50 * 60
    assert query("SELECT submit_s, start_s, end_s FROM jobs WHERE job_id LIKE '%00011'") == [
        (submit_11, submit_11 + 1200, submit_11 + 3000)]
    # an ambiguous time with no earlier event to order against takes the first occurrence (PDT)
    assert query("SELECT submit_s FROM jobs WHERE job_id LIKE '%00012'") == [(submit_11 - 1200,)]


def test_gpu_util(ingested, query) -> None:
    rows = query("SELECT entity, time_s, value, device_values, entity_kind, cluster FROM utilization "
                 "WHERE metric = 'gpu_util_pct' ORDER BY time_s, entity")
    t0 = 38 * HOUR_S + 8 * 60  # 2017-10-03 00:08 PDT
    assert rows[0] == ("m0", t0, 15.0, [10.0, 20.0, None, None, None, None, None, None], "machine", None)
    assert rows[1][:2] == ("m29", t0)
    assert rows[1][2] == pytest.approx(62.0333333334)
    assert rows[1][3] == [60.8, None, 100.0, 99.366666667, 0.0, 50.0, None, None]
    assert rows[2] == ("m1", t0 + 60, None, [None] * 8, "machine", None)
    (pdt, pst) = [r[1] for r in rows[3:]]
    assert pst - pdt == HOUR_S  # the two 01:30 rows are different instants, one hour apart
    assert pdt == 34 * 86400 + 15 * HOUR_S + 30 * 60  # 08:30 UTC
    assert query("SELECT line, reason FROM quarantine WHERE source_file LIKE '%cluster_gpu_util' ORDER BY line") == [
        (7, "wrong column count: expected 11 fields, found 10"),
        (8, "time '2017-12-01 00:00:00 PDT': the zone suffix is not in force then in America/Los_Angeles"),
        (9, "unparseable time '2017-10-03 00:10:00 UTC' (expected YYYY-MM-DD HH:MM:SS PDT or PST)"),
        (10, "unparseable gpu3_util 'abc'"),
    ]


def test_cpu_and_mem_util(ingested, query) -> None:
    cpu = query("SELECT entity, value FROM utilization WHERE metric = 'cpu_util_pct' ORDER BY time_s")
    assert cpu == [("m29", None), ("m29", 31.845)]
    mem = query("SELECT entity, metric, value FROM utilization WHERE metric LIKE 'mem%' ORDER BY entity, metric")
    assert mem[:2] == [("m29", "mem_total_kb", 528272672.0), ("m29", "mem_used_frac", pytest.approx(0.99615590437))]
    assert mem[2:] == [("m30", "mem_total_kb", 0.0), ("m30", "mem_used_frac", None),
                       ("m31", "mem_total_kb", None), ("m31", "mem_used_frac", None)]
    bad = query("SELECT source_file, line, reason FROM quarantine WHERE dataset = 'utilization' "
                "AND source_file NOT LIKE '%gpu_util' ORDER BY source_file")
    assert [(Path(f).name, line, reason) for f, line, reason in bad] == [
        ("cluster_cpu_util", 4, "missing machine_id"),
        ("cluster_mem_util", 5, "wrong column count: expected 4 fields, found 5"),
    ]
    util = {t.table: t for t in ingested.tables}["utilization"]
    # rows in: 9 gpu + 3 cpu + 4 mem lines, plus the second metric row of the 3 good mem lines
    assert (util.rows_in, util.rows_out, util.rows_quarantined) == (19, 13, 6)


def test_machine_list_quarantine(ingested, query) -> None:
    assert query("SELECT machine_id, num_gpus, gpu_mem_gb FROM machines ORDER BY machine_id") == [("m0", 2, 12.0), ("m29", 8, 24.0)]
    assert query("SELECT line, reason FROM quarantine WHERE dataset = 'machines' ORDER BY line") == [
        (4, "duplicate machineId 'm29'"),
        (5, "unparseable number of GPUs 'x'"),
        (6, "unparseable single GPU mem '24MB' (expected <number>GB, e.g. 24GB)"),
    ]


def test_ingest_straight_from_archive(tmp_path: Path, data_root, query) -> None:
    folder = write_trace_data(tmp_path / "src" / "trace-data")
    archive = tmp_path / "dl" / "trace-data.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="trace-data")
    with pytest.raises(ChecksumError, match="2037ccf63a72"):  # the published sha256 is checked by default
        run_source("philly", archive.parent, data_root=data_root.root)
    result = run_source("philly", archive.parent, data_root=data_root.root, verify=False)
    assert {t.table: t.rows_out for t in result.tables} == {"attempts": 7, "jobs": 7, "machines": 2, "utilization": 13}
    files = {r[0] for r in query("SELECT DISTINCT source_file FROM quarantine")}
    assert any(f.endswith("/dl/trace-data.tar.gz:trace-data/cluster_job_log") for f in files)
    assert query("SELECT count(*) FROM jobs WHERE trace = 'philly'") == [(7,)]


def _lake_files(data_root) -> dict[str, bytes]:
    return {str(p.relative_to(data_root.lake)): p.read_bytes() for p in sorted(data_root.lake.rglob("*.parquet"))}


def test_truncated_job_log_leaves_lake_unchanged(ingested, tmp_path: Path, data_root) -> None:
    before = _lake_files(data_root)
    bad = write_trace_data(tmp_path / "bad")
    text = (bad / "cluster_job_log").read_text()
    (bad / "cluster_job_log").write_text(text[: len(text) // 2])
    with pytest.raises(FormatError, match=r"cluster_job_log: truncated or malformed JSON"):
        run_source("philly", bad, data_root=data_root.root)
    assert _lake_files(data_root) == before
    (bad / "cluster_job_log").write_text('{"jobid": "x"}')
    with pytest.raises(FormatError, match=r"expected one JSON array"):
        run_source("philly", bad, data_root=data_root.root)


def test_lfs_pointer_instead_of_job_log(tmp_path: Path, data_root) -> None:
    folder = write_trace_data(tmp_path / "trace-data")
    (folder / "cluster_job_log").write_text(LFS_POINTER)
    assert len(LFS_POINTER) == 135
    with pytest.raises(FormatError, match="cluster_job_log: this is a Git LFS pointer.*git lfs pull"):
        run_source("philly", folder, data_root=data_root.root)
    assert not data_root.lake.exists()


@pytest.mark.parametrize("verify", [True, False])
def test_lfs_pointer_archive(tmp_path: Path, data_root, verify: bool) -> None:
    # a clone without 'git lfs pull' holds this 135-byte pointer where trace-data.tar.gz should be
    (tmp_path / "trace-data.tar.gz").write_text(LFS_POINTER)
    with pytest.raises(FormatError, match=r"trace-data.tar.gz: this is a Git LFS pointer.*git lfs pull"):
        run_source("philly", tmp_path, data_root=data_root.root, verify=verify)
    assert not data_root.lake.exists()


def test_report_and_origin(ingested, query) -> None:
    (row,) = query("SELECT source, derived, tables, origin_epoch_us, time_zone FROM traces WHERE trace = 'philly'")
    assert row == ("philly", False, "attempts,jobs,machines,utilization", ORIGIN_EPOCH_S * 1_000_000,
                   "America/Los_Angeles")
    assert ingested.rows_quarantined == 9 + 6 + 3
