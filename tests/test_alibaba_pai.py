"""Alibaba PAI GPU 2020: the real machine-spec archive, and all 7 tables on generated fixtures in the
exact upstream format (headerless CSVs, each packed alone at the root of ``<table>.tar.gz``)."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.errors import ArchiveError, ChecksumError, FormatError
from ingest.inputs import resolve_inputs
from ingest.lake import partition_dir
from ingest.pipeline import run_source
from ingest.sources import get_source
from ingest.sources.alibaba_pai_tables import COLUMNS

SOURCE = "alibaba_pai_2020"
SPEC_TAR_SHA = "cc0d38a4045af1b1af8179de8b1b54b1ddd995e6160d6d061a6b1000f1276c2d"
SPEC_CSV_SHA = "251e9e33649155a6a935fdc1dc0e90cd4698206936b60bd8fce60ff2ccd51439"


# ------------------------------------------------------------------------------------ real files


def test_columns_equal_the_upstream_header_files(traces: Path) -> None:
    folder = traces / "alibaba_pai_2020"
    for table, columns in COLUMNS.items():
        header = (folder / f"{table}.header").read_text()
        assert header.endswith("\n")
        assert tuple(header.rstrip("\n").split(",")) == columns, table


def test_real_machine_spec_archive(traces: Path, data_root, query) -> None:
    result = run_source(SOURCE, traces / "alibaba_pai_2020", data_root=data_root.root)
    assert [(t.table, t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables] == [("machines", 1897, 1897, 0)]
    assert query("SELECT count(*), sum(num_gpus) FROM machines") == [(1897, 6742)]
    per_type = query(
        "SELECT gpu_type, count(*), min(num_gpus), max(num_gpus), min(num_cpus), max(num_cpus) FROM machines "
        "GROUP BY gpu_type ORDER BY gpu_type"
    )
    assert per_type == [
        ("CPU", 83, 0, 0, 96.0, 96.0),
        ("MISC", 280, 8, 8, 96.0, 96.0),
        ("P100", 798, 2, 2, 64.0, 64.0),
        ("T4", 497, 2, 2, 96.0, 96.0),
        ("V100", 104, 8, 8, 96.0, 96.0),
        ("V100M32", 135, 8, 8, 96.0, 96.0),
    ]
    assert query("SELECT mem_gb, count(*) FROM machines WHERE gpu_type = 'V100' GROUP BY 1 ORDER BY 1") == [
        (384.0, 45), (512.0, 59)]
    assert query("SELECT count(*) FROM machines WHERE gpu_mem_gb IS NOT NULL OR cluster IS NOT NULL") == [(0,)]
    (inputs,) = query("SELECT inputs FROM traces WHERE trace = 'alibaba_pai_2020'")[0]
    assert inputs.endswith("pai_machine_spec.tar.gz:pai_machine_spec.csv")


def test_real_archive_and_member_checksums_are_verified(traces: Path, tmp_path: Path) -> None:
    source = get_source(SOURCE)
    found = resolve_inputs(source.inputs, traces / "alibaba_pai_2020", tmp_path, checksums=source.checksums)
    assert sorted(found.verified.values()) == sorted([SPEC_TAR_SHA, SPEC_CSV_SHA])
    assert len(source.downloads) == 7 and len(source.checksums) == 14
    assert all(f.url.startswith("https://aliopentrace.oss-cn-beijing.aliyuncs.com/v2020GPUTraces/") for f in source.downloads)


def _modified_spec(traces: Path) -> bytes:
    with tarfile.open(traces / "alibaba_pai_2020" / "pai_machine_spec.tar.gz") as tf:
        text = tf.extractfile("pai_machine_spec.csv").read()
    first = text.split(b"\n", 1)[0]
    assert first.endswith(b",CPU,96,512,0")
    return text.replace(first, first[:-len(b"96,512,0")] + b"48,256,0", 1)


def test_modified_archive_fails_checksum_unless_verify_off(traces: Path, tmp_path: Path, data_root, query) -> None:
    folder = tmp_path / "pai"
    _write_tar(folder / "pai_machine_spec.tar.gz", "pai_machine_spec.csv", _modified_spec(traces))
    with pytest.raises(ChecksumError, match="pai_machine_spec.tar.gz: checksum mismatch"):
        run_source(SOURCE, folder, data_root=data_root.root)
    assert not data_root.catalog.exists()
    run_source(SOURCE, folder, data_root=data_root.root, verify=False)
    assert query("SELECT count(*), min(num_cpus), min(mem_gb) FROM machines") == [(1897, 48.0, 256.0)]


def test_modified_extracted_csv_fails_checksum(traces: Path, tmp_path: Path, data_root) -> None:
    folder = tmp_path / "pai"
    folder.mkdir()
    (folder / "pai_machine_spec.csv").write_bytes(_modified_spec(traces))
    with pytest.raises(ChecksumError, match=f"pai_machine_spec.csv: checksum mismatch: expected sha256 {SPEC_CSV_SHA}"):
        run_source(SOURCE, folder, data_root=data_root.root)


# ------------------------------------------------------------------------------- fixtures

_WIDTH = {"J": 24, "I": 60, "N": 60, "W": 60, "U": 12, "G": 32, "M": 24}


class _Ids(dict):
    """``{J1}`` -> a stable 24-hex job name, ``{W1}`` -> 60-hex worker name, ... (widths as upstream)."""

    def __missing__(self, key: str) -> str:
        value = hashlib.sha256(key.encode()).hexdigest()[: _WIDTH[key[0]]]
        self[key] = value
        return value


ID = _Ids()

TABLES = {
    "pai_job_table": [
        "{J1},{I1},{U1},Terminated,1000.0,2000.0",
        "{J2},{I2},{U2},Failed,1500,1600",  # integer-formatted times
        "{J3},{I3},{U3},Running,1200.0,",  # end empty: still running
        "{J4},{I4},{U4},Running,1300.0,0",  # end as literal 0; no tasks at all
        "{J5},{I5},{U5},Waiting,,",  # both times empty -> no submission time
        "{J6},{I6},{U6},Waiting,0,0",  # both times 0
        "{J7},{I7},{U7},Waiting,1700.0,",
        "{J8},{I8},{U8},Killed,1800.0,1900.0",
        "{J9},{I9},{U9},Terminated,1800.0",
        "{J10},{I10},{U10},Terminated,2000.0,1900.0",
        "{J1},{I1},{U1},Terminated,1000.0,2000.0",
        ",{I12},{U12},Terminated,1000.0,1100.0",
        "{J13},{I13},{U13},Terminated,abc,1100.0",
        "{J14},{I14},{U14},Terminated,1000.0,1050.0",  # its task starts at 1100
        "{J15},{I15},{U15},Failed,-5.0,1000.0",
    ],
    "pai_task_table": [
        "{J1},tensorflow,2.0,Terminated,1100.0,1900.0,600.0,29.296875,50.0,V100",
        "{J2},ps,1.0,Failed,1550.0,1590.0,600.0,10.0,,",  # CPU task: plan_gpu and gpu_type empty
        "{J2},worker,1.0,Failed,1520.0,1590.0,400.0,10.0,25.0,T4",
        "{J3},worker,4.0,Running,1250.0,,100.0,20.0,100.0,V100M32",
        "{J3},evaluator,1,Running,1260,0,50,4,100,MISC",
        "{J7},tensorflow,1.0,Waiting,0,,100.0,8.0,100.0,",
        "{J14},tensorflow,1.0,Terminated,1100.0,1200.0,100.0,1.0,0.0,",
        "{J3},worker,2.0,Running,1250.0,,100.0,20.0,100.0,V100M32",
        "{J1},ps,x,Terminated,1100,1200,100,1,0,",
        "{J1},chief,1.5,Terminated,1100,1200,100,1,0,",
        "{J1},evaluator,1.0,Done,1100,1200,100,1,0,",
        "{J1},worker,1.0,Terminated,1100,1200,100,1,0",
        "{J1},extra,1.0,Terminated,1300.0,1200.0,100,1,0,",
        "{J1},neg,1.0,Terminated,1100,1200,-100,1,0,",
    ],
    "pai_instance_table": [
        "{J1},tensorflow,{N1},{W1},{I1},Failed,1100.0,1200.0,{M1}",
        "{J1},tensorflow,{N1},{W1},{I1},Terminated,1100.0,1900.0,{M1}",  # kept: last by (status, start, end)
        "{J1},tensorflow,{N1},{W1},{I1},Terminated,1100.0,1800.0,{M2}",
        "{J2},worker,{N2},{W2},{I2},Failed,1520.0,1590.0,{M1}",
        "{J2},worker,{N2},{W2},{I2},Failed,1520.0,1590.0,{M2}",  # kept: exact tie, later line
        "{J3},worker,{N3},{W3},{I3},Running,1250.0,,{M1}",  # kept: an empty end sorts last
        "{J3},worker,{N3},{W3},{I3},Running,1250.0,1400.0,{M2}",
        "{J3},evaluator,{N4},{W4},{I3},Running,1260.0,1300.0,{M2}",  # kept: a 0 start sorts first
        "{J3},evaluator,{N4},{W4},{I3},Running,0,1300.0,{M1}",
        "{J1},tensorflow,{N5},,{I1},Terminated,1100.0,1900.0,{M1}",
        "{J1},tensorflow,{N6},{W6},{I1},Terminated,1100.0,1900.0",
        "{J1},tensorflow,{N7},{W7},{I1},Lost,1100.0,1900.0,{M1}",
        "{J1},tensorflow,{N8},{W8},{I1},Terminated,1100.0,1900.0,{M3}",
        "{J1},tensorflow,{N8},{W8},{I1},Zombie,1100.0,2000.0,{M3}",  # rejected rows claim no worker
    ],
    "pai_sensor_table": [
        "{J1},tensorflow,{W1},{I1},{M1},/dev/nvidia0,140.0,16.0625,1.5,2.5,1.25,2.5,"
        "21271328.384615384,16376189.815384615,2922.4461538461537,3419.7846153846153",
        "{J2},ps,{W9},{I2},{M1},,250.0,,3.0,4.0,,,100.0,200.0,1.0,2.0",
        "{J99},worker,{W99},{I99},{M1},/dev/nvidia1,10,10,1,1,1,1,1,1,1,1",
        "{J1},tensorflow,{W1},{I1},{M1},/dev/nvidia0,abc,16,1,1,1,1,1,1,1,1",
        "{J1},tensorflow,,{I1},{M1},/dev/nvidia0,1,1,1,1,1,1,1,1,1,1",
    ],
    "pai_group_tag_table": [
        "{I1},{U1},V100,{G1},bert",
        "{I2},{U2},,,",  # empty group -> the user
        "{I4},{U4},,{G4},ctr",
        "{I1},{U1},,{GX},",  # repeated inst_id: the first row wins
    ],
    "pai_machine_metric": [
        "{W1},{M1},1100,1900,1.5,2.0,30.0,80.0,3.2,1000.5,2.5,35.0",
        "{W3},{M1},0,,1,1,1,1,1,1,1,1",
        "{W2},{M2},1600,1500,1,1,1,1,1,1,1,1",
        ",{M2},1600,1700,1,1,1,1,1,1,1,1",
    ],
    "pai_machine_spec": [
        "{M1},V100,96,512,8",
        "{M2},T4,96.0,512.0,2.0",
        "{M3},CPU,96,512,0",
        "{M1},V100,96,512,8",
    ],
}


def _text(table: str) -> bytes:
    return "".join(line.format_map(ID) + "\n" for line in TABLES[table]).encode()


def _write_tar(path: Path, member: str, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def write_fixture(folder: Path, *, packed: bool) -> Path:
    """All 7 tables as upstream ships them (``packed``) or as the extracted CSVs."""
    folder.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        if packed:
            _write_tar(folder / f"{table}.tar.gz", f"{table}.csv", _text(table))
        else:
            (folder / f"{table}.csv").write_bytes(_text(table))
    return folder


def _q(reason: str) -> str:
    return reason.format_map(ID)


STATUS_LIST = "Terminated, Failed, Running, Waiting"
EXPECTED_QUARANTINE = [
    ("jobs", 5, "missing start_time (empty or 0)"),
    ("jobs", 6, "missing start_time (empty or 0)"),
    ("jobs", 8, f"unknown status 'Killed' (expected one of {STATUS_LIST})"),
    ("jobs", 9, "wrong column count: expected 6 fields, found 5"),
    ("jobs", 10, "end_time before start_time (submission)"),
    ("jobs", 11, _q("duplicate job_name '{J1}'")),
    ("jobs", 12, "missing job_name"),
    ("jobs", 13, "unparseable start_time 'abc'"),
    ("jobs", 14, "end_time before the earliest task start_time"),
    ("jobs", 15, "negative start_time '-5.0'"),
    ("machines", 4, _q("duplicate machine '{M1}'")),
    ("pai_instance_usage", 4, "unparseable cpu_usage 'abc'"),
    ("pai_instance_usage", 5, "missing worker_name"),
    ("pai_instances", 1, _q("duplicate worker_name '{W1}' (line 2 kept)")),
    ("pai_instances", 3, _q("duplicate worker_name '{W1}' (line 2 kept)")),
    ("pai_instances", 4, _q("duplicate worker_name '{W2}' (line 5 kept)")),
    ("pai_instances", 7, _q("duplicate worker_name '{W3}' (line 6 kept)")),
    ("pai_instances", 9, _q("duplicate worker_name '{W4}' (line 8 kept)")),
    ("pai_instances", 10, "missing worker_name"),
    ("pai_instances", 11, "wrong column count: expected 9 fields, found 8"),
    ("pai_instances", 12, f"unknown status 'Lost' (expected one of {STATUS_LIST})"),
    ("pai_instances", 14, f"unknown status 'Zombie' (expected one of {STATUS_LIST})"),
    ("pai_machine_metric", 3, "end_time before start_time"),
    ("pai_machine_metric", 4, "missing worker_name"),
    ("pai_tasks", 8, _q("duplicate job_name/task_name '{J3}/worker'")),
    ("pai_tasks", 9, "unparseable inst_num 'x'"),
    ("pai_tasks", 10, "non-integer inst_num '1.5'"),
    ("pai_tasks", 11, f"unknown status 'Done' (expected one of {STATUS_LIST})"),
    ("pai_tasks", 12, "wrong column count: expected 10 fields, found 9"),
    ("pai_tasks", 13, "end_time before start_time"),
    ("pai_tasks", 14, "negative plan_cpu '-100'"),
]


def _approx(value):
    return pytest.approx(value, rel=1e-15) if isinstance(value, float) else value


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and ".staging" not in p.parts}


# --------------------------------------------------------------------------- fixture tests


@pytest.mark.parametrize("packed", [True, False], ids=["tar.gz", "plain"])
def test_fixture_all_tables(tmp_path: Path, data_root, query, packed: bool) -> None:
    folder = write_fixture(tmp_path / "pai", packed=packed)
    result = run_source(SOURCE, folder, data_root=data_root.root, verify=False)
    counts = {t.table: (t.rows_in, t.rows_out, t.rows_quarantined) for t in result.tables}
    assert counts == {
        "jobs": (15, 5, 10),
        "pai_tasks": (14, 7, 7),
        "pai_instances": (14, 5, 9),
        "pai_instance_usage": (5, 3, 2),
        "pai_machine_metric": (4, 2, 2),
        "machines": (4, 3, 1),
    }
    assert result.missing_inputs == []
    assert query("SELECT dataset, line, reason FROM quarantine ORDER BY dataset, line") == EXPECTED_QUARANTINE
    shown = f"{folder / 'pai_job_table.tar.gz'}:pai_job_table.csv" if packed else str(folder / "pai_job_table.csv")
    assert query("SELECT DISTINCT source_file FROM quarantine WHERE dataset = 'jobs'") == [(shown,)]

    jobs = query(
        'SELECT job_id, "user", "group", submit_s, start_s, end_s, start_s - submit_s, num_gpus, num_cpus, gpu_type, '
        "status, raw_status, cluster, num_nodes, duration_s FROM jobs ORDER BY submit_s"
    )
    assert jobs == [tuple(_q(v) if isinstance(v, str) else v for v in row) for row in [
        # submit 1000 s is the origin; waiting time = earliest task start - submission
        ("{J1}", "{U1}", "{G1}", 0.0, 100.0, 1000.0, 100.0, 1.0, 12.0, "V100", "completed", "Terminated", None, None, None),
        ("{J3}", "{U3}", "{U3}", 200.0, 250.0, None, 50.0, 5.0, 4.5, "V100M32", "running", "Running", None, None, None),
        ("{J4}", "{U4}", "{G4}", 300.0, None, None, None, 0.0, None, None, "running", "Running", None, None, None),
        ("{J2}", "{U2}", "{U2}", 500.0, 520.0, 600.0, 20.0, 0.25, 10.0, "T4", "failed", "Failed", None, None, None),
        ("{J7}", "{U7}", "{U7}", 700.0, None, None, None, 1.0, 1.0, None, "pending", "Waiting", None, None, None),
    ]]

    tasks = query(
        "SELECT job_id, task_name, num_instances, status, start_s, end_s, plan_cpus, plan_mem_gb, plan_gpus, gpu_type "
        "FROM pai_tasks ORDER BY job_id, task_name"
    )
    expected_tasks = [
        ("{J1}", "tensorflow", 2, "completed", 100.0, 900.0, 6.0, 29.296875, 0.5, "V100"),
        ("{J2}", "ps", 1, "failed", 550.0, 590.0, 6.0, 10.0, None, None),
        ("{J2}", "worker", 1, "failed", 520.0, 590.0, 4.0, 10.0, 0.25, "T4"),
        ("{J3}", "evaluator", 1, "running", 260.0, None, 0.5, 4.0, 1.0, "MISC"),
        ("{J3}", "worker", 4, "running", 250.0, None, 1.0, 20.0, 1.0, "V100M32"),
        ("{J7}", "tensorflow", 1, "pending", None, None, 1.0, 8.0, 1.0, None),
        ("{J14}", "tensorflow", 1, "completed", 100.0, 200.0, 1.0, 1.0, 0.0, None),
    ]
    assert tasks == sorted(tuple(_q(v) if isinstance(v, str) else v for v in row) for row in expected_tasks)

    instances = query("SELECT worker_name, status, raw_status, start_s, end_s, machine FROM pai_instances ORDER BY start_s NULLS FIRST, worker_name")
    assert sorted(instances) == sorted(tuple(_q(v) if isinstance(v, str) else v for v in row) for row in [
        ("{W1}", "completed", "Terminated", 100.0, 900.0, "{M1}"),
        ("{W2}", "failed", "Failed", 520.0, 590.0, "{M2}"),
        ("{W3}", "running", "Running", 250.0, None, "{M1}"),
        ("{W4}", "running", "Running", 260.0, 300.0, "{M2}"),
        ("{W8}", "completed", "Terminated", 100.0, 900.0, "{M3}"),
    ])

    usage = query(
        "SELECT worker_name, gpu_name, plan_cpus, plan_mem_gb, plan_gpus, used_cpus, used_gpus, avg_mem_gb, max_gpu_mem_gb, "
        "read_bytes, write_count FROM pai_instance_usage ORDER BY used_cpus"
    )
    # polars divides by a constant as a multiplication by its reciprocal: 140 / 100 -> 1.4000000000000001
    assert usage == [tuple(_q(v) if isinstance(v, str) else _approx(v) for v in row) for row in [
        ("{W99}", "/dev/nvidia1", None, None, None, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0),  # no task: no plan
        ("{W1}", "/dev/nvidia0", 6.0, 29.296875, 0.5, 1.4, 0.160625, 1.5, 2.5, 21271328.384615384, 3419.7846153846153),
        ("{W9}", None, 6.0, 10.0, None, 2.5, None, 3.0, None, 100.0, 2.0),
    ]]

    metric = query("SELECT worker_name, start_s, end_s, cpu_iowait, cpu_kernel, cpu_usr, gpu, load_1, net_receive, num_workers, cpu "
                   "FROM pai_machine_metric ORDER BY start_s NULLS LAST")
    assert metric == [
        (ID["W1"], 100.0, 900.0, 1.5, 2.0, 30.0, 80.0, 3.2, 1000.5, 2.5, 35.0),
        (ID["W3"], None, None, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    ]
    assert query("SELECT machine_id, gpu_type, num_gpus, num_cpus, mem_gb FROM machines ORDER BY num_gpus") == [
        (ID["M3"], "CPU", 0, 96.0, 512.0), (ID["M2"], "T4", 2, 96.0, 512.0), (ID["M1"], "V100", 8, 96.0, 512.0)]

    jobs_file = partition_dir(data_root, "jobs", SOURCE) / "part-0.parquet"
    assert pq.read_table(jobs_file).column("job_id").to_pylist() == [ID[j] for j in ("J1", "J3", "J4", "J2", "J7")]
    meta = pq.read_schema(jobs_file).metadata
    assert meta[b"tracelab.origin_epoch_us"] == b"1000000000"
    assert meta[b"tracelab.time_zone"] == b"Asia/Shanghai"
    assert query("SELECT rows_in, rows_out, rows_quarantined FROM traces") == [(56, 25, 31)]


def test_fixture_checksums_are_enforced(tmp_path: Path, data_root) -> None:
    folder = write_fixture(tmp_path / "pai", packed=True)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        run_source(SOURCE, folder, data_root=data_root.root)


def test_jobs_without_task_and_group_tables(tmp_path: Path, data_root, query) -> None:
    folder = tmp_path / "pai"
    folder.mkdir()
    (folder / "pai_job_table.csv").write_bytes(_text("pai_job_table"))
    run_source(SOURCE, folder, data_root=data_root.root, verify=False)
    rows = query('SELECT job_id, "group", start_s, num_gpus, num_cpus, gpu_type FROM jobs ORDER BY submit_s')
    # no task table: nothing is known of resources; no group-tag table: the group is unknown, not the user
    assert rows[0] == (ID["J1"], None, None, 0.0, None, None)
    assert len(rows) == 6  # J14 is no longer rejected: without tasks it has no task start
    assert query("SELECT tables FROM traces") == [("jobs",)]


def test_truncated_archive_leaves_lake_and_catalog_unchanged(tmp_path: Path, data_root) -> None:
    good = write_fixture(tmp_path / "good", packed=True)
    run_source(SOURCE, good, data_root=data_root.root, verify=False)
    before = _snapshot(data_root.root)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    archive = bad / "pai_instance_table.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="pai_instance_table.tar.gz: truncated or corrupt archive"):
        run_source(SOURCE, bad, data_root=data_root.root, verify=False)
    assert _snapshot(data_root.root) == before


def test_header_row_is_a_format_error(tmp_path: Path, data_root) -> None:
    folder = tmp_path / "pai"
    folder.mkdir()
    header = ",".join(COLUMNS["pai_task_table"]) + "\n"
    (folder / "pai_task_table.csv").write_bytes(header.encode() + _text("pai_task_table"))
    with pytest.raises(FormatError, match=r"pai_task_table.csv: line 1 is a header row .* headerless"):
        run_source(SOURCE, folder, data_root=data_root.root, verify=False)
    assert not data_root.catalog.exists()


def test_job_gpu_type_is_the_type_of_the_task_with_most_gpus() -> None:
    import polars as pl

    from ingest.sources.alibaba_pai_tables import job_resources

    tasks = pl.LazyFrame(
        {
            "job_name": ["a", "a", "a", "b", "b", "c"],
            "task_name": ["ps", "worker", "evaluator", "worker", "chief", "ps"],
            "_inst_num": [1, 2, 8, 1, 1, 3],
            "start_s": [5, 3, None, None, None, 7],
            "_plan_cpu": [600.0, 400.0, 50.0, None, 100.0, 33.0],
            "plan_mem_gb": [1.0] * 6,
            "_plan_gpu": [0.0, 50.0, 10.0, 100.0, 100.0, None],
            "gpu_type": ["MISC", "V100", "T4", "T4", "P100", None],
            "_reason": [None] * 6,
        },
        schema_overrides={"_inst_num": pl.Int32, "start_s": pl.Int64, "_reason": pl.String},
    )
    got = {r[0]: r[1:] for r in job_resources(tasks).collect().rows()}
    # a: worker 2 x 50 % = 1 GPU beats evaluator 8 x 10 % = 0.8 GPU and the GPU-less ps
    assert got["a"] == (3, 1.8, 6 + 8 + 4.0, "V100")
    assert got["b"] == (None, 2.0, 1.0, "P100")  # a tie on GPUs: the alphabetically first type
    assert got["c"] == (7, 0.0, 0.99, None)  # CPU only: no plan_gpu, no type
