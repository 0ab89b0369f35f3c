"""The harness's input side: a `WorkloadSpec` becomes a `Workload` of plain numpy arrays.

A workload comes from a canonical ``requests`` trace in the lake (``data/lake/requests/trace=<name>/``)
or from a generator (``trace="generated"``). Both go through the same selection, in this order:

1. window: keep ``start_s <= arrival_s < start_s + duration_s`` (trace seconds since its first arrival);
2. exclusion: requests with ``prompt_tokens <= 0`` or ``output_tokens <= 0`` cannot be served; they are
   dropped and counted in ``Workload.excluded`` (reason -> count; each request under its first reason);
3. sampling: a request is kept when a hash of (seed, its trace position) falls below ``sample_fraction``,
   so the same request is kept or dropped whatever the window;
4. ``max_requests``: the first N in arrival order;
5. time: ``arrival_s = (arrival_s - start_s) / rate_scale`` (the window start becomes 0).

Rows are stably sorted by (arrival_s, trace position). Everything is deterministic for (spec, seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.paths import data_paths
from ingest.schema import REQUESTS, SCHEMA_VERSION

GENERATED = "generated"
"""The trace name that selects the synthetic generator instead of the lake."""
HASH_BLOCK_TOKENS_BY_SOURCE = {"mooncake_fast25": 512}
"""Tokens per prefix-hash block, by ingest source (Mooncake hash_ids cover 512 tokens: FORMATS.md §7.2)."""
INGEST_SOURCE_HINTS = {
    "azure_llm_2023_": "azure_llm_2023",
    "azure_llm_2024_": "azure_llm_2024",
    "azure_lmm_2025_": "azure_lmm_2025",
    "mooncake_": "mooncake_fast25",
    "synthetic_llm": "synthetic_llm",
}
"""Trace-name prefix -> the ingest source that produces it (only for the missing-trace message)."""
_COLUMNS = ["request_id", "arrival_s", "prompt_tokens", "output_tokens", "session_id", "prefix_block_hashes", "priority"]


class TraceNotFoundError(FileNotFoundError):
    """The requested trace has no ``requests`` partition in the lake."""


@dataclass(frozen=True)
class WorkloadSpec:
    """Which requests to replay: a lake trace (or the generator), a window, a sample and a rate scale."""

    trace: str = GENERATED
    """A canonical ``requests`` trace in the lake (e.g. azure_llm_2023_conv), or "generated"."""
    start_s: float = 0.0
    """Window start, seconds since the trace's first arrival; becomes time 0 of the replay."""
    duration_s: float | None = None
    """Window length in trace seconds (before rate scaling); None: to the end of the trace."""
    max_requests: int | None = None
    """Keep at most this many requests (the earliest, after sampling); None: all."""
    sample_fraction: float = 1.0
    """Keep each request with this probability (0 < f <= 1), decided by a hash of (seed, position)."""
    rate_scale: float = 1.0
    """Arrivals are compressed by this factor (arrival_s / rate_scale): 2 means twice the request rate."""
    seed: int = 0
    """Seed of the sample and of the generator (non-negative)."""
    num_requests: int = 1000
    """Generated only: requests to draw before the window, sample and max_requests apply."""
    rate_per_s: float = 5.0
    """Generated only: mean arrival rate, requests per second."""
    arrival: str = "poisson"
    """Generated only: inter-arrival process, "poisson" or "gamma"."""
    arrival_cv: float = 1.0
    """Generated only: coefficient of variation of the inter-arrival gaps (gamma; must be 1 for poisson)."""
    prompt_median_tokens: float = 1020.0
    """Generated only: median of the lognormal prompt length (Azure 2023 conv: 1,020)."""
    prompt_sigma: float = 0.9
    """Generated only: sigma (log-space standard deviation) of the prompt length."""
    prompt_max_tokens: int = 14_000
    """Generated only: prompt lengths are rounded and clamped to [1, this]."""
    output_median_tokens: float = 129.0
    """Generated only: median of the lognormal output length (Azure 2023 conv: 129)."""
    output_sigma: float = 1.0
    """Generated only: sigma (log-space standard deviation) of the output length."""
    output_max_tokens: int = 1000
    """Generated only: output lengths are rounded and clamped to [1, this]."""

    def __post_init__(self) -> None:
        def bad(what: str) -> ValueError:
            return ValueError(f"WorkloadSpec: {what}")

        if not self.trace or "/" in self.trace:
            raise bad(f"trace must be a trace name, got {self.trace!r}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise bad(f"start_s must be finite and >= 0, got {self.start_s}")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise bad(f"duration_s must be None or finite and > 0, got {self.duration_s}")
        if self.max_requests is not None and self.max_requests < 1:
            raise bad(f"max_requests must be None or >= 1, got {self.max_requests}")
        if not 0 < self.sample_fraction <= 1:
            raise bad(f"sample_fraction must be in (0, 1], got {self.sample_fraction}")
        if not (math.isfinite(self.rate_scale) and self.rate_scale > 0):
            raise bad(f"rate_scale must be finite and > 0, got {self.rate_scale}")
        if self.seed < 0:
            raise bad(f"seed must be >= 0, got {self.seed}")
        if self.num_requests < 1 or not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise bad(f"num_requests must be >= 1 and rate_per_s > 0, got {self.num_requests}, {self.rate_per_s}")
        if self.arrival not in ("poisson", "gamma"):
            raise bad(f"arrival must be 'poisson' or 'gamma', got {self.arrival!r}")
        if not (math.isfinite(self.arrival_cv) and self.arrival_cv > 0):
            raise bad(f"arrival_cv must be finite and > 0, got {self.arrival_cv}")
        if self.arrival == "poisson" and self.arrival_cv != 1.0:
            raise bad(f"a poisson process has arrival_cv 1; use arrival='gamma' for cv {self.arrival_cv}")
        for kind in ("prompt", "output"):
            median, sigma, top = (getattr(self, f"{kind}_{k}") for k in ("median_tokens", "sigma", "max_tokens"))
            if not (median >= 1 and 0 <= sigma < 10 and top >= 1):
                raise bad(f"{kind}: need median_tokens >= 1, 0 <= sigma < 10, max_tokens >= 1; got {median}, {sigma}, {top}")


@dataclass(frozen=True, eq=False)
class Workload:
    """The requests of one replay, one array entry per request, sorted by arrival."""

    trace: str
    """The trace name ("generated" for the generator)."""
    request_id: np.ndarray
    """object array of str: the trace's request id (its 0-based position upstream) or the generated index."""
    arrival_s: np.ndarray
    """float64, ascending: seconds since the window start, divided by rate_scale."""
    prompt_tokens: np.ndarray
    """int64 >= 1: prompt length."""
    output_tokens: np.ndarray
    """int64 >= 1: true output length (only the simulated executor may look at it)."""
    priority: np.ndarray
    """int64: the trace's priority, 0 where absent."""
    session_id: np.ndarray | None = None
    """object array of str/None: session or conversation id; None if the trace has none."""
    prefix_hashes: list[np.ndarray] | None = None
    """One int64 array per request of prefix block ids (Mooncake hash_ids); None if the trace has none."""
    hash_block_tokens: int = 0
    """Tokens covered by one prefix hash block (512 for Mooncake); 0 when prefix_hashes is None."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Requests in the window dropped as unservable: reason -> count."""

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        columns = {"request_id": self.request_id, "prompt_tokens": self.prompt_tokens,
                   "output_tokens": self.output_tokens, "priority": self.priority}
        if self.session_id is not None:
            columns["session_id"] = self.session_id
        if self.prefix_hashes is not None:
            columns["prefix_hashes"] = self.prefix_hashes
        wrong = {k: len(v) for k, v in columns.items() if len(v) != n}
        if wrong:
            raise ValueError(f"Workload: {n} arrivals but column lengths {wrong}")
        if n and (np.any(np.diff(self.arrival_s) < 0) or self.arrival_s[0] < 0):
            raise ValueError("Workload: arrival_s must be non-negative and ascending")

    def __len__(self) -> int:
        return len(self.arrival_s)


def load_workload(spec: WorkloadSpec, data_root: str | Path | None = None) -> Workload:
    """The workload ``spec`` selects: from the lake (``data_root``, else $TRACELAB_DATA, else ./data) or generated."""
    if spec.trace == GENERATED:
        return generate_workload(spec)
    table, source = _read_trace(spec.trace, data_root)
    hashes = table.column("prefix_block_hashes")
    has_hashes = hashes.null_count < len(hashes)
    if has_hashes and source not in HASH_BLOCK_TOKENS_BY_SOURCE:
        raise ValueError(f"trace {spec.trace!r} (source {source!r}) has prefix hashes of unknown block size")
    keep, arrival_s, excluded = _select(
        spec,
        position=table.column("request_id").to_numpy(),
        arrival_s=table.column("arrival_s").to_numpy(),
        prompt_tokens=table.column("prompt_tokens").to_numpy(),
        output_tokens=table.column("output_tokens").to_numpy(),
    )
    rows = table.take(pa.array(keep, pa.int64()))
    session = rows.column("session_id")
    return Workload(
        trace=spec.trace,
        request_id=pc.cast(rows.column("request_id"), pa.string()).to_numpy(zero_copy_only=False).astype(object),
        arrival_s=arrival_s,
        prompt_tokens=rows.column("prompt_tokens").to_numpy().astype(np.int64),
        output_tokens=rows.column("output_tokens").to_numpy().astype(np.int64),
        priority=pc.fill_null(rows.column("priority"), 0).to_numpy().astype(np.int64),
        session_id=session.to_numpy(zero_copy_only=False).astype(object) if session.null_count < len(session) else None,
        prefix_hashes=_split_lists(rows.column("prefix_block_hashes")) if has_hashes else None,
        hash_block_tokens=HASH_BLOCK_TOKENS_BY_SOURCE[source] if has_hashes else 0,
        excluded=excluded,
    )


def generate_workload(spec: WorkloadSpec) -> Workload:
    """A synthetic workload: gamma/Poisson arrivals at ``rate_per_s``, lognormal lengths clamped to [1, max].

    The first draw arrives at 0; window, sample, max_requests and rate_scale then apply as for a trace.
    """
    if spec.trace != GENERATED:
        raise ValueError(f"generate_workload needs trace={GENERATED!r}, got {spec.trace!r}")
    rng = np.random.default_rng(spec.seed)
    n = spec.num_requests
    if spec.arrival == "poisson":
        gaps_s = rng.exponential(1.0 / spec.rate_per_s, n)
    else:
        shape = 1.0 / spec.arrival_cv**2
        gaps_s = rng.gamma(shape, 1.0 / (spec.rate_per_s * shape), n)
    gaps_s[0] = 0.0
    arrival_s = np.cumsum(gaps_s)

    def lengths(median: float, sigma: float, top: int) -> np.ndarray:
        return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), 1, top).astype(np.int64)

    prompt = lengths(spec.prompt_median_tokens, spec.prompt_sigma, spec.prompt_max_tokens)
    output = lengths(spec.output_median_tokens, spec.output_sigma, spec.output_max_tokens)
    position = np.arange(n, dtype=np.int64)
    keep, shifted_s, excluded = _select(spec, position=position, arrival_s=arrival_s,
                                        prompt_tokens=prompt, output_tokens=output)
    return Workload(
        trace=GENERATED,
        request_id=np.array([str(i) for i in position[keep]], dtype=object),
        arrival_s=shifted_s,
        prompt_tokens=prompt[keep],
        output_tokens=output[keep],
        priority=np.zeros(len(keep), np.int64),
        excluded=excluded,
    )


