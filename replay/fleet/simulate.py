"""The fleet replay loop in virtual time: `replay.simulate` generalized to pools, KV transfers and migrations.

Each instance is a `replay.simulate.Replica` (scheduler, simulated executor, clock, step log) with a role.
The loop always advances the instance with the earliest clock, unless an external event comes first
(or at the same time: an event at exactly a step's start is seen by that step). External events, in this
order on ties: KV copies that end (pending transfers, first started first), arrivals, migration checks.
With one colocated pool and migration off the only events are arrivals, and the loop is
`replay.simulate.simulate` step for step (a test holds them equal, metric for metric).

KV hand-off, disaggregated (see `Fleet.hand_off`): when a prefill instance's step produces a request's first
token, the request's TTFT ends there (as in Splitwise) and the instance parks it (`Scheduler.park`: it keeps
the KV blocks). The decode pool's router picks a decode instance and the copy starts at once, over the link:
it waits for the prefill instance's egress and the decode instance's ingress to be free (each instance's
transfers run one at a time in each direction; different pairs run in parallel, a non-blocking fabric).
When the copy ends the request joins the decode instance's queue (`Scheduler.add_imported`); it is admitted
when that instance has blocks and a slot, and only then does the prefill instance free its blocks. The copy
is charged when it happens (pushed right after the prefill), but the prefill side keeps its copy until the
decode side takes the request, so a full decode pool backs up into prefill memory (as in DistServe, where
prefill memory is the queue) rather than into an unbounded buffer. The decode instance never computes for
a request before its KV has arrived. A request with one output token finishes on its prefill instance and
moves nothing.

Fast path: instances interact only through these hand-offs (and migrations, which start at scheduled
checks), so a decode run stops at the next external event and, with a prefill pool, also where a prefill
instance's next step could hand over a request (`Fleet._decode_run_stop_s`); results equal plain stepping.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

from replay.fleet.interconnect import kv_transfer_bytes, kv_transfer_s
from replay.fleet.topology import FleetConfig
from replay.serving.kv_blocks import blocks_for
from replay.serving.policies import ROUTERS
from replay.serving.request import Request, RequestStatus
from replay.serving.scheduler import Scheduler
from replay.serving.specs import ModelConfig
from replay.simulate import Replica

INF = math.inf
KV_READY, MIGRATED = 0, 1
"""Kinds of pending events: a prefill -> decode KV copy ended; a migration's copy ended."""


class Instance(Replica):
    """A serving instance of the fleet: a Replica with a role, a GPU and link bookkeeping."""

    def __init__(self, index: int, scheduler: Scheduler, executor, fast_decode: bool, *, role: str, gpu: str,
                 tensor_parallel: int) -> None:
        super().__init__(index, scheduler, executor, fast_decode)
        self.role = role
        self.gpu = gpu
        self.tensor_parallel = tensor_parallel
        self.in_busy = False
        """In the loop's heap of instances with a step to run."""
        self.egress_free_s = 0.0
        """When the instance's outgoing link finishes its last scheduled copy."""
        self.ingress_free_s = 0.0
        """When the instance's incoming link finishes its last scheduled copy."""
        self.migrating = 0
        """Migrations in flight from or to this instance."""

    def try_step(self, stop_s: float) -> list[Request] | None:
        """One step, as `Replica.step`; None when nothing can run until KV parked or reserved here is freed."""
        sched = self.scheduler
        plan = sched.schedule(self.now_s)
        if not plan.chunks:
            if not (sched.parked or sched.reserved):
                raise RuntimeError(f"instance {self.index}: nothing schedulable with {sched.num_waiting} waiting and "
                                   f"{len(sched.running)} running requests at t={self.now_s:.6f}s (a scheduler bug)")
            return None
        return self.run_plan(plan, stop_s)


def kv_load(sched: Scheduler) -> float:
    """An instance's memory load: blocks in use (parked and reserved included) plus the blocks its queued
    requests need to start, as a fraction of its pool (Llumnix's 'virtual usage', simplified; may exceed 1)."""
    bs = sched.cfg.block_size
    queued = sum(blocks_for(r.num_tokens, bs) for r in sched.waiting_requests())
    return (sched.pool.num_used + queued) / sched.pool.num_blocks


