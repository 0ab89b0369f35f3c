"""Benchmarks: each prints one JSON line per figure, with the baseline it ran against, and appends it to a log."""

from __future__ import annotations

import json
from pathlib import Path


def emit_json_line(record: dict, out_dir: str | Path, log_name: str, **dumps) -> str:
    """Print `record` as one JSON line and append it to `out_dir/log_name`; returns the line."""
    line = json.dumps(record, **dumps)
    print(line, flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / log_name, "a") as fh:
        fh.write(line + "\n")
    return line
