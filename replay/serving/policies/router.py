"""Multi-replica routers: which replica a new request joins.

Routing happens at the request's arrival, against each replica's state as of its last completed step
(a replica in the middle of a step has not yet reported that step's effects).
"""

from __future__ import annotations

from typing import Protocol

from replay.serving.registry import Registry
from replay.serving.request import Request


class ReplicaView(Protocol):
    """What a router may read of a replica (the scheduler satisfies it)."""

    def outstanding_tokens(self) -> int:
        """Prompt tokens not yet computed plus one per unfinished request (its next decode)."""
        ...

    def free_kv_blocks(self) -> int:
        ...

    def prefix_match_blocks(self, block_hashes: list | None) -> int:
        """Leading blocks of `block_hashes` already cached on this replica."""
        ...


class Router(Protocol):
    name: str

    def route(self, req: Request, replicas: list[ReplicaView]) -> int:
        """Index of the chosen replica. May keep state (e.g. a round-robin cursor), never randomness."""
        ...


ROUTERS: Registry[Router] = Registry("router")


@ROUTERS.register("round_robin")
class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def route(self, req: Request, replicas: list[ReplicaView]) -> int:
        i = self._next % len(replicas)
        self._next += 1
        return i


def _least_outstanding(replicas: list[ReplicaView], candidates: list[int]) -> int:
    return min(candidates, key=lambda i: (replicas[i].outstanding_tokens(), i))


@ROUTERS.register("least_outstanding_tokens")
class LeastOutstandingTokens:
    name = "least_outstanding_tokens"

    def route(self, req: Request, replicas: list[ReplicaView]) -> int:
        return _least_outstanding(replicas, list(range(len(replicas))))


@ROUTERS.register("kv_aware")
class KvAware:
    """Most free KV blocks after subtracting the replica's uncomputed prompt demand (in blocks)."""

    name = "kv_aware"

    def __init__(self, block_size: int = 16) -> None:
        self.block_size = block_size

    def route(self, req: Request, replicas: list[ReplicaView]) -> int:
        def headroom(i: int) -> tuple:
            r = replicas[i]
            return (-(r.free_kv_blocks() - r.outstanding_tokens() // self.block_size), i)

        return min(range(len(replicas)), key=headroom)


@ROUTERS.register("prefix_affinity")
class PrefixAffinity:
    """The replica caching the longest prefix of the request; ties (and no hashes) by least outstanding tokens.

    `min_match_blocks` stops a one-block match from overriding load balance.
    """

    name = "prefix_affinity"

    def __init__(self, min_match_blocks: int = 1) -> None:
        self.min_match_blocks = min_match_blocks

    def route(self, req: Request, replicas: list[ReplicaView]) -> int:
        matches = [r.prefix_match_blocks(req.block_hashes) for r in replicas]
        best = max(matches)
        if best < self.min_match_blocks:
            return _least_outstanding(replicas, list(range(len(replicas))))
        return _least_outstanding(replicas, [i for i, m in enumerate(matches) if m == best])
