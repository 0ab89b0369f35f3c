"""A growable columnar step log: scalars appended one step at a time, or whole decode runs at once."""

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

_FLUSH_ROWS = 65536


class StepLog:
    """Columns of STEP_COLUMNS; `ends_s()` gives each step's end time (start + duration)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {c: [] for c in STEP_COLUMNS}
        self._buf: dict[str, list] = {c: [] for c in STEP_COLUMNS}
        self._ends: list[np.ndarray] = []
        self._buf_ends: list[float] = []
        self.num_steps = 0

    def append(self, end_s: float, **values) -> None:
        buf = self._buf
        for c in STEP_COLUMNS:
            buf[c].append(values[c])
        self._buf_ends.append(end_s)
        self.num_steps += 1
        if len(self._buf_ends) >= _FLUSH_ROWS:
            self._flush()

    def extend(self, ends_s: np.ndarray, **columns) -> None:
        """Add len(ends_s) steps; scalar column values are broadcast."""
        self._flush()
        n = len(ends_s)
        for c, dtype in STEP_COLUMNS.items():
            v = columns[c]
            self._parts[c].append(np.asarray(v, dtype=dtype) if np.ndim(v) else np.full(n, v, dtype=dtype))
        self._ends.append(np.asarray(ends_s, dtype=np.float64))
        self.num_steps += n

    def _flush(self) -> None:
        if not self._buf_ends:
            return
        for c, dtype in STEP_COLUMNS.items():
            self._parts[c].append(np.asarray(self._buf[c], dtype=dtype))
            self._buf[c] = []
        self._ends.append(np.asarray(self._buf_ends, dtype=np.float64))
        self._buf_ends = []

    def columns(self) -> dict[str, np.ndarray]:
        self._flush()
        return {c: (np.concatenate(p) if p else np.zeros(0, dtype=STEP_COLUMNS[c])) for c, p in self._parts.items()}

    def ends_s(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self._ends) if self._ends else np.zeros(0)
