"""Energy per request: attributing each step's energy to the requests in it, and the run's energy report.

Step logs list no request ids, so the attribution reads each request's timestamps on its instance:

- Prefill: its steps are those starting at or after `first_scheduled_s` and ending by `first_token_s`.
  A step's prefill share of energy (energy_j * num_prefill_tokens / num_tokens) is split among the
  requests whose prefill window holds the step, in proportion to prefill tokens per window step
  ((prompt_tokens - prefix_hit_tokens) / steps in the window: a chunked prompt is assumed spread evenly
  over its window). Exact when every prompt is prefilled in one step.
- Decode: its steps are those ending after `first_token_s` and by `finish_s` (one output token each,
  as `Request.token_segments` records them). A step's decode share (energy_j * num_decodes / num_tokens)
  is split evenly among the requests whose decode window holds the step. Exact unless a request sat out
  steps inside its window (preempted, or left out of prefill-only steps); such steps then give it a
  smaller share (it dilutes the others' shares, never creates or loses energy).
- A step share with no claimant moves to the step's other share; a step with neither (only swaps, or a
  window mismatch) is reported as `unattributed_j`. Attributed + unattributed = busy energy, always.
- Idle energy (provisioned, between steps) and the unattributed busy energy of an instance are spread over
  its requests in proportion to the busy energy each received there: `energy_j` per request then sums to
  the run's total, less `unassigned_energy_j` (instances that served no request at all).
- Disaggregated logs: a request's prefill window is read on its "prefill_instance", its decode window on
  its "decode_instance" (request columns), see `request_instances`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from replay.fleet import cost
from replay.fleet.power import PowerModel, instance_column, instance_energy, step_energy

_J_PER_KWH = 3.6e6


def _window_sums(lo: np.ndarray, hi: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Per step: sum of `weight` over the windows [lo, hi) holding it (a difference array)."""
    diff = np.zeros(n + 1)
    ok = hi > lo
    np.add.at(diff, lo[ok], weight[ok])
    np.add.at(diff, hi[ok], -weight[ok])
    return np.cumsum(diff[:n])


def _prefix(x: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(x)))


