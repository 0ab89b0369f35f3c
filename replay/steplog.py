"""A growable columnar step log: scalars appended one step at a time, or whole decode runs at once.

Appending runs once per simulated event, so it must be cheap, and a million-request replay logs tens
of millions of steps, so it must be compact: every column is an `array.array` (8 bytes a value),
grown in place; decode runs add their arrays as raw bytes and their constant columns by C-level repeat.
"""

from __future__ import annotations

from array import array

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

_TYPECODES = {np.float64: "d", np.int64: "q"}
_ALL = {"end_s": np.float64, **STEP_COLUMNS}


class StepLog:
    """Columns of STEP_COLUMNS; `ends_s()` gives each step's end time (start + duration)."""

    def __init__(self) -> None:
        self._cols = {c: array(_TYPECODES[t]) for c, t in _ALL.items()}
        self.num_steps = 0

    def append(self, end_s: float, **values) -> None:
        cols = self._cols
        cols["end_s"].append(end_s)
        for c in STEP_COLUMNS:
            cols[c].append(values[c])
        self.num_steps += 1

    def extend(self, ends_s: np.ndarray, **columns) -> None:
        """Add len(ends_s) steps; scalar column values are repeated."""
        n = len(ends_s)
        columns["end_s"] = ends_s
        for c, col in self._cols.items():
            v = columns[c]
            if isinstance(v, np.ndarray):
                col.frombytes(np.ascontiguousarray(v, dtype=_ALL[c]).tobytes())
            else:
                col.extend(array(col.typecode, (v,)) * n)
        self.num_steps += n

    def _column(self, name: str) -> np.ndarray:
        return np.frombuffer(self._cols[name], dtype=_ALL[name]).copy()

    def columns(self) -> dict[str, np.ndarray]:
        return {c: self._column(c) for c in STEP_COLUMNS}

    def ends_s(self) -> np.ndarray:
        return self._column("end_s")
