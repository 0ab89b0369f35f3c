"""Launching a short serving replay from the dashboard (the Replay page's form).

The form only offers small windows: a replay runs in the Streamlit server process, so it is capped at
:data:`MAX_REQUESTS` requests. Policies that order by predicted length run on the true lengths
(``predictor='oracle'``, recorded in the run's config as an oracle run).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from replay.harness import ServeConfig, ServeResult, run_serve
from replay.serving.policies import QUEUE_POLICIES
from replay.sources import WorkloadSpec

MAX_REQUESTS = 5000
"""Most requests a dashboard-launched replay may hold."""


def policies() -> dict[str, bool]:
    """Queue policy name -> whether it needs predicted lengths (those run as oracle runs here)."""
    return {name: QUEUE_POLICIES.create(name).needs_predictions for name in QUEUE_POLICIES.names()}


def serve_config(trace: str, policy: str, rate_scale: float, start_s: float, duration_s: float,
                 max_requests: int) -> ServeConfig:
    """The config of a short replay of ``trace``'s window ``[start_s, start_s + duration_s)`` under ``policy``
    (simulated H100, Llama-2-7B, roofline cost model). ValueError for a bad choice."""
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise ValueError(f"max_requests must be in [1, {MAX_REQUESTS}], got {max_requests}")
    oracle = policies().get(policy, False)
    workload = WorkloadSpec(trace=trace, start_s=float(start_s), duration_s=float(duration_s),
                            max_requests=int(max_requests), rate_scale=float(rate_scale))
    return ServeConfig(workload=workload, policy=policy, predictor="oracle" if oracle else None, oracle_lengths=oracle)


def launch(root: str | Path | None, config: ServeConfig, on_total: Callable[[int], None] | None = None,
           on_done: Callable[[int], None] | None = None) -> ServeResult:
    """Run ``config`` and write it under ``<root>/results/<run id>/``."""
    return run_serve(config, data_root=root, on_total=on_total, on_done=on_done)
