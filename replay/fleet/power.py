"""GPU power per serving step, and the energy of steps and instances over a run.

Power model (one `PowerModel` per GPU type): a linear, utilization-driven model in the tradition of
server power models (Fan, Weber & Barroso, "Power provisioning for a warehouse-sized computer", ISCA
2007: P = P_idle + (P_busy - P_idle) * u), with the GPU's activity split into its two busy units as in
component-based GPU power models (Hong & Kim, "An integrated GPU power and performance model", ISCA 2010:
power = idle + sum of per-unit access rate x per-unit power):

    P_w = idle_w + (peak_w - idle_w) * min(1, compute_weight * u_compute + memory_weight * u_memory)

- u_compute = the step's compute time at the roofline's derated FLOP/s / its duration (1: tensor cores
  busy the whole step at the rate the cost model assumes), u_memory likewise for HBM traffic. Both come
  from `RooflineCostModel.step_work` (the same terms and efficiencies as the roofline step time), so a
  compute-bound prefill step timed by the roofline model has u_compute ~ 1 and draws ~ peak, the CPU
  overhead part of a step draws idle power, and u = 0 gives idle power.
- compute_weight = 1: dense GEMMs at a realistic MFU run Hopper and Ampere boards at their power limit.
- memory_weight = 0.5 (default): a step that only streams HBM at full bandwidth draws idle + half the
  dynamic range (H100: ~390 W of 700 W). Memory-bound decode rarely reaches TDP (Splitwise, Patel et al.
  ISCA 2024: the token phase draws far less power than the prompt phase; ML.ENERGY v3.0 H100 anchors
  ~300 W at decode batch 1 and ~600 W at batch 128; H200 decode measured at 137-300 W by Ma et al. 2026,
  "The Illusion of Power Capping in LLM Decode"). 0.5 sits between those anchors; override per study.
- idle_w: board draw while on with the model loaded and no kernel running (replay/fleet/data/
  power_prices.json, an assumption with its source); peak_w: board TDP from replay/serving/data/gpus.json.

Only the GPU boards are modeled: no host CPU, NIC, fans or facility (PUE) power; NVLink all-reduce time
counts as neither compute nor memory activity. An instance of `tp` GPUs draws tp x the per-GPU power
(the roofline shards every term evenly). Energy of a step = P_w * duration_s * tp; an instance that is
provisioned but between steps draws idle_w * tp.

Step-log inputs (per step: num_tokens, num_seqs, num_decodes, num_prefill_tokens, kv_blocks_used,
duration_s) determine the work, with two documented estimates because the log keeps aggregates only:
decode attention context = kv_blocks_used * block_size - num_prefill_tokens (at least one token per
decode: block rounding over-counts by < block_size per sequence, shared prefix blocks are counted once),
and prefill chunks split the step's prefill tokens evenly, with no cached context (a later chunk's cached
KV is read in the decode term instead: bytes stay right, the q x cached attention FLOPs are left out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

import numpy as np

from replay.serving.executors.cost_model import RooflineCostModel
from replay.serving.specs import ModelConfig, gpu_spec, model_config

DEFAULT_MEMORY_WEIGHT = 0.5
"""Share of the dynamic power range drawn by a step that streams HBM at full (derated) bandwidth."""


@lru_cache(maxsize=1)
def _table_text() -> str:
    return resources.files("replay.fleet").joinpath("data", "power_prices.json").read_text(encoding="utf-8")


def load_power_table() -> dict[str, dict]:
    """The shipped power/price rows keyed by canonical GPU name (idle_power_w, usd_per_gpu_hour, sources)."""
    return {row["name"]: dict(row) for row in json.loads(_table_text())["gpus"]}


def table_row(gpu: str) -> dict:
    """The power/price row of `gpu` (any name or alias `gpu_spec` accepts); KeyError naming the known rows."""
    name = gpu_spec(gpu).name
    table = load_power_table()
    if name not in table:
        raise KeyError(f"no power/price row for GPU {name!r} in power_prices.json; known: {', '.join(table)}")
    return table[name]


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Board power of one GPU as a function of its compute and memory utilization in a step."""

    gpu: str
    """Canonical GPU name."""
    idle_w: float
    """Power when on and idle (model loaded, no kernel), watts."""
    peak_w: float
    """Power at full activity (board TDP), watts."""
    compute_weight: float = 1.0
    """Share of the dynamic range (peak_w - idle_w) drawn per unit of compute utilization."""
    memory_weight: float = DEFAULT_MEMORY_WEIGHT
    """Share of the dynamic range drawn per unit of HBM-bandwidth utilization."""

    def __post_init__(self) -> None:
        if not 0 <= self.idle_w < self.peak_w:
            raise ValueError(f"PowerModel({self.gpu}): need 0 <= idle_w < peak_w, got {self.idle_w}, {self.peak_w}")
        for name in ("compute_weight", "memory_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"PowerModel.{name} must be in [0, 1], got {getattr(self, name)}")

    def power_w(self, compute_util, memory_util) -> np.ndarray:
        """Watts at the given utilizations (arrays or scalars in [0, 1]; values outside are clipped)."""
        uc = np.clip(np.asarray(compute_util, dtype=np.float64), 0.0, 1.0)
        um = np.clip(np.asarray(memory_util, dtype=np.float64), 0.0, 1.0)
        activity = np.minimum(1.0, self.compute_weight * uc + self.memory_weight * um)
        return self.idle_w + (self.peak_w - self.idle_w) * activity


def power_model(gpu: str, **overrides) -> PowerModel:
    """The default `PowerModel` of `gpu`: idle from gpus.json if set there, else power_prices.json; peak = TDP.

    `overrides` replace any field (idle_w, peak_w, compute_weight, memory_weight).
    """
    spec = gpu_spec(gpu)
    idle_w = spec.idle_power_w if spec.idle_power_w is not None else table_row(spec.name)["idle_power_w"]
    if spec.peak_power_w is None and "peak_w" not in overrides:
        raise ValueError(f"{spec.name} has no peak_power_w in gpus.json: pass peak_w=")
    fields = {"gpu": spec.name, "idle_w": float(idle_w), "peak_w": float(spec.peak_power_w or 0.0)}
    return PowerModel(**{**fields, **overrides})


# -- per-row GPU / tp / instance columns --------------------------------------------------------------

def instance_column(steps: Mapping[str, np.ndarray]) -> str | None:
    """Which column names a step's instance: "instance" (fleet logs), "replica" (run_serve), or None."""
    return next((c for c in ("instance", "replica") if c in steps), None)


def per_row(steps: Mapping[str, np.ndarray], value, column: str) -> np.ndarray:
    """`value` broadcast to one entry per step, or the step column `column` when `value` is None."""
    n = len(steps["duration_s"])
    if value is None:
        if column not in steps:
            raise ValueError(f"no {column!r} given and the steps have no {column!r} column")
        value = steps[column]
    arr = np.asarray(value)
    return np.full(n, value, dtype=object if arr.dtype.kind in "OUS" else arr.dtype) if arr.ndim == 0 else arr


def _canonical(gpus: np.ndarray) -> np.ndarray:
    names = {g: gpu_spec(str(g)).name for g in set(gpus.tolist())}
    return np.array([names[g] for g in gpus.tolist()], dtype=object)


# -- work and energy per step ---------------------------------------------------------------------------

def step_aggregates(steps: Mapping[str, np.ndarray], block_size: int) -> dict[str, np.ndarray]:
    """The `RooflineCostModel.step_work` inputs estimated from step-log columns (see the module docstring)."""
    f = {c: np.asarray(steps[c], dtype=np.float64) for c in
         ("num_tokens", "num_seqs", "num_decodes", "num_prefill_tokens", "kv_blocks_used")}
    d, p = f["num_decodes"], f["num_prefill_tokens"]
    chunks = np.maximum(f["num_seqs"] - d, 0.0)
    ctx = np.where(d > 0, np.maximum(f["kv_blocks_used"] * block_size - p, d), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pairs = np.where(chunks > 0, p * (p / np.maximum(chunks, 1.0)) / 2.0, 0.0)
    return {"num_tokens": f["num_tokens"], "num_seqs": f["num_seqs"], "num_decodes": d,
            "decode_ctx_tokens": ctx, "prefill_pairs": pairs, "prefill_kv_tokens": 2.0 * p}


def step_energy(steps: Mapping[str, np.ndarray], model: str | ModelConfig, gpu=None, tp=None, block_size: int = 16,
                *, power_models: Mapping[str, PowerModel] | None = None,
                roofline_kwargs: Mapping | None = None) -> dict[str, np.ndarray]:
    """Per-step power and energy of a step log (one row per step, any number of instances).

    `gpu` / `tp`: a name / degree for every step, an array with one per step, or None to read the steps'
    "gpu" / "tensor_parallel" columns. `power_models` (by canonical GPU name) replace `power_model(gpu)`;
    `roofline_kwargs` (e.g. compute_efficiency) go to the `RooflineCostModel` that supplies the work.
    Returns flops and hbm_bytes (per GPU), compute_util, memory_util, power_w (per GPU), gpu_power_w
    (power_w * tp) and energy_j (all tp GPUs over duration_s).
    """
    cfg = model if isinstance(model, ModelConfig) else model_config(model)
    gpus, tps = _canonical(per_row(steps, gpu, "gpu")), per_row(steps, tp, "tensor_parallel").astype(np.int64)
    duration = np.asarray(steps["duration_s"], dtype=np.float64)
    agg = step_aggregates(steps, block_size)
    n = duration.size
    out = {k: np.zeros(n) for k in ("flops", "hbm_bytes", "compute_util", "memory_util", "power_w")}
    for g, t in sorted({(g, int(t)) for g, t in zip(gpus.tolist(), tps.tolist())}):
        rows = (gpus == g) & (tps == t)
        roof = RooflineCostModel(cfg, gpu_spec(g), tp=t, block_size=block_size, **dict(roofline_kwargs or {}))
        work = roof.step_work(**{k: v[rows] for k, v in agg.items()})
        dur = duration[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            uc = np.where(dur > 0, work.compute_s / dur, 0.0)
            um = np.where(dur > 0, work.memory_s / dur, 0.0)
        pm = (power_models or {}).get(g) or power_model(g)
        out["flops"][rows], out["hbm_bytes"][rows] = work.flops, work.hbm_bytes
        out["compute_util"][rows], out["memory_util"][rows] = np.clip(uc, 0, 1), np.clip(um, 0, 1)
        out["power_w"][rows] = pm.power_w(uc, um)
    out["gpu_power_w"] = out["power_w"] * tps
    out["energy_j"] = out["gpu_power_w"] * duration
    return out


def instance_energy(steps: Mapping[str, np.ndarray], energy_j: np.ndarray, gpu=None, tp=None, *,
                    span_s: tuple[float, float] | None = None,
                    power_models: Mapping[str, PowerModel] | None = None,
                    provisioned: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per instance: busy and idle seconds and joules over the provisioned span (one row per instance).

    An instance is provisioned for the whole `span_s` (start, end); default: 0 (or the first step start if
    earlier) to the last step end over all instances. Idle energy = idle_w * tp * (span - busy seconds).
    Instances are told apart by `instance_column(steps)` (one instance when there is none); `provisioned`
    (columns "instance", "gpu", "tensor_parallel") adds instances that may never have run a step.
    """
    col = instance_column(steps)
    n = len(steps["duration_s"])
    inst = np.asarray(steps[col], dtype=np.int64) if col else np.zeros(n, dtype=np.int64)
    gpus, tps = _canonical(per_row(steps, gpu, "gpu")), per_row(steps, tp, "tensor_parallel").astype(np.int64)
    start = np.asarray(steps["start_s"], dtype=np.float64)
    duration = np.asarray(steps["duration_s"], dtype=np.float64)
    if span_s is None:
        span_s = (min(0.0, float(start.min())) if n else 0.0, float((start + duration).max()) if n else 0.0)
    span = float(span_s[1] - span_s[0])
    shape = {i: (g, t) for i, g, t in zip(inst.tolist(), gpus.tolist(), tps.tolist())}
    if provisioned is not None:
        for i, g, t in zip(*(np.asarray(provisioned[k]).tolist() for k in ("instance", "gpu", "tensor_parallel"))):
            shape.setdefault(int(i), (gpu_spec(str(g)).name, int(t)))
    ids = np.array(sorted(shape), dtype=np.int64)
    rows = {"instance": ids, "gpu": np.array([shape[i][0] for i in ids.tolist()], dtype=object),
            "tensor_parallel": np.array([shape[i][1] for i in ids.tolist()], dtype=np.int64),
            **{k: np.zeros(ids.size) for k in ("busy_s", "span_s", "busy_energy_j", "idle_energy_j")}}
    for k, i in enumerate(ids.tolist()):
        mine = inst == i
        g, t = shape[i]
        if mine.any() and (set(gpus[mine].tolist()) != {g} or set(tps[mine].tolist()) != {t}):
            raise ValueError(f"instance {i} has steps on several GPU types or tp degrees")
        pm = (power_models or {}).get(g) or power_model(g)
        busy_s = float(duration[mine].sum())
        rows["busy_s"][k], rows["span_s"][k] = busy_s, span
        rows["busy_energy_j"][k] = float(np.asarray(energy_j)[mine].sum())
        rows["idle_energy_j"][k] = pm.idle_w * t * max(0.0, span - busy_s)
    rows["energy_j"] = rows["busy_energy_j"] + rows["idle_energy_j"]
    return rows
