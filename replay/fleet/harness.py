"""Fleet replay harness: a `FleetConfig` and a workload in; per-request and per-step columns and a summary out.

`run_fleet` builds one scheduler and simulated executor per instance (each with its pool's GPU, tensor
parallelism and KV pool, and the shared cost model), replays in virtual time (`replay.fleet.simulate`)
and returns numpy columns, like `replay.harness.run_serve` (it writes nothing):

- requests: `replay.harness.request_columns` (replay.schema.REQUEST_METRICS' columns; the TBT columns
  span every instance a request went through) plus `FLEET_REQUEST_COLUMNS`;
- steps: replay.steplog.STEP_COLUMNS per instance plus `FLEET_STEP_COLUMNS` (what energy models read:
  duration_s, num_tokens, num_decodes, num_prefill_tokens, kv_blocks_used, start_s, with gpu and tp);
- summary: `replay.metrics.summarize` plus transfer, migration and pooled-TBT statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from replay import metrics, sinks
from replay.fleet.simulate import Fleet, Instance
from replay.fleet.topology import FleetConfig
from replay.harness import COST_MODELS, build_requests, kv_block_keys, predicted_lengths, request_columns
from replay.serving.executors.simulated import SimulatedExecutor
from replay.serving.policies import QUEUE_POLICIES, VICTIM_POLICIES
from replay.serving.scheduler import Scheduler
from replay.serving.specs import gpu_spec, model_config
from replay.sources import Workload, load_workload

FLEET_REQUEST_COLUMNS = {
    "prefill_instance": "instance that produced the first output token (-1: none)",
    "decode_instance": "instance that produced the last output token (-1: none)",
    "transfer_start_s": "start of the prefill -> decode KV copy (NaN: none)",
    "transfer_end_s": "end of that copy: the KV is on the decode instance (NaN: none)",
    "kv_transfer_bytes": "bytes of that copy landing on the decode instance (0: none)",
    "decode_admit_s": "start of the decode step that admitted the transferred KV (NaN: none)",
    "num_migrations": "live migrations of the request",
    "migration_bytes": "KV bytes its migrations copied",
    "migration_s": "seconds its migration copies took (it is paused meanwhile)",
}
"""Per-request columns `run_fleet` adds to replay.schema.REQUEST_METRICS' (name -> meaning)."""
FLEET_STEP_COLUMNS = {
    "instance": "fleet-wide instance index",
    "step": "0-based step number within the instance",
    "role": "the instance's pool: colocated, prefill, decode or mixed",
    "gpu": "canonical GPU name (replay.serving.specs.gpu_spec)",
    "tensor_parallel": "GPUs of the instance",
    "kv_blocks_total": "KV blocks in the instance's pool",
}
"""Per-step columns `run_fleet` adds to replay.steplog.STEP_COLUMNS (name -> meaning)."""


@dataclass
class FleetResult:
    """What `run_fleet` returns (nothing is written)."""

    run_id: str
    """Hash of the canonical config (replay.sinks.run_id)."""
    summary: dict
    requests: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    token_times_s: list[np.ndarray]
    """Per request: end times of the steps that produced its output tokens, across instances."""
    instances: list[Instance]
    """The instances after the replay (their schedulers and step logs), for checks."""


def build_instances(config: FleetConfig, true_output_tokens: np.ndarray) -> list[Instance]:
    """One instance per pool member, numbered pool by pool in `config.pools` order."""
    model = model_config(config.serve.model)
    instances: list[Instance] = []
    for pool in config.pools:
        serve = pool.serve_config(config.serve)
        sched_cfg, gpu = serve.scheduler_config(), gpu_spec(pool.gpu)
        for _ in range(pool.num_instances):
            cost = COST_MODELS.create(serve.cost_model, model=model, gpu=gpu, tp=pool.tensor_parallel,
                                      block_size=serve.block_size, profiles=serve.profiles_dir,
                                      overhead=serve.step_overhead_s)
            sched = Scheduler(sched_cfg, QUEUE_POLICIES.create(serve.policy), VICTIM_POLICIES.create(serve.victim_policy))
            instances.append(Instance(len(instances), sched, SimulatedExecutor(cost, true_output_tokens),
                                      serve.fast_decode, role=pool.role, gpu=gpu.name,
                                      tensor_parallel=pool.tensor_parallel))
    return instances


def _times(segments: list[list[int]], ends_s: np.ndarray) -> list[np.ndarray]:
    return [ends_s[a:b + 1] for a, b in segments]


def token_times(fleet: Fleet) -> list[np.ndarray]:
    """Each request's token times, from the step logs of every instance it produced tokens on."""
    ends = [inst.log.ends_s() for inst in fleet.instances]
    out = []
    for r, earlier in zip(fleet.requests, fleet.earlier_segments):
        parts = [t for inst, segs in earlier for t in _times(segs, ends[inst])] + _times(r.token_segments, ends[r.replica])
        out.append(np.concatenate(parts) if parts else np.zeros(0))
    return out


