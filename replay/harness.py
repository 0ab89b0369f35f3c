"""Serving replay harness: a `ServeConfig` in, per-request metrics, a step log and a summary out.

`run_serve(config)` loads (or generates) the workload, builds one scheduler + simulated executor per
replica, replays in virtual time (`replay.simulate`), summarizes and writes
`data/results/<run id>/`. The run id is a hash of the canonical config, so a run is named by what it
computed; the same (config, seed) gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from replay import metrics, sinks
from replay.predictions import load_predictor
from replay.serving.config import SchedulerConfig
from replay.serving.executors.cost_model import LinearCostModel, RooflineCostModel, TableCostModel
from replay.serving.executors.simulated import SimulatedExecutor
from replay.serving.policies import QUEUE_POLICIES, ROUTERS, VICTIM_POLICIES
from replay.serving.registry import Registry
from replay.serving.request import Request, RequestStatus
from replay.serving.scheduler import Scheduler
from replay.serving.specs import gpu_spec, kv_capacity_blocks, kv_block_bytes, model_config
from replay.simulate import Replica, simulate, token_times_s
from replay.sources import Workload, WorkloadSpec, load_workload

COST_MODELS: Registry = Registry("cost model")
COST_MODELS.register("roofline")(lambda model, gpu, tp, block_size, profiles, overhead: RooflineCostModel(
    model, gpu, tp=tp, block_size=block_size, **({} if overhead is None else {"step_overhead_s": overhead})))
COST_MODELS.register("table")(lambda model, gpu, tp, block_size, profiles, overhead: TableCostModel.from_profiles_dir(
    model, gpu, profiles, tp=tp, block_size=block_size, **({} if overhead is None else {"step_overhead_s": overhead})))
COST_MODELS.register("profile")(lambda model, gpu, tp, block_size, profiles, overhead: _profile_model(
    model, gpu, tp, block_size, profiles))
# A deliberately simple model for golden tests and teaching: 5 ms + 50 us/token + 20 ns/context token.
COST_MODELS.register("linear")(
    lambda model, gpu, tp, block_size, profiles, overhead: LinearCostModel(overhead if overhead is not None else 5e-3, 5e-5, 2e-8, 1e-5))


def _profile_model(model, gpu, tp, block_size, profiles):
    """The table model from one of the project's own GPU profiles (`tracelab replay profile`): `profiles` names the
    file, else data/profiles/<gpu>__<model>.parquet."""
    from replay.gpu.profiler import default_profile_path
    from replay.serving.executors.profile_table import ProfileCostModel

    if tp != 1:
        raise ValueError("the GPU profiles are measured on one GPU: the 'profile' cost model needs tensor_parallel=1")
    path = profiles if profiles and str(profiles).endswith(".parquet") else default_profile_path(model, gpu.name, profiles)
    return ProfileCostModel.from_profile(path, model, gpu, block_size=block_size)


@dataclass(frozen=True)
class ServeConfig:
    """Everything that determines a serving replay (its hash is the run id)."""

    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    """Which requests, which window, which rate scale and seed."""
    model: str = "llama-2-7b"
    """Model shape (see `replay.serving.specs.known_models`)."""
    gpu: str = "h100"
    """GPU type (see `replay.serving.specs.known_gpus`)."""
    tensor_parallel: int = 1
    """GPUs per replica."""
    cost_model: str = "roofline"
    """'roofline', 'table' (measured H100 profiles), 'profile' (this project's own GPU profiles) or 'linear'."""
    profiles_dir: str | None = None
    """Profiles for the table model (default $TRACELAB_PROFILES, else ../shared/profiles)."""
    step_overhead_s: float | None = None
    """Fixed CPU/launch time per step (None: the cost model's default; 0 matches simulators that model none)."""
    policy: str = "fcfs"
    """Queue policy: fcfs, sjf, srpt, mlfq, priority."""
    victim_policy: str = "last_admitted"
    """Preemption victim: last_admitted, lowest_priority, most_blocks."""
    router: str = "round_robin"
    """Multi-replica router: round_robin, least_outstanding_tokens, kv_aware, prefix_affinity."""
    num_replicas: int = 1
    """Independent serving replicas behind the router."""
    predictor: str | None = None
    """Where predicted output lengths come from: None, 'oracle' (true lengths) or a path to an exported model."""
    oracle_lengths: bool = False
    """Must be True to use true lengths as predictions (recorded in the run's config)."""
    max_num_batched_tokens: int = 2048
    """Token budget per step."""
    max_num_seqs: int = 256
    """Running batch cap."""
    block_size: int = 16
    """Tokens per KV block."""
    max_model_len: int | None = None
    """Longest sequence (default: the model's)."""
    num_kv_blocks: int | None = None
    """KV pool size per replica (default: derived from GPU memory, weights and activation reserve)."""
    gpu_memory_utilization: float = 0.9
    """Share of GPU memory the server may use."""
    chunked_prefill: bool = True
    """Sarathi-style chunked prefill mixed with decodes; off: whole prefills in prefill-only steps."""
    watermark_fraction: float = 0.01
    """KV share an admission must leave free."""
    preemption_mode: str = "recompute"
    """'recompute' or 'swap'."""
    cpu_swap_gib: float = 0.0
    """CPU swap pool per replica, in GiB (swap mode)."""
    kv_mode: str = "paged"
    """'paged' or 'static' (reserve max_model_len per request at admission)."""
    enable_prefix_caching: bool = True
    """Reuse cached prompt-prefix blocks (traces with block hashes only)."""
    slo_ttft_s: float = 2.0
    """TTFT objective for SLO attainment and goodput."""
    slo_tbt_s: float = 0.2
    """Per-request p99 TBT objective."""
    fast_decode: bool = True
    """Advance runs of identical decode steps at once (results are identical either way)."""

    def __post_init__(self) -> None:
        if self.num_replicas < 1 or self.tensor_parallel < 1:
            raise ValueError("num_replicas and tensor_parallel must be >= 1")
        for name, reg in (("policy", QUEUE_POLICIES), ("victim_policy", VICTIM_POLICIES), ("router", ROUTERS),
                          ("cost_model", COST_MODELS)):
            if getattr(self, name) not in reg:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; known: {', '.join(reg.names())}")
        if self.predictor == "oracle" and not self.oracle_lengths:
            raise ValueError("predictor='oracle' uses true output lengths: set oracle_lengths=True to say so explicitly")
        if self.oracle_lengths and self.predictor != "oracle":
            raise ValueError("oracle_lengths=True only goes with predictor='oracle'")
        if QUEUE_POLICIES.create(self.policy).needs_predictions and self.predictor is None:
            raise ValueError(f"policy {self.policy!r} needs predicted lengths: give a predictor "
                             "(or predictor='oracle' with oracle_lengths=True for the oracle baseline)")
        if self.step_overhead_s is not None and self.step_overhead_s < 0:
            raise ValueError("step_overhead_s must be >= 0")
        if self.cpu_swap_gib < 0 or not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("cpu_swap_gib must be >= 0 and gpu_memory_utilization in (0, 1]")

    def scheduler_config(self) -> SchedulerConfig:
        """The per-replica scheduler limits this config implies (KV capacity derived from the GPU)."""
        model, gpu = model_config(self.model), gpu_spec(self.gpu)
        blocks = self.num_kv_blocks or kv_capacity_blocks(
            model, gpu, tp=self.tensor_parallel, block_size=self.block_size,
            gpu_memory_utilization=self.gpu_memory_utilization)
        swap_blocks = int(self.cpu_swap_gib * 2**30 // kv_block_bytes(model, self.block_size, self.tensor_parallel))
        return SchedulerConfig(
            num_kv_blocks=blocks, max_model_len=self.max_model_len or model.max_model_len, block_size=self.block_size,
            max_num_batched_tokens=self.max_num_batched_tokens, max_num_seqs=self.max_num_seqs,
            chunked_prefill=self.chunked_prefill, watermark_fraction=self.watermark_fraction,
            preemption_mode=self.preemption_mode, num_cpu_swap_blocks=swap_blocks, kv_mode=self.kv_mode,
            enable_prefix_caching=self.enable_prefix_caching)

    def with_rate_scale(self, rate_scale: float) -> "ServeConfig":
        return replace(self, workload=replace(self.workload, rate_scale=rate_scale))


@dataclass
class ServeResult:
    run_id: str
    summary: dict
    requests: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    path: Path | None = None


def predicted_lengths(config: ServeConfig, workload: Workload) -> np.ndarray | None:
    """Predicted output tokens per request, computed once per trace (NaN where no prediction)."""
    if config.predictor is None:
        return None
    if config.predictor == "oracle":
        return workload.output_tokens.astype(np.float64)
    model = load_predictor("load_length_predictor", config.predictor, "oracle_lengths=True")
    return np.asarray(model.predict_workload(workload), dtype=np.float64)


def kv_block_keys(workload: Workload, block_size: int) -> list[list[int] | None] | None:
    """Prefix-cache keys per request: one per full KV block of the prompt covered by the trace's hashes.

    Trace hashes cover `hash_block_tokens`-token blocks and identify the whole prefix up to their block
    (Mooncake); KV block k lies in trace block k*block_size // hash_block_tokens, so its key is that hash
    and k's position inside the trace block.
    """
    if workload.prefix_hashes is None or not workload.hash_block_tokens:
        return None
    hb = workload.hash_block_tokens
    if hb % block_size:
        raise ValueError(f"trace hash blocks of {hb} tokens are not a multiple of the KV block size {block_size}")
    per = hb // block_size
    keys: list[list[int] | None] = []
    for hashes, prompt in zip(workload.prefix_hashes, workload.prompt_tokens.tolist()):
        n = min(prompt // block_size, len(hashes) * per)
        keys.append([int(hashes[k // per]) * per + k % per for k in range(n)] if n else None)
    return keys


def build_requests(workload: Workload, predicted: np.ndarray | None, block_keys) -> list[Request]:
    arrival, prompt, prio = workload.arrival_s.tolist(), workload.prompt_tokens.tolist(), workload.priority.tolist()
    pred = predicted.tolist() if predicted is not None else [None] * len(arrival)
    keys = block_keys or [None] * len(arrival)
    return [Request(i, arrival[i], prompt[i], priority=prio[i], predicted_output_tokens=pred[i], block_hashes=keys[i])
            for i in range(len(arrival))]


def build_replicas(config: ServeConfig, true_output_tokens: np.ndarray) -> list[Replica]:
    sched_cfg = config.scheduler_config()
    model, gpu = model_config(config.model), gpu_spec(config.gpu)
    replicas = []
    for k in range(config.num_replicas):
        cost = COST_MODELS.create(config.cost_model, model=model, gpu=gpu, tp=config.tensor_parallel,
                                  block_size=config.block_size, profiles=config.profiles_dir,
                                  overhead=config.step_overhead_s)
        scheduler = Scheduler(sched_cfg, QUEUE_POLICIES.create(config.policy), VICTIM_POLICIES.create(config.victim_policy))
        replicas.append(Replica(k, scheduler, SimulatedExecutor(cost, true_output_tokens), fast_decode=config.fast_decode))
    return replicas


def request_columns(reqs: list[Request], workload: Workload, replicas: list[Replica],
                    predicted: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-request metric columns (replay.schema.REQUEST_METRICS) from the finished simulation."""
    nan = math.nan
    ends = [rep.log.ends_s() for rep in replicas]

    def f(xs):
        return np.array([nan if x is None else x for x in xs], dtype=np.float64)

    cols = {
        "replica": np.array([r.replica for r in reqs], dtype=np.int64),
        "request_id": np.asarray(workload.request_id, dtype=object),
        "arrival_s": workload.arrival_s.astype(np.float64),
        "prompt_tokens": workload.prompt_tokens.astype(np.int64),
        "output_tokens": workload.output_tokens.astype(np.int64),
        "predicted_output_tokens": predicted if predicted is not None else np.full(len(reqs), nan),
        "status": np.array([_STATUS[r.status] for r in reqs], dtype=object),
        "reject_reason": np.array([r.reject_reason for r in reqs], dtype=object),
        "first_scheduled_s": f(r.first_scheduled_s for r in reqs),
        "first_token_s": f(r.first_token_s for r in reqs),
        "finish_s": f(r.finish_s if r.status == RequestStatus.FINISHED else None for r in reqs),
        "num_generated_tokens": np.array([r.num_output_tokens for r in reqs], dtype=np.int64),
        "num_preemptions": np.array([r.num_preemptions for r in reqs], dtype=np.int64),
        "prefix_hit_tokens": np.array([r.prefix_hit_tokens for r in reqs], dtype=np.int64),
    }
    cols.update(metrics.latency_columns(cols["arrival_s"], cols["first_scheduled_s"], cols["first_token_s"],
                                        cols["finish_s"], cols["num_generated_tokens"]))
    cols.update(metrics.tbt_columns([token_times_s(r, ends[r.replica]) for r in reqs]))
    return cols


_STATUS = {RequestStatus.FINISHED: "finished", RequestStatus.REJECTED: "rejected"}


def step_columns(replicas: list[Replica]) -> dict[str, np.ndarray]:
    parts = []
    for rep in replicas:
        cols = rep.log.columns()
        n = len(cols["start_s"])
        cols["replica"] = np.full(n, rep.index, dtype=np.int64)
        cols["step"] = np.arange(n, dtype=np.int64)
        cols["kv_blocks_total"] = np.full(n, rep.scheduler.cfg.num_kv_blocks, dtype=np.int64)
        parts.append(cols)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_serve(config: ServeConfig, *, data_root: str | Path | None = None, write: bool = True,
              workload: Workload | None = None, on_total: Callable[[int], None] | None = None,
              on_done: Callable[[int], None] | None = None, check=None) -> ServeResult:
    """Replay one configuration; writes data/results/<run id>/ unless write=False."""
    workload = workload if workload is not None else load_workload(config.workload, data_root)
    predicted = predicted_lengths(config, workload)
    if QUEUE_POLICIES.create(config.policy).needs_predictions and (predicted is None or np.isnan(predicted).any()):
        raise ValueError(f"policy {config.policy!r} orders by predicted length, but some requests have no prediction")
    reqs = build_requests(workload, predicted, kv_block_keys(workload, config.block_size) if config.enable_prefix_caching else None)
    replicas = build_replicas(config, workload.output_tokens)
    if on_total is not None:
        on_total(len(reqs))
    router = ROUTERS.create(config.router) if config.num_replicas > 1 else None
    simulate(reqs, replicas, router, on_done=on_done, check=check)
    requests = request_columns(reqs, workload, replicas, predicted)
    steps = step_columns(replicas)
    summary = metrics.summarize(requests, steps, metrics.SloSpec(config.slo_ttft_s, config.slo_tbt_s))
    summary["trace"] = workload.trace
    summary["excluded"] = dict(workload.excluded)
    summary["oracle_lengths"] = config.oracle_lengths
    rid = sinks.run_id(asdict(config))
    path = sinks.write_run(sinks.results_root(data_root), rid, asdict(config), requests, steps, summary) if write else None
    return ServeResult(rid, summary, requests, steps, path)
