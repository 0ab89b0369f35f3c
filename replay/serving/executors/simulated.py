"""SimulatedExecutor: a CostModel turns each plan into seconds; the true output lengths live here only."""

from __future__ import annotations

import numpy as np

from replay.serving.executors.base import CostModel
from replay.serving.plan import DecodeRunResult, StepPlan, StepResult


class SimulatedExecutor:
    """Executes plans in virtual time. `true_output_tokens[idx]` is request idx's real output length."""

    def __init__(self, cost_model: CostModel, true_output_tokens: np.ndarray) -> None:
        self.cost_model = cost_model
        self._true = np.asarray(true_output_tokens, dtype=np.int64)

    def execute(self, plan: StepPlan) -> StepResult:
        true = self._true
        finished = [c.req for c in plan.chunks if c.produces_token and c.num_output_after >= true[c.req]]
        return StepResult(self.cost_model.step_time_s(plan), finished)

    def execute_decode_run(self, plan: StepPlan, max_steps: int, stop_at_s: float, now_s: float) -> DecodeRunResult:
        """Advance the decode batch up to `max_steps` steps (see `Executor.execute_decode_run`)."""
        reqs = np.fromiter((c.req for c in plan.chunks), dtype=np.int64, count=len(plan.chunks))
        out_after = np.fromiter((c.num_output_after for c in plan.chunks), dtype=np.int64, count=len(plan.chunks))
        # Step i (0-based) brings each request to out_after + i tokens; it finishes when that reaches the truth.
        steps_to_finish = np.maximum(self._true[reqs] - out_after, 0)
        num_steps = int(min(max_steps, int(steps_to_finish.min()) + 1))
        times = self.cost_model.decode_run_times_s(plan.num_decodes, plan.decode_ctx_tokens, num_steps)
        if stop_at_s != float("inf") and num_steps > 1:
            # Start of step i = now + t0 + ... + t(i-1), accumulated left to right like plain stepping does.
            ends = np.cumsum(np.concatenate(([now_s], times)))[1:]
            starts_ok = int(np.searchsorted(ends[:-1], stop_at_s, side="left")) + 1
            num_steps = min(num_steps, starts_ok)
            times = times[:num_steps]
        last = num_steps - 1
        finished = reqs[steps_to_finish == last].tolist()
        return DecodeRunResult(times, finished)
