"""Cluster replay harness: a `ClusterConfig` in, per-job metrics, a utilization series and a summary out.

`run_cluster(config)` loads (or generates) the jobs, builds the cluster, admits, gets predictions if
the policy needs them, simulates (``replay.cluster.simulate``), summarizes and writes
``<results>/cluster/<run id>/`` through ``replay.sinks``. The run id is a hash of the canonical config,
so the same (config, seed) gives the same id and the same bytes.

Cluster size, in order: ``vc_config`` (Philly VCs from the lake, or a VC file), else ``num_nodes``
identical nodes, else sized from demand: ``demand_fraction`` of the peak concurrent GPU demand (the
GPUs in use if every job started at its submission), in whole nodes, at least enough for the
largest job. The ITP traces carry no cluster size; the default 0.3 gives ITP cluster04 about 0.8 utilization.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from replay import sinks
from replay.predictions import load_predictor
from replay.cluster import metrics
from replay.cluster.admission import admit
from replay.cluster.cluster import (
    HELIOS_GPUS_PER_NODE, ClusterSpec, from_vc_gpus, from_vc_nodes, machines_from_lake, philly_vc_nodes_from_lake, read_helios_vc_gpus,
    read_vc_nodes_csv, uniform,
)
from replay.cluster.jobs import GENERATED, JobWorkload, generate_jobs, load_jobs
from replay.cluster.placement import PLACEMENTS
from replay.cluster.policies import DEFAULT_LAS_THRESHOLDS_GPU_S, POLICIES, JobsView
from replay.cluster.schema import JOB_METRICS, UTILIZATION
from replay.cluster.simulate import SimOutput, simulate

RESULTS_SUBDIR = "cluster"
"""Cluster runs live in ``<results>/cluster/<run id>/``, apart from serving runs."""
PHILLY = "philly"
"""``vc_config`` value for the Philly VC configuration ingested in the lake (trace ``philly_vc``)."""
MACHINES = "machines:"
"""``vc_config`` prefix for a cluster built from an ingested machine list: ``machines:philly``,
``machines:alibaba_pai_2020`` (one node per GPU machine, no VCs)."""


@dataclass(frozen=True)
class ClusterConfig:
    """Everything that determines a cluster replay (its hash is the run id)."""

    trace: str = GENERATED
    """A job trace in the catalog (philly_sia_jobs, microsoft_itp ...), or "generated"."""
    cluster: str | None = None
    """Only this cluster of the trace (ITP cluster04, Helios Venus); None: all rows."""
    start_s: float = 0.0
    """Window start, trace seconds; becomes time 0."""
    duration_s: float | None = None
    """Window length, trace seconds; None: to the end."""
    max_jobs: int | None = None
    """Keep at most the first N jobs of the window."""
    rate_scale: float = 1.0
    """Submissions are compressed by this factor (submit_s / rate_scale): 2 offers twice the load."""
    num_jobs: int = 10_000
    """Generated only: jobs to draw."""
    gen_rate_per_s: float = 0.2
    """Generated only: mean submissions per second (Helios: 3.36 M jobs in 6 months, about 0.2/s)."""
    seed: int = 0
    """Seed of the generator."""
    policy: str = "fifo"
    """Ordering policy: fifo, sjf, srtf, qssf, las, easy (= fifo-backfill)."""
    placement: str = "consolidate"
    """Placement: consolidate, first-fit, spread."""
    vc_config: str | None = None
    """VCs: 'philly' (the ingested philly_vc trace), a 'vc,node num' CSV, or a Helios cluster_gpu_number.csv;
    or 'machines:TRACE', one node per GPU machine of an ingested machine list; None: no VCs."""
    gpus_per_node: int = HELIOS_GPUS_PER_NODE
    """GPUs per node (the Helios simulator assumes 8)."""
    num_nodes: int | None = None
    """Without VCs: this many identical nodes; None: sized from demand."""
    demand_fraction: float = 0.3
    """Without VCs or num_nodes: the cluster gets this share of the peak concurrent GPU demand."""
    predictor: str | None = None
    """Predicted durations: None, 'oracle' (true durations) or a path to an exported duration model."""
    oracle: bool = False
    """Must be True to use true durations as predictions (recorded in the run's config)."""
    las_thresholds_gpu_s: tuple[float, ...] = DEFAULT_LAS_THRESHOLDS_GPU_S
    """LAS queue thresholds, attained GPU-seconds."""
    las_promote_after_s: float | None = None
    """LAS starvation guard: a job queued this long returns to the top queue; None: off."""
    slowdown_floor_s: float = 10.0
    """Slowdown divides by max(duration, this) (bounded slowdown)."""

    def __post_init__(self) -> None:
        for name, reg in (("policy", POLICIES), ("placement", PLACEMENTS)):
            if getattr(self, name) not in reg:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; known: {', '.join(reg.names())}")
        if not self.trace or "/" in self.trace:
            raise ValueError(f"trace must be a trace name, got {self.trace!r}")
        if self.predictor == "oracle" and not self.oracle:
            raise ValueError("predictor='oracle' uses the true durations: set oracle=True to say so explicitly")
        if self.oracle and self.predictor != "oracle":
            raise ValueError("oracle=True only goes with predictor='oracle'")
        if self.needs_predictions and self.predictor is None:
            raise ValueError(f"policy {self.policy!r} needs predicted durations: give a predictor (an exported "
                             "duration model), or predictor='oracle' with oracle=True for the oracle baseline")
        if self.vc_config is not None and self.num_nodes is not None:
            raise ValueError("give either vc_config or num_nodes, not both")
        if self.gpus_per_node < 1 or (self.num_nodes is not None and self.num_nodes < 1):
            raise ValueError("gpus_per_node and num_nodes must be >= 1")
        if not 0 < self.demand_fraction <= 1 or not self.slowdown_floor_s > 0:
            raise ValueError("demand_fraction must be in (0, 1] and slowdown_floor_s > 0")
        if self.max_jobs is not None and self.max_jobs < 1 or self.num_jobs < 1 or self.seed < 0:
            raise ValueError("max_jobs and num_jobs must be >= 1 and seed >= 0")
        if not (math.isfinite(self.start_s) and self.start_s >= 0) or (self.duration_s is not None and not self.duration_s > 0):
            raise ValueError("start_s must be finite and >= 0, duration_s None or > 0")
        if not (self.gen_rate_per_s > 0 and math.isfinite(self.rate_scale) and self.rate_scale > 0):
            raise ValueError("gen_rate_per_s and rate_scale must be finite and > 0")
        self.make_policy()  # LAS thresholds and other policy parameters

    @property
    def needs_predictions(self) -> bool:
        """Whether the policy reads predicted durations."""
        return POLICIES.create(self.policy).needs_predictions

    def make_policy(self):
        """The ordering policy with this config's parameters."""
        return POLICIES.create(self.policy, las_thresholds_gpu_s=self.las_thresholds_gpu_s,
                               las_promote_after_s=self.las_promote_after_s)


@dataclass
class ClusterResult:
    """One replay's outputs (``path`` is None when not written; ``wall_s`` is not part of the results)."""

    run_id: str
    summary: dict
    jobs: dict[str, np.ndarray]
    utilization: dict[str, np.ndarray]
    sim: SimOutput
    wall_s: float
    path: Path | None = None


def load_workload(config: ClusterConfig, data_root: str | Path | None = None) -> JobWorkload:
    """The jobs ``config`` selects: from the catalog or generated (window, max_jobs and rate_scale apply to both)."""
    if config.trace != GENERATED:
        w = load_jobs(config.trace, cluster=config.cluster, data_root=data_root, max_jobs=config.max_jobs,
                      start_s=config.start_s, duration_s=config.duration_s)
        return w if config.rate_scale == 1.0 else replace(w, submit_s=w.submit_s / config.rate_scale)
    w = generate_jobs(config.num_jobs, config.seed, rate_per_s=config.gen_rate_per_s)
    keep = w.submit_s >= config.start_s
    if config.duration_s is not None:
        keep &= w.submit_s < config.start_s + config.duration_s
    idx = np.flatnonzero(keep)[: config.max_jobs]
    return JobWorkload(w.trace, w.job_id[idx], (w.submit_s[idx] - config.start_s) / config.rate_scale, w.duration_s[idx],
                       w.num_gpus[idx], user=w.user[idx])


def build_cluster(config: ClusterConfig, workload: JobWorkload, data_root: str | Path | None = None) -> ClusterSpec:
    """The cluster (module doc): VC configuration, node count or demand-sized."""
    gpn = config.gpus_per_node
    if config.vc_config == PHILLY:
        return from_vc_nodes(philly_vc_nodes_from_lake(data_root), gpn, source="philly_vc (lake)")
    if config.vc_config is not None and config.vc_config.startswith(MACHINES):
        return machines_from_lake(config.vc_config[len(MACHINES):], data_root)
    if config.vc_config is not None:
        path = Path(config.vc_config)
        if not path.is_file():
            raise ValueError(f"--vc-config {config.vc_config!r}: not 'philly' and no such file")
        header = path.read_text().split("\n", 1)[0]
        if header.startswith("date"):
            return from_vc_gpus(read_helios_vc_gpus(path), gpn, source=f"{path.name} (Helios VC GPUs, last day)")
        return from_vc_nodes(read_vc_nodes_csv(path), gpn, source=str(path.name))
    if config.num_nodes is not None:
        return uniform(config.num_nodes, gpn)
    peak = metrics.peak_allocated(workload.submit_s, workload.submit_s + workload.duration_s, workload.num_gpus)
    largest = int(workload.num_gpus.max()) if len(workload) else 1
    nodes = max(1, math.ceil(config.demand_fraction * peak / gpn), math.ceil(largest / gpn))
    spec = uniform(nodes, gpn)
    return ClusterSpec(spec.node_gpus, source=f"{nodes} x {gpn} GPUs: {config.demand_fraction:g} of peak demand {peak} GPUs")


def predicted_durations(config: ClusterConfig, workload: JobWorkload,
                        data_root: str | Path | None = None) -> np.ndarray | None:
    """Predicted run time per job, computed once per workload (None when the config has no predictor).

    A model predicts from each job's history (earlier jobs of its user, VC, size), so for a trace it
    runs over the whole trace (cluster), unscaled, as a deployed predictor would have seen it, and the
    window's jobs take their predictions from there: a window does not start with an empty history.
    """
    if config.predictor is None:
        return None
    if config.predictor == "oracle":
        return workload.duration_s.astype(np.float64)
    model = load_predictor("load_duration_predictor", config.predictor, "oracle=True")
    full = load_jobs(config.trace, cluster=config.cluster, data_root=data_root) if config.trace != GENERATED else None
    if full is not None and len(set(full.job_id.tolist())) == len(full):
        index = {job: i for i, job in enumerate(full.job_id.tolist())}
        pred = np.asarray(model.predict_jobs(full), dtype=np.float64)[[index[j] for j in workload.job_id.tolist()]]
    else:  # generated, or job ids not unique across clusters: the window's own history only
        pred = np.asarray(model.predict_jobs(workload), dtype=np.float64)
    if pred.shape != (len(workload),) or not np.all(np.isfinite(pred)):
        raise ValueError(f"predictor {config.predictor!r} must give one finite duration per job ({len(workload)})")
    return np.maximum(pred, 0.0)


def run_cluster(config: ClusterConfig, *, data_root: str | Path | None = None, write: bool = True,
                workload: JobWorkload | None = None, on_total: Callable[[int], None] | None = None,
                on_done: Callable[[int], None] | None = None) -> ClusterResult:
    """Replay one configuration; writes ``<results>/cluster/<run id>/`` unless write=False."""
    workload = workload if workload is not None else load_workload(config, data_root)
    spec = build_cluster(config, workload, data_root)
    predicted = (predicted_durations(config, workload, data_root) if config.needs_predictions or config.predictor
                 else None)
    partition, reason = admit(workload.num_gpus, workload.group, spec)
    if on_total is not None:
        on_total(int((partition >= 0).sum()))
    jobs_view = JobsView(workload.submit_s, workload.num_gpus, predicted)
    t0 = time.perf_counter()
    sim = simulate(jobs_view, workload.duration_s, partition, spec, config.make_policy(),
                   PLACEMENTS.create(config.placement), on_done=on_done)
    wall_s = time.perf_counter() - t0
    rid = sinks.run_id(asdict(config))
    cols = job_columns(workload, predicted, partition, reason, sim, config.slowdown_floor_s)
    times, allocated = metrics.utilization_series(sim.seg_start_s, sim.seg_end_s, sim.seg_gpus)
    util = {"time_s": times, "allocated_gpus": allocated, "total_gpus": np.full(len(times), spec.total_gpus, np.int64)}
    summary = metrics.summarize(cols, total_gpus=spec.total_gpus, seg_start_s=sim.seg_start_s, seg_end_s=sim.seg_end_s,
                                seg_gpus=sim.seg_gpus)
    summary.update(trace=workload.trace, policy=config.policy, placement=config.placement, oracle=config.oracle,
                   excluded=dict(workload.excluded), cluster_spec=spec.describe(), num_events=sim.num_events)
    path = None
    if write:
        tables = {"jobs": sinks.to_arrow(JOB_METRICS, cols, rid), "utilization": sinks.to_arrow(UTILIZATION, util, rid)}
        path = sinks.write_tables(sinks.results_root(data_root) / RESULTS_SUBDIR, rid, asdict(config), tables, summary)
    return ClusterResult(rid, summary, cols, util, sim, wall_s, path)


def job_columns(workload: JobWorkload, predicted, partition, reason, sim: SimOutput, floor_s: float) -> dict[str, np.ndarray]:
    """Per-job columns (``replay.cluster.schema.JOB_METRICS``) of a finished simulation."""
    n = len(workload)
    cols = {
        "job_id": workload.job_id.astype(object),
        "vc": workload.group if workload.group is not None else np.full(n, None, dtype=object),
        "user": workload.user if workload.user is not None else np.full(n, None, dtype=object),
        "submit_s": workload.submit_s, "duration_s": workload.duration_s, "num_gpus": workload.num_gpus,
        "predicted_duration_s": predicted if predicted is not None else np.full(n, np.nan),
        "status": np.where(partition >= 0, "finished", "rejected").astype(object),
        "reject_reason": reason,
        "start_s": sim.start_s, "end_s": sim.end_s,
        "num_preemptions": sim.num_preemptions, "num_nodes_placed": sim.num_nodes_placed,
    }
    cols.update(metrics.job_columns(workload.submit_s, workload.duration_s, sim.start_s, sim.end_s, floor_s))
    return cols
