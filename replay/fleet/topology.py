"""Fleet configuration: which instances serve a workload, in which roles, joined by which link.

Layouts (`FleetConfig.layout`), by the roles of their pools:

- ``colocated``: one pool of N instances, each serving prefill and decode (vLLM behind a router; what
  `replay.harness.run_serve` replays; the fleet loop reproduces it exactly).
- ``disaggregated``: a ``prefill`` pool and a ``decode`` pool (Splitwise / DistServe), possibly of different
  GPU types and tensor-parallel degrees. A prefill instance computes the prompt and the first token; the
  request's KV then crosses the link to a decode instance, which decodes the rest.
- ``mixed``: a disaggregated fleet plus a ``mixed`` pool that serves both phases (Splitwise's mixed
  machines), used when a pool is overloaded: a new request goes to the mixed pool instead of its prefill
  instance when that instance's outstanding tokens exceed `mixed_prefill_threshold_tokens`, and a
  prefilled request's KV goes to a mixed instance instead of its decode instance when that instance's
  load (`replay.fleet.simulate.kv_load`) exceeds `mixed_decode_threshold` and the mixed instance's is lower.

Live migration (`MigrationConfig`, Llumnix style) moves running decodes between the instances of the
pool that decodes (the colocated pool, or the decode pool). Everything the pools share (model, cost
model, scheduler limits, queue policy, SLOs, workload) comes from one `ServeConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from replay.fleet.interconnect import Link, infiniband
from replay.harness import ServeConfig
from replay.serving.policies import ROUTERS

LAYOUTS = {"colocated": ("colocated",), "disaggregated": ("prefill", "decode"), "mixed": ("prefill", "decode", "mixed")}
"""Layout -> the pool roles it needs, exactly one pool each."""
MIGRATION_MODES = ("off", "load_balance", "defrag")
"""Migration triggers (see `MigrationConfig.mode`)."""


@dataclass(frozen=True)
class PoolConfig:
    """One pool of identical instances."""

    role: str
    """'colocated', 'prefill', 'decode' or 'mixed' (module doc)."""
    num_instances: int = 1
    """Instances in the pool."""
    gpu: str = "h100"
    """GPU type of every instance (see `replay.serving.specs.known_gpus`)."""
    tensor_parallel: int = 1
    """GPUs per instance."""
    router: str = "least_outstanding_tokens"
    """How the pool picks an instance for a request (`replay.serving.policies.ROUTERS`)."""
    num_kv_blocks: int | None = None
    """KV pool per instance (None: the ServeConfig's, else derived from the GPU's memory)."""

    def __post_init__(self) -> None:
        roles = sorted({r for rs in LAYOUTS.values() for r in rs})
        if self.role not in roles:
            raise ValueError(f"PoolConfig.role must be one of {roles}, got {self.role!r}")
        if self.num_instances < 1 or self.tensor_parallel < 1:
            raise ValueError(f"PoolConfig: num_instances and tensor_parallel must be >= 1, got "
                             f"{self.num_instances}, {self.tensor_parallel}")
        if self.router not in ROUTERS:
            raise ValueError(f"PoolConfig: unknown router {self.router!r}; known: {', '.join(ROUTERS.names())}")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"PoolConfig.num_kv_blocks must be None or >= 1, got {self.num_kv_blocks}")

    def serve_config(self, base: ServeConfig) -> ServeConfig:
        """`base` with this pool's GPU, tensor parallelism, instance count, router and KV pool size."""
        return replace(base, gpu=self.gpu, tensor_parallel=self.tensor_parallel, num_replicas=self.num_instances,
                       router=self.router, num_kv_blocks=self.num_kv_blocks or base.num_kv_blocks)


