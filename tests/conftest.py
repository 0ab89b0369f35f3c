"""Shared test fixtures: the offline traces folder and a fresh data root per test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# One OpenMP thread for scikit-learn's boosted trees in every test process (set before any import loads
# the OpenMP runtime; the session fixture below covers runtimes that are already loaded): on a small or
# shared machine a spinning two-thread pool can crawl (one training took 280 s instead of 3 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import duckdb
import pytest

from ingest.paths import DataPaths, data_paths, traces_dir


@pytest.fixture
def traces() -> Path:
    """The offline copies of the real traces (``$TRACELAB_TRACES`` or ``../shared/traces``); skip if absent."""
    found = traces_dir()
    if found is None or not found.is_dir():
        pytest.skip("real traces not available: set TRACELAB_TRACES or put shared/traces beside the checkout")
    return found


def ingested_root(tmp_path_factory, *sources: tuple[str, str]) -> Path:
    """Ingest real offline traces (``(source, folder under the traces dir)`` pairs) into a fresh data root
    and return it, for module-scoped fixtures; skip if the traces are absent."""
    from ingest.pipeline import run_source

    found = traces_dir()
    if found is None or not found.is_dir():
        pytest.skip("real traces not available: set TRACELAB_TRACES or put shared/traces beside the checkout")
    root = tmp_path_factory.mktemp("data")
    for source, folder in sources:
        run_source(source, found / folder, data_root=root)
    return root


def ingested_catalog(tmp_path_factory, *sources: tuple[str, str]) -> duckdb.DuckDBPyConnection:
    """:func:`ingested_root`, opened read-only as an analysis catalog."""
    from analysis.catalog import open_catalog

    return open_catalog(ingested_root(tmp_path_factory, *sources))


@pytest.fixture
def data_root(tmp_path: Path) -> DataPaths:
    """An empty data root for one test."""
    return data_paths(tmp_path / "data")


@pytest.fixture
def query(data_root: DataPaths):
    """Run SQL against the test's catalog and return all rows."""

    def run(sql: str, params: list | None = None) -> list[tuple]:
        con = duckdb.connect(str(data_root.catalog), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    return run


@pytest.fixture(autouse=True, scope="session")
def one_openmp_thread():
    """Single-threaded OpenMP for the whole run, for runtimes loaded before this module (see the top)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@contextmanager
def local_ray(module) -> Iterator[dict]:
    """A local Ray with 2 worker CPUs on 127.0.0.1, this process its driver, for a module-scoped fixture;
    ``module`` is pickled by value (the workers cannot import test modules). Skips without Ray, or when
    this process is already connected to one."""
    from ingest.ray_support import RayNotInstalledError, import_ray

    try:
        ray = import_ray()
    except RayNotInstalledError:
        pytest.skip("ray is not installed: pip install 'tracelab[ray]'")
    if ray.is_initialized():
        pytest.skip("a Ray is already connected in this process")
    info = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                    log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield info.address_info
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
        ray.shutdown()
