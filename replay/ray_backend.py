"""The Ray backend of :func:`replay.sweep.sweep`: each run is a Ray task, on a cluster or on a local Ray.

Ray is an optional extra (``pip install 'tracelab[ray]'``), imported here only when a sweep asks for
``backend="ray"``. :func:`run_tasks` connects to a cluster (``address``, e.g. ``"auto"`` or
``"10.0.0.1:6379"``), or reuses the Ray this process is already connected to, or else starts a
single-node Ray on loopback with ``workers`` CPUs; it submits one task per distinct run and hands each
outcome to ``done`` as it finishes (``ray.wait``), in completion order. A task whose worker process
dies is retried by Ray (up to :data:`MAX_RETRIES` times); an exception raised by a run is not retried
and propagates. A retried run is harmless: its folder is named by its run id and written atomically,
so a retry rewrites the same bytes, and the sweep keys outcomes by config index, so each is counted
once. Only a Ray started (or connected) here is shut down (disconnected) here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ingest.ray_support import INSTALL_HINT, MAX_RETRIES, RayNotInstalledError, import_ray  # noqa: F401 - re-exported


def run_tasks(fn: Callable[..., Any], tasks: dict[int, tuple], done: Callable[[int, Any], None], *,
              workers: int, address: str | None = None) -> None:
    """Run ``fn(*tasks[i])`` for every ``i`` as Ray tasks and call ``done(i, result)`` as each finishes.

    ``fn`` must be importable by the workers (a module-level function of an installed package) or
    picklable by value. Arguments that are the same object across tasks (a sweep's shared workload)
    go to the object store once. On an error (or Ctrl-C) the unfinished tasks are cancelled and the
    error propagates.
    """
    ray = import_ray(address)
    started = not ray.is_initialized()
    if started:
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        if address is not None:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet)
    try:
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(fn)
        stored: dict[int, Any] = {}  # id(argument) -> its object ref, for arguments shared between tasks
        shared = _shared_ids(tasks)

        def ref(arg: Any) -> Any:
            if id(arg) not in shared:
                return arg
            if id(arg) not in stored:
                stored[id(arg)] = ray.put(arg)
            return stored[id(arg)]

        pending = {remote.remote(*(ref(a) for a in args)): i for i, args in tasks.items()}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for obj in ready:
                    i = pending.pop(obj)
                    done(i, ray.get(obj))
        except BaseException:
            for obj in pending:
                ray.cancel(obj)
            raise
    finally:
        if started:
            ray.shutdown()


def _shared_ids(tasks: dict[int, tuple]) -> set[int]:
    """Ids of the argument objects passed to more than one task (large ones, worth storing once)."""
    seen: set[int] = set()
    shared: set[int] = set()
    for args in tasks.values():
        for a in args:
            if isinstance(a, (str, int, float, bool, type(None))) or hasattr(a, "__fspath__"):
                continue
            (shared if id(a) in seen else seen).add(id(a))
    return shared
