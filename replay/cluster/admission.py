"""Admission: which partition (VC) each job is scheduled in, or why it is refused.

A job is refused, with a reason, and counted (never silently dropped) when it could never run: its
VC is not in the cluster configuration, it has no VC while the cluster is split into VCs, or it needs
more GPUs than its VC (or the whole cluster) has. Everything else is admitted to its VC's partition
(or to the one shared partition when the cluster has no VCs).
"""

from __future__ import annotations

import numpy as np

from replay.cluster.cluster import ClusterSpec


def admit(num_gpus: np.ndarray, group: np.ndarray | None, spec: ClusterSpec) -> tuple[np.ndarray, np.ndarray]:
    """(partition index per job, -1 if refused; reject reason per job, None if admitted)."""
    n = len(num_gpus)
    parts = spec.partitions()
    partition = np.full(n, -1, np.int64)
    reason = np.full(n, None, dtype=object)
    if spec.vcs:
        if group is None:
            raise ValueError("the cluster is split into VCs but the trace has no VC per job: drop the VC configuration "
                             "(and give a node count), or use a trace with VCs")
        index = {vc: p for p, (vc, _) in enumerate(parts)}
        partition = np.array([index.get(g, -1) for g in group.tolist()], np.int64)
        missing = partition < 0
        reason[missing] = ["no VC" if g is None else f"VC {g} not in the cluster configuration" for g in group[missing]]
        caps = np.array([int(spec.node_gpus[s].sum()) for _, s in parts], np.int64)
        cap = np.where(missing, 0, caps[np.maximum(partition, 0)])
        big = ~missing & (num_gpus > cap)
        reason[big] = [f"needs more GPUs than its VC has ({c})" for c in cap[big]]
        partition[big] = -1
        return partition, reason
    partition[:] = 0
    big = num_gpus > spec.total_gpus
    reason[big] = f"needs more GPUs than the cluster has ({spec.total_gpus})"
    partition[big] = -1
    return partition, reason
