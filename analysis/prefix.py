"""Prefix-block reuse in LLM request traces (Mooncake ``prefix_block_hashes``) and exact LRU hit-rate curves.

The access stream
    Every request touches its prefix blocks (one hash per 512-token block, Mooncake's ``hash_ids``)
    in request order (``arrival_s``, then ``request_id``); within a request either in prefix order
    (``order="forward"``, the order stored) or tail first (``order="reverse"``). With ``reverse`` a
    request's shared prefix is its most recently used part, so an LRU cache always holds a
    prefix-closed set of chained hashes (a block hit is then also a prefix hit), which is how a
    vLLM-style cache that frees a block table tail first behaves.

Distances (both documented per access; cold accesses, the first touch of a block, have none)
    * stack distance: the number of *distinct other blocks* touched since the previous touch of the
      same block. An LRU cache of ``N`` blocks hits exactly the accesses with stack distance ``< N``
      (Mattson et al. 1970), so one pass gives the whole hit-rate curve.
    * request distance: how many requests later the block is touched again (``0``: repeated within
      one request).

Stack distances are computed exactly, without a per-access Python loop: for access ``i`` with
previous touch ``p`` and ``next[j]`` the next touch after ``j`` (``n`` if none),
``distance(i) = #{j : p < j < i, next[j] > i}`` (each distinct block in between is counted at its
last touch before ``i``). That is a 2-D dominance count, answered for all accesses at once by a
sorted-block decomposition of the index range (O(n log^2 n) in numpy, under a second for Mooncake).
"""

from __future__ import annotations

from typing import Literal

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

Order = Literal["forward", "reverse"]

PERCENTILES = (0.10, 0.25, 0.50, 0.75, 0.90, 0.99, 0.999)
"""Percentile points reported for distances (and by :mod:`analysis.requests` for lengths)."""


def block_accesses(con: duckdb.DuckDBPyConnection, trace: str, order: Order = "forward") -> tuple[np.ndarray, np.ndarray]:
    """The block access stream of ``trace``: ``(hashes, request_index)``, both int64 of one entry per access.

    ``request_index`` is the 0-based position of the request in arrival order. Requests without
    hashes (null or empty) contribute no accesses but still count as a position.
    """
    if order not in ("forward", "reverse"):
        raise ValueError(f"order must be 'forward' or 'reverse', not {order!r}")
    tbl = con.sql(
        "SELECT prefix_block_hashes AS h FROM requests WHERE trace = ? ORDER BY arrival_s, request_id", params=[trace]
    ).to_arrow_table()
    col = tbl.column("h").combine_chunks() if tbl.num_rows else pa.array([], pa.list_(pa.int64()))
    lengths = col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    hashes = col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    request_index = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    if order == "reverse" and len(hashes):
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        ends = starts + np.repeat(lengths, lengths)
        pos = np.arange(len(hashes), dtype=np.int64)
        hashes = hashes[starts + ends - 1 - pos]
    return hashes, request_index


