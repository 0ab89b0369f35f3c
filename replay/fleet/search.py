"""Choosing a fleet: candidate layouts for given GPU types and counts, one comparison row per layout, the
cheapest (or lowest-energy) layout that meets the SLOs, and each layout's throughput under the SLOs.

- `candidate_layouts`: colocated N x type, disaggregated P prefill x type_a + D decode x type_b for every
  split P + D = N (mixed GPU types optional: Splitwise-HA is H100 prefill + A100 decode), optionally mixed
  pools (P + D + M = N), in a fixed order.
- `evaluate`: replay each layout on one workload (`replay.fleet.harness.run_fleet`) and put latency, SLO
  attainment, KV transfers, energy (`replay.fleet.energy.energy_summary`) and provisioned cost side by side,
  one flat row per layout (`replay.fleet.cost.comparison_row`).
- `cheapest`: the SLO-meeting row that minimizes an objective (`OBJECTIVES`); `why_none` says why there is none.
- `max_throughput`: the largest arrival-rate scale at which a layout still meets the SLO attainment target
  (bracket, then bisect, a bounded number of runs), with throughput per $/hour and per watt there;
  `throughput_ratios` compares layouts with a baseline as Splitwise does (throughput at equal cost, cost at
  equal throughput, throughput at equal provisioned power).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from replay import metrics
from replay.fleet import cost
from replay.fleet.energy import energy_summary
from replay.fleet.harness import FleetResult, run_fleet
from replay.fleet.interconnect import Link, infiniband
from replay.fleet.topology import FleetConfig, MigrationConfig, PoolConfig
from replay.harness import ServeConfig
from replay.serving.specs import gpu_spec
from replay.sources import Workload
from replay.sweep import bracket_and_bisect, offered_rate, scaled

OBJECTIVES = {
    "cost": ("usd_per_hour", ("slo_attainment", "energy_per_output_token_j")),
    "energy": ("energy_per_output_token_j", ("slo_attainment", "usd_per_hour")),
}
"""Objective -> (row key minimized, tie-breakers: slo_attainment is maximized, the others minimized).

cost: the fleet's rental rate, $/hour (every row of one `evaluate` serves the same trace, so $/hour orders the
bill for the window too; the window's cost_usd differs from it only by how long each layout takes to drain).
energy: joules per output token over the run, idle power included."""
TRANSFER_KEYS = ("num_kv_transfers", "kv_transfer_mean_s", "kv_transfer_p99_s", "kv_link_wait_mean_s",
                 "decode_queue_mean_s", "num_migrations", "tbt_pooled_p99_s")
"""Fleet summary keys (replay.fleet.harness.fleet_summary) added to every comparison row."""
_S_PER_H = 3600.0


def short_gpu(gpu: str) -> str:
    """A GPU's short label: its canonical name up to the first dash ("H100-SXM" -> "H100")."""
    return gpu_spec(gpu).name.split("-")[0]


def _pool_label(pool: PoolConfig, tag: str = "") -> str:
    tp = f"/tp{pool.tensor_parallel}" if pool.tensor_parallel > 1 else ""
    return f"{pool.num_instances}x{short_gpu(pool.gpu)}{tp}{tag}"


def layout_label(config: FleetConfig) -> str:
    """A short description: "2xH100 colocated", "1xH100 P + 1xA100 D", "1xH100 P + 1xH100 D + 1xH100 M"."""
    if config.layout == "colocated":
        return f"{_pool_label(config.pools[0])} colocated"
    tags = {"prefill": " P", "decode": " D", "mixed": " M"}
    return " + ".join(_pool_label(config.pool(role), tags[role]) for role in ("prefill", "decode", "mixed")
                      if config.pool(role) is not None)


