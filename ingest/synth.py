"""A generated LLM request workload in the Azure 2023 CSV format, for machines with no real trace.

It is clearly a stand-in: Poisson arrivals and lognormal prompt/output lengths whose medians are
those of the real Azure 2023 conversation trace (prompt 1,020, output 129 tokens). It is ingested
as its own trace, ``synthetic_llm``, never under a real trace's name.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

FILE_NAME = "synthetic_requests.csv"


def write_synthetic_requests(dest_dir: Path, *, num_requests: int = 20_000, rate_per_s: float = 5.5, seed: int = 0) -> Path:
    """Write ``synthetic_requests.csv`` (header ``TIMESTAMP,ContextTokens,GeneratedTokens``) into ``dest_dir``."""
    rng = np.random.default_rng(seed)
    gaps_s = rng.exponential(1.0 / rate_per_s, num_requests)
    offsets_us = np.round(np.cumsum(gaps_s) * 1e6).astype(np.int64)
    prompt = np.clip(np.round(rng.lognormal(np.log(1020), 0.9, num_requests)), 2, 14_000).astype(np.int64)
    output = np.clip(np.round(rng.lognormal(np.log(129), 1.0, num_requests)), 1, 1_000).astype(np.int64)
    start = datetime(2023, 11, 16, 18, 0, 0)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for off, p, o in zip(offsets_us.tolist(), prompt.tolist(), output.tolist()):
            stamp = (start + timedelta(microseconds=off)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
            fh.write(f"{stamp},{p},{o}\n")
    tmp.replace(path)
    return path
