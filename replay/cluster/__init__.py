"""The cluster core: GPU jobs queued, ordered, placed and run on a simulated cluster.

One idea per module: ``jobs`` (the workload: load from the catalog or generate), ``cluster`` (nodes,
VCs, free GPUs), ``placement`` and ``policies`` (small objects in registries), ``simulate`` (the
event-driven engine), ``metrics`` (per-run summary), ``schema`` (results tables), ``harness`` (a
``ClusterConfig`` in, a written run out) and ``cli``. Nothing here imports predictors, sklearn or polars.
"""
