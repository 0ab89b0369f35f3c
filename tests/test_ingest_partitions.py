"""Partitioned ingest output and ``ingest run --backend ray``.

A trace built from several input files lands as one Parquet part per file (ITP: ten cluster files ->
``jobs/trace=microsoft_itp/part-0..9.parquet``) with the same rows as the raw CSVs; the catalog reads
every part; a re-run gives the same bytes; the Ray backend (a real local Ray with 2 CPUs on loopback,
started here; skipped without ray) gives byte-identical parts, reports and catalog query results; and a
failing part, or a corrupt input, leaves the previous lake untouched on both backends.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import local_ray

import ingest.parts as parts
from ingest.errors import BackendError, FormatError
from ingest.lake import part_name
from ingest.paths import data_paths
from ingest.parts import produce_part as _real_produce_part
from ingest.pipeline import run_source
from ingest.validate import validate_lake

CLUSTERS = [f"cluster{i:02d}" for i in range(1, 11)]
FAILING_PART = 4
"""Index of the part (cluster05) that the injected failure breaks."""
QUERIES = [
    "SELECT count(*), sum(num_gpus), sum(duration_s), min(submit_s), max(submit_s) FROM jobs",
    "SELECT cluster, count(*), sum(num_gpus), sum(duration_s) FROM jobs GROUP BY cluster ORDER BY cluster",
    "SELECT job_id, submit_s, row_number() OVER () FROM jobs_derived ORDER BY submit_s, job_id LIMIT 50",
    "SELECT trace, rows_in, rows_out, rows_quarantined, origin_epoch_us FROM traces",
]
"""Catalog queries whose results must not depend on the backend."""


def _raw_stats(folder: Path) -> dict[str, tuple[int, int, int, int]]:
    """Per cluster file, straight from the CSV: (rows, sum num_gpu, sum duration, min submission)."""
    stats = {}
    for cluster in CLUSTERS:
        with open(folder / f"{cluster}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        stats[cluster] = (len(rows), sum(int(r["num_gpu"]) for r in rows), sum(int(r["duration"]) for r in rows),
                          min(int(r["submission_time"]) for r in rows))
    return stats


def _lake_bytes(root: Path) -> dict[str, str]:
    """sha256 of every file of the lake (parts and reports) by relative path."""
    lake = data_paths(root).lake
    return {str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(lake.rglob("*")) if p.is_file()}


def _answers(root: Path) -> list[list[tuple]]:
    con = duckdb.connect(str(data_paths(root).catalog), read_only=True)
    try:
        return [con.execute(q).fetchall() for q in QUERIES]
    finally:
        con.close()


@pytest.fixture(scope="module")
def itp_folder(tmp_path_factory) -> Path:
    """A private copy of the ten real ITP cluster files (tests corrupt copies of it)."""
    from ingest.paths import traces_dir

    found = traces_dir()
    if found is None or not (found / "microsoft_itp").is_dir():
        pytest.skip("real traces not available: set TRACELAB_TRACES or put shared/traces beside the checkout")
    folder = tmp_path_factory.mktemp("itp")
    for cluster in CLUSTERS:
        shutil.copy(found / "microsoft_itp" / f"{cluster}.csv", folder)
    return folder


@pytest.fixture(scope="module")
def local_root(itp_folder: Path, tmp_path_factory) -> Path:
    """ITP ingested once with the local backend."""
    root = tmp_path_factory.mktemp("local")
    run_source("microsoft_itp", itp_folder, data_root=root, verify=False)
    return root


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray on loopback for this module (conftest's :func:`local_ray`)."""
    with local_ray(sys.modules[__name__]) as info:
        yield info


def test_part_names_sort_in_part_order() -> None:
    assert [part_name(k, 1) for k in range(1)] == ["part-0.parquet"]
    assert [part_name(k, 10) for k in (0, 9)] == ["part-0.parquet", "part-9.parquet"]
    names = [part_name(k, 12) for k in range(12)]
    assert names[0] == "part-00.parquet" and names == sorted(names)
    with pytest.raises(ValueError):
        part_name(3, 3)


def test_itp_lands_as_one_part_per_cluster_file(itp_folder: Path, local_root: Path, tmp_path: Path) -> None:
    lake = data_paths(local_root).lake
    parts = sorted((lake / "jobs" / "trace=microsoft_itp").iterdir())
    assert [p.name for p in parts] == [f"part-{k}.parquet" for k in range(10)]
    assert [p.name for p in (lake / "quarantine" / "trace=microsoft_itp").iterdir()] == ["part-0.parquet"]
    raw = _raw_stats(itp_folder)
    con = duckdb.connect()
    for part, cluster in zip(parts, CLUSTERS, strict=True):  # part k holds cluster file k+1, nothing else
        got = con.execute(f"SELECT min(cluster), max(cluster), count(*), sum(num_gpus), sum(duration_s) "
                          f"FROM read_parquet('{part}')").fetchone()
        assert got == (cluster, cluster, raw[cluster][0], float(raw[cluster][1]), float(raw[cluster][2]))
    # the catalog views read every part; one origin for all parts: the earliest submission over all files
    origin_s = min(s[3] for s in raw.values())
    cat = duckdb.connect(str(data_paths(local_root).catalog), read_only=True)
    assert cat.execute("SELECT count(*), sum(num_gpus), sum(duration_s), min(submit_s) FROM jobs").fetchone() == (
        sum(s[0] for s in raw.values()), float(sum(s[1] for s in raw.values())), float(sum(s[2] for s in raw.values())), 0.0)
    assert cat.execute("SELECT rows_in, rows_out, rows_quarantined, origin_epoch_us FROM traces").fetchall() == [
        (69351, 69351, 0, origin_s * 1_000_000)]
    firsts = dict(cat.execute("SELECT cluster, min(submit_s) FROM jobs GROUP BY cluster").fetchall())
    assert firsts == {c: float(raw[c][3] - origin_s) for c in CLUSTERS}
    assert validate_lake(data_paths(local_root)) == ([], 11)
    # the same command again gives the same bytes
    again = tmp_path / "again"
    run_source("microsoft_itp", itp_folder, data_root=again, verify=False)
    assert _lake_bytes(again) == _lake_bytes(local_root)


