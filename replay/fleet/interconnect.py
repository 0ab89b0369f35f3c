"""Links between serving instances, and the time to move a request's KV cache over one.

A `Link` is one GPU's path to a GPU of another instance: a bandwidth per direction and a fixed latency.
Presets: `nvlink(gpu)` and `pcie(gpu)` take the bandwidth from the GPU spec (replay/serving/data/gpus.json),
`infiniband()` is NDR (400 Gb/s); `Link(...)` itself is the custom case.

Tensor parallelism. An instance of `tp` GPUs holds its KV sharded by heads, `kv_bytes_per_token(model, tp)`
per token on each GPU, and each GPU has its own link (a DGX H100 has one 400 Gb/s InfiniBand port per GPU),
so the `tp` shards travel in parallel: the time is that of ONE shard. Between instances of different
degrees, the busiest link is on the side with fewer GPUs (each of its GPUs sends or receives a larger
share), so the time is that of a shard at min(src_tp, dst_tp). The bytes that move are what the
destination stores: its per-GPU shard times its GPUs (replicated KV heads, tp > num_kv_heads, included).

Transfers are modelled as one bulk copy after the prefill (no layer-by-layer overlap with the prefill's
compute, which Splitwise and DistServe use to hide part of it): an upper bound on the transfer's cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from replay.serving.specs import GpuSpec, ModelConfig, gpu_spec, kv_bytes_per_token

INFINIBAND_NDR_BYTES_PER_S = 50e9
"""InfiniBand NDR: 400 Gb/s per port and direction = 50e9 B/s (IBTA NDR rate, as in NVIDIA's ConnectX-7 and
Quantum-2 datasheets; the DGX H100 user guide lists eight such ports, one per GPU)."""
INFINIBAND_LATENCY_S = 5e-6
"""One-way RDMA latency across a switch, a few microseconds (perftest `ib_write_lat` reports 1-3 us on NDR
back to back; 5 us leaves room for a switch hop and the transfer engine's setup)."""
NVLINK_LATENCY_S = 2e-6
"""Setup latency of a GPU-to-GPU copy over NVLink (a rough figure: the copy launch dominates)."""
PCIE_LATENCY_S = 5e-6
"""Setup latency of a copy over PCIe (host-staged or peer-to-peer; a rough figure)."""


@dataclass(frozen=True)
class Link:
    """One GPU's link to a GPU of another instance (custom links: construct one directly)."""

    name: str
    """Label for reports, e.g. "infiniband-ndr"."""
    bandwidth_bytes_per_s: float
    """Bandwidth per direction, bytes/s (full duplex: sending does not slow receiving)."""
    latency_s: float = 0.0
    """Fixed cost of one transfer, seconds (paid once per request, whatever its size)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Link.name must be non-empty")
        if not (math.isfinite(self.bandwidth_bytes_per_s) and self.bandwidth_bytes_per_s > 0):
            raise ValueError(f"Link.bandwidth_bytes_per_s must be finite and > 0, got {self.bandwidth_bytes_per_s!r}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ValueError(f"Link.latency_s must be finite and >= 0, got {self.latency_s!r}")


def _gpu(gpu: GpuSpec | str) -> GpuSpec:
    return gpu if isinstance(gpu, GpuSpec) else gpu_spec(gpu)


def nvlink(gpu: GpuSpec | str = "h100") -> Link:
    """NVLink between instances in one NVLink domain, at the GPU's NVLink bandwidth per direction."""
    spec = _gpu(gpu)
    return Link(f"nvlink-{spec.name}", spec.nvlink_bandwidth_bytes_per_s, NVLINK_LATENCY_S)


def pcie(gpu: GpuSpec | str = "h100") -> Link:
    """PCIe at the GPU's host-link bandwidth per direction (instances in one host without NVLink)."""
    spec = _gpu(gpu)
    return Link(f"pcie-{spec.name}", spec.pcie_bandwidth_bytes_per_s, PCIE_LATENCY_S)


def infiniband() -> Link:
    """InfiniBand NDR, one 400 Gb/s port per GPU (instances on different hosts)."""
    return Link("infiniband-ndr", INFINIBAND_NDR_BYTES_PER_S, INFINIBAND_LATENCY_S)


def _check(num_tokens: int, src_tp: int, dst_tp: int | None) -> int:
    if isinstance(num_tokens, bool) or int(num_tokens) != num_tokens or num_tokens < 0:
        raise ValueError(f"num_tokens must be an integer >= 0, got {num_tokens!r}")
    for name, tp in (("tp", src_tp), ("dst_tp", dst_tp)):
        if tp is not None and (isinstance(tp, bool) or int(tp) != tp or tp < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {tp!r}")
    return src_tp if dst_tp is None else dst_tp


def kv_transfer_bytes(num_tokens: int, model: ModelConfig, tp: int = 1, *, dst_tp: int | None = None) -> int:
    """Bytes of `num_tokens` tokens' KV that land on the destination instance (all its GPUs together)."""
    dst = _check(num_tokens, tp, dst_tp)
    return int(num_tokens) * kv_bytes_per_token(model, dst) * dst


def kv_transfer_s(num_tokens: int, model: ModelConfig, tp: int, link: Link, *, dst_tp: int | None = None) -> float:
    """Seconds to copy `num_tokens` tokens' KV from an instance of `tp` GPUs to one of `dst_tp` (default `tp`).

    latency + one shard's bytes / bandwidth, the shard being a GPU's share at min(tp, dst_tp) (module doc);
    0 tokens still pay the latency.
    """
    dst = _check(num_tokens, tp, dst_tp)
    if not isinstance(link, Link):
        raise ValueError(f"link must be a Link, got {type(link).__name__}")
    shard_bytes = int(num_tokens) * kv_bytes_per_token(model, min(tp, dst))
    return link.latency_s + shard_bytes / link.bandwidth_bytes_per_s
