"""GPU-hours and dollars of a run, and one flat comparison row of latency, SLO, energy and cost.

Provisioned cost: every instance holds its `tp` GPUs for the run's whole span, busy or not (cloud GPUs
are rented by the hour, not by the kernel), at a price per GPU-hour from replay/fleet/data/
power_prices.json (an on-demand list price; see its sources) unless `prices` overrides it. That is how
Splitwise compares cluster designs ("same throughput at lower cost") and what a capacity planner pays;
the energy bill is reported separately (replay.fleet.energy) and is not added to the rental price,
which already includes it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from replay.fleet.power import table_row
from replay.serving.specs import gpu_spec

_S_PER_H = 3600.0

LATENCY_KEYS = ("num_arrived", "num_finished", "num_rejected", "makespan_s", "requests_per_s", "output_tokens_per_s",
                "slo_ttft_s", "slo_tbt_s", "slo_attainment", "goodput_requests_per_s", "ttft_p50_s", "ttft_p99_s",
                "tpot_p50_s", "tpot_p99_s", "tbt_p99_p99_s", "e2e_p50_s", "e2e_p99_s", "queue_p99_s",
                "num_preemptions")
"""Keys of `replay.metrics.summarize`'s summary copied into a comparison row."""
ENERGY_KEYS = ("num_gpus", "span_s", "energy_kwh", "energy_per_request_j", "energy_per_output_token_j",
               "avg_power_w", "avg_power_per_gpu_w", "busy_power_per_gpu_w", "busy_fraction", "gpu_hours",
               "cost_usd", "usd_per_1k_requests", "usd_per_1m_output_tokens", "output_tokens_per_usd",
               "requests_per_usd")
"""Keys of an energy summary (`replay.fleet.energy.energy_summary`) copied into a comparison row."""


def price_per_gpu_hour(gpu: str, prices: Mapping[str, float] | None = None) -> float:
    """USD per GPU-hour of `gpu`: `prices` (keyed by any accepted name) first, else the shipped table."""
    name = gpu_spec(gpu).name
    for key, value in (prices or {}).items():
        if gpu_spec(key).name == name:
            return float(value)
    return float(table_row(name)["usd_per_gpu_hour"])


def run_cost(gpus, tensor_parallel, span_s: float, *, prices: Mapping[str, float] | None = None) -> dict:
    """GPU-hours and dollars of instances provisioned for `span_s` seconds.

    `gpus` / `tensor_parallel`: one entry per instance (GPU name, GPUs per instance). Returns gpu_hours,
    cost_usd, usd_per_hour (the fleet's hourly rate) and gpu_hours_by_type / cost_usd_by_type (dicts).
    """
    if span_s < 0:
        raise ValueError(f"span_s must be >= 0, got {span_s}")
    by_hours: dict[str, float] = {}
    by_usd: dict[str, float] = {}
    for g, t in zip(list(gpus), np.asarray(tensor_parallel, dtype=np.int64).tolist()):
        name = gpu_spec(str(g)).name
        hours = t * span_s / _S_PER_H
        by_hours[name] = by_hours.get(name, 0.0) + hours
        by_usd[name] = by_usd.get(name, 0.0) + hours * price_per_gpu_hour(name, prices)
    hours, usd = sum(by_hours.values()), sum(by_usd.values())
    return {"gpu_hours": hours, "cost_usd": usd, "usd_per_hour": usd / (span_s / _S_PER_H) if span_s > 0 else None,
            "gpu_hours_by_type": dict(sorted(by_hours.items())), "cost_usd_by_type": dict(sorted(by_usd.items()))}


def cost_ratios(cost_usd: float, num_finished: int, output_tokens: float, span_s: float) -> dict:
    """usd_per_1k_requests, usd_per_1m_output_tokens, output_tokens_per_usd, requests_per_usd (None when undefined).

    Throughput per dollar = finished work / dollars spent over the span.
    """
    def ratio(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    return {"usd_per_1k_requests": ratio(1e3 * cost_usd, num_finished),
            "usd_per_1m_output_tokens": ratio(1e6 * cost_usd, output_tokens),
            "output_tokens_per_usd": ratio(output_tokens, cost_usd),
            "requests_per_usd": ratio(num_finished, cost_usd)}


def comparison_row(summary: Mapping, energy: Mapping, label: str | None = None, **extra) -> dict:
    """One flat row for a comparison table: latency/SLO keys of `summary` (replay.metrics.summarize) next to
    energy and cost keys of `energy` (an energy summary dict). Missing keys become None; `extra` is appended.
    """
    row: dict = {} if label is None else {"label": label}
    row.update({k: summary.get(k) for k in LATENCY_KEYS})
    row.update({k: energy.get(k) for k in ENERGY_KEYS})
    row.update(extra)
    return row
