"""Helios 2020: real Venus/Earth VC-capacity files, and cluster_log.csv fixtures in the exact upstream format."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.errors import FormatError
from ingest.inputs import InputSpec, ResolvedInput
from ingest.pipeline import run_source
from ingest.sources.helios import LOG_COLUMNS, STATUS, upstream_disagreements

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEADER = ",".join(LOG_COLUMNS)


def epoch_us(text: str) -> int:
    """A naive China wall-clock time as epoch microseconds."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp()) * 1_000_000


def test_real_vc_capacity_venus_earth(traces: Path, data_root, query) -> None:
    result = run_source("helios_2020", traces / "helios", data_root=data_root.root)
    assert [(t.table, t.trace, t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables] == [
        ("utilization", "helios", 9412, 9412, 0)  # 2 clusters x 181 days x (25 VCs + total)
    ]
    assert sorted(result.missing_inputs) == sorted(
        ["Venus/cluster_log.csv", "Earth/cluster_log.csv", "Saturn/cluster_log.csv", "Uranus/cluster_log.csv",
         "Saturn/cluster_gpu_number.csv", "Uranus/cluster_gpu_number.csv"]
    )
    per_cluster = query(
        "SELECT cluster, count(DISTINCT time_s), count(DISTINCT entity) FILTER (entity_kind = 'vc'), "
        "min(time_s), max(time_s) FROM utilization GROUP BY cluster ORDER BY cluster"
    )
    assert per_cluster == [("Earth", 181, 25, 0.0, 180 * 86400.0), ("Venus", 181, 25, 0.0, 180 * 86400.0)]
    # origin = 2020-04-01 00:00 in Asia/Shanghai (= 2020-03-31 16:00 UTC)
    (origin,) = query("SELECT origin_epoch_us, time_zone FROM traces WHERE trace = 'helios'")
    assert origin == (epoch_us("2020-04-01 00:00:00"), "Asia/Shanghai") == (1_585_670_400_000_000, "Asia/Shanghai")
    sept1_s = (epoch_us("2020-09-01 00:00:00") - origin[0]) / 1e6
    totals = query(
        "SELECT cluster, entity, value FROM utilization WHERE entity_kind = 'cluster' AND metric = 'vc_gpus' "
        "AND time_s = ? ORDER BY cluster", [sept1_s]
    )
    assert totals == [("Earth", "Earth", 1144.0), ("Venus", "Venus", 1064.0)]
    # Earth's 2020-09-01 row is the README example
    earth = dict(query("SELECT entity, value FROM utilization WHERE cluster = 'Earth' AND time_s = ?", [sept1_s]))
    assert (earth["vchbv"], earth["vc4om"], earth["vcVP5"], earth["vc6YE"], earth["vcp4O"]) == (64, 96, 176, 216, 0)
    # Venus vcIya is 0 on every day; the same VC id in Earth is a different VC (nonzero on some days)
    iya = dict((r[0], r[1:]) for r in query(
        "SELECT cluster, count(*), sum(value) FROM utilization WHERE entity = 'vcIya' GROUP BY cluster"))
    assert iya == {"Venus": (181, 0.0), "Earth": (181, 840.0)}
    # the total column is the sum of the VC columns on every day
    mismatches = query(
        "SELECT count(*) FROM (SELECT cluster, time_s, sum(value) FILTER (entity_kind = 'vc') AS vcs, "
        "max(value) FILTER (entity_kind = 'cluster') AS total FROM utilization GROUP BY ALL) WHERE vcs <> total"
    )
    assert mismatches == [(0,)]
    shared = query(
        "SELECT count(*) FROM (SELECT entity FROM utilization WHERE entity_kind = 'vc' "
        "GROUP BY entity HAVING count(DISTINCT cluster) = 2)"
    )
    assert shared == [(8,)]  # vc6YE vcIya vcJLV vcJkd vcgkz vchA3 vchbv vcvlY
    assert query("SELECT sum(value) FROM utilization WHERE entity_kind = 'cluster'") == [(185120.0 + 180576.0,)]


VENUS_LOG = HEADER + "\n" + "\n".join([
    # the three README example rows
    "1425511,uXBbc,vcJkd,1,1,1,COMPLETED,2020-06-09 18:41:01,2020-06-09 18:41:01,2020-06-10 04:55:09,36848,0",
    "1425512,uVMrF,vchbv,4,16,1,FAILED,2020-06-09 18:41:27,2020-06-09 18:41:27,2020-06-09 18:45:36,249,0",
    "1425513,uzqls,vcpDC,1,1,1,CANCELLED,2020-06-09 18:41:28,2020-06-09 18:41:28,2020-06-17 14:15:21,675233,0",
    "1425514,uXBbc,vcJkd,0,4,1,COMPLETED,2020-06-09 18:42:00,2020-06-09 18:42:05,2020-06-09 18:43:05,60,5",  # CPU-only
    "1425515,uVMrF,vchbv,8,64,1,TIMEOUT,2020-06-09 18:43:00,2020-06-09 19:43:00,2020-06-23 19:43:10,1209610,3600",
    "1425516,uVMrF,vchbv,16,128,2,NODE_FAIL,2020-06-09 18:44:00,2020-06-09 18:44:30,2020-06-09 20:44:30,7200,30",
    "1425517,uzqls,vcpDC,2,8,1,CANCELLED,2020-06-09 18:45:00,,,,",  # cancelled before it started
    "1425518,uzqls,vcpDC,2,8,1,RUNNING,2020-06-09 18:46:00,2020-06-09 18:46:10,,,10",  # still running at the end
    "1425519,uXBbc,vcJkd,1,2,1,COMPLETED,2020-06-09 18:47:00,2020-06-09 18:47:00,2020-06-09 18:57:00,100,0",  # duration disagrees
    "1425520,uXBbc,vcJkd,1,2,1,FAILED,2020-06-09 18:48:00,2020-06-09 18:50:00,2020-06-09 18:49:00,0,120",  # end before start
    "1425521,uXBbc,vcJkd,1,2,1,COMPLETED,2020-06-09 18:49:00,2020-06-09 18:48:00,2020-06-09 18:50:00,120,0",  # start before submit
    "1425513,uXBbc,vcJkd,1,1,1,COMPLETED,2020-06-09 18:50:00,2020-06-09 18:50:00,2020-06-09 18:51:00,60,0",  # duplicate id
    "1425522,uXBbc,vcJkd,1,1,1,PREEMPTED,2020-06-09 18:51:00,2020-06-09 18:51:00,2020-06-09 18:52:00,60,0",
    "1425523,uXBbc,vcJkd,1,1,1,COMPLETED,2020-06-09 18:52:00,2020-06-09 18:52:00,2020-06-09 18:53:00,60",
    "1425524,uXBbc,vcJkd,1,1,1,COMPLETED,2020-06-09 25:52:00,2020-06-09 18:52:00,2020-06-09 18:53:00,60,0",
    "1425525,uXBbc,vcJkd,-1,1,1,COMPLETED,2020-06-09 18:53:00,2020-06-09 18:53:00,2020-06-09 18:54:00,60,0",
    "1425526,uXBbc,vcJkd,1,1,1,COMPLETED,2020-06-09 18:54:00,2020-06-09 18:54:00,2020-06-09 18:55:00,sixty,0",  # kept
]) + "\n"

EARTH_LOG = HEADER + "\n" + "\n".join([
    # same job id and same VC ids as in Venus: different jobs, different VCs
    "1425511,uAbCd,vcJkd,2,8,1,COMPLETED,2020-03-28 08:00:00,2020-03-28 08:00:10,2020-03-28 09:00:10,3600,10",
    "9000001,uAbCd,vchbv,8,32,1,SUSPENDED,2020-06-10 00:00:00,2020-06-10 00:01:00,2020-06-11 00:01:00,86400,60",
]) + "\n"

EARTH_CAPACITY = "\n".join([
    "date,vchbv,vcJkd,vcNew,total",
    "2020-03-28,8,16,0,24",
    "2020-03-29,8,16,4,30",  # total does not match the VC sum: rejected as one line
    "2020-03-30,8,16,4,28",
]) + "\n"

BAD_LINES = {  # Venus line number -> quarantine reason
    11: "end_time '2020-06-09 18:49:00' before start_time '2020-06-09 18:50:00'",
    12: "start_time '2020-06-09 18:48:00' before submit_time '2020-06-09 18:49:00'",
    13: "duplicate job_id '1425513'",
    14: "unknown state 'PREEMPTED' (expected one of " + ", ".join(STATUS) + ")",
    15: "wrong column count: expected 12 fields, found 11",
    16: "unparseable submit_time '2020-06-09 25:52:00' (expected YYYY-MM-DD HH:MM:SS)",
    17: "negative gpu_num '-1'",
}


def _write_fixture(root: Path) -> None:
    (root / "Venus").mkdir(parents=True)
    (root / "Earth").mkdir(parents=True)
    (root / "Venus" / "cluster_log.csv").write_text(VENUS_LOG)
    (root / "Earth" / "cluster_log.csv").write_text(EARTH_LOG)
    (root / "Earth" / "cluster_gpu_number.csv").write_text(EARTH_CAPACITY)


def test_cluster_log_fixture(tmp_path: Path, data_root, query) -> None:
    _write_fixture(tmp_path / "helios")
    result = run_source("helios_2020", tmp_path / "helios", data_root=data_root.root)
    counts = {t.table: (t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables}
    assert counts == {"jobs": (19, 12, 7), "utilization": (9, 8, 1)}  # 2 good days x (3 VCs + total) + 1 bad line
    reasons = query("SELECT line, reason FROM quarantine WHERE dataset = 'jobs' ORDER BY line")
    assert dict(reasons) == BAD_LINES
    (bad_capacity,) = query("SELECT source_file, line, reason, raw FROM quarantine WHERE dataset = 'utilization'")
    assert bad_capacity[1:] == (3, "total '30' differs from the sum of the VC columns (28)", "2020-03-29,8,16,4,30")
    assert bad_capacity[0].endswith("Earth/cluster_gpu_number.csv")

    # origin: the earliest submission over all clusters (Earth 2020-03-28 08:00 China time)
    (origin,) = query("SELECT origin_epoch_us FROM traces WHERE trace = 'helios'")
    assert origin == (epoch_us("2020-03-28 08:00:00"),)
    base = origin[0]

    def rel(text: str) -> float:
        return (epoch_us(text) - base) / 1e6

    jobs = {(r[0], r[1]): r[2:] for r in query(
        "SELECT cluster, job_id, \"user\", \"group\", submit_s, start_s, end_s, duration_s, num_gpus, num_cpus, "
        "num_nodes, status, raw_status FROM jobs")}
    assert jobs[("Venus", "1425511")] == (
        "uXBbc", "vcJkd", rel("2020-06-09 18:41:01"), rel("2020-06-09 18:41:01"), rel("2020-06-10 04:55:09"),
        None, 1.0, 1.0, 1, "completed", "COMPLETED")
    assert jobs[("Earth", "1425511")][:3] == ("uAbCd", "vcJkd", 0.0)  # same id in another cluster: kept
    assert jobs[("Venus", "1425514")][6:8] == (0.0, 4.0)  # CPU-only job kept
    assert jobs[("Venus", "1425517")][3:5] == (None, None)  # cancelled before start: no start/end
    assert jobs[("Venus", "1425518")][3:5] == (rel("2020-06-09 18:46:10"), None)
    assert jobs[("Venus", "1425516")][8] == 2
    statuses = {(c, raw): s for (c, _), (*_, s, raw) in jobs.items()}
    assert statuses == {
        ("Venus", "COMPLETED"): "completed", ("Venus", "FAILED"): "failed", ("Venus", "CANCELLED"): "cancelled",
        ("Venus", "TIMEOUT"): "failed", ("Venus", "NODE_FAIL"): "failed", ("Venus", "RUNNING"): "running",
        ("Earth", "COMPLETED"): "completed", ("Earth", "SUSPENDED"): "unknown",
    }
    # the duplicate 1425513 kept its first row (CANCELLED, 1 GPU), not the later COMPLETED one
    assert jobs[("Venus", "1425513")][-2:] == ("cancelled", "CANCELLED")
    derived = query("SELECT queue_s, run_s, gpu_s FROM jobs_derived WHERE cluster = 'Venus' AND job_id = '1425515'")
    assert derived == [(3600.0, 1209610.0, 8 * 1209610.0)]
    # upstream duration disagreeing with the times (100 s, 'sixty'): the row is kept and the times win
    kept = query("SELECT job_id, run_s FROM jobs_derived WHERE job_id IN ('1425519', '1425526') ORDER BY job_id")
    assert kept == [("1425519", 600.0), ("1425526", 60.0)]
    # VC ids collide across clusters: (cluster, group) keeps them apart
    per_vc = query("SELECT cluster, \"group\", count(*) FROM jobs WHERE \"group\" = 'vcJkd' GROUP BY ALL ORDER BY ALL")
    assert per_vc == [("Earth", "vcJkd", 1), ("Venus", "vcJkd", 4)]
    capacity = query("SELECT time_s, entity_kind, entity, value FROM utilization ORDER BY time_s, entity_kind DESC, entity")
    day = rel("2020-03-28 00:00:00")
    assert capacity[:4] == [(day, "vc", "vcJkd", 16.0), (day, "vc", "vcNew", 0.0), (day, "vc", "vchbv", 8.0),
                            (day, "cluster", "Earth", 24.0)]
    assert capacity[-1] == (day + 2 * 86400, "cluster", "Earth", 28.0)


def test_upstream_duration_queue_disagreements(tmp_path: Path) -> None:
    path = tmp_path / "cluster_log.csv"
    path.write_text(VENUS_LOG)
    inp = ResolvedInput(InputSpec("Venus/cluster_log.csv"), path, str(path))
    # job 1425519: 600 s between start and end, upstream says 100; job 1425526: upstream says 'sixty'
    assert upstream_disagreements(inp, "Venus") == {"duration": 2, "queue": 0, "rows": 10}


def test_zip_as_released(tmp_path: Path, data_root, query) -> None:
    (tmp_path / "download").mkdir()
    archive = tmp_path / "download" / "data.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/", "")
        zf.writestr("data/Venus/cluster_log.csv", VENUS_LOG)
        zf.writestr("data/Earth/cluster_log.csv", EARTH_LOG)
        zf.writestr("data/Earth/cluster_gpu_number.csv", EARTH_CAPACITY)
    for source_path in (archive, archive.parent):  # the zip itself, or a folder holding it
        result = run_source("helios_2020", source_path, data_root=data_root.root)
        assert {t.table: t.rows_out for t in result.tables} == {"jobs": 12, "utilization": 8}
        assert sorted(result.missing_inputs) == sorted(
            ["Saturn/cluster_log.csv", "Saturn/cluster_gpu_number.csv", "Uranus/cluster_log.csv",
             "Uranus/cluster_gpu_number.csv", "Venus/cluster_gpu_number.csv"])
        files = query("SELECT DISTINCT source_file FROM quarantine ORDER BY 1")
        assert [f[0].split("data.zip:")[-1] for f in files] == [
            "data/Earth/cluster_gpu_number.csv", "data/Venus/cluster_log.csv"]
        assert all("data.zip:" in f[0] for f in files)
    assert query("SELECT count(*), count(DISTINCT cluster) FROM jobs") == [(12, 2)]


def test_headers_are_checked(tmp_path: Path, data_root) -> None:
    (tmp_path / "Venus").mkdir()
    log = tmp_path / "Venus" / "cluster_log.csv"
    log.write_text(VENUS_LOG.replace("node_num,state", "nodes,state", 1))
    with pytest.raises(FormatError, match=r"Venus/cluster_log\.csv: line 1: expected header"):
        run_source("helios_2020", tmp_path, data_root=data_root.root)
    log.unlink()
    (tmp_path / "Venus" / "cluster_gpu_number.csv").write_text("date,vcA,vcB\n2020-04-01,1,2\n")
    with pytest.raises(FormatError, match=r"cluster_gpu_number\.csv: line 1: expected 'date', one column per VC"):
        run_source("helios_2020", tmp_path, data_root=data_root.root)
    (tmp_path / "Venus" / "cluster_gpu_number.csv").write_text("date,vcA,vcA,total\n2020-04-01,1,2,3\n")
    with pytest.raises(FormatError, match="a VC column appears twice"):
        run_source("helios_2020", tmp_path, data_root=data_root.root)
    assert not data_root.catalog.exists()  # nothing was committed


def test_slurm_and_pandas_null_time_tokens(tmp_path: Path, data_root, query) -> None:
    (tmp_path / "Uranus").mkdir()
    (tmp_path / "Uranus" / "cluster_log.csv").write_text(HEADER + "\n" + "\n".join([
        "7,uA,vcA,1,1,1,RUNNING,2020-09-28 23:00:00,2020-09-28 23:10:00,Unknown,,600",
        "8,uA,vcA,1,1,1,CANCELLED,2020-09-28 23:01:00,None,NaT,0,0",
        "9,uA,vcA,1,1,1,CANCELLED,Unknown,2020-09-28 23:10:00,2020-09-28 23:11:00,60,0",  # only start/end may be missing
    ]) + "\n")
    run_source("helios_2020", tmp_path, data_root=data_root.root)
    assert query("SELECT job_id, start_s, end_s FROM jobs ORDER BY job_id") == [("7", 600.0, None), ("8", None, None)]
    assert query("SELECT line, reason FROM quarantine") == [
        (4, "unparseable submit_time 'Unknown' (expected YYYY-MM-DD HH:MM:SS)")]


def test_fast_path_skips_the_dedup_pass_unless_ids_repeat(tmp_path: Path, data_root, query) -> None:
    """Clean logs take the fast plan (no duplicate pass: the writer checks the ids); a repeated id
    sends the source to the robust plan, whose dedup keeps the first row."""
    rows = VENUS_LOG.splitlines()[1:4]  # 1425511-1425513, all good
    clean, dup = tmp_path / "clean" / "Venus", tmp_path / "dup" / "Venus"
    for folder, lines in ((clean, rows), (dup, [*rows, rows[0].replace("uXBbc", "uOther")])):
        folder.mkdir(parents=True)
        (folder / "cluster_log.csv").write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    said: list[str] = []
    result = run_source("helios_2020", clean.parent, data_root=data_root.root, progress=said.append)
    assert not any("re-reading" in m for m in said)
    assert {t.table: (t.rows_out, t.rows_quarantined) for t in result.tables} == {"jobs": (3, 0)}
    said.clear()
    result = run_source("helios_2020", dup.parent, data_root=data_root.root, progress=said.append)
    assert any("some keys repeat" in m for m in said) and any("re-reading" in m for m in said)
    assert {t.table: (t.rows_out, t.rows_quarantined) for t in result.tables} == {"jobs": (3, 1)}
    assert query("SELECT reason FROM quarantine WHERE dataset = 'jobs'") == [("duplicate job_id '1425511'",)]
    assert query("SELECT user FROM jobs WHERE job_id = '1425511'") == [("uXBbc",)]
