"""``tracelab quickstart``: the first thing a new user runs.

It ingests the Azure 2023 LLM trace (the offline copy if one is configured, else downloaded from the
official location, else a generated workload, and it says which loudly), plus every other trace that
has an offline copy; writes the characterization report of the main trace; trains the response-length
predictor on the earlier 70% of it (evaluated on the later 30%, model exported under data/models/);
and replays that held-out part under FCFS, SJF on the model's predictions and the oracle policies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import IngestError
from ingest.paths import DataPaths, traces_dir
from ingest.pipeline import RunResult, run_source
from ingest.sources import registry

MAIN_SOURCE = "azure_llm_2023"
GENERATED_REQUESTS = 20_000
"""Requests the quickstart generates when it can get no real trace."""

Say = Callable[[str], None]


@dataclass
class QuickstartResult:
    """What the quickstart did."""

    main_data: str
    """'offline copy', 'downloaded' or 'GENERATED'."""
    runs: list[RunResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    replays: list[tuple[str, dict, Path]] = field(default_factory=list)
    """(policy label, run summary, results folder) for the policy comparison on the main trace."""
    replay_trace: str | None = None
    report: Path | None = None
    """The characterization report (HTML) of the main trace."""
    model: Path | None = None
    """The response-length model folder (card.json, skops and ONNX heads, evaluation.html)."""
    model_metrics: dict = field(default_factory=dict)
    """Held-out metrics of the model and the baselines."""
    replay_start_s: float = 0.0
    """Where the replayed window starts (trace seconds): the first held-out arrival."""


REPLAY_RATE_SCALE = 3.0
"""Arrival-rate multiplier for the quickstart replay of the held-out last 30% of the Azure conv trace
(one simulated H100, Llama-2-7B). Measured: at x2 that quieter part of the hour queues nothing and every
policy gives the same latencies; at x3 requests queue (FCFS mean E2E ~38 s, SLO attainment ~12%), so
ordering matters: SJF on predicted lengths ~28 s / 62%, SJF on true lengths ~24 s / 64%."""
REPLAY_POLICIES = (("fcfs", None, False), ("sjf (predicted)", "sjf", False), ("sjf (oracle)", "sjf", True),
                   ("srpt (oracle)", "srpt", True))
"""(label, queue policy, oracle lengths?): a policy with oracle False and a queue policy uses the model."""


def _main_source(paths: DataPaths, say: Say, no_download: bool) -> tuple[str, Path | None, str]:
    """(source, input path, how the data was obtained)."""
    offline = traces_dir()
    if offline is not None and (offline / "azure_llm_2023").is_dir():
        return MAIN_SOURCE, offline / "azure_llm_2023", "offline copy"
    from ingest.download import fetch_file

    src = registry().get(MAIN_SOURCE)
    if no_download:
        say("no offline copy of the Azure 2023 trace, and downloads are off (--offline)")
    else:
        try:
            for remote in src.downloads:
                say(f"downloading {remote.url}")
                fetch_file(remote, paths.raw / MAIN_SOURCE, timeout_s=15)
            return MAIN_SOURCE, paths.raw / MAIN_SOURCE, "downloaded"
        except IngestError as exc:
            say(f"could not get the real Azure 2023 trace ({exc})")
    from analysis.workload_model import BUILTIN, builtin_model
    from ingest.synth import write_synthetic_requests

    say(f"generating {GENERATED_REQUESTS:,} requests from tracelab's built-in workload model (fitted on {BUILTIN}: "
        "per-minute rates, burstiness, binned lengths)")
    w = builtin_model().generate(num_requests=GENERATED_REQUESTS, seed=0)
    folder = write_synthetic_requests(paths.raw / "synthetic_llm", w.arrival_s, w.prompt_tokens, w.output_tokens).parent
    return "synthetic_llm", folder, "GENERATED"


def quickstart(paths: DataPaths, *, all_offline: bool = True, no_download: bool = False, say: Say = print,
               replay: bool = True) -> QuickstartResult:
    """Ingest the main trace (real if possible) and, optionally, every other offline trace; then replay it."""
    source, path, how = _main_source(paths, say, no_download)
    if how == "GENERATED":
        say("!!! NO REAL TRACE AVAILABLE: using a GENERATED workload (trace 'synthetic_llm'), not real data !!!")
    result = QuickstartResult(how)
    say(f"ingesting {source} ({how})")
    result.runs.append(run_source(source, path, data_root=paths.root, verify=how != "GENERATED"))
    offline = traces_dir()
    if all_offline and offline is not None:
        for src in registry():
            if src.name in (MAIN_SOURCE, "synthetic_llm") or not (offline / src.local_dir).is_dir():
                continue
            say(f"ingesting {src.name} (offline copy)")
            try:
                result.runs.append(run_source(src.name, offline / src.local_dir, data_root=paths.root))
            except IngestError as exc:
                result.skipped[src.name] = str(exc)
    if replay:
        _characterize_main(paths, result, say)
        _train_main(paths, result, say)
        _replay_main(paths, result, say)
    return result


def _main_requests_trace(result: QuickstartResult) -> str | None:
    traces = [t.trace for t in result.runs[0].tables if t.table == "requests"]
    return next((t for t in traces if t.endswith("_conv")), traces[0] if traces else None)


def _characterize_main(paths: DataPaths, result: QuickstartResult, say: Say) -> None:
    """The characterization report of the main trace (HTML + JSON under data/reports)."""
    from analysis.build import report_sections
    from analysis.catalog import open_catalog
    from analysis.report import render_html, write_report

    trace = _main_requests_trace(result)
    if trace is None:
        return
    say(f"characterizing {trace}")
    con = open_catalog(paths.root)
    try:
        sections, numbers = report_sections(con, trace)
    finally:
        con.close()
    result.report, _ = write_report(paths.root / "reports", trace, render_html(f"tracelab: {trace}", sections,
                                                                               {"traces": trace}), numbers)


def _train_main(paths: DataPaths, result: QuickstartResult, say: Say) -> None:
    """Train the response-length predictor on the earlier 70% of the main trace, export it, report it."""
    from analysis.catalog import open_catalog
    from predictors.export import export_bundle
    from predictors.report import write_evaluation
    from predictors.train import TrainConfig, evaluation_rows, train

    trace = _main_requests_trace(result)
    if trace is None:
        return
    con = open_catalog(paths.root)
    try:
        say(f"training the response-length predictor on the earlier 70% of {trace}")
        bundle, report = train(con, TrainConfig("response_length", (trace,)))
        split = con.execute("SELECT arrival_s FROM requests WHERE trace = ? ORDER BY arrival_s, request_id "
                            "LIMIT 1 OFFSET ?", [trace, report["rows"]["train"]]).fetchall()
    finally:
        con.close()
    result.model = paths.root / "models" / f"response_length-{trace}"
    export_bundle(bundle, result.model, check_rows=evaluation_rows(report))
    write_evaluation(report, result.model)
    result.model_metrics = report["models"]
    result.replay_start_s = float(split[0][0]) if split else 0.0


def _replay_main(paths: DataPaths, result: QuickstartResult, say: Say) -> None:
    """Replay the held-out part of the main requests trace under a few queue policies (simulated H100,
    Llama-2-7B): the model never saw these requests."""
    from replay.harness import ServeConfig, run_serve
    from replay.sources import WorkloadSpec

    trace = _main_requests_trace(result)
    if trace is None:
        return
    result.replay_trace = trace
    for label, policy, oracle in REPLAY_POLICIES:
        if policy and not oracle and result.model is None:
            continue
        predictor = "oracle" if oracle else (str(result.model) if policy else None)
        config = ServeConfig(workload=WorkloadSpec(trace=trace, start_s=result.replay_start_s,
                                                   rate_scale=REPLAY_RATE_SCALE),
                             policy=policy or "fcfs", predictor=predictor, oracle_lengths=oracle)
        say(f"replaying {trace} from {result.replay_start_s:,.0f} s x{REPLAY_RATE_SCALE:g} under {label}")
        run = run_serve(config, data_root=paths.root)
        result.replays.append((label, run.summary, run.path))
