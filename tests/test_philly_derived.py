"""Derived Philly traces: the real staged files, and small fixtures in the same formats for the quirks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import FormatError
from ingest.pipeline import run_source

LAST_PHILLY_SUBMIT_EPOCH_S = 1513958531  # 2017-12-22 08:02:11 PST
SIA_ORIGIN_EPOCH_S = 1504546241  # 2017-09-04 10:30:41 PDT


@pytest.fixture
def real(traces: Path, data_root):
    return run_source("philly_derived", traces / "philly", data_root=data_root.root)


def test_real_counts(real, query) -> None:
    got = {(t.trace, t.table): (t.rows_in, t.rows_out, t.rows_quarantined) for t in real.tables}
    assert got == {
        ("philly_sia_jobs", "jobs"): (82248, 82182, 66),  # 82,247 data lines + 1 blank line
        ("philly_rfold_jobs", "jobs"): (111549, 111549, 0),
        ("philly_multigpu_pass", "jobs"): (3034, 3034, 0),
        ("philly_multigpu_pass", "attempts"): (None, 4490, 0),
        ("philly_node_sequence", "utilization"): (211288, 211288, 0),  # 105,644 lines x 2 metrics
        ("philly_vc", "utilization"): (11, 11, 0),
    }
    assert real.missing_inputs == []
    assert query("SELECT trace FROM traces WHERE derived ORDER BY trace") == [
        ("philly_multigpu_pass",), ("philly_node_sequence",), ("philly_rfold_jobs",), ("philly_sia_jobs",), ("philly_vc",)]


def test_real_sia(real, query) -> None:
    reasons = query("SELECT line, reason FROM quarantine WHERE trace = 'philly_sia_jobs' ORDER BY line")
    assert reasons[-1] == (82249, "blank line")
    assert reasons[0] == (3137, "duplicate row (identical to line 3136)")
    assert sum(r.startswith("duplicate row") for _, r in reasons) == 65
    assert (19993, "duplicate row (identical to line 19992)") in reasons  # a line present three times
    assert (19994, "duplicate row (identical to line 19992)") in reasons
    (origin,) = query("SELECT origin_epoch_us FROM traces WHERE trace = 'philly_sia_jobs'")[0]
    assert origin == SIA_ORIGIN_EPOCH_S * 1_000_000
    # line 2: 2017-10-09 07:01:55,66.0,1,66.0,11cb48
    assert query("SELECT cluster, \"group\", submit_s, duration_s, num_gpus, status, start_s FROM jobs "
                 "WHERE trace = 'philly_sia_jobs' AND job_id = 'sia-2'") == [
        ("11cb48", "11cb48", 1507557715 - SIA_ORIGIN_EPOCH_S, 66.0, 1.0, "unknown", None)]
    assert query("SELECT count(DISTINCT cluster), max(submit_s) FROM jobs WHERE trace = 'philly_sia_jobs'") == [
        (15, LAST_PHILLY_SUBMIT_EPOCH_S - SIA_ORIGIN_EPOCH_S)]


def test_real_rfold(real, query) -> None:
    (origin,) = query("SELECT origin_epoch_us FROM traces WHERE trace = 'philly_rfold_jobs'")[0]
    assert origin == 1502778420 * 1_000_000  # 2017-08-14 23:27:00 PDT
    assert query("SELECT submit_s, duration_s, num_gpus, num_nodes FROM jobs WHERE trace = 'philly_rfold_jobs' "
                 "AND job_id IN ('0', '111548') ORDER BY submit_s") == [
        (0.0, 3613033.0, 1.0, 1), (LAST_PHILLY_SUBMIT_EPOCH_S - 1502778420, 64.0, 1.0, 1)]
    assert query("SELECT sum(num_gpus), count(*) FILTER (duration_s = 0), count(*) FILTER (num_nodes = 2) "
                 "FROM jobs WHERE trace = 'philly_rfold_jobs'") == [(194266.0, 10, 2222)]


def test_real_multigpu_pass(real, traces: Path, query) -> None:
    upstream = {j["id"]: j for j in json.loads((traces / "philly" / "jobs_multigpu_pass.json").read_text())}
    rows = query("SELECT job_id, submit_s, start_s, end_s, num_gpus, status FROM jobs WHERE trace = 'philly_multigpu_pass'")
    assert len(rows) == 3034 and {r[5] for r in rows} == {"completed"}
    first = {r[0]: r for r in rows}["application_1506638472019_14199"]
    assert first[1:5] == (first[1], first[1] + 30, first[1] + 30 + 193263, 8.0)  # runtime 3221.05 min
    # upstream runtime is naive wall-clock minutes: only the 62 jobs running across the 2017-11-05 fall-back
    # are one real hour longer
    extra = sorted(round(end - start - upstream[job]["runtime"] * 60) for job, _, start, end, _, _ in rows)
    assert (extra.count(0), extra.count(3600), len(extra)) == (2972, 62, 3034)
    assert query("SELECT n, count(*) FROM (SELECT job_id, count(*) AS n FROM attempts "
                 "WHERE trace = 'philly_multigpu_pass' GROUP BY 1) GROUP BY 1 ORDER BY 1") == [
        (1, 2218), (2, 442), (3, 180), (4, 122), (5, 72)]


def test_real_node_sequence_and_vc(real, query) -> None:
    seq = "FROM utilization WHERE trace = 'philly_node_sequence' AND metric = 'total_nodes'"
    assert query(f"SELECT count(*), min(time_s), max(time_s) {seq}") == [(105644, 0.0, 6378120.0)]
    assert query(f"SELECT count(*), min(time_s) {seq} AND value = 174") == [(60, 2854800.0)]  # 2017-11-05 01:xx PDT
    steps = query(f"SELECT d, count(*) FROM (SELECT time_s - lag(time_s) OVER (ORDER BY time_s) AS d {seq}) "
                  "WHERE d <> 60 GROUP BY d ORDER BY d")
    assert steps == [(3660.0, 1), (36000.0, 1)]  # 01:59 PDT -> 02:00 PST, and the 10-25 14:00 -> 10-26 00:00 gap
    assert query("SELECT entity_kind, entity, metric, value FROM utilization WHERE trace = 'philly_node_sequence' "
                 "ORDER BY time_s, metric LIMIT 2") == [("cluster", "philly", "active_nodes", 312.0),
                                                        ("cluster", "philly", "total_nodes", 420.0)]
    assert query("SELECT count(*), sum(value), min(time_s), max(time_s) FROM utilization "
                 "WHERE trace = 'philly_vc' AND metric = 'vc_nodes' AND entity_kind = 'vc'") == [(11, 352.0, 0.0, 0.0)]


SIA = ("timestamp,duration,num_gpus,gpu_time,cluster\n"
       "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"
       "2017-10-09 06:13:03,2951.0,4,11804.0,6214e9\n"  # earlier than line 2: not sorted
       "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"  # duplicate of line 2
       "2017-10-09 07:01:56,66.0,2,66.0,11cb48\n"  # gpu_time is not duration x num_gpus
       "2017-11-05 01:30:00,10.0,1,10.0,\n"  # missing cluster
       "2017-11-05 01:30:00,10.0,1,10.0,6214e9\n"  # ambiguous: first occurrence
       "2017-10-09,10.0,1,10.0,6214e9\n"
       "\n")
RFOLD = ("#job id,arrival time (sec),topology,shape,size,duration (sec)\r\n"
         "0,0.0,CLOS,1,1,3613033.0\r\n"
         "1,266563.0,CLOS,2+2,4,60.0\r\n"
         "2,266564.0,CLOS,2+2,8,60.0\r\n"
         "3,266565.0,CLOS,2+x,4,60.0\r\n"
         "1,266566.0,CLOS,1,1,60.0\r\n"
         "5,-1.0,CLOS,1,1,60.0")  # no trailing newline, like upstream
MULTIGPU = [
    {"id": "application_1", "num_gpus": 8, "runtime": 2.0,
     "attempts": [{"start_time": "2017-10-07 01:12:09", "end_time": "2017-10-07 01:13:09"},
                  {"start_time": "2017-10-07 01:13:30", "end_time": "2017-10-07 01:14:30"}], "submitted_time": "2017-10-07 01:11:39"},
    {"id": "application_2", "num_gpus": "eight", "runtime": 1.0, "attempts": [], "submitted_time": "2017-10-07 01:11:39"},
    {"id": "application_3", "num_gpus": 4, "runtime": 1.0,
     "attempts": [{"start_time": "2017-10-07 02:00:00", "end_time": "2017-10-07 01:00:00"}], "submitted_time": "2017-10-07 01:11:39"},
]


def test_fixture_quirks(tmp_path: Path, data_root, query) -> None:
    (tmp_path / "philly_jobs_sia.csv").write_text(SIA)
    (tmp_path / "philly_jobs_rfold.csv").write_bytes(RFOLD.encode())
    (tmp_path / "jobs_multigpu_pass.json").write_text(json.dumps(MULTIGPU, indent=4))
    (tmp_path / "philly_node_sequence.csv").write_text("time,active,total\n2017-10-03 00:00:00,312,420\n2017-10-03 00:01:00,421,420\n")
    (tmp_path / "philly_vc.csv").write_text("vc,node num\n6214e9,64\n6214e9,8\n7f04ca,\n")
    result = run_source("philly_derived", tmp_path, data_root=data_root.root)
    got = {(t.trace, t.table): (t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables}
    assert got[("philly_sia_jobs", "jobs")] == (8, 3, 5)
    assert got[("philly_rfold_jobs", "jobs")] == (6, 2, 4)
    assert got[("philly_multigpu_pass", "jobs")] == (3, 1, 2)
    assert got[("philly_node_sequence", "utilization")] == (3, 2, 1)
    assert got[("philly_vc", "utilization")] == (3, 1, 2)
    reasons = query("SELECT trace, line, reason FROM quarantine ORDER BY trace, line")
    assert reasons == [
        ("philly_multigpu_pass", 2, "unparseable num_gpus 'eight' (expected a number >= 0)"),
        ("philly_multigpu_pass", 3, "end before start: attempts[0].end_time '2017-10-07 01:00:00' < start_time '2017-10-07 02:00:00'"),
        ("philly_node_sequence", 3, "active '421' exceeds total '420'"),
        ("philly_rfold_jobs", 4, "shape '2+2' does not add up to size '8'"),
        ("philly_rfold_jobs", 5, "unparseable shape '2+x' (expected GPUs per node joined by '+', e.g. 4+4)"),
        ("philly_rfold_jobs", 6, "duplicate job id '1'"),
        ("philly_rfold_jobs", 7, "negative arrival time (sec) '-1.0'"),
        ("philly_sia_jobs", 4, "duplicate row (identical to line 2)"),
        ("philly_sia_jobs", 5, "gpu_time '66.0' is not duration x num_gpus (132.0)"),
        ("philly_sia_jobs", 6, "missing cluster"),
        ("philly_sia_jobs", 8, "unparseable timestamp '2017-10-09' (expected YYYY-MM-DD HH:MM:SS)"),
        ("philly_sia_jobs", 9, "blank line"),
        ("philly_vc", 3, "duplicate vc '6214e9'"),
        ("philly_vc", 4, "missing node num"),
    ]
    # sia: origin is line 3 (06:13:03 PDT); the ambiguous 2017-11-05 01:30 is the PDT one (08:30 UTC)
    sia = dict(query("SELECT job_id, submit_s FROM jobs WHERE trace = 'philly_sia_jobs'"))
    assert sia == {"sia-2": 2932.0, "sia-3": 0.0, "sia-7": 1509870600.0 - 1507554783}
    assert query("SELECT job_id, submit_s, duration_s, num_gpus, num_nodes FROM jobs "
                 "WHERE trace = 'philly_rfold_jobs' ORDER BY job_id") == [("0", 0.0, 3613033.0, 1.0, 1),
                                                                          ("1", 266563.0, 60.0, 4.0, 2)]
    assert query("SELECT submit_s, start_s, end_s, num_gpus, status FROM jobs WHERE trace = 'philly_multigpu_pass'") == [
        (0.0, 30.0, 171.0, 8.0, "completed")]
    assert query("SELECT attempt, start_s, end_s, num_gpus, machines FROM attempts ORDER BY attempt") == [
        (0, 30.0, 90.0, None, None), (1, 111.0, 171.0, None, None)]


def test_rfold_header_must_start_with_hash(tmp_path: Path, data_root) -> None:
    (tmp_path / "philly_jobs_rfold.csv").write_text(RFOLD.replace("#job id", "job id", 1))
    with pytest.raises(FormatError, match=r"philly_jobs_rfold.csv: line 1: expected header '#job id,arrival"):
        run_source("philly_derived", tmp_path, data_root=data_root.root)
    assert not data_root.lake.exists()
