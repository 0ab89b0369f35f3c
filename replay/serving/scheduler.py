"""One token-budget loop per step: running requests first, then admissions (see DESIGN.md).

`schedule(now)` builds a StepPlan and allocates the KV blocks it needs (preempting when memory runs
out); `update(plan, result, end_s)` applies the executor's result. Between events that change the
batch, `decode_run_limit` / `update_decode_run` let the harness advance many identical decode steps
at once; tests compare that fast path with plain stepping, metric for metric.

Without chunked prefill (vLLM v0 style) a step is either prefill-only (whole prompts) or decode-only,
and prefills go first.

Hand-offs between instances (replay.fleet: disaggregated prefill/decode, live migration) use the
entry points of `replay.serving.handoff` and the `hand_off_prefilled` switch here (park every request
whose prefill just produced its first token). A plain replay uses none of them.
"""

from __future__ import annotations

import heapq
from itertools import accumulate

import numpy as np

from replay.serving.config import SchedulerConfig
from replay.serving.handoff import HandoffMixin
from replay.serving.kv_blocks import BlockPool, blocks_for
from replay.serving.plan import Chunk, StepPlan, StepResult
from replay.serving.policies.queue import QueuePolicy
from replay.serving.policies.victim import VictimPolicy
from replay.serving.request import Request, RequestStatus

MAX_RUN_STEPS = 4096
"""Longest decode run advanced in one call (bounds array sizes; any value gives identical results)."""


