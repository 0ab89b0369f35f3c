"""A serving replay on the real GPU: the same scheduler and metrics as `run_serve`, the TorchExecutor, wall time."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from replay import metrics
from replay.harness import ServeConfig, ServeResult, build_requests, request_columns, step_columns
from replay.serving.policies import QUEUE_POLICIES, VICTIM_POLICIES
from replay.serving.scheduler import Scheduler
from replay.serving.specs import ModelConfig, model_config
from replay.simulate import Replica
from replay.sinks import run_id
from replay.sources import Workload
from replay.wallclock import run_wallclock


def check_gpu_config(config: ServeConfig) -> None:
    """What the real executor does not do: several replicas or GPUs, swapping, predictors, prefix caching."""
    bad = []
    if config.num_replicas != 1 or config.tensor_parallel != 1:
        bad.append("one replica on one GPU (num_replicas=1, tensor_parallel=1)")
    if config.preemption_mode != "recompute":
        bad.append("preemption_mode='recompute' (no KV swap to the CPU)")
    if config.predictor is not None:
        bad.append("no predictor (length-ordered policies are for the simulator)")
    if bad:
        raise ValueError("the GPU executor needs " + "; ".join(bad))


def run_gpu_serve(config: ServeConfig, workload: Workload, *, device: str = "cuda", weights_path: str | None = None,
                  on_done=None, check=None, model: ModelConfig | None = None):
    """Replay `workload` in wall-clock time on `device`; returns (ServeResult, executor, the config it ran).

    The KV pool is sized from the free GPU memory unless `config.num_kv_blocks` is set; the returned config
    (in the result's summary) records the number the run had, so a simulation can use the same pool.
    """
    from replay.serving.executors.torch_executor import TorchExecutor

    check_gpu_config(config)
    model = model or model_config(config.model)  # `model`: a shape the tables do not ship (tests)
    max_len = config.max_model_len or model.max_model_len
    ex = TorchExecutor(model, prompt_tokens=workload.prompt_tokens, true_output_tokens=workload.output_tokens,
                       num_kv_blocks=config.num_kv_blocks, block_size=config.block_size, max_model_len=max_len,
                       max_num_seqs=config.max_num_seqs, device=device, weights_path=weights_path,
                       gpu_memory_utilization=config.gpu_memory_utilization)
    config = replace(config, num_kv_blocks=ex.num_kv_blocks, enable_prefix_caching=False)
    sched = Scheduler(config.scheduler_config(), QUEUE_POLICIES.create(config.policy),
                      VICTIM_POLICIES.create(config.victim_policy))
    ex.block_table_of = lambda i: sched.request(i).block_table
    reqs = build_requests(workload, None, None)
    replica = Replica(0, sched, ex, fast_decode=False)
    elapsed = run_wallclock(reqs, replica, on_done=on_done, check=check)
    requests = request_columns(reqs, workload, [replica], None)
    steps = step_columns([replica])
    summary = metrics.summarize(requests, steps, metrics.SloSpec(config.slo_ttft_s, config.slo_tbt_s))
    gpu_s = np.asarray(ex.step_device_s)
    summary.update(trace=workload.trace, executor="torch", elapsed_s=elapsed, num_kv_blocks=ex.num_kv_blocks,
                   step_device_s_total=float(gpu_s.sum()), step_wall_s_total=float(steps["duration_s"].sum()),
                   graph_steps=int(np.sum(ex.step_graph)), num_steps=int(gpu_s.size))
    return ServeResult(run_id(asdict(config)), summary, requests, steps), ex, config