def previous_and_next(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every access: index of the previous touch of the same hash (-1 if none) and of the next (n if none)."""
    n = len(hashes)
    idx = np.argsort(hashes, kind="stable")
    same = hashes[idx[1:]] == hashes[idx[:-1]]
    prev = np.full(n, -1, dtype=np.int64)
    nxt = np.full(n, n, dtype=np.int64)
    prev[idx[1:][same]] = idx[:-1][same]
    nxt[idx[:-1][same]] = idx[1:][same]
    return prev, nxt


def _count_before_greater(values: np.ndarray, ends: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``out[q] = #{j < ends[q] : values[j] > bounds[q]}`` for non-negative ``values`` and ``bounds``.

    The prefix ``[0, end)`` is split into the aligned blocks of size ``2^k`` given by the set bits of
    ``end``; at each level every block is sorted once and all queries with bit ``k`` set are answered
    by one ``searchsorted`` over the blocks laid end to end (block ``b`` offset by ``b * span``).
    """
    n = len(values)
    out = np.zeros(len(ends), dtype=np.int64)
    if n == 0 or len(ends) == 0:
        return out
    levels = int(n).bit_length()
    size = 1 << levels
    span = int(max(values.max(), bounds.max())) + 2
    padded = np.full(size, 0, dtype=np.int64)  # shifted by +1: padding (0) is never > a shifted bound (>= 1)
    padded[:n] = values + 1
    rows = padded.reshape(size, 1)
    for k in range(levels + 1):
        width = 1 << k
        # level k: consecutive blocks of ``width`` values, each sorted; a row is two sorted rows of the
        # level below, which a stable (merging) sort joins in linear time
        rows = np.sort(rows.reshape(size // width, width), axis=1, kind="stable")
        has = ((ends >> k) & 1) == 1
        if not has.any():
            continue
        block = (ends[has] >> k) - 1
        flat = (rows + (np.arange(size // width, dtype=np.int64) * span)[:, None]).ravel()
        pos = np.searchsorted(flat, block * span + bounds[has] + 1, side="right")
        out[has] += (block + 1) * width - pos
    return out


def stack_distances(hashes: np.ndarray) -> np.ndarray:
    """Exact LRU stack distance of every access (distinct other blocks since its previous touch); -1 when cold."""
    hashes = np.asarray(hashes, dtype=np.int64)
    n = len(hashes)
    prev, nxt = previous_and_next(hashes)
    dist = np.full(n, -1, dtype=np.int64)
    warm = np.flatnonzero(prev >= 0)
    if len(warm):
        upto_i = _count_before_greater(nxt, warm, warm)
        upto_p = _count_before_greater(nxt, prev[warm] + 1, warm)
        dist[warm] = upto_i - upto_p
    return dist


def lru_hit_rates(distances: np.ndarray, capacities_blocks: np.ndarray | list[int]) -> np.ndarray:
    """Hit rate of an LRU cache of each capacity: the share of all accesses with stack distance < capacity."""
    caps = np.asarray(capacities_blocks, dtype=np.int64)
    if len(distances) == 0:
        return np.zeros(len(caps))
    warm = np.sort(distances[distances >= 0])
    return np.searchsorted(warm, caps, side="left") / len(distances)


def default_capacities(num_distinct_blocks: int, points_per_decade: int = 8) -> np.ndarray:
    """Geometric capacity grid from 1 block to the number of distinct blocks (where the curve is flat)."""
    top = max(int(num_distinct_blocks), 1)
    grid = np.unique(np.round(np.logspace(0, np.log10(top), max(2, int(np.log10(top) * points_per_decade) + 1))))
    return np.unique(np.append(grid.astype(np.int64), top))


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {f"p{q * 100:g}": None for q in PERCENTILES}
    got = np.quantile(values, PERCENTILES)
    return {f"p{q * 100:g}": float(v) for q, v in zip(PERCENTILES, got)}


def prefix_reuse(
    con: duckdb.DuckDBPyConnection,
    trace: str,
    order: Order = "forward",
    lru_capacities_blocks: tuple[int, ...] | list[int] = (),
) -> dict:
    """Block-level reuse of ``trace``: counts, share of blocks seen before, and distance percentiles.

    Keys: ``num_requests_with_blocks``, ``num_accesses``, ``num_distinct_blocks``,
    ``reuse_fraction`` (share of accesses whose block was seen before = the hit rate of an infinite
    cache), ``requests_with_reuse_fraction`` (share of requests with blocks that reuse at least
    one), ``stack_distance_blocks`` and ``request_distance`` (percentiles, mean and max over warm
    accesses), and ``lru_hit_rate`` (``{str(capacity): hit rate}`` for ``lru_capacities_blocks``,
    as :func:`lru_curve` computes it). ``None`` values where the trace has no blocks.
    """
    hashes, req = block_accesses(con, trace, order)
    dist = stack_distances(hashes)
    prev, _ = previous_and_next(hashes)
    warm = prev >= 0
    n = len(hashes)
    req_dist = req[warm] - req[prev[warm]]
    with_blocks = np.unique(req)
    reused = np.unique(req[warm])

    def summary(values: np.ndarray) -> dict:
        return {**_percentiles(values), "mean": float(values.mean()) if len(values) else None,
                "max": int(values.max()) if len(values) else None}

    return {
        "order": order,
        "num_requests_with_blocks": int(len(with_blocks)),
        "num_accesses": int(n),
        "num_distinct_blocks": int(n - warm.sum()),
        "reuse_fraction": float(warm.mean()) if n else None,
        "requests_with_reuse_fraction": float(len(reused) / len(with_blocks)) if len(with_blocks) else None,
        "stack_distance_blocks": summary(dist[warm]),
        "request_distance": summary(req_dist),
        "lru_hit_rate": {
            str(int(c)): (float(h) if n else None)
            for c, h in zip(lru_capacities_blocks, lru_hit_rates(dist, lru_capacities_blocks))
        },
    }


def lru_curve(
    con: duckdb.DuckDBPyConnection,
    trace: str,
    capacities_blocks: list[int] | np.ndarray | None = None,
    order: Order = "forward",
) -> pl.DataFrame:
    """Exact hit rate of an LRU block cache against cache size: columns ``capacity_blocks``, ``hit_rate``.

    ``capacities_blocks`` defaults to :func:`default_capacities` (1 .. distinct blocks). The hit rate
    counts cold misses in the denominator, so it tops out at ``reuse_fraction``. Empty (no rows)
    for a trace without prefix hashes.
    """
    hashes, _ = block_accesses(con, trace, order)
    if len(hashes) == 0:
        return pl.DataFrame(schema={"capacity_blocks": pl.Int64, "hit_rate": pl.Float64})
    dist = stack_distances(hashes)
    if capacities_blocks is None:
        capacities_blocks = default_capacities(int((dist < 0).sum()))
    caps = np.asarray(capacities_blocks, dtype=np.int64)
    return pl.DataFrame({"capacity_blocks": caps, "hit_rate": lru_hit_rates(dist, caps)})