def available_traces(data_root: str | Path | None = None) -> list[str]:
    """Names of the ``requests`` traces in the lake."""
    folder = data_paths(data_root).lake / REQUESTS.name
    if not folder.is_dir():
        return []
    return sorted(d.name.removeprefix("trace=") for d in folder.iterdir() if d.name.startswith("trace=") and any(d.glob("part-*.parquet")))


def _read_trace(trace: str, data_root: str | Path | None) -> tuple[pa.Table, str]:
    """The trace's rows in file order, and the ingest source that wrote them."""
    paths = data_paths(data_root)
    files = sorted((paths.lake / REQUESTS.name / f"trace={trace}").glob("part-*.parquet"))
    if not files:
        source = next((s for p, s in INGEST_SOURCE_HINTS.items() if trace.startswith(p)), None)
        how = f"`ingest run {source}`" if source else "`ingest run <source>` (`ingest list` shows the sources)"
        have = ", ".join(available_traces(paths.root)) or "none"
        raise TraceNotFoundError(f"trace {trace!r} is not in the lake at {paths.lake}; ingest it first with {how}; "
                                 f"available requests traces: {have}")
    parts, source = [], ""
    for file in files:
        meta = pq.read_schema(file).metadata or {}
        version = meta.get(b"tracelab.schema_version", b"").decode()
        if version != SCHEMA_VERSION:
            raise ValueError(f"{file}: schema version {version!r}, expected {SCHEMA_VERSION!r}; re-ingest the trace")
        source = meta.get(b"tracelab.source", b"").decode()
        parts.append(pq.read_table(file, columns=_COLUMNS))
    return pa.concat_tables(parts), source


