"""SimulatedExecutor: a CostModel turns each plan into seconds; the true output lengths live here only."""

from __future__ import annotations

import numpy as np

from replay.serving.executors.base import CostModel
from replay.serving.plan import DecodeRunResult, StepPlan, StepResult


class SimulatedExecutor:
    """Executes plans in virtual time. `true_output_tokens[idx]` is request idx's real output length."""

    def __init__(self, cost_model: CostModel, true_output_tokens: np.ndarray) -> None:
        self.cost_model = cost_model
        self._true_list = np.asarray(true_output_tokens, dtype=np.int64).tolist()

    def execute(self, plan: StepPlan) -> StepResult:
        true = self._true_list
        finished = [c.req for c in plan.chunks if c.produces_token and c.num_output_after >= true[c.req]]
        return StepResult(self.cost_model.step_time_s(plan), finished)

    def execute_decode_run(self, plan: StepPlan, max_steps: int, stop_at_s: float, now_s: float) -> DecodeRunResult:
        """Advance the decode batch up to `max_steps` steps (see `Executor.execute_decode_run`)."""
        true = self._true_list
        # Step i (0-based) brings each request to num_output_after + i tokens; it finishes when that reaches the truth.
        to_finish = [true[c.req] - c.num_output_after for c in plan.chunks]
        num_steps = min(max_steps, max(min(to_finish), 0) + 1)
        times = self.cost_model.decode_run_times_s(plan.num_decodes, plan.decode_ctx_tokens, num_steps)
        # End of step i = now + t0 + ... + ti, accumulated left to right exactly as plain stepping does.
        acc = times.copy()
        acc[0] += now_s
        ends = np.cumsum(acc)  # (((now + t0) + t1) + ...): cumsum accumulates left to right
        if stop_at_s != float("inf") and num_steps > 1:
            # Step i > 0 starts at ends[i-1]; steps starting at or after stop_at_s do not run.
            num_steps = min(num_steps, int(np.searchsorted(ends[:-1], stop_at_s, side="left")) + 1)
            times, ends = times[:num_steps], ends[:num_steps]
        last = num_steps - 1
        finished = [c.req for c, left in zip(plan.chunks, to_finish) if left <= last]
        return DecodeRunResult(times, finished, ends)
