"""A growable columnar step log: scalars appended one step at a time, or whole decode runs at once.

Appending must be cheap (it runs once per simulated event), so nothing is converted to numpy until
`columns()`: single steps go into Python lists, decode runs add their arrays as they are and their
constant columns as (value, count) pairs.
"""

from __future__ import annotations

import numpy as np

STEP_COLUMNS = {
    "start_s": np.float64,
    "duration_s": np.float64,
    "num_seqs": np.int64,
    "num_decodes": np.int64,
    "num_prefill_tokens": np.int64,
    "num_tokens": np.int64,
    "kv_blocks_used": np.int64,
    "num_waiting": np.int64,
    "num_preempted": np.int64,
}
"""Per-step columns. num_waiting is the queue length at the step's scheduling decision (inside a decode
run: at the run's first step, since arrivals queued during a run cannot change it)."""

_ALL = ("end_s", *STEP_COLUMNS)


class StepLog:
    """Columns of STEP_COLUMNS; `ends_s()` gives each step's end time (start + duration)."""

    def __init__(self) -> None:
        self._parts: dict[str, list] = {c: [] for c in _ALL}
        self._cur: dict[str, list] = {c: [] for c in _ALL}
        self.num_steps = 0

    def append(self, end_s: float, **values) -> None:
        cur = self._cur
        cur["end_s"].append(end_s)
        for c in STEP_COLUMNS:
            cur[c].append(values[c])
        self.num_steps += 1

    def extend(self, ends_s: np.ndarray, **columns) -> None:
        """Add len(ends_s) steps; scalar column values are repeated."""
        n = len(ends_s)
        columns["end_s"] = ends_s
        parts, cur = self._parts, self._cur
        if cur["end_s"]:
            for c in _ALL:
                parts[c].append(cur[c])
            self._cur = {c: [] for c in _ALL}
        for c in _ALL:
            v = columns[c]
            parts[c].append(v if isinstance(v, np.ndarray) else (v, n))
        self.num_steps += n

    def _column(self, name: str, dtype) -> np.ndarray:
        parts = [*self._parts[name], self._cur[name]]
        if not any(isinstance(p, np.ndarray) for p in parts):
            # Scalars and (value, count) runs only: one np.repeat instead of an array per part.
            values: list = []
            counts: list[int] = []
            for p in parts:
                if isinstance(p, tuple):
                    values.append(p[0])
                    counts.append(p[1])
                else:
                    values.extend(p)
                    counts.extend([1] * len(p))
            return np.repeat(np.asarray(values, dtype=dtype), np.asarray(counts, dtype=np.int64))
        out = [np.full(p[1], p[0], dtype=dtype) if isinstance(p, tuple) else np.asarray(p, dtype=dtype)
               for p in parts if isinstance(p, tuple) or len(p)]
        return np.concatenate(out) if out else np.zeros(0, dtype=dtype)

    def columns(self) -> dict[str, np.ndarray]:
        return {c: self._column(c, dtype) for c, dtype in STEP_COLUMNS.items()}

    def ends_s(self) -> np.ndarray:
        return self._column("end_s", np.float64)
