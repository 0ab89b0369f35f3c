"""`tracelab replay validate`: the same trace window through the real GPU and through the simulator.

The real run (TorchExecutor, wall clock) fixes the KV pool size; the simulated runs use that same scheduler
configuration with (a) the table cost model built from this GPU's profile and (b) the analytic roofline. For
TTFT, TBT and E2E at p50/p90/p99 over finished requests, and for output-token throughput, the report gives each
simulator's relative error (sim - real) / real. TBT here is each request's median gap between output tokens
(`tbt_p50_s`), taken across requests.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from replay.harness import ServeConfig, ServeResult, run_serve
from replay.sources import Workload

QUANTILES = (("p50", 50), ("p90", 90), ("p99", 99))
METRICS = (("ttft", "ttft_s"), ("tbt", "tbt_p50_s"), ("e2e", "e2e_s"))


def metric_values(result: ServeResult) -> dict[str, float]:
    """{"ttft_p50": seconds, ..., "throughput": output tokens/s} of one run."""
    req = result.requests
    done = np.asarray(req["status"], dtype=object) == "finished"
    out = {}
    for name, col in METRICS:
        v = np.asarray(req[col], dtype=np.float64)[done]
        v = v[~np.isnan(v)]
        for q, p in QUANTILES:
            out[f"{name}_{q}"] = float(np.percentile(v, p)) if v.size else float("nan")
    out["throughput"] = float(result.summary["output_tokens_per_s"] or float("nan"))
    return out


def relative_errors(real: dict[str, float], sim: dict[str, float]) -> dict[str, float]:
    return {k: (sim[k] - real[k]) / real[k] if real[k] else float("nan") for k in real}


def validate(config: ServeConfig, workload: Workload, *, profile: str, device: str = "cuda",
             weights_path: str | None = None, real_run=None) -> dict:
    """Run the window on the GPU and in both simulators; returns the report (values and relative errors).

    `real_run` replaces the GPU run by a given (ServeResult, executor, config) triple (tests pass a CPU run).
    """
    from replay.gpu.run import run_gpu_serve

    real, ex, cfg = real_run if real_run is not None else run_gpu_serve(config, workload, device=device,
                                                                      weights_path=weights_path)
    sims = {
        "table": run_serve(replace(cfg, cost_model="profile", profiles_dir=str(profile)), workload=workload, write=False),
        "roofline": run_serve(replace(cfg, cost_model="roofline", profiles_dir=None), workload=workload, write=False),
    }
    values = {"real": metric_values(real), **{k: metric_values(v) for k, v in sims.items()}}
    errors = {k: relative_errors(values["real"], values[k]) for k in sims}
    s = real.summary
    return {
        "trace": workload.trace, "num_requests": int(len(workload.arrival_s)), "model": cfg.model,
        "num_kv_blocks": cfg.num_kv_blocks, "profile": str(profile), "values": values, "relative_error": errors,
        "real": {k: s[k] for k in ("elapsed_s", "num_steps", "graph_steps", "step_device_s_total",
                                   "step_wall_s_total", "num_finished", "num_preemptions")},
        "sim_num_preemptions": {k: v.summary["num_preemptions"] for k, v in sims.items()},
    }


def report_rows(report: dict) -> list[tuple[str, float, float, float, float, float]]:
    """(metric, real, table, table error, roofline, roofline error) per metric, for printing."""
    v, e = report["values"], report["relative_error"]
    return [(k, v["real"][k], v["table"][k], e["table"][k], v["roofline"][k], e["roofline"][k]) for k in v["real"]]