def candidate_layouts(gpu_types: Sequence[str], total_gpus: int | Sequence[int], *,
                      serve: ServeConfig | None = None, tensor_parallel: int = 1,
                      router: str = "least_outstanding_tokens", link: Link | None = None,
                      migration: MigrationConfig | None = None, mixed_types: bool = True,
                      include_mixed: bool = False, disaggregated: bool = True) -> list[FleetConfig]:
    """Every layout of `total_gpus` GPUs (each count in turn) built from `gpu_types`, in a fixed order.

    Per count N (instances of `tensor_parallel` GPUs: N must be a multiple of it, n = N / tp instances):
    colocated n x type for each type; then, if `disaggregated`, P prefill + D decode instances for
    P = 1 .. n-1 (D = n - P), for each (prefill type, decode type) pair: same types first, in `gpu_types`
    order, then (if `mixed_types`) every ordered pair of different types; then, if `include_mixed`,
    P prefill + D decode + M mixed instances (each >= 1, one GPU type for the whole fleet).
    Every pool uses `router`; `serve` (default ServeConfig()) supplies everything the pools share.
    """
    types = [gpu_spec(g).name for g in gpu_types]  # unknown names fail here, listing the known ones
    if not types or len(set(types)) != len(types):
        raise ValueError(f"gpu_types must be a non-empty list of distinct GPU types, got {list(gpu_types)}")
    counts = [total_gpus] if isinstance(total_gpus, int) else list(total_gpus)
    if not counts or any(n < 1 or n % tensor_parallel for n in counts):
        raise ValueError(f"total_gpus must be >= 1 and multiples of tensor_parallel={tensor_parallel}, got {counts}")
    serve = serve or ServeConfig()
    common = dict(serve=serve, link=link or infiniband(), migration=migration or MigrationConfig())

    def pool(role: str, n: int, gpu: str) -> PoolConfig:
        return PoolConfig(role, n, gpu, tensor_parallel, router)

    pairs = [(g, g) for g in types] + ([(a, b) for a in types for b in types if a != b] if mixed_types else [])
    out: list[FleetConfig] = []
    for total in counts:
        n = total // tensor_parallel
        out += [FleetConfig(layout="colocated", pools=(pool("colocated", n, g),), **common) for g in types]
        if disaggregated:
            out += [FleetConfig(layout="disaggregated", pools=(pool("prefill", p, a), pool("decode", n - p, b)), **common)
                    for a, b in pairs for p in range(1, n)]
        if include_mixed:
            out += [FleetConfig(layout="mixed", pools=(pool("prefill", p, g), pool("decode", d, g),
                                                       pool("mixed", n - p - d, g)), **common)
                    for g in types for p in range(1, n - 1) for d in range(1, n - p)]
    return out


def with_slo(config: FleetConfig, slo: metrics.SloSpec | None) -> FleetConfig:
    """`config` with the TTFT / TBT objectives of `slo` (unchanged when `slo` is None)."""
    if slo is None:
        return config
    return replace(config, serve=replace(config.serve, slo_ttft_s=slo.ttft_s, slo_tbt_s=slo.tbt_s))


def provisioned(result: FleetResult) -> dict[str, np.ndarray]:
    """Every instance of a fleet run (instance, gpu, tensor_parallel), stepped or not, for energy and cost."""
    insts = result.instances
    return {"instance": np.array([i.index for i in insts], dtype=np.int64),
            "gpu": np.array([i.gpu for i in insts], dtype=object),
            "tensor_parallel": np.array([i.tensor_parallel for i in insts], dtype=np.int64)}


def provisioned_power_w(config: FleetConfig) -> float:
    """Sum of the board TDPs (replay/serving/data/gpus.json peak_power_w) of the fleet's GPUs, watts."""
    return float(sum(p.num_instances * p.tensor_parallel * (gpu_spec(p.gpu).peak_power_w or 0.0) for p in config.pools))


def usd_per_hour(config: FleetConfig, prices=None) -> float:
    """The fleet's rental rate, $ per hour: its GPUs at `replay.fleet.cost.price_per_gpu_hour`."""
    return float(sum(p.num_instances * p.tensor_parallel * cost.price_per_gpu_hour(p.gpu, prices) for p in config.pools))


def fleet_energy(config: FleetConfig, result: FleetResult, *, prices=None, power_models=None):
    """`replay.fleet.energy.energy_summary` of a fleet run, every instance provisioned for the run's span."""
    return energy_summary(result.requests, result.steps, config.serve.model, block_size=config.serve.block_size,
                          provisioned=provisioned(result), prices=prices, power_models=power_models)


def row_of(config: FleetConfig, result: FleetResult, slo: metrics.SloSpec | None = None, *,
           prices=None, power_models=None, energy: dict | None = None, label: str | None = None) -> dict:
    """One comparison row of a finished fleet run: latency, SLO, transfers, energy and cost (flat keys).

    `energy`: the run's energy summary if already computed (else `fleet_energy`'s). usd_per_hour is the
    price list's sum (`usd_per_hour`), not cost_usd / span, so layouts of the same GPUs tie exactly."""
    summary = dict(result.summary)
    if slo is not None and slo.e2e_s is not None:  # the fleet summary checks TTFT and TBT only
        summary.update(metrics.summarize(result.requests, result.steps, slo))
    if energy is None:
        energy = fleet_energy(config, result, prices=prices, power_models=power_models).summary
    return cost.comparison_row(
        summary, energy, label=label or layout_label(config), layout=config.layout, link=config.link.name,
        pools={p.role: _pool_label(p) for p in config.pools}, usd_per_hour=usd_per_hour(config, prices),
        provisioned_power_w=provisioned_power_w(config), energy_j=energy["energy_j"],
        tbt_p99_p50_s=summary.get("tbt_p99_p50_s"), **{k: summary.get(k) for k in TRANSFER_KEYS},
        run_id=result.run_id)


