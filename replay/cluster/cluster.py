"""The cluster model: a `ClusterSpec` (nodes, GPUs per node, VCs) and the mutable `ClusterState`.

Nodes are numbered 0..N-1; each VC owns a contiguous run of them (``vc_slices``), as in the Helios
QSSF simulator, where every VC is scheduled independently on its own nodes. A spec without VCs is
one shared pool. The state keeps free GPUs per node in numpy arrays; policies and placements see a
read-only :class:`ClusterView`, and only the simulator calls :meth:`ClusterState.allocate` and
:meth:`ClusterState.release`, which refuse anything that would break ``0 <= free <= capacity``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PHILLY_VC_TRACE = "philly_vc"
"""The lake trace the Philly VC configuration is ingested as (utilization metric ``vc_nodes``)."""
HELIOS_GPUS_PER_NODE = 8
"""GPUs per node the Helios QSSF simulator assumes for Philly and Helios VCs (its ``--num_gpus_per_node``)."""


class AllocationError(RuntimeError):
    """An allocate/release that would give out more GPUs than exist (or free more than are held)."""


@dataclass(frozen=True, eq=False)
class ClusterSpec:
    """Nodes with GPU counts, grouped into VCs (contiguous node runs), and their GPU types."""

    node_gpus: np.ndarray
    """int64 >= 1 per node: its GPUs."""
    vcs: tuple[str, ...] = ()
    """VC names in node order; empty: one shared pool (jobs' VCs are ignored)."""
    vc_num_nodes: tuple[int, ...] = ()
    """Nodes per VC, aligned with ``vcs`` (they add up to the node count)."""
    gpu_type: str | None = None
    """GPU type of every node (None: unspecified)."""
    source: str = ""
    """Where the spec came from, for the run's record (e.g. 'philly_vc (lake)', 'uniform')."""
    _slices: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        gpus = np.asarray(self.node_gpus)
        if gpus.ndim != 1 or len(gpus) == 0 or np.any(gpus < 1):
            raise ValueError("ClusterSpec needs at least one node, each with >= 1 GPU")
        if len(self.vcs) != len(self.vc_num_nodes) or len(set(self.vcs)) != len(self.vcs):
            raise ValueError("ClusterSpec: vcs and vc_num_nodes must align and VC names be unique")
        if self.vcs and (sum(self.vc_num_nodes) != len(gpus) or min(self.vc_num_nodes) < 1):
            raise ValueError(f"ClusterSpec: VC node counts {self.vc_num_nodes} must be >= 1 and add up to {len(gpus)} nodes")
        lo = 0
        for name, n in zip(self.vcs, self.vc_num_nodes):
            self._slices[name] = slice(lo, lo + n)
            lo += n

    @property
    def num_nodes(self) -> int:
        """Nodes in the cluster."""
        return len(self.node_gpus)

    @property
    def total_gpus(self) -> int:
        """GPUs in the cluster."""
        return int(np.sum(self.node_gpus))

    def vc_slice(self, vc: str) -> slice:
        """The nodes of ``vc``."""
        return self._slices[vc]

    def partitions(self) -> list[tuple[str | None, slice]]:
        """(VC, node slice) pairs scheduled independently; [(None, all nodes)] without VCs."""
        if not self.vcs:
            return [(None, slice(0, self.num_nodes))]
        return [(vc, self._slices[vc]) for vc in self.vcs]

    def describe(self) -> dict:
        """A JSON-able record of the spec (for the run's summary)."""
        return {"num_nodes": self.num_nodes, "total_gpus": self.total_gpus, "source": self.source,
                "gpus_per_node": sorted({int(g) for g in self.node_gpus}), "gpu_type": self.gpu_type,
                "vcs": {vc: {"num_nodes": n, "num_gpus": int(np.sum(self.node_gpus[self._slices[vc]]))}
                        for vc, n in zip(self.vcs, self.vc_num_nodes)}}


def uniform(num_nodes: int, gpus_per_node: int = HELIOS_GPUS_PER_NODE, *, gpu_type: str | None = None) -> ClusterSpec:
    """One shared pool of ``num_nodes`` identical nodes."""
    if num_nodes < 1 or gpus_per_node < 1:
        raise ValueError(f"need num_nodes >= 1 and gpus_per_node >= 1, got {num_nodes}, {gpus_per_node}")
    return ClusterSpec(np.full(num_nodes, gpus_per_node, np.int64), gpu_type=gpu_type,
                       source=f"uniform {num_nodes} x {gpus_per_node} GPUs")


def from_vc_nodes(vc_nodes: dict[str, int], gpus_per_node: int = HELIOS_GPUS_PER_NODE, *, source: str = "") -> ClusterSpec:
    """VCs of identical nodes: ``{vc: node count}`` (the Philly ``philly_vc.csv`` configuration).

    The Helios QSSF simulator builds Philly's VCs with 8 GPUs per node (352 nodes, 2,816 GPUs).
    VCs keep the order given; a VC with 0 nodes is left out.
    """
    vcs = {str(k): int(v) for k, v in vc_nodes.items() if int(v) > 0}
    if not vcs or gpus_per_node < 1:
        raise ValueError("from_vc_nodes needs at least one VC with nodes and gpus_per_node >= 1")
    n = sum(vcs.values())
    return ClusterSpec(np.full(n, gpus_per_node, np.int64), tuple(vcs), tuple(vcs.values()),
                       source=source or f"{len(vcs)} VCs x {gpus_per_node} GPUs/node")


def from_vc_gpus(vc_gpus: dict[str, int], gpus_per_node: int = HELIOS_GPUS_PER_NODE, *, source: str = "") -> ClusterSpec:
    """VCs given in GPUs (Helios ``cluster_gpu_number.csv``): each becomes ceil(gpus / gpus_per_node) nodes."""
    return from_vc_nodes({vc: math.ceil(g / gpus_per_node) for vc, g in vc_gpus.items()}, gpus_per_node, source=source)


def read_vc_nodes_csv(path: str | Path) -> dict[str, int]:
    """``vc,node num`` rows (Philly ``philly_vc.csv``) as {vc: nodes}."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0]][:2] != ["vc", "node num"]:
        raise ValueError(f"{path}: expected a 'vc,node num' header (Philly VC configuration)")
    try:
        return {r[0].strip(): int(float(r[1])) for r in rows[1:] if r and r[0].strip()}
    except (IndexError, ValueError):
        raise ValueError(f"{path}: every row must be 'vc,<node count>'") from None


def read_helios_vc_gpus(path: str | Path, date: str | None = None) -> dict[str, int]:
    """VC GPU counts from a Helios ``cluster_gpu_number.csv`` on ``date`` (default: the last row)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "date" not in rows[0]:
        raise ValueError(f"{path}: expected a Helios cluster_gpu_number.csv (date, one column per VC, total)")
    row = rows[-1] if date is None else next((r for r in rows if r["date"] == date), None)
    if row is None:
        raise ValueError(f"{path}: no row for date {date!r}")
    return {k: int(float(v)) for k, v in row.items() if k not in ("date", "total") and v and float(v) > 0}


def philly_vc_nodes_from_lake(data_root: str | Path | None = None) -> dict[str, int]:
    """The Philly VC configuration ingested as trace ``philly_vc`` (``ingest run philly_derived``)."""
    from ingest.paths import data_paths

    import duckdb

    paths = data_paths(data_root)
    if not paths.catalog.exists():
        raise ValueError(f"no catalog at {paths.catalog}: ingest the Philly VC configuration with "
                         "`ingest run philly_derived`, or give --vc-config PATH to philly_vc.csv")
    con = duckdb.connect(str(paths.catalog), read_only=True)
    try:
        has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'utilization'").fetchall()[0][0]
        got = con.execute("SELECT entity, value FROM utilization WHERE trace = ? AND metric = 'vc_nodes' ORDER BY time_s, "
                          "row_number() OVER ()", [PHILLY_VC_TRACE]).fetchall() if has else []
    finally:
        con.close()
    if not got:
        raise ValueError(f"trace {PHILLY_VC_TRACE!r} (the Philly VC configuration) is not in the lake: "
                         "`ingest run philly_derived`, or give --vc-config PATH to philly_vc.csv")
    return {str(vc): int(n) for vc, n in got}


def machines_from_lake(trace: str, data_root: str | Path | None = None) -> ClusterSpec:
    """One node per GPU machine of an ingested machine list (the ``machines`` table: Philly's
    ``cluster_machine_list``, PAI's machine spec): node GPU counts as listed, machines without GPUs left
    out. GPU types are recorded in the source, not used for placement."""
    from ingest.paths import data_paths

    import duckdb

    paths = data_paths(data_root)
    if not paths.catalog.exists():
        raise ValueError(f"no catalog at {paths.catalog}: ingest a trace with a machine list first")
    con = duckdb.connect(str(paths.catalog), read_only=True)
    try:
        has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'machines'").fetchall()[0][0]
        got = con.execute("SELECT num_gpus, coalesce(gpu_type, '?') FROM machines WHERE trace = ? AND num_gpus > 0 "
                          "ORDER BY machine_id", [trace]).fetchall() if has else []
        known = [r[0] for r in con.execute("SELECT DISTINCT trace FROM machines ORDER BY 1").fetchall()] if has else []
    finally:
        con.close()
    if not got:
        raise ValueError(f"no GPU machines for trace {trace!r} in the lake's machine lists "
                         f"(traces with one: {', '.join(known) or 'none'})")
    types: dict[str, int] = {}
    for _, t in got:
        types[t] = types.get(t, 0) + 1
    mix = ", ".join(f"{n} x {t}" for t, n in sorted(types.items()))
    return ClusterSpec(np.array([g for g, _ in got], np.int64), source=f"machines of {trace} ({mix})")


class ClusterView:
    """What policies and placements may read: free and total GPUs per node (read-only arrays)."""

    def __init__(self, state: "ClusterState") -> None:
        self._state = state
        self.capacity = state.capacity.view()
        self.capacity.flags.writeable = False
        self.free = state.free.view()
        self.free.flags.writeable = False
        self._min_nodes: dict[int, int] = {}

    def min_nodes(self, num_gpus: int) -> int:
        """Fewest nodes that can hold ``num_gpus`` on this partition when idle (0: it never fits)."""
        got = self._min_nodes.get(num_gpus)
        if got is None:
            cs = np.cumsum(np.sort(self.capacity)[::-1])
            k = int(np.searchsorted(cs, num_gpus)) + 1
            got = self._min_nodes[num_gpus] = k if k <= len(cs) else 0
        return got

    @property
    def total_free(self) -> int:
        """Free GPUs over all nodes of this partition."""
        return self._state.total_free

    @property
    def total_gpus(self) -> int:
        """GPUs of this partition."""
        return self._state.total_gpus


class ClusterState:
    """Free GPUs per node of one partition (a VC or the whole cluster); arrays may be views of a parent's."""

    def __init__(self, capacity: np.ndarray, free: np.ndarray | None = None) -> None:
        self.capacity = capacity
        self.free = capacity.copy() if free is None else free
        self.total_gpus = int(capacity.sum())
        self.total_free = int(self.free.sum())
        self.view = ClusterView(self)

    @classmethod
    def of(cls, spec: ClusterSpec) -> "ClusterState":
        """The idle state of the whole cluster."""
        return cls(np.asarray(spec.node_gpus, np.int64).copy())

    def partition(self, nodes: slice) -> "ClusterState":
        """A state over ``nodes`` sharing this state's arrays (changes show in both)."""
        return ClusterState(self.capacity[nodes], self.free[nodes])

    def allocate(self, nodes: np.ndarray, counts: np.ndarray) -> None:
        """Take ``counts[i]`` GPUs on node ``nodes[i]``; AllocationError if any node has fewer free."""
        if len(nodes) == 1:  # the common case, without numpy reductions
            node, count = int(nodes[0]), int(counts[0])
            if not 1 <= count <= self.free[node]:
                raise AllocationError(f"cannot allocate {count} GPUs on node {node} (free: {int(self.free[node])})")
            self.free[node] -= count
            self.total_free -= count
            return
        if len(nodes) == 0 or np.any(counts < 1) or len(np.unique(nodes)) != len(nodes) or np.any(counts > self.free[nodes]):
            raise AllocationError(f"cannot allocate {counts.tolist()} GPUs on nodes {nodes.tolist()} "
                                  f"(free there: {self.free[nodes].tolist()})")
        self.free[nodes] -= counts
        self.total_free -= int(counts.sum())

    def release(self, nodes: np.ndarray, counts: np.ndarray) -> None:
        """Give back GPUs taken by :meth:`allocate`; AllocationError if a node would exceed its capacity."""
        if len(nodes) == 1:
            node, count = int(nodes[0]), int(counts[0])
            if self.free[node] + count > self.capacity[node]:
                raise AllocationError(f"release of {count} GPUs on node {node} exceeds its capacity")
            self.free[node] += count
            self.total_free += count
            return
        if np.any(self.free[nodes] + counts > self.capacity[nodes]):
            raise AllocationError(f"release of {counts.tolist()} GPUs on nodes {nodes.tolist()} exceeds their capacity")
        self.free[nodes] += counts
        self.total_free += int(counts.sum())

    def check_integrity(self) -> None:
        """AssertionError unless 0 <= free <= capacity on every node and the total matches."""
        assert np.all(self.free >= 0) and np.all(self.free <= self.capacity), "free GPUs out of [0, capacity]"
        assert self.total_free == int(self.free.sum()), "total_free out of step with the node array"
