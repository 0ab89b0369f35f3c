"""Llumnix-style live migration: pick a running decode and move it, with its KV, to another instance.

`Migrator.check(now_s)` runs every `MigrationConfig.interval_s` of virtual time and reads each instance
as of its last completed step (as routers do). Only instances of the decoding pool take part, and only
those with no migration in flight (one at a time per instance, as Llumnix pairs instances). A candidate is
a running request in pure decode state (its prompt and all but its newest token in KV); among candidates
the one with the fewest KV blocks moves (the cheapest copy; Llumnix also prefers short sequences).

- load_balance: source = the instance with the highest `kv_load`, destination = the lowest (ties: lowest
  index); a request moves when the gap exceeds `imbalance_threshold` and moving it does not invert the gap.
- defrag: for each instance (in index order) whose queue head waits for memory, move the smallest candidate
  that frees enough blocks for the head (else the largest candidate) to the instance with the most free
  blocks that can take it.

A move: the destination reserves blocks (and a sequence slot) for the request's KV, or nothing happens;
the source parks the request (it stops decoding and keeps its blocks); the copy runs over the fleet's
link (`Fleet.start_copy`: queued behind the links' other copies); at its end the source frees the blocks
and the request joins the destination's running batch.
"""

from __future__ import annotations

from replay.fleet.simulate import MIGRATED, Fleet, Instance, kv_load
from replay.serving.request import Request


class Migrator:
    """Migration triggers for one fleet replay (its config: `fleet.cfg.migration`)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.cfg = fleet.cfg.migration
        self.pool = fleet.pools[fleet.cfg.decoding_role]

    def check(self, now_s: float) -> None:
        """Start the migrations the trigger calls for at `now_s`."""
        free = [i for i in self.pool if not i.migrating]
        if len(free) < 2:
            return
        if self.cfg.mode == "load_balance":
            self._balance(free, now_s)
        else:
            self._defrag(free, now_s)

    @staticmethod
    def candidates(inst: Instance) -> list[Request]:
        """Running requests of `inst` in pure decode state, fewest blocks first (ties: request index)."""
        max_len = inst.scheduler.cfg.max_model_len
        reqs = [r for r in inst.scheduler.running
                if r.num_output_tokens >= 1 and r.num_computed_tokens == r.num_tokens - 1 and r.num_tokens < max_len]
        return sorted(reqs, key=lambda r: (len(r.block_table), r.idx))

    def _balance(self, insts: list[Instance], now_s: float) -> None:
        loads = [kv_load(i.scheduler) for i in insts]
        s = max(range(len(insts)), key=lambda k: (loads[k], -k))
        d = min(range(len(insts)), key=lambda k: (loads[k], k))
        gap = loads[s] - loads[d]
        if gap <= self.cfg.imbalance_threshold:
            return
        src, dst = insts[s], insts[d]
        for r in self.candidates(src):
            moved = len(r.block_table) / src.scheduler.pool.num_blocks + \
                dst.scheduler.import_need_blocks(r) / dst.scheduler.pool.num_blocks
            if moved >= gap:  # the smallest already inverts the gap: nothing worth moving
                return
            if self.start(r, src, dst, now_s):
                return

    def _defrag(self, insts: list[Instance], now_s: float) -> None:
        for src in insts:
            sched = src.scheduler
            deficit = sched.head_kv_deficit_blocks()
            if src.migrating or not deficit or len(sched.running) + len(sched.reserved) >= sched.cfg.max_num_seqs:
                continue
            cands = self.candidates(src)
            if not cands:
                continue
            r = next((c for c in cands if len(c.block_table) >= deficit), cands[-1])
            dsts = sorted((i for i in insts if i is not src and not i.migrating),
                          key=lambda i: (-i.scheduler.pool.num_free, i.index))
            for dst in dsts:
                if self.start(r, src, dst, now_s):
                    break

    def start(self, req: Request, src: Instance, dst: Instance, now_s: float) -> bool:
        """Move `req` from `src` to `dst` if `dst` can reserve its blocks; True if the migration started."""
        if not dst.scheduler.reserve_import(req):
            return False
        fleet = self.fleet
        src.scheduler.park(req)
        fleet.stash_segments(req, src)
        # The decision is taken at now_s on the state after src's last step, which ends at src.now_s >= now_s.
        start_s, end_s, nbytes = fleet.start_copy(MIGRATED, req, src, dst, max(now_s, src.now_s))
        fleet.migration_bytes[req.idx] += nbytes
        fleet.migration_s[req.idx] += end_s - start_s
        src.migrating += 1
        dst.migrating += 1
        req.replica = dst.index
        return True