class Fleet:
    """Replays requests through a fleet's instances (module doc); per-request hand-off records are its attributes."""

    def __init__(self, config: FleetConfig, instances: list[Instance], requests: list[Request],
                 model: ModelConfig) -> None:
        self.cfg = config
        self.instances = instances
        self.requests = requests
        self.model = model
        self.pools = {p.role: [i for i in instances if i.role == p.role] for p in config.pools}
        self.routers = {p.role: ROUTERS.create(p.router) for p in config.pools}
        n = len(requests)
        self.earlier_segments: list[list[tuple[int, list[list[int]]]]] = [[] for _ in range(n)]
        """Per request: (instance, token_segments) of the instances it left (their step logs index them)."""
        self.transfer_start_s = [math.nan] * n
        self.transfer_end_s = [math.nan] * n
        self.kv_transfer_bytes = [0] * n
        self.decode_admit_s = [math.nan] * n
        """Start of the decode instance's step that admitted the request's transferred KV."""
        self.num_migrations = [0] * n
        self.migration_bytes = [0] * n
        self.migration_s = [0.0] * n
        """Seconds of migration copies (the request is paused meanwhile)."""
        self._kv_source = [-1] * n
        self._pending: list[tuple[float, int, int, int, int, int]] = []  # (time, seq, kind, req, src, dst)
        self._seq = 0
        self._busy: list[tuple[float, int]] = []

    # ---- the loop ----------------------------------------------------------------------------------------

    def run(self, on_done: Callable[[int], None] | None = None, check: Callable[[Instance], None] | None = None) -> None:
        """Replay every request (sorted by arrival) until each is finished or rejected."""
        from replay.fleet.migration import Migrator  # migration reads this module's kv_load

        reqs = self.requests
        arrivals = [r.arrival_s for r in reqs]
        if any(b < a for a, b in zip(arrivals, arrivals[1:])):
            raise ValueError("requests must be sorted by arrival_s")
        for inst in self.instances:
            inst.stop_at_arrivals = len(self.instances) > 1
            inst.scheduler.hand_off_prefilled = inst.role == "prefill"
        migrator = Migrator(self) if self.cfg.migration.mode != "off" else None
        interval = self.cfg.migration.interval_s
        k_check = 1
        busy, pending = self._busy, self._pending
        n, ai = len(reqs), 0
        while True:
            next_arrival = arrivals[ai] if ai < n else INF
            next_pending = pending[0][0] if pending else INF
            next_check = INF
            if migrator is not None and (busy or pending or ai < n):
                if not busy and not pending:  # nothing to migrate before the next arrival: skip ahead
                    k_check = max(k_check, math.ceil(next_arrival / interval))
                next_check = k_check * interval
            next_event = min(next_arrival, next_pending, next_check)
            if busy and busy[0][0] < next_event:
                _, k = heapq.heappop(busy)
                self._step(self.instances[k], next_event, on_done, check)
            elif next_pending <= next_arrival and next_pending < INF and next_pending <= next_check:
                self._transfer_done(*heapq.heappop(pending))
            elif next_arrival <= next_check and ai < n:
                self._arrive(reqs[ai], on_done)
                ai += 1
            elif next_check < INF:
                migrator.check(next_check)
                k_check += 1
            else:
                break
        self._check_done()

    def _step(self, inst: Instance, stop_s: float, on_done, check) -> None:
        inst.in_busy = False
        start_s = inst.now_s
        if inst.role != "prefill" and "prefill" in self.pools:
            stop_s = self._decode_run_stop_s(stop_s)
        done = inst.try_step(stop_s)
        if done is None:  # blocked by KV held here for other instances: woken when it is freed
            return
        if check is not None:
            check(inst)
        if done and on_done is not None:
            on_done(len(done))
        sched = inst.scheduler
        if sched.handed_off:
            for r in sched.handed_off:
                self.hand_off(inst, r)
            sched.handed_off.clear()
        if sched.imports_admitted:
            for r in sched.imports_admitted:
                src = self.instances[self._kv_source[r.idx]]
                src.scheduler.release_parked(r)
                self.decode_admit_s[r.idx] = start_s
                self._wake(src, start_s)
            sched.imports_admitted.clear()
        self._wake(inst, inst.now_s)

    def _decode_run_stop_s(self, stop_s: float) -> float:
        """Where a decode run must stop so that the fast path stays exact: a prefill instance's next step may hand
        this instance a request (and reads its state to route), and while a prefill instance is blocked, any
        other instance's next step may free its memory and restart it."""
        clocks = [stop_s]
        blocked = False
        for p in self.pools["prefill"]:
            if p.in_busy:
                clocks.append(p.now_s)
            elif p.scheduler.has_work():
                blocked = True
        if blocked:
            clocks += [i.now_s for i in self.instances if i.in_busy and i.role != "prefill"]
        return min(clocks)

    def _wake(self, inst: Instance, at_s: float) -> None:
        """Put `inst` back in the heap (its clock at least `at_s`) if it has work and is not there."""
        if not inst.in_busy and inst.scheduler.has_work():
            inst.now_s = max(inst.now_s, at_s)
            inst.in_busy = True
            heapq.heappush(self._busy, (inst.now_s, inst.index))

    def _route(self, role: str, req: Request) -> Instance:
        pool = self.pools[role]
        if len(pool) == 1:
            return pool[0]
        return pool[self.routers[role].route(req, [i.scheduler for i in pool])]

    def _arrive(self, req: Request, on_done) -> None:
        cfg = self.cfg
        inst = self._route("colocated" if cfg.layout == "colocated" else "prefill", req)
        if "mixed" in self.pools and inst.scheduler.outstanding_tokens() > cfg.mixed_prefill_threshold_tokens:
            inst = self._route("mixed", req)
        req.replica = inst.index
        if not inst.in_busy:  # as replay.simulate: an idle instance's clock jumps to the arrival
            inst.now_s = max(inst.now_s, req.arrival_s)
        if inst.scheduler.add_request(req, req.arrival_s):
            self._wake(inst, req.arrival_s)
        elif on_done is not None:
            on_done(1)

    # ---- KV copies ---------------------------------------------------------------------------------------

    def stash_segments(self, req: Request, inst: Instance) -> None:
        """Move `req`'s token ranges aside before it leaves `inst` (they index `inst`'s step log)."""
        self.earlier_segments[req.idx].append((inst.index, req.token_segments))
        req.token_segments = []

    def start_copy(self, kind: int, req: Request, src: Instance, dst: Instance, at_s: float) -> tuple[float, float, int]:
        """Schedule the copy of `req`'s computed KV from `src` to `dst`, starting no earlier than `at_s`, when
        both links are free; returns (start, end, bytes) and queues the event that ends it."""
        tokens = req.num_computed_tokens
        duration_s = kv_transfer_s(tokens, self.model, src.tensor_parallel, self.cfg.link, dst_tp=dst.tensor_parallel)
        start_s = max(at_s, src.egress_free_s, dst.ingress_free_s)
        end_s = start_s + duration_s
        src.egress_free_s = dst.ingress_free_s = end_s
        heapq.heappush(self._pending, (end_s, self._seq, kind, req.idx, src.index, dst.index))
        self._seq += 1
        return start_s, end_s, kv_transfer_bytes(tokens, self.model, src.tensor_parallel, dst_tp=dst.tensor_parallel)

    def hand_off(self, src: Instance, req: Request) -> None:
        """`req`'s prefill ended on `src` (parked there): pick its decode instance and start the KV copy."""
        self.stash_segments(req, src)
        dst = self._route("decode", req)
        if "mixed" in self.pools and kv_load(dst.scheduler) > self.cfg.mixed_decode_threshold:
            mixed = self._route("mixed", req)
            if kv_load(mixed.scheduler) < kv_load(dst.scheduler):
                dst = mixed
        start_s, end_s, nbytes = self.start_copy(KV_READY, req, src, dst, src.now_s)
        self.transfer_start_s[req.idx], self.transfer_end_s[req.idx] = start_s, end_s
        self.kv_transfer_bytes[req.idx] = nbytes
        self._kv_source[req.idx] = src.index
        req.replica = dst.index

    def _transfer_done(self, end_s: float, _seq: int, kind: int, idx: int, src_i: int, dst_i: int) -> None:
        req, src, dst = self.requests[idx], self.instances[src_i], self.instances[dst_i]
        if kind == KV_READY:
            dst.scheduler.add_imported(req, end_s)
        else:
            src.scheduler.release_parked(req)
            dst.scheduler.admit_reserved(req)
            src.migrating -= 1
            dst.migrating -= 1
            self.num_migrations[idx] += 1
            self._wake(src, end_s)
        self._wake(dst, end_s)

    def _check_done(self) -> None:
        stuck = [r for r in self.requests if not RequestStatus(r.status).is_done]
        if stuck:
            raise RuntimeError(f"{len(stuck)} requests neither finished nor rejected, e.g. {stuck[0]!r}")
        for inst in self.instances:
            sched = inst.scheduler
            if sched.parked or sched.reserved or sched.has_work():
                raise RuntimeError(f"instance {inst.index} still holds work or KV for others at the end")