def test_cross_cluster_duplicates_are_still_caught(tmp_path: Path) -> None:
    """A job id repeated in a later cluster file is rejected there, although parts are produced apart."""
    folder = tmp_path / "in"
    folder.mkdir()
    header = "job_id,submission_time,duration,num_gpu"
    (folder / "cluster01.csv").write_text(f"{header}\na,10,5,1\nbad,x,5,1\nb,20,5,1")
    (folder / "cluster02.csv").write_text(f"{header}\nbad,30,5,1\na,40,5,1\nc,50,5,1\nc,60,5,1")
    result = run_source("microsoft_itp", folder, data_root=tmp_path / "data", verify=False)
    rep = result.reports["microsoft_itp"]
    assert (rep["rows_in"], rep["rows_out"], rep["rows_quarantined"]) == (7, 4, 3)
    con = duckdb.connect(str(data_paths(tmp_path / "data").catalog), read_only=True)
    assert con.execute("SELECT job_id, cluster FROM jobs ORDER BY submit_s").fetchall() == [
        ("a", "cluster01"), ("b", "cluster01"), ("bad", "cluster02"), ("c", "cluster02")]
    assert [(Path(r[0]).name, r[1]) for r in con.execute("SELECT source_file, line FROM quarantine").fetchall()] == [
        ("cluster01.csv", 3), ("cluster02.csv", 3), ("cluster02.csv", 5)]
    reasons = [r[0] for r in con.execute("SELECT reason FROM quarantine").fetchall()]
    assert reasons[1:] == ["duplicate job_id 'a'", "duplicate job_id 'c'"]


def test_ray_backend_gives_the_same_bytes(ray_cluster, itp_folder: Path, local_root: Path, tmp_path: Path) -> None:
    assert ray_cluster["gcs_address"].startswith("127.0.0.1:")
    root = tmp_path / "ray"
    result = run_source("microsoft_itp", itp_folder, data_root=root, verify=False, backend="ray")
    assert [(t.table, t.rows_in, t.rows_out) for t in result.tables] == [("jobs", 69351, 69351)]
    assert _lake_bytes(root) == _lake_bytes(local_root)
    assert len([k for k in _lake_bytes(root) if k.startswith("jobs/")]) == 10
    assert _answers(root) == _answers(local_root)


def _fail_in_part(source_name, inputs, fast, part):
    """:func:`ingest.parts.produce_part`, except that part FAILING_PART writes its file, then fails
    (shipped to the Ray workers by value; ``_real_produce_part`` resolves to their own copy)."""
    written = _real_produce_part(source_name, inputs, fast, part)
    if part.k == FAILING_PART:
        raise FormatError(f"injected failure in part {part.k}")
    return written


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_failing_part_leaves_the_lake_untouched(backend: str, request, itp_folder: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    if backend == "ray":
        request.getfixturevalue("ray_cluster")
    root = tmp_path / "data"
    run_source("microsoft_itp", itp_folder, data_root=root, verify=False)
    before = _lake_bytes(root)
    catalog = data_paths(root).catalog.read_bytes()
    # 1. a corrupt input among the ten files (a header that is not ITP's)
    bad = tmp_path / "bad"
    shutil.copytree(itp_folder, bad)
    text = (bad / "cluster05.csv").read_text()
    (bad / "cluster05.csv").write_text("jobid,when,how_long,gpus\n" + text.split("\n", 1)[1])
    with pytest.raises(FormatError, match="cluster05.csv: line 1: expected header"):
        run_source("microsoft_itp", bad, data_root=root, verify=False, backend=backend)
    # 2. one part fails while it is produced (in a Ray task for the Ray backend), after others succeeded
    if backend == "ray":
        monkeypatch.setattr(parts, "produce_part", _fail_in_part)
    else:
        real = parts._write_group

        def failing(plans, dest, meta, origin_us):
            written = real(plans, dest, meta, origin_us)
            if dest.name.endswith(f"__{FAILING_PART}.parquet"):
                raise FormatError(f"injected failure in part {FAILING_PART}")
            return written

        monkeypatch.setattr(parts, "_write_group", failing)
    # a changed input, so that a commit would change the lake
    changed = tmp_path / "changed"
    shutil.copytree(itp_folder, changed)
    with open(changed / "cluster01.csv", "a") as fh:
        fh.write("\nffffffff-0000-0000-0000-000000000001,99,60,1")
    with pytest.raises(FormatError, match=f"injected failure in part {FAILING_PART}"):
        run_source("microsoft_itp", changed, data_root=root, verify=False, backend=backend)
    assert _lake_bytes(root) == before
    assert data_paths(root).catalog.read_bytes() == catalog
    assert not any(data_paths(root).staging.iterdir())  # the staged parts are gone too


def test_ray_backend_without_ray_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BackendError, match=r"pip install 'tracelab\[ray\]'"):
        run_source("microsoft_itp", tmp_path, data_root=tmp_path / "data", backend="ray")
    with pytest.raises(BackendError, match="unknown ingest backend 'dask'"):
        run_source("microsoft_itp", tmp_path, data_root=tmp_path / "data", backend="dask")
    assert not (tmp_path / "data").exists()  # nothing was started or written