def _uniform(position: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per trace position: splitmix64 of (seed key + position), stable across windows."""
    key = _splitmix64(np.array([seed], np.uint64))[0]
    with np.errstate(over="ignore"):
        bits = _splitmix64(position.astype(np.uint64) + key)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _select(spec: WorkloadSpec, *, position: np.ndarray, arrival_s: np.ndarray, prompt_tokens: np.ndarray,
            output_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Row indices kept (in replay order), their shifted arrivals, and the exclusion counts (module doc)."""
    order = np.argsort(arrival_s, kind="stable")  # rows come in trace order, so ties keep it
    t = arrival_s[order]
    in_window = t >= spec.start_s
    if spec.duration_s is not None:
        in_window &= t < spec.start_s + spec.duration_s
    order = order[in_window]
    bad_prompt = prompt_tokens[order] <= 0
    bad_output = ~bad_prompt & (output_tokens[order] <= 0)
    excluded = {k: int(v.sum()) for k, v in (("prompt_tokens<=0", bad_prompt), ("output_tokens<=0", bad_output)) if v.any()}
    order = order[~(bad_prompt | bad_output)]
    if spec.sample_fraction < 1:
        order = order[_uniform(position[order], spec.seed) < spec.sample_fraction]
    if spec.max_requests is not None:
        order = order[: spec.max_requests]
    return order, (arrival_s[order] - spec.start_s) / spec.rate_scale, excluded


def _split_lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A list<int64> column as one int64 array per row (a null row becomes an empty array)."""
    arr = column.combine_chunks()
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar([], arr.type))
    values = arr.flatten().to_numpy().astype(np.int64)
    offsets = arr.offsets.to_numpy()
    offsets = offsets - offsets[0]
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(arr))]
