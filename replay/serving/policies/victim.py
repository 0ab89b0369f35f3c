"""Preemption victim policies: which running request gives up its KV blocks when memory runs out."""

from __future__ import annotations

from typing import Protocol

from replay.serving.registry import Registry
from replay.serving.request import Request


class VictimPolicy(Protocol):
    """Chooses among candidate running requests (never empty)."""

    name: str

    def choose(self, candidates: list[Request], queue_key) -> Request:
        """The request to preempt; `queue_key` is the queue policy's key function."""
        ...


VICTIM_POLICIES: Registry[VictimPolicy] = Registry("victim policy")


@VICTIM_POLICIES.register("last_admitted")
class LastAdmitted:
    """The most recently (re)admitted request (vLLM's choice: it has the least sunk work in the batch)."""

    name = "last_admitted"

    def choose(self, candidates: list[Request], queue_key) -> Request:
        return max(candidates, key=lambda r: (r.admit_seq, r.idx))


@VICTIM_POLICIES.register("lowest_priority")
class LowestPriority:
    """The request the queue policy would serve last (worst key)."""

    name = "lowest_priority"

    def choose(self, candidates: list[Request], queue_key) -> Request:
        return max(candidates, key=queue_key)


@VICTIM_POLICIES.register("most_blocks")
class MostBlocks:
    """The request holding the most KV blocks (frees the most memory per preemption)."""

    name = "most_blocks"

    def choose(self, candidates: list[Request], queue_key) -> Request:
        return max(candidates, key=lambda r: (len(r.block_table), r.idx))