def fleet_request_columns(fleet: Fleet, workload: Workload, predicted: np.ndarray | None,
                          times: list[np.ndarray]) -> dict[str, np.ndarray]:
    """REQUEST_METRICS' columns (TBT over all instances) plus FLEET_REQUEST_COLUMNS."""
    reqs = fleet.requests
    cols = request_columns(reqs, workload, fleet.instances, predicted)
    cols.update(metrics.tbt_columns(times))
    produced = [r.num_output_tokens > 0 for r in reqs]
    first = [e[0][0] if e else r.replica for r, e in zip(reqs, fleet.earlier_segments)]
    cols.update({
        "prefill_instance": np.array([f if p else -1 for f, p in zip(first, produced)], dtype=np.int64),
        "decode_instance": np.array([r.replica if p else -1 for r, p in zip(reqs, produced)], dtype=np.int64),
        "transfer_start_s": np.array(fleet.transfer_start_s, dtype=np.float64),
        "transfer_end_s": np.array(fleet.transfer_end_s, dtype=np.float64),
        "kv_transfer_bytes": np.array(fleet.kv_transfer_bytes, dtype=np.int64),
        "decode_admit_s": np.array(fleet.decode_admit_s, dtype=np.float64),
        "num_migrations": np.array(fleet.num_migrations, dtype=np.int64),
        "migration_bytes": np.array(fleet.migration_bytes, dtype=np.int64),
        "migration_s": np.array(fleet.migration_s, dtype=np.float64),
    })
    return cols


def fleet_step_columns(instances: list[Instance]) -> dict[str, np.ndarray]:
    """STEP_COLUMNS of every instance, concatenated in instance order, plus FLEET_STEP_COLUMNS."""
    parts = []
    for inst in instances:
        cols = inst.log.columns()
        n = len(cols["start_s"])
        cols.update({
            "instance": np.full(n, inst.index, dtype=np.int64),
            "step": np.arange(n, dtype=np.int64),
            "role": np.full(n, inst.role, dtype=object),
            "gpu": np.full(n, inst.gpu, dtype=object),
            "tensor_parallel": np.full(n, inst.tensor_parallel, dtype=np.int64),
            "kv_blocks_total": np.full(n, inst.scheduler.cfg.num_kv_blocks, dtype=np.int64),
        })
        parts.append(cols)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _stat(values: np.ndarray, q: float | None = None) -> float | None:
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    return float(values.mean() if q is None else np.percentile(values, q))


def fleet_summary(config: FleetConfig, requests: dict[str, np.ndarray], steps: dict[str, np.ndarray],
                  times: list[np.ndarray]) -> dict:
    """`replay.metrics.summarize` plus KV transfer, migration and pooled-TBT figures (None where undefined)."""
    serve = config.serve
    out = metrics.summarize(requests, steps, metrics.SloSpec(serve.slo_ttft_s, serve.slo_tbt_s))
    moved = requests["kv_transfer_bytes"] > 0
    copy_s = (requests["transfer_end_s"] - requests["transfer_start_s"])[moved]
    link_wait_s = (requests["transfer_start_s"] - requests["first_token_s"])[moved]
    decode_wait_s = (requests["decode_admit_s"] - requests["transfer_end_s"])[moved]
    finished = requests["status"] == "finished"
    gaps = [np.diff(t) for t, f in zip(times, finished) if f and len(t) > 1]
    gaps_s = np.concatenate(gaps) if gaps else np.zeros(0)
    out.update({
        "layout": config.layout,
        "num_instances": sum(p.num_instances for p in config.pools),
        "num_gpus": config.num_gpus,
        "link": config.link.name,
        "num_kv_transfers": int(moved.sum()),
        "kv_transfer_bytes_total": int(requests["kv_transfer_bytes"].sum()),
        "kv_transfer_mean_s": _stat(copy_s),
        "kv_transfer_p99_s": _stat(copy_s, 99),
        "kv_link_wait_mean_s": _stat(link_wait_s),
        "decode_queue_mean_s": _stat(decode_wait_s),
        "num_migrations": int(requests["num_migrations"].sum()),
        "migration_bytes_total": int(requests["migration_bytes"].sum()),
        "migration_mean_s": _stat(requests["migration_s"][requests["num_migrations"] > 0]),
        "tbt_pooled_p50_s": _stat(gaps_s, 50),
        "tbt_pooled_p99_s": _stat(gaps_s, 99),
    })
    return out


def run_fleet(config: FleetConfig, workload: Workload | None = None, *, data_root=None,
              on_done: Callable[[int], None] | None = None, check: Callable[[Instance], None] | None = None) -> FleetResult:
    """Replay `workload` (default: `config.serve.workload`, loaded from `data_root`) through the fleet.

    `check(instance)` runs after every step (tests pass integrity checks); nothing is written.
    """
    serve = config.serve
    workload = workload if workload is not None else load_workload(serve.workload, data_root)
    predicted = predicted_lengths(serve, workload)
    if QUEUE_POLICIES.create(serve.policy).needs_predictions and (predicted is None or np.isnan(predicted).any()):
        raise ValueError(f"policy {serve.policy!r} orders by predicted length, but some requests have no prediction")
    keys = kv_block_keys(workload, serve.block_size) if serve.enable_prefix_caching else None
    reqs = build_requests(workload, predicted, keys)
    fleet = Fleet(config, build_instances(config, workload.output_tokens), reqs, model_config(serve.model))
    fleet.run(on_done=on_done, check=check)
    times = token_times(fleet)
    requests = fleet_request_columns(fleet, workload, predicted, times)
    steps = fleet_step_columns(fleet.instances)
    summary = fleet_summary(config, requests, steps, times)
    summary["trace"] = workload.trace
    summary["oracle_lengths"] = serve.oracle_lengths
    return FleetResult(sinks.run_id(config), summary, requests, steps, times, fleet.instances)