@dataclass(frozen=True)
class MigrationConfig:
    """Llumnix-style live migration of running decodes between the instances of the decoding pool.

    Every `interval_s` of virtual time the fleet looks at the pool (as of each instance's last step) and
    starts at most one migration per source instance, and none from or to an instance with one in flight.
    The destination first reserves blocks for the request's KV (a migration that would not fit is not
    started); the request then pauses on its source (it keeps its blocks there) while its KV crosses the
    link, and joins the destination's running batch when the copy ends; the source frees its blocks then.
    (Llumnix keeps decoding during the copy and stops only for the last blocks; pausing is simpler and
    charges the whole copy to the request's token gaps.)
    """

    mode: str = "off"
    """'off'; 'load_balance': from the most to the least loaded instance when their load (`kv_load`: used
    plus queued KV, a fraction of the pool) differs by more than `imbalance_threshold`; 'defrag': out of an
    instance whose queue head waits for memory, to the instance with the most free blocks, to make room."""
    interval_s: float = 0.1
    """Virtual seconds between two looks at the pool."""
    imbalance_threshold: float = 0.2
    """load_balance: smallest load gap (fraction of a pool) that triggers a migration."""

    def __post_init__(self) -> None:
        if self.mode not in MIGRATION_MODES:
            raise ValueError(f"MigrationConfig.mode must be one of {MIGRATION_MODES}, got {self.mode!r}")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"MigrationConfig.interval_s must be finite and > 0, got {self.interval_s!r}")
        if not 0 < self.imbalance_threshold < 1:
            raise ValueError(f"MigrationConfig.imbalance_threshold must be in (0, 1), got {self.imbalance_threshold!r}")


@dataclass(frozen=True)
class FleetConfig:
    """A serving fleet: shared settings, pools in a layout, the link between instances, migration."""

    serve: ServeConfig = field(default_factory=ServeConfig)
    """Settings every pool shares (model, cost model, scheduler limits, policy, SLOs, workload); its gpu,
    tensor_parallel, num_replicas and router are per pool here and ignored."""
    layout: str = "colocated"
    """'colocated', 'disaggregated' or 'mixed' (module doc)."""
    pools: tuple[PoolConfig, ...] = (PoolConfig("colocated"),)
    """One pool per role the layout needs, in any order; instances are numbered pool by pool, in this order."""
    link: Link = field(default_factory=infiniband)
    """Link between instances (KV transfers and migrations); each instance has one such link per GPU."""
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    """Live migration between the instances of the decoding pool."""
    mixed_prefill_threshold_tokens: int = 8192
    """mixed: a new request goes to the mixed pool when its prefill instance has more outstanding tokens."""
    mixed_decode_threshold: float = 0.9
    """mixed: a prefilled request decodes in the mixed pool when its decode instance's load is above this."""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"FleetConfig.layout must be one of {sorted(LAYOUTS)}, got {self.layout!r}")
        if not isinstance(self.pools, tuple) or not all(isinstance(p, PoolConfig) for p in self.pools):
            raise ValueError("FleetConfig.pools must be a tuple of PoolConfig")
        roles = sorted(p.role for p in self.pools)
        if roles != sorted(LAYOUTS[self.layout]):
            raise ValueError(f"layout {self.layout!r} needs exactly one pool per role {LAYOUTS[self.layout]}, "
                             f"got roles {roles}")
        if not isinstance(self.link, Link):
            raise ValueError(f"FleetConfig.link must be a Link, got {type(self.link).__name__}")
        if self.mixed_prefill_threshold_tokens < 0:
            raise ValueError(f"mixed_prefill_threshold_tokens must be >= 0, got {self.mixed_prefill_threshold_tokens}")
        if not 0 <= self.mixed_decode_threshold <= 1:
            raise ValueError(f"mixed_decode_threshold must be in [0, 1], got {self.mixed_decode_threshold}")

    def pool(self, role: str) -> PoolConfig | None:
        """The pool with `role`, or None."""
        return next((p for p in self.pools if p.role == role), None)

    @property
    def decoding_role(self) -> str:
        """The role of the pool whose instances decode (and migrate): 'colocated' or 'decode'."""
        return "colocated" if self.layout == "colocated" else "decode"

    @property
    def num_gpus(self) -> int:
        """GPUs in the fleet."""
        return sum(p.num_instances * p.tensor_parallel for p in self.pools)

    @classmethod
    def colocated(cls, serve: ServeConfig, **kw) -> "FleetConfig":
        """The fleet `replay.harness.run_serve(serve)` replays: serve.num_replicas colocated instances."""
        pool = PoolConfig("colocated", serve.num_replicas, serve.gpu, serve.tensor_parallel, serve.router,
                          serve.num_kv_blocks)
        return cls(serve=serve, layout="colocated", pools=(pool,), **kw)