def request_instances(requests: Mapping[str, np.ndarray],
                      steps: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(prefill instance, decode instance) per request.

    Disaggregated logs name them in request columns "prefill_instance" / "decode_instance"; otherwise both
    are the request's column named like the steps' instance column ("instance" or "replica"), or 0.
    """
    n_req = len(requests["first_scheduled_s"])
    if "prefill_instance" in requests and "decode_instance" in requests:
        return (np.asarray(requests["prefill_instance"], dtype=np.int64),
                np.asarray(requests["decode_instance"], dtype=np.int64))
    col = instance_column(steps)
    inst = np.asarray(requests[col], dtype=np.int64) if col and col in requests else np.zeros(n_req, np.int64)
    return inst, inst


def attribute_energy(requests: Mapping[str, np.ndarray], steps: Mapping[str, np.ndarray],
                     energy_j: np.ndarray) -> dict[str, np.ndarray | float]:
    """Busy energy per request: prefill_energy_j, decode_energy_j, busy_energy_j (arrays) and unattributed_j.

    `requests` needs first_scheduled_s, first_token_s, finish_s, prompt_tokens, prefix_hit_tokens and its
    instances (see `request_instances`). Requests never scheduled (rejected) get 0. NaN first_token_s /
    finish_s mean "not yet": the window runs to the end of the log.
    """
    col = instance_column(steps)
    n_req = len(requests["first_scheduled_s"])
    p_inst, d_inst = request_instances(requests, steps)
    step_inst = np.asarray(steps[col], dtype=np.int64) if col else np.zeros(len(energy_j), np.int64)
    f = {k: np.asarray(requests[k], dtype=np.float64) for k in
         ("first_scheduled_s", "first_token_s", "finish_s", "prompt_tokens", "prefix_hit_tokens")}
    scheduled = ~np.isnan(f["first_scheduled_s"])
    prefill_j, decode_j = np.zeros(n_req), np.zeros(n_req)
    unattributed = 0.0
    for i in np.unique(step_inst).tolist():
        s_rows = np.flatnonzero(step_inst == i)
        start = np.asarray(steps["start_s"], dtype=np.float64)[s_rows]
        order = np.argsort(start, kind="stable")
        s_rows, start = s_rows[order], start[order]
        end = start + np.asarray(steps["duration_s"], dtype=np.float64)[s_rows]
        e = np.asarray(energy_j, dtype=np.float64)[s_rows]
        tok = np.asarray(steps["num_tokens"], dtype=np.float64)[s_rows]
        dec = np.asarray(steps["num_decodes"], dtype=np.float64)[s_rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            d_pool = np.where(tok > 0, e * dec / tok, 0.0)
        p_pool = np.where(tok > 0, e - d_pool, 0.0)
        m = s_rows.size

        rp = np.flatnonzero((p_inst == i) & scheduled)
        p_lo = np.searchsorted(start, f["first_scheduled_s"][rp], side="left")
        p_hi = np.maximum(np.searchsorted(end, np.nan_to_num(f["first_token_s"][rp], nan=np.inf), side="right"), p_lo)
        computed = np.maximum(f["prompt_tokens"][rp] - f["prefix_hit_tokens"][rp], 1.0)
        w = np.where(p_hi > p_lo, computed / np.maximum(p_hi - p_lo, 1), 0.0)
        w_sum = _window_sums(p_lo, p_hi, w, m)
        rd = np.flatnonzero((d_inst == i) & scheduled)
        d_lo = np.searchsorted(end, np.nan_to_num(f["first_token_s"][rd], nan=np.inf), side="right")
        d_hi = np.maximum(np.searchsorted(end, np.nan_to_num(f["finish_s"][rd], nan=np.inf), side="right"), d_lo)
        d_count = _window_sums(d_lo, d_hi, np.ones(rd.size), m)

        # Shares with no claimant go to the step's other share, or to `unattributed`.
        p_pool, d_pool = (np.where(w_sum > 0, p_pool + np.where(d_count > 0, 0.0, d_pool), 0.0),
                          np.where(d_count > 0, d_pool + np.where(w_sum > 0, 0.0, p_pool), 0.0))
        unattributed += float(e.sum() - p_pool.sum() - d_pool.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            p_rate = _prefix(np.where(w_sum > 0, p_pool / w_sum, 0.0))
            d_rate = _prefix(np.where(d_count > 0, d_pool / d_count, 0.0))
        prefill_j[rp] = w * (p_rate[p_hi] - p_rate[p_lo])
        decode_j[rd] = d_rate[d_hi] - d_rate[d_lo]
    return {"prefill_energy_j": prefill_j, "decode_energy_j": decode_j, "busy_energy_j": prefill_j + decode_j,
            "unattributed_j": unattributed}


def spread_overhead(att: Mapping[str, np.ndarray], p_inst: np.ndarray, d_inst: np.ndarray, inst_ids: np.ndarray,
                    inst_busy_j: np.ndarray, inst_idle_j: np.ndarray) -> tuple[np.ndarray, float]:
    """Each instance's idle and unattributed busy joules spread over its requests by the energy each received
    there; returns (joules per request, joules no request received: instances that served none)."""
    share = np.zeros(att["busy_energy_j"].size)
    left = 0.0
    for i, busy, idle in zip(inst_ids.tolist(), inst_busy_j.tolist(), inst_idle_j.tolist()):
        got = np.where(p_inst == i, att["prefill_energy_j"], 0.0) + np.where(d_inst == i, att["decode_energy_j"], 0.0)
        total = float(got.sum())
        extra = idle + busy - total
        if total > 0:
            share += extra * got / total
        else:
            left += extra
    return share, left


@dataclass
class EnergyReport:
    """Energy and cost of one run: a flat JSON-able summary plus per-request, per-instance and per-step arrays."""

    summary: dict
    """Totals and ratios (joules, watts, GPU-hours, dollars), flat keys with units."""
    requests: dict[str, np.ndarray] = field(default_factory=dict)
    """Per request (in the run's request order): prefill/decode/busy/total energy_j and energy_per_output_token_j."""
    instances: dict[str, np.ndarray] = field(default_factory=dict)
    """Per instance: see `replay.fleet.power.instance_energy`."""
    steps: dict[str, np.ndarray] = field(default_factory=dict)
    """Per step: see `replay.fleet.power.step_energy`."""


def energy_summary(requests: Mapping[str, np.ndarray], steps: Mapping[str, np.ndarray], model, gpu=None, tp=None,
                   block_size: int = 16, *, span_s: tuple[float, float] | None = None,
                   power_models: Mapping[str, PowerModel] | None = None,
                   prices: Mapping[str, float] | None = None, roofline_kwargs: Mapping | None = None,
                   provisioned: Mapping[str, np.ndarray] | None = None) -> EnergyReport:
    """Energy and cost of any run given its request and step columns (colocated or fleet logs).

    `gpu` / `tp` as in `step_energy` (scalars, per-step arrays, or None for the steps' columns).
    `span_s` defaults to (first arrival, later of the last step end and the last finish); `provisioned`
    lists instances that count even without steps (see `instance_energy`). Every instance is charged
    (idle power, price) for the whole span.
    """
    st = step_energy(steps, model, gpu, tp, block_size, power_models=power_models, roofline_kwargs=roofline_kwargs)
    arrival = np.asarray(requests["arrival_s"], dtype=np.float64)
    if span_s is None:
        ends = np.asarray(steps["start_s"], dtype=np.float64) + np.asarray(steps["duration_s"], dtype=np.float64)
        finish = np.asarray(requests["finish_s"], dtype=np.float64)
        last = max(float(ends.max()) if ends.size else 0.0,
                   float(np.nanmax(finish)) if np.isfinite(finish).any() else 0.0)
        span_s = (float(arrival.min()) if arrival.size else 0.0, last)
    inst = instance_energy(steps, st["energy_j"], gpu, tp, span_s=span_s, power_models=power_models,
                           provisioned=provisioned)
    att = attribute_energy(requests, steps, st["energy_j"])
    p_inst, d_inst = request_instances(requests, steps)
    share, left = spread_overhead(att, p_inst, d_inst, inst["instance"], inst["busy_energy_j"], inst["idle_energy_j"])
    total_j = att["busy_energy_j"] + share
    generated = np.asarray(requests["num_generated_tokens"], dtype=np.float64)
    finished = np.asarray(requests["status"], dtype=object) == "finished"
    with np.errstate(divide="ignore", invalid="ignore"):
        per_token = np.where(generated > 0, total_j / generated, np.nan)
    per_req = {"prefill_energy_j": att["prefill_energy_j"], "decode_energy_j": att["decode_energy_j"],
               "busy_energy_j": att["busy_energy_j"], "energy_j": total_j, "energy_per_output_token_j": per_token}

    span = float(span_s[1] - span_s[0])
    energy = float(inst["energy_j"].sum())
    busy = float(inst["busy_energy_j"].sum())
    n_fin, out_tok = int(finished.sum()), float(generated[finished].sum())
    num_gpus = int(inst["tensor_parallel"].sum())
    money = cost.run_cost(inst["gpu"], inst["tensor_parallel"], span, prices=prices)
    summary = {
        "span_s": span,
        "num_gpus": num_gpus,
        "energy_j": energy,
        "energy_kwh": energy / _J_PER_KWH,
        "busy_energy_j": busy,
        "idle_energy_j": float(inst["idle_energy_j"].sum()),
        "unattributed_busy_energy_j": float(att["unattributed_j"]),
        "unassigned_energy_j": left,
        "avg_power_w": energy / span if span > 0 else None,
        "avg_power_per_gpu_w": energy / span / num_gpus if span > 0 and num_gpus else None,
        "busy_power_per_gpu_w": (busy / float((inst["busy_s"] * inst["tensor_parallel"]).sum())
                                 if inst["busy_s"].sum() > 0 else None),
        "busy_fraction": float((inst["busy_s"] * inst["tensor_parallel"]).sum()) / (span * num_gpus)
        if span > 0 and num_gpus else None,
        "energy_per_request_j": energy / n_fin if n_fin else None,
        "busy_energy_per_request_j": float(att["busy_energy_j"][finished].sum()) / n_fin if n_fin else None,
        "energy_per_output_token_j": energy / out_tok if out_tok else None,
        **money,
        **cost.cost_ratios(money["cost_usd"], n_fin, out_tok, span),
    }
    return EnergyReport(summary, per_req, inst, st)


def energy_report(result, config, *, power_models: Mapping[str, PowerModel] | None = None,
                  prices: Mapping[str, float] | None = None) -> EnergyReport:
    """`energy_summary` of a `replay.harness.run_serve` result under its `ServeConfig` (model, GPU, tp, block size).

    Every replica is provisioned from the first arrival to the run's end. Energy uses the roofline's work
    estimate whatever cost model timed the steps (durations come from the log).
    """
    return energy_summary(result.requests, result.steps, config.model, config.gpu, config.tensor_parallel,
                          config.block_size, power_models=power_models, prices=prices)
