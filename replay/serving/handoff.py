"""Hand-offs between instances (replay.fleet: disaggregated prefill/decode, live migration).

A mixin of `replay.serving.scheduler.Scheduler`, kept apart because a plain replay never calls it:
`park` (a running request stops and keeps its blocks until `release_parked`), `add_imported` (queue a
request whose KV arrives from elsewhere: admission allocates blocks for it and schedules only its next
decode), `reserve_import` / `admit_reserved` (blocks set aside before a migration's copy, then the
request joins the running batch). The state these use (`parked`, `reserved`, ...) is set up by
`Scheduler.__init__`.
"""

from __future__ import annotations

from replay.serving.kv_blocks import blocks_for
from replay.serving.request import Request, RequestStatus


class HandoffMixin:
    """Entry points for moving requests, with their KV, between schedulers."""


    def park(self, req: Request) -> Request:
        """Take running `req` out of the batch between steps; its blocks stay allocated here (in `parked`) while
        its KV is copied out, until `release_parked`. It leaves as WAITING, with an empty block table."""
        self.running.remove(req)
        del self._requests[req.idx]
        self.parked[req.idx] = req.block_table
        req.block_table = []
        req.num_cached_hash_blocks = 0
        req.status = RequestStatus.WAITING
        return req

    def release_parked(self, req: Request) -> None:
        """Free the blocks `req` kept here when it was parked (its KV now lives on another instance)."""
        self.pool.release(self.parked.pop(req.idx))

    def add_imported(self, req: Request, now_s: float) -> None:
        """Queue `req`, whose first `num_computed_tokens` tokens have their KV on another instance (a prefill
        instance, or a migration source). Admission allocates blocks for that KV plus the next token and
        schedules only the rest (its next decode); it is then listed in `imports_admitted`."""
        req.kv_imported = True
        req.status = RequestStatus.WAITING
        self._requests[req.idx] = req
        self._push(req)

    def head_kv_deficit_blocks(self) -> int:
        """Blocks the queue head lacks to be admitted now, above the watermark (0: it fits, or nothing waits).

        An upper bound, like `_head_need_blocks`: prefix hits and the step's real budget are ignored."""
        if not self._waiting:
            return 0
        head = self._waiting[0][1]
        return max(0, self._head_need_blocks(head) + self.cfg.watermark_blocks - self.pool.num_free)

    def import_need_blocks(self, req: Request) -> int:
        """Blocks `req`'s computed KV takes in this pool (a static pool reserves max_model_len)."""
        cfg = self.cfg
        return cfg.max_blocks_per_seq if cfg.kv_mode == "static" else blocks_for(req.num_computed_tokens, cfg.block_size)

    def reserve_import(self, req: Request) -> bool:
        """Set aside blocks (and a sequence slot) for `req`'s KV before it is copied in; False if they do not fit
        above the watermark. The request itself joins later, with `admit_reserved`."""
        need = self.import_need_blocks(req)
        if (len(self.running) + len(self.reserved) >= self.cfg.max_num_seqs
                or self.pool.num_free - need < self.cfg.watermark_blocks):
            return False
        self.reserved[req.idx] = self.pool.allocate(need)
        return True

    def admit_reserved(self, req: Request) -> None:
        """`req`'s KV has arrived in its reserved blocks: it joins the running batch (its next chunk is a decode)."""
        req.block_table = self.reserved.pop(req.idx)
        req.num_cached_hash_blocks = 0
        req.status = RequestStatus.RUNNING
        self._admit_counter += 1
        req.admit_seq = self._admit_counter
        self._requests[req.idx] = req
        self.running.append(req)
