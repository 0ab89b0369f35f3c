"""Placement policies: which nodes give a job its GPUs (or None: not now).

A placement reads a read-only :class:`~replay.cluster.cluster.ClusterView` of one partition and
returns ``(nodes, counts)`` (int64 arrays, node indices within the partition) or None when the job
cannot be placed now. It never changes the state: the simulator allocates what it returns. Ties are
broken by node index, so placement is deterministic.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from replay.cluster.cluster import ClusterView
from replay.serving.registry import Registry

Allocation = tuple[np.ndarray, np.ndarray]
"""(node indices, GPUs taken on each)."""
_BIG = np.iinfo(np.int64).max


class Placement(Protocol):
    """Chooses nodes for a job. Implementations are small, pure and stateless."""

    name: str

    def place(self, view: ClusterView, num_gpus: int) -> Allocation | None:
        """Nodes and GPU counts adding up to ``num_gpus``, or None if the job does not fit now."""
        ...


PLACEMENTS: Registry[Placement] = Registry("placement")


def _best_fit(free: np.ndarray, num_gpus: int) -> int:
    """Index of the node with the fewest free GPUs that still has ``num_gpus`` free (-1: none)."""
    masked = np.where(free >= num_gpus, free, _BIG)
    i = int(masked.argmin())
    return i if masked[i] != _BIG else -1


@PLACEMENTS.register("consolidate")
class Consolidate:
    """Fewest nodes (Helios' consolidate placer): a job gets exactly as many nodes as it needs on an idle cluster, or waits.

    A job that fits on one node goes to the node with the fewest free GPUs that fits (best fit,
    keeping whole nodes free for big jobs). A bigger job takes the emptiest nodes, all their free
    GPUs, and the remainder on the best-fitting other node; if that takes more nodes than the
    minimum, the job waits (strict consolidation, as in Helios, never spread over extra nodes).
    """

    name = "consolidate"

    def place(self, view: ClusterView, num_gpus: int) -> Allocation | None:
        free = view.free
        if num_gpus > view.total_free:
            return None
        i = _best_fit(free, num_gpus)
        if i >= 0:
            return np.array([i], np.int64), np.array([num_gpus], np.int64)
        order = np.argsort(-free, kind="stable")
        cs = np.cumsum(free[order])
        k = int(np.searchsorted(cs, num_gpus)) + 1  # nodes needed now
        if k > view.min_nodes(num_gpus):
            return None
        full = order[: k - 1]
        rest = order[k - 1:]
        remainder = num_gpus - (int(cs[k - 2]) if k > 1 else 0)
        j = _best_fit(free[rest], remainder)
        nodes = np.append(full, rest[j]).astype(np.int64)
        counts = np.append(free[full], remainder).astype(np.int64)
        return nodes, counts


@PLACEMENTS.register("first-fit")
class FirstFit:
    """Nodes in index order, taking every free GPU of each until the job has enough (may span many nodes)."""

    name = "first-fit"

    def place(self, view: ClusterView, num_gpus: int) -> Allocation | None:
        if num_gpus > view.total_free:
            return None
        free = view.free
        cs = np.cumsum(free)
        k = int(np.searchsorted(cs, num_gpus)) + 1
        nodes = np.flatnonzero(free[:k])
        counts = free[nodes].astype(np.int64)
        counts[-1] -= int(cs[k - 1]) - num_gpus
        return nodes.astype(np.int64), counts


@PLACEMENTS.register("spread")
class Spread:
    """As many nodes as possible: one GPU per node per round, emptiest nodes first (node index breaks ties)."""

    name = "spread"

    def place(self, view: ClusterView, num_gpus: int) -> Allocation | None:
        if num_gpus > view.total_free:
            return None
        free = view.free
        order = np.argsort(-free, kind="stable")
        left = free[order].astype(np.int64)
        take = np.zeros(len(order), np.int64)
        need = num_gpus
        while need:
            avail = np.flatnonzero(left > 0)[:need]
            take[avail] += 1
            left[avail] -= 1
            need -= len(avail)
        used = take > 0
        return order[used].astype(np.int64), take[used]
