"""Protocols an executor and a cost model satisfy."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from replay.serving.plan import DecodeRunResult, StepPlan, StepResult


class CostModel(Protocol):
    """Turns a step's composition into seconds on a given GPU and model.

    Contract for the fast path: `decode_run_times_s(n, ctx0, k)[i]` must be bit-for-bit equal to
    `step_time_s(plan)` for a decode-only plan with `n` decodes whose attention lengths sum to
    `ctx0 + i * n` (no swaps). The simplest way to honour it is to compute both with the same
    elementwise numpy expression.
    """

    def step_time_s(self, plan: StepPlan) -> float:
        """Duration of one step, swaps included."""
        ...

    def decode_run_times_s(self, num_decodes: int, decode_ctx_tokens0: int, num_steps: int) -> np.ndarray:
        """Durations of `num_steps` consecutive decode-only steps (float64 array)."""
        ...


class Executor(Protocol):
    """Runs plans. Only the executor knows true output lengths (DESIGN convention 3)."""

    def execute(self, plan: StepPlan) -> StepResult:
        ...

    def execute_decode_run(self, plan: StepPlan, max_steps: int, stop_at_s: float, now_s: float) -> DecodeRunResult:
        """Run up to `max_steps` decode steps of `plan`'s batch, each one token longer in context.

        Stops after the first step at which some request reaches its true length, and never starts a
        step at or after `stop_at_s` (the first step always runs).
        """
        ...
