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


def map_tasks(fn: Callable[..., Any], tasks: list[tuple], *, workers: int | None = None,
              address: str | None = None) -> list[Any]:
    """``[fn(*args) for args in tasks]``, each call a Ray task; results in task order.

    Connects to ``address`` (a cluster, e.g. ``"auto"``), or reuses the Ray this process is already
    connected to, or else starts a local Ray on loopback with ``workers`` CPUs (default: all cores).
    Only a Ray started (or connected) here is shut down here. A task whose worker died is retried
    (:data:`MAX_RETRIES`); an exception raised by ``fn`` is not retried: the remaining tasks are
    cancelled and the original exception is raised here (not Ray's wrapper), so callers see the same
    errors as when ``fn`` runs in-process.
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
        refs = [remote.remote(*args) for args in tasks]
        results: dict[Any, Any] = {}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for obj in ready:
                    results[obj] = _get(ray, obj)
        except BaseException:
            for obj in pending:
                ray.cancel(obj)
            raise
        return [results[r] for r in refs]
    finally:
        if started:
            ray.shutdown()


def _get(ray: Any, obj: Any) -> Any:
    """``ray.get(obj)``, re-raising a task's own exception instead of Ray's wrapper."""
    try:
        return ray.get(obj)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
