"""Ray as an optional extra, shared by ``ingest run --backend ray`` and ``replay sweep --backend ray``.

Ray is imported only when a Ray backend is asked for (``pip install 'tracelab[ray]'``).
:func:`import_ray` keeps a local Ray on loopback; :func:`map_tasks` runs a module-level function over
a list of argument tuples as Ray tasks and returns the results in task order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

INSTALL_HINT = "the Ray backend needs Ray: pip install 'tracelab[ray]'"
"""What to do when ``import ray`` fails."""
MAX_RETRIES = 3
"""Times Ray re-runs a task whose worker died (system failures only; exceptions are not retried)."""
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0" at import: Ray binds a local node to 127.0.0.1


class RayNotInstalledError(ImportError):
    """A Ray backend without Ray installed; the message says how to install it."""


def import_ray(address: str | None = None) -> Any:
    """``import ray``, or a :class:`RayNotInstalledError` naming the extra to install.

    For a local Ray (``address`` None) or a cluster on loopback (``127.0.0.1:port``, ``localhost:port``),
    Ray, if not imported yet, is imported so that it stays on 127.0.0.1 (by default Ray swaps a loopback
    address for the host's; it reads that switch once, at import, and the environment is restored
    afterwards). For any other address Ray is imported as it is.
    """
    import sys

    loopback = address is None or address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost")
    if loopback and "ray" not in sys.modules and _LOOPBACK_ENV not in os.environ:
        os.environ[_LOOPBACK_ENV] = "0"
        try:
            return _import_ray()
        finally:
            os.environ.pop(_LOOPBACK_ENV, None)
    return _import_ray()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayNotInstalledError(INSTALL_HINT) from exc
    return ray


def stream_tasks(fn: Callable[..., Any], tasks: dict[int, tuple], done: Callable[[int, Any], None], *,
                 workers: int | None = None, address: str | None = None) -> None:
    """Run ``fn(*tasks[i])`` for every ``i`` as Ray tasks and call ``done(i, result)`` as each finishes.

    Connects to ``address`` (a cluster, e.g. ``"auto"``), or reuses the Ray this process is already
    connected to, or else starts a local Ray on loopback with ``workers`` CPUs (default: all cores).
    Only a Ray started (or connected) here is shut down here. ``fn`` must be importable by the workers
    (a module-level function of an installed package) or picklable by value. Arguments that are the
    same object across tasks (a sweep's shared workload) go to the object store once. A task whose
    worker died is retried (:data:`MAX_RETRIES`); an exception raised by ``fn`` is not retried: the
    unfinished tasks are cancelled and the original exception is raised here (not Ray's wrapper), so
    callers see the same errors as when ``fn`` runs in-process. Ctrl-C cancels them too.
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
                    done(pending.pop(obj), _get(ray, obj))
        except BaseException:
            for obj in pending:
                ray.cancel(obj)
            raise
    finally:
        if started:
            ray.shutdown()


def map_tasks(fn: Callable[..., Any], tasks: list[tuple], *, workers: int | None = None,
              address: str | None = None) -> list[Any]:
    """``[fn(*args) for args in tasks]``, each call a Ray task (see :func:`stream_tasks`); results in task order."""
    results: dict[int, Any] = {}
    stream_tasks(fn, dict(enumerate(tasks)), results.__setitem__, workers=workers, address=address)
    return [results[i] for i in range(len(tasks))]


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


def _get(ray: Any, obj: Any) -> Any:
    """``ray.get(obj)``, re-raising a task's own exception instead of Ray's wrapper."""
    try:
        return ray.get(obj)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