class Scheduler(HandoffMixin):
    """Scheduler of one replica. Holds the waiting queue, the running batch and the KV block pool."""

    def __init__(self, config: SchedulerConfig, policy: QueuePolicy, victim: VictimPolicy) -> None:
        self.cfg = config
        self.policy = policy
        self.victim = victim
        self.pool = BlockPool(config.num_kv_blocks, config.block_size)
        self.running: list[Request] = []
        self._waiting: list[tuple[tuple, Request]] = []
        self._requests: dict[int, Request] = {}
        self._queued_tokens = 0
        self._admit_counter = 0
        self.swap_free_blocks = config.num_cpu_swap_blocks
        self.step_index = 0
        """Steps executed so far (the index of the next step in this replica's step log)."""
        self.num_preempted_in_step = 0
        self.num_admitted_in_step = 0
        self.admission_blocked = False
        """Set by schedule(): a waiting request could not be admitted (memory, sequence slots or budget)."""
        self.hand_off_prefilled = False
        """Park each request as soon as its prefill produced its first token (a disaggregated prefill instance)."""
        self.handed_off: list[Request] = []
        """Requests parked by `update` under `hand_off_prefilled`, in step order; the caller drains it."""
        self.imports_admitted: list[Request] = []
        """Imported requests (`add_imported`) admitted by `schedule`, in order; the caller drains it."""
        self.parked: dict[int, list[int]] = {}
        """Request idx -> the block table it keeps here while its KV is copied elsewhere (`park`)."""
        self.reserved: dict[int, list[int]] = {}
        """Request idx -> blocks set aside for an incoming migration (`reserve_import`); each takes a sequence slot."""

    # ---- queue -------------------------------------------------------------------------------------------

    def add_request(self, req: Request, now_s: float) -> bool:
        """Queue a new request, or reject it with a reason if it can never run. Returns True if queued."""
        if req.num_prompt_tokens + 1 > self.cfg.max_model_len:
            req.status = RequestStatus.REJECTED
            req.reject_reason = "prompt_exceeds_max_model_len"
            req.finish_s = now_s
            return False
        self._requests[req.idx] = req
        self._push(req)
        return True

    def request(self, idx: int) -> Request:
        """The request with run-local index `idx` (queued, running or parked here); executors read its block table."""
        return self._requests[idx]

    def _push(self, req: Request) -> None:
        req.policy_key = self.policy.key(req)
        heapq.heappush(self._waiting, (req.policy_key, req))
        self._queued_tokens += req.num_remaining_prefill

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def has_work(self) -> bool:
        return bool(self.running or self._waiting)

    def waiting_requests(self) -> list[Request]:
        return [r for _, r in self._waiting]

    # ---- router view -------------------------------------------------------------------------------------

    def outstanding_tokens(self) -> int:
        return self._queued_tokens + len(self._waiting) + sum(r.num_remaining_prefill for r in self.running)

    def free_kv_blocks(self) -> int:
        return self.pool.num_free

    def prefix_match_blocks(self, block_hashes: list | None) -> int:
        if not block_hashes or not self.cfg.enable_prefix_caching:
            return 0
        n = 0
        for key in block_hashes:
            if self.pool.lookup(key) is None:
                break
            n += 1
        return n

    # ---- schedule ----------------------------------------------------------------------------------------

    def schedule(self, now_s: float) -> StepPlan:
        """Plan the next step starting at `now_s` and allocate its KV blocks."""
        plan = StepPlan()
        self.num_preempted_in_step = 0
        self.num_admitted_in_step = 0
        self.admission_blocked = False
        if self.policy.preemptive and self._waiting:
            self._preempt_for_priority(plan)
        if self.cfg.chunked_prefill:
            self._schedule_mixed(plan, now_s)
        else:
            self._schedule_phased(plan, now_s)
        return plan

    def _schedule_mixed(self, plan: StepPlan, now_s: float) -> None:
        cfg = self.cfg
        budget = cfg.max_num_batched_tokens
        bs = cfg.block_size
        paged = cfg.kv_mode == "paged"
        # Decodes first, then unfinished prefill chunks (Sarathi-Serve): decodes never stall behind a prefill.
        order: list[Request] = []
        later: list[Request] = []
        for r in self.running:
            if r.num_prompt_tokens + r.num_output_tokens - r.num_computed_tokens == 1:
                order.append(r)
            else:
                later.append(r)
        if later:
            order += later
        i = 0
        kv_preempted = False
        chunks = plan.chunks
        num_decodes = decode_ctx = 0  # StepPlan.add's aggregates, kept locally: this loop is the hot path
        while i < len(order) and budget > 0:
            r = order[i]
            computed = r.num_computed_tokens
            remaining = r.num_prompt_tokens + r.num_output_tokens - computed
            n = remaining if remaining < budget else budget
            if paged and (computed + n + bs - 1) // bs > len(r.block_table):
                preempted, self_preempted = self._reserve(r, n, order, i, plan)
                kv_preempted |= preempted
                if self_preempted:
                    continue
            produces = n == remaining
            chunk = Chunk(r.idx, n, computed, produces, r.num_output_tokens + produces)
            if n == 1 and computed:
                chunks.append(chunk)
                num_decodes += 1
                decode_ctx += computed + 1
            else:
                plan.add(chunk)
            budget -= n
            i += 1
        plan.num_decodes += num_decodes
        plan.decode_ctx_tokens += decode_ctx
        if not kv_preempted:
            self._admit(plan, budget, now_s)

    def _schedule_phased(self, plan: StepPlan, now_s: float) -> None:
        self._admit(plan, self.cfg.max_num_batched_tokens, now_s)
        if plan.chunks:
            return
        order = list(self.running)
        i = 0
        while i < len(order):
            r = order[i]
            if self._reserve(r, 1, order, i, plan)[1]:
                continue
            self._add_chunk(plan, r, 1)
            i += 1

    def _reserve(self, r: Request, n: int, order: list[Request], i: int, plan: StepPlan) -> tuple[bool, bool]:
        """Allocate blocks so `r` can compute `n` more tokens, preempting unscheduled requests (order[i:]) if needed.

        Returns (preempted anyone, preempted r itself).
        """
        if self.cfg.kv_mode == "static":
            return False, False
        need = blocks_for(r.num_computed_tokens + n, self.cfg.block_size) - len(r.block_table)
        preempted = False
        while need > self.pool.num_free:
            victim = self.victim.choose(order[i:], self.policy.key)
            order.remove(victim)
            self._preempt(victim, plan)
            preempted = True
            if victim is r:
                return True, True
        if need > 0:
            r.block_table.extend(self.pool.allocate(need))
        return preempted, False

    def _admit(self, plan: StepPlan, budget: int, now_s: float) -> None:
        while self._waiting and budget > 0:
            if len(self.running) + len(self.reserved) >= self.cfg.max_num_seqs:
                self.admission_blocked = True
                return
            r = self._waiting[0][1]
            n = self._try_admit(r, budget, plan, now_s)
            if n == 0:
                self.admission_blocked = True
                return
            budget -= n
        if self._waiting:
            self.admission_blocked = True

    def _prefix_hits(self, r: Request) -> list[int]:
        cfg = self.cfg
        if (r.swapped_blocks or not r.block_hashes or not cfg.enable_prefix_caching or cfg.kv_mode == "static"
                or r.kv_imported):
            return []
        # At least one token must be computed to produce logits, so a full-prompt hit leaves the last block.
        max_hit = min(len(r.block_hashes), (r.num_tokens - 1) // cfg.block_size)
        hits = []
        for key in r.block_hashes[:max_hit]:
            b = self.pool.lookup(key)
            if b is None:
                break
            hits.append(b)
        return hits

    def _try_admit(self, r: Request, budget: int, plan: StepPlan, now_s: float) -> int:
        """Admit the queue head if it fits; returns the tokens scheduled for it (0: it does not fit)."""
        cfg, pool = self.cfg, self.pool
        hits = self._prefix_hits(r)
        computed0 = r.num_computed_tokens if r.swapped_blocks or r.kv_imported else len(hits) * cfg.block_size
        remaining = r.num_tokens - computed0
        n = min(remaining, budget)
        if not cfg.chunked_prefill and n < remaining:
            return 0
        if cfg.kv_mode == "static":
            need = cfg.max_blocks_per_seq
        else:
            need = blocks_for(computed0 + n, cfg.block_size) - len(hits)
        revived = sum(1 for b in hits if pool.refcount[b] == 0)
        if pool.num_free - revived - need < cfg.watermark_blocks:
            return 0
        heapq.heappop(self._waiting)
        self._queued_tokens -= r.num_remaining_prefill
        for b in hits:
            pool.acquire_cached(b)
        r.block_table = hits + pool.allocate(need)
        r.num_cached_hash_blocks = len(hits)
        if r.swapped_blocks:
            plan.swap_in_blocks += r.swapped_blocks
            self.swap_free_blocks += r.swapped_blocks
            r.swapped_blocks = 0
        r.num_computed_tokens = computed0
        if r.kv_imported:  # its KV is copied in now (the copy was charged by the caller): local from here on
            r.kv_imported = False
            self.imports_admitted.append(r)
        if r.first_scheduled_s is None:
            r.first_scheduled_s = now_s
            r.prefix_hit_tokens = computed0
        r.status = RequestStatus.RUNNING
        self.num_admitted_in_step += 1
        self._admit_counter += 1
        r.admit_seq = self._admit_counter
        self.running.append(r)
        self._add_chunk(plan, r, n)
        return n

    def _add_chunk(self, plan: StepPlan, r: Request, n: int) -> None:
        produces = r.num_computed_tokens + n == r.num_tokens
        plan.add(Chunk(r.idx, n, r.num_computed_tokens, produces, r.num_output_tokens + produces))

    def _preempt(self, victim: Request, plan: StepPlan) -> None:
        self.running.remove(victim)
        n_blocks = len(victim.block_table)
        if (self.cfg.preemption_mode == "swap" and victim.num_computed_tokens > 0
                and n_blocks <= self.swap_free_blocks):
            self.swap_free_blocks -= n_blocks
            victim.swapped_blocks = n_blocks
            plan.swap_out_blocks += n_blocks
        else:
            victim.num_computed_tokens = 0
        self.pool.release(victim.block_table)
        victim.block_table = []
        victim.num_cached_hash_blocks = 0
        victim.status = RequestStatus.PREEMPTED
        victim.num_preemptions += 1
        self.num_preempted_in_step += 1
        self._push(victim)

    def _preempt_for_priority(self, plan: StepPlan) -> None:
        """Preemptive policies: displace running requests with a worse key than a waiting head that cannot fit."""
        key = self.policy.key
        for _ in range(len(self.running)):
            head_key, head = self._waiting[0]
            if not self.running or self._head_fits(head):
                return
            worst = max(self.running, key=key)
            if key(worst) <= head_key:
                return
            self._preempt(worst, plan)

    def _head_fits(self, r: Request) -> bool:
        if len(self.running) + len(self.reserved) >= self.cfg.max_num_seqs:
            return False
        return self.pool.num_free - self._head_need_blocks(r) >= self.cfg.watermark_blocks

    def _head_need_blocks(self, r: Request) -> int:
        """Blocks the queue head needs to start (an upper bound: prefix hits and the real budget ignored)."""
        cfg = self.cfg
        if cfg.kv_mode == "static":
            return cfg.max_blocks_per_seq
        computed0 = r.num_computed_tokens if r.swapped_blocks or r.kv_imported else 0
        return blocks_for(computed0 + min(r.num_tokens - computed0, cfg.max_num_batched_tokens), cfg.block_size)

    # ---- update ------------------------------------------------------------------------------------------

    def update(self, plan: StepPlan, result: StepResult, end_s: float) -> list[Request]:
        """Apply one executed step; returns the requests that finished in it."""
        step = self.step_index
        self.step_index += 1
        reqs = self._requests
        max_len, hit_max_len = self.cfg.max_model_len, False
        for c in plan.chunks:
            r = reqs[c.req]
            r.num_computed_tokens += c.num_tokens
            if c.produces_token:
                r.num_output_tokens += 1
                if r.first_token_s is None:
                    r.first_token_s = end_s
                segs = r.token_segments  # see Request.token_segments (inlined: hot path)
                if segs and segs[-1][1] == step - 1:
                    segs[-1][1] = step
                else:
                    segs.append([step, step])
                if r.num_prompt_tokens + r.num_output_tokens >= max_len:
                    hit_max_len = True
            if r.block_hashes is not None and r.num_cached_hash_blocks < len(r.block_hashes):
                self._register_hashes(r)
        done = self._finish_done(plan, result.finished, end_s, hit_max_len)
        if self.hand_off_prefilled:
            for c in plan.chunks:  # decode runs never hold a first token, so update_decode_run needs no such hook
                if c.produces_token and c.num_output_after == 1 and c.req in reqs:
                    self.handed_off.append(self.park(reqs[c.req]))
        return done

    def _register_hashes(self, r: Request) -> None:
        if not self.cfg.enable_prefix_caching or self.cfg.kv_mode == "static":
            return
        upto = min(len(r.block_hashes), r.num_computed_tokens // self.cfg.block_size, len(r.block_table))
        for k in range(r.num_cached_hash_blocks, upto):
            self.pool.register(r.block_table[k], r.block_hashes[k])
        r.num_cached_hash_blocks = max(upto, r.num_cached_hash_blocks)

    def _finish_done(self, plan: StepPlan, finished: list[int], end_s: float, may_hit_max_len: bool = True) -> list[Request]:
        if not finished and not may_hit_max_len:
            return []
        done_idx = set(finished)
        max_len = self.cfg.max_model_len
        done = []
        for c in plan.chunks:
            r = self._requests[c.req]
            if c.req in done_idx or (c.produces_token and r.num_tokens >= max_len):
                r.finish_reason = "stop" if c.req in done_idx else "length"
                self.pool.release(r.block_table)
                r.block_table = []
                r.status = RequestStatus.FINISHED
                r.finish_s = end_s
                done.append(r)
                del self._requests[r.idx]
        if done:
            gone = {r.idx for r in done}
            self.running = [r for r in self.running if r.idx not in gone]
        return done

    # ---- the decode fast path ----------------------------------------------------------------------------

    def arrivals_matter(self) -> bool:
        """Could an arrival change the next steps? (If not, a decode run need not stop at arrivals.)"""
        if self.policy.preemptive:
            return True
        if len(self.running) >= self.cfg.max_num_seqs:
            return False
        # Arrival-ordered queues: a newcomer queues behind a head that is blocked until something finishes.
        return not (self._waiting and getattr(self.policy, "arrival_ordered", False))

    def can_run_decodes(self, plan: StepPlan) -> bool:
        """True if `plan` may be repeated with growing contexts until the next event."""
        # A one-token chunk that ends a prefill (or is cut by the budget) costs like a decode but is not one:
        # every chunk must be a decode of a request that already has its first token.
        # A (re)admitted request's one-token chunk on a fully cached context is not a decode either.
        return (plan.is_decode_only and self.num_preempted_in_step == 0 and self.num_admitted_in_step == 0
                and (not self._waiting or self.admission_blocked)
                and all(c.produces_token and c.num_output_after >= 2 for c in plan.chunks))

    def decode_run_limit(self, plan: StepPlan) -> int:
        """Most steps (>= 1) `plan`'s batch can advance before the scheduler's state would change course."""
        cfg, reqs, bs = self.cfg, self._requests, self.cfg.block_size
        limit, max_len = MAX_RUN_STEPS, cfg.max_model_len
        slack = []  # per decode: tokens it can still write into its blocks after this step's token
        for c in plan.chunks:
            r = reqs[c.req]
            left = max_len - r.num_prompt_tokens - r.num_output_tokens
            if left < limit:
                limit = left
            slack.append(len(r.block_table) * bs - c.num_cached_tokens)
        self._run_slack = (plan, slack)
        watch_keys = self.policy.preemptive
        if watch_keys:
            for c in plan.chunks:
                left = self.policy.tokens_until_key_change(reqs[c.req])
                if left is not None and left < limit:
                    limit = left
        if cfg.kv_mode == "paged" and limit > 1:
            # With requests waiting, stop before the first eviction of a cached prefix block: it can change
            # what the queue head would reuse, hence whether it fits.
            free = self.pool.num_free_uncached if self._waiting else self.pool.num_free
            limit = self._kv_run_limit(slack, limit, free)
            if watch_keys and self._waiting and len(self.running) < cfg.max_num_seqs:
                # The head fits now (else it would have displaced someone); once decodes eat the blocks it
                # needs, a better-keyed head preempts: stop before that step.
                head_key, head = self._waiting[0]
                if max(self.policy.key(reqs[c.req]) for c in plan.chunks) > head_key:
                    spare = self.pool.num_free - self._head_need_blocks(head) - cfg.watermark_blocks
                    limit = 1 if spare < 0 else self._kv_run_limit(slack, limit, spare)
        return max(limit, 1)

    def _slack_tokens(self, plan: StepPlan) -> list[int]:
        """Per decode: tokens it can still write into its allocated blocks after this step's token."""
        bs, reqs = self.cfg.block_size, self._requests
        return [len(reqs[c.req].block_table) * bs - c.num_cached_tokens for c in plan.chunks]

    def _kv_run_limit(self, slack: list[int], limit: int, free: int) -> int:
        """Most steps (<= limit, >= 1) whose new blocks fit in `free`."""
        bs = self.cfg.block_size

        def need(j: int) -> int:  # new blocks for steps 1..j-1 of the run (step 0 is already allocated)
            return sum((j - s + bs - 1) // bs for s in slack if s < j)

        if need(limit) <= free:
            return limit
        lo, hi = 1, limit  # need(lo) <= free < need(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if need(mid) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def decode_run_kv_used(self, plan: StepPlan, num_steps: int) -> np.ndarray:
        """KV blocks in use during each step of a decode run (what plain stepping would log)."""
        used0 = self.pool.num_used
        if self.cfg.kv_mode != "paged":
            return np.full(num_steps, used0, dtype=np.int64)
        cached = getattr(self, "_run_slack", None)
        slack = cached[1] if cached is not None and cached[0] is plan else self._slack_tokens(plan)
        bs = self.cfg.block_size
        # Request r takes a new block at run steps slack_r, slack_r + bs, ... (< num_steps).
        new_blocks = [0] * num_steps
        for s in slack:
            for i in range(s, num_steps, bs):
                new_blocks[i] += 1
        return np.fromiter(accumulate(new_blocks, initial=used0), dtype=np.int64, count=num_steps + 1)[1:]

    def update_decode_run(self, plan: StepPlan, num_steps: int, finished: list[int], end_s: float) -> list[Request]:
        """Apply `num_steps` decode steps of `plan`'s batch; returns the requests finished at the last one."""
        step = self.step_index
        self.step_index += num_steps
        bs, pool, reqs = self.cfg.block_size, self.pool, self._requests
        paged = self.cfg.kv_mode == "paged"
        last = step + num_steps - 1
        max_len, hit_max_len = self.cfg.max_model_len, False
        grow: list[tuple[list[int], int]] = []
        total = 0
        for c in plan.chunks:
            r = reqs[c.req]
            r.num_computed_tokens += num_steps
            r.num_output_tokens += num_steps
            segs = r.token_segments  # see Request.token_segments (inlined: the simulator's hot path)
            if segs and segs[-1][1] == step - 1:
                segs[-1][1] = last
            else:
                segs.append([step, last])
            if paged:
                need = (r.num_computed_tokens + bs - 1) // bs - len(r.block_table)
                if need > 0:
                    grow.append((r.block_table, need))
                    total += need
            if r.num_prompt_tokens + r.num_output_tokens >= max_len:
                hit_max_len = True
        if total:  # one allocation for the whole run, handed out in chunk order
            blocks = pool.allocate(total)
            at = 0
            for table, need in grow:
                table.extend(blocks[at:at + need])
                at += need
        # Every decode produced its last token in the final step, so the usual finish rules apply there.
        return self._finish_done(plan, finished, end_s, hit_max_len)

    # ---- checks ------------------------------------------------------------------------------------------

    def check_integrity(self) -> None:
        """Raise AssertionError unless the scheduler and pool state agree (tests call this after every step)."""
        cfg = self.cfg
        tables = [r.block_table for r in self.running] + list(self.parked.values()) + list(self.reserved.values())
        self.pool.check_integrity(tables)
        assert len(self.running) + len(self.reserved) <= cfg.max_num_seqs, "more running requests than max_num_seqs"
        for r in self.running:
            assert r.status == RequestStatus.RUNNING, f"{r} in the running set"
            need = cfg.max_blocks_per_seq if cfg.kv_mode == "static" else blocks_for(r.num_computed_tokens, cfg.block_size)
            assert len(r.block_table) >= need, f"{r} has fewer blocks than its computed tokens need"
        for _, r in self._waiting:
            assert r.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED), f"{r} in the waiting queue"
            assert not r.block_table, f"waiting {r} holds blocks"
            assert not (r.kv_imported and r.swapped_blocks), f"{r} both imported and swapped"
        swapped = sum(r.swapped_blocks for _, r in self._waiting)
        assert swapped + self.swap_free_blocks == cfg.num_cpu_swap_blocks, "swap pool accounting is off"
