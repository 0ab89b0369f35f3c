"""Paged KV memory: a block pool with reference counts, a prefix cache and LRU eviction.

Every block is in exactly one of three places:
- `_free`: unused and holding no cached prefix (a stack: the most recently freed block is reused first);
- `_cached_free`: unused but holding a registered prefix (kept for reuse, evicted LRU-first when the
  uncached free list is empty);
- in use: referenced by `refcount[b] >= 1` block tables (prefix-shared blocks have several).

`check_integrity()` verifies that partition and, given the live block tables, every reference count.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable


class BlockPool:
    """Fixed pool of `num_blocks` KV blocks of `block_size` tokens each."""

    __slots__ = ("num_blocks", "block_size", "refcount", "block_hash", "_free", "_cached_free", "_by_hash",
                 "num_evictions")

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"BlockPool needs num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.refcount = [0] * num_blocks
        self.block_hash: list[Hashable | None] = [None] * num_blocks
        # Reversed so that pop() hands out block 0 first: deterministic and readable in tests.
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._cached_free: OrderedDict[int, None] = OrderedDict()
        self._by_hash: dict[Hashable, int] = {}
        self.num_evictions = 0

    @property
    def num_free(self) -> int:
        """Blocks an allocation can take now (uncached free plus evictable cached ones)."""
        return len(self._free) + len(self._cached_free)

    @property
    def num_free_uncached(self) -> int:
        """Free blocks holding no cached prefix (allocations take these before evicting anything)."""
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    def allocate(self, n: int) -> list[int]:
        """Take `n` blocks (caller checked `num_free`); evicts cached prefixes LRU-first when needed."""
        if n > self.num_free:
            raise RuntimeError(f"allocate({n}) with only {self.num_free} free blocks")
        free = self._free
        if n <= len(free):
            out = free[-n:] if n else []
            del free[len(free) - n:]
            out.reverse()
        else:
            out = free[::-1]
            free.clear()
            cached = self._cached_free
            for _ in range(n - len(out)):
                b, _ = cached.popitem(last=False)
                del self._by_hash[self.block_hash[b]]
                self.block_hash[b] = None
                self.num_evictions += 1
                out.append(b)
        rc = self.refcount
        for b in out:
            rc[b] = 1
        return out

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block; unreferenced blocks become free (cached ones stay findable)."""
        rc = self.refcount
        if not self._by_hash:
            # Nothing was ever registered, so no block is shared: every reference count is exactly 1.
            for b in blocks:
                rc[b] = 0
            self._free.extend(reversed(blocks))
            return
        # Reversed, as vLLM does: a prefix's tail blocks become least-recently-used first, so eviction eats a
        # cached prefix from its end and its head stays reusable.
        for b in reversed(blocks):
            rc[b] -= 1
            if rc[b] == 0:
                if self.block_hash[b] is None:
                    self._free.append(b)
                else:
                    self._cached_free[b] = None

    def lookup(self, key: Hashable) -> int | None:
        """The block holding prefix `key`, if cached (in use or free)."""
        return self._by_hash.get(key)

    def acquire_cached(self, b: int) -> None:
        """Add a reference to a cached block found by `lookup` (reviving it if it was free)."""
        if self.refcount[b] == 0:
            del self._cached_free[b]
        self.refcount[b] += 1

    def register(self, b: int, key: Hashable) -> bool:
        """Make in-use block `b` findable under `key`; False if another block already holds that key."""
        if key in self._by_hash or self.block_hash[b] is not None:
            return False
        self._by_hash[key] = b
        self.block_hash[b] = key
        return True

    def check_integrity(self, block_tables: Iterable[list[int]] = ()) -> None:
        """Raise AssertionError unless the pool's invariants hold (see module docstring)."""
        free, cached = set(self._free), set(self._cached_free)
        assert len(free) == len(self._free), "duplicate block in the free list"
        assert not free & cached, "block both free and cached-free"
        refs = [0] * self.num_blocks
        for table in block_tables:
            for b in table:
                refs[b] += 1
        for b in range(self.num_blocks):
            in_use = self.refcount[b] > 0
            assert self.refcount[b] >= 0, f"block {b} has negative refcount"
            assert in_use + (b in free) + (b in cached) == 1, f"block {b} is not in exactly one state"
            if b in cached:
                assert self.block_hash[b] is not None, f"cached-free block {b} has no hash"
            if b in free:
                assert self.block_hash[b] is None, f"free block {b} still has a hash"
        if block_tables != ():
            assert refs == self.refcount, "reference counts differ from the block tables"
        for key, b in self._by_hash.items():
            assert self.block_hash[b] == key, f"hash index points at block {b} holding another key"
        assert self.num_free + sum(1 for r in self.refcount if r > 0) == self.num_blocks, "free + used != total"


def blocks_for(num_tokens: int, block_size: int) -> int:
    """Blocks needed to hold `num_tokens` tokens."""
    return -(-num_tokens // block_size)