def evaluate(configs: Sequence[FleetConfig], workload: Workload | None = None, slo: metrics.SloSpec | None = None,
             *, data_root=None, prices=None, power_models=None,
             on_progress: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Replay every config on `workload` (default: each config's own workload spec) and return one row each,
    in config order. `slo` (default: each config's serve SLOs) replaces the configs' TTFT / TBT objectives;
    its e2e objective, if set, is checked too. `on_progress(index, row)` is called after each run.
    """
    rows = []
    for k, config in enumerate(configs):
        config = with_slo(config, slo)
        row = row_of(config, run_fleet(config, workload, data_root=data_root), slo, prices=prices,
                     power_models=power_models)
        rows.append(row)
        if on_progress is not None:
            on_progress(k, row)
    return rows


def _objective(objective: str) -> tuple[str, tuple[str, ...]]:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    return OBJECTIVES[objective]


def meets(row: dict, min_attainment: float) -> bool:
    """Whether `row` met the SLOs for at least `min_attainment` of its requests."""
    att = row.get("slo_attainment")
    return att is not None and att >= min_attainment


def rank(rows: Sequence[dict], objective: str = "cost") -> list[int]:
    """Row indices by objective (missing values last), then its tie-breakers, then row order."""
    key, ties = _objective(objective)

    def value(row: dict, k: str) -> float:
        v = row.get(k)
        if v is None or not math.isfinite(v):
            return math.inf
        return -v if k == "slo_attainment" else v

    return sorted(range(len(rows)), key=lambda i: (value(rows[i], key), *(value(rows[i], t) for t in ties), i))


def cheapest(rows: Sequence[dict], objective: str = "cost", min_attainment: float = 0.9) -> dict | None:
    """The row with the lowest objective (`OBJECTIVES`) among those meeting `min_attainment`; None if none does
    (`why_none` gives the message)."""
    if not 0 < min_attainment <= 1:
        raise ValueError(f"min_attainment must be in (0, 1], got {min_attainment}")
    key, _ = _objective(objective)
    ok = [i for i in rank(rows, objective) if meets(rows[i], min_attainment) and rows[i].get(key) is not None]
    return rows[ok[0]] if ok else None


def why_none(rows: Sequence[dict], min_attainment: float) -> str:
    """Why `cheapest` found nothing: the best attainment reached, and by which row."""
    if not rows:
        return "no configuration was evaluated"
    best = max(rows, key=lambda r: -1.0 if r.get("slo_attainment") is None else r["slo_attainment"])
    att = best.get("slo_attainment")
    return (f"no configuration meets the SLOs for >= {min_attainment:.0%} of requests "
            f"(TTFT <= {best.get('slo_ttft_s')} s, p99 TBT <= {best.get('slo_tbt_s')} s); the best, "
            f"{best.get('label', '?')}, reaches {'-' if att is None else f'{att:.1%}'}: add GPUs, lower the load "
            "(--rate-scale) or relax the SLOs")


def offered_output_tokens_per_s(workload: Workload) -> float | None:
    """Output tokens of all requests per second of arrival span (None for < 2 requests or a zero span)."""
    rate = offered_rate(workload)
    return None if rate is None else rate * float(np.mean(workload.output_tokens))


def max_throughput(config: FleetConfig, workload: Workload, slo: metrics.SloSpec | None = None,
                   min_attainment: float = 0.9, *, lo: float = 1.0, hi: float | None = None, tol: float = 0.05,
                   max_runs: int = 10, prices=None, power_models=None,
                   on_probe: Callable[[dict], None] | None = None) -> dict:
    """The largest rate scale (arrivals of `workload` divided by it) at which `config` meets the SLOs for
    `min_attainment` of requests, and the throughput, cost and power there.

    Search as `replay.sweep.capacity_search`: probe `lo` and `hi` (default 2 lo); halve lo while it fails,
    double hi while it passes; then bisect until the bracket is within `tol` (relative) or `max_runs` runs
    were spent. Attainment is assumed to fall once as the rate grows (usual, not guaranteed: `probes` keeps
    every run). Throughput is the offered load sustained: requests/s and output tokens/s of arrivals at the
    passing scale; per-$ figures divide by the fleet's rental rate (`tokens_per_usd` = output tokens/s x
    3600 / $ per hour), per-W ones by the run's average power and by the provisioned (TDP) power.
    Returns None figures when no probe passed. `on_probe(record)` is called after each run.
    """
    if not 0 < min_attainment <= 1 or not tol > 0 or max_runs < 2:
        raise ValueError("need 0 < min_attainment <= 1, tol > 0 and max_runs >= 2")
    hi = 2 * lo if hi is None else hi
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    config = with_slo(config, slo)
    probes: list[dict] = []
    rows: dict[float, dict] = {}

    def probe(rate_scale: float) -> bool:
        w = scaled(workload, rate_scale)
        spec = config.serve.workload  # recorded in the run's config (and id): the spec's rate times this scale
        probed = replace(config, serve=config.serve.with_rate_scale(spec.rate_scale * rate_scale))
        row = row_of(probed, run_fleet(probed, w), slo, prices=prices, power_models=power_models)
        rec = {"rate_scale": rate_scale, "slo_attainment": row["slo_attainment"],
               "passed": meets(row, min_attainment), "requests_per_s": offered_rate(w),
               "output_tokens_per_s": offered_output_tokens_per_s(w), "run_id": row["run_id"]}
        probes.append(rec)
        rows[rate_scale] = row
        if on_probe is not None:
            on_probe(rec)
        return rec["passed"]

    good, bad = bracket_and_bisect(probe, lo, hi, tol=tol, max_runs=max_runs)
    return _throughput_record(config, rows.get(good), good, bad, tol, min_attainment, probes, prices)


def _throughput_record(config, row, good, bad, tol, min_attainment, probes, prices) -> dict:
    best = next((p for p in probes if p["rate_scale"] == good), None)
    usd_h = usd_per_hour(config, prices)
    tdp = provisioned_power_w(config)
    tok_s = best["output_tokens_per_s"] if best else None
    avg_w = row.get("avg_power_w") if row else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    return {
        "label": layout_label(config), "layout": config.layout, "num_gpus": config.num_gpus,
        "max_rate_scale": good, "failing_rate_scale": bad,
        "converged": good is not None and bad is not None and bad - good <= tol * good,
        "min_attainment": min_attainment, "slo_ttft_s": config.serve.slo_ttft_s, "slo_tbt_s": config.serve.slo_tbt_s,
        "slo_attainment": best["slo_attainment"] if best else None,
        "requests_per_s": best["requests_per_s"] if best else None, "output_tokens_per_s": tok_s,
        "usd_per_hour": usd_h, "provisioned_power_w": tdp, "avg_power_w": avg_w,
        "tokens_per_usd": ratio(None if tok_s is None else tok_s * _S_PER_H, usd_h),
        "requests_per_s_per_usd_per_hour": ratio(best["requests_per_s"] if best else None, usd_h),
        "output_tokens_per_s_per_kw": ratio(None if tok_s is None else 1e3 * tok_s, tdp),
        "output_tokens_per_j": ratio(tok_s, avg_w),
        "energy_per_output_token_j": row.get("energy_per_output_token_j") if row else None,
        "row": row, "probes": probes,
    }


def throughput_ratios(result: dict, baseline: dict) -> dict:
    """Splitwise's comparisons of a `max_throughput` result against a baseline's (None where undefined).

    throughput_ratio: output tokens/s at the SLO over the baseline's; cost_ratio / power_ratio: $ per hour /
    provisioned watts over the baseline's; throughput_at_equal_cost: throughput per $/hour over the
    baseline's (a fleet scaled to the baseline's budget, assuming throughput scales with instances);
    cost_at_equal_throughput: its inverse; throughput_at_equal_power: per provisioned watt, likewise.
    """
    def ratio(a, b):
        return a / b if a is not None and b else None

    tput = ratio(result["output_tokens_per_s"], baseline["output_tokens_per_s"])
    cost_r = ratio(result["usd_per_hour"], baseline["usd_per_hour"])
    power_r = ratio(result["provisioned_power_w"], baseline["provisioned_power_w"])
    at_cost = ratio(tput, cost_r)
    return {"throughput_ratio": tput, "cost_ratio": cost_r, "power_ratio": power_r,
            "throughput_at_equal_cost": at_cost, "cost_at_equal_throughput": ratio(1.0, at_cost),
            "throughput_at_equal_power": ratio(tput, power_r)}


def baseline_for(config: FleetConfig, configs: Sequence[FleetConfig]) -> int | None:
    """Index of the first colocated layout in `configs` with `config`'s GPU count (from `candidate_layouts`:
    the first GPU type's), the baseline Splitwise compares against; None if there is none."""
    colo = [i for i, c in enumerate(configs) if c.layout == "colocated" and c.num_gpus == config.num_gpus]
    return colo[0] if colo else None
