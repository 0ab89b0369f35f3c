"""``tracelab replay profile`` and ``tracelab replay validate``: the real-GPU commands.

Both need PyTorch with CUDA (and Triton for the attention kernel); without a GPU they stop with exit code 2 and
say so. Registered on the ``replay`` app by :func:`register` (import ``replay.cli`` first).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from replay.cli import ReplayUsageError, _print_wide, build_config, err, out, user_errors, with_base_options
from replay.serving.specs import gpu_spec, model_config

G = "GPU"


def _need_cuda(device: str) -> None:
    try:
        import torch
    except ImportError:
        raise ReplayUsageError("PyTorch is not installed: pip install torch (a CUDA build) to use the GPU executor") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReplayUsageError("no CUDA device: the GPU executor needs one (torch.cuda.is_available() is False)")


def _gpu_name_guess() -> str:
    import torch

    name = torch.cuda.get_device_name().lower()
    for key in ("h200", "h100", "a100", "l40s", "a10g", "l4"):
        if key in name:
            return key
    raise ReplayUsageError(f"cannot tell which shipped GPU spec {name!r} is: give --gpu")


def profile(
    model: Annotated[str, typer.Option(help="Model shape to build with random weights.")] = "llama-3-8b",
    gpu: Annotated[Optional[str], typer.Option(help="GPU spec name for the file name (default: guessed from the device).")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Profile file (default: data/profiles/<gpu>__<model>.parquet).")] = None,
    block_size: Annotated[int, typer.Option("--block-size", help="Tokens per KV block.")] = 16,
    max_model_len: Annotated[int, typer.Option("--max-model-len", help="Longest sequence profiled.")] = 8192,
    repeats: Annotated[int, typer.Option(help="Timed repetitions per point.")] = 20,
    weights: Annotated[Optional[Path], typer.Option(help="Local safetensors checkpoint (default: random weights).")] = None,
    device: Annotated[str, typer.Option(help="Torch device.", rich_help_panel=G)] = "cuda",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata (with the efficiency table) as JSON.")] = False,
) -> None:
    """Measure step costs of the GPU executor over a grid and write a profile for the 'profile' cost model."""
    from replay.gpu.profiler import ProfileGrid, default_profile_path, profile_model, write_profile

    _need_cuda(device)
    with user_errors():
        m = model_config(model)
        m = replace(m, max_model_len=min(m.max_model_len, max_model_len))
        spec = gpu_spec(gpu or _gpu_name_guess())
    cols, meta = profile_model(m, device=device, block_size=block_size, grid=ProfileGrid(repeats=repeats),
                               weights_path=str(weights) if weights else None, log=lambda s: err.print(f"[dim]{s}[/]"))
    meta["gpu_spec"] = spec.name
    path = write_profile(out_path or default_profile_path(m, spec.name), cols, meta)
    if as_json:
        print(json.dumps({"path": str(path), **meta}, indent=2, sort_keys=True))
        return
    out.print(f"profile of {m.name} on {meta['gpu_name']}: {len(cols['kind'])} points -> {path}")
    table = Table(title="efficiency against the hardware floor (measured ceilings)")
    for c in ("step", "shape", "device ms", "wall ms", "floor ms", "device / floor"):
        table.add_column(c, justify="right")
    for r in meta["efficiency"]:
        shape = f"B={r['batch_size']} kv={r['kv_tokens']}" if r["kind"] == "decode" else f"chunk={r['chunk_tokens']}"
        table.add_row(r["kind"], shape, f"{r['device_s'] * 1e3:.3f}", f"{r['wall_s'] * 1e3:.3f}",
                      f"{r['floor_s'] * 1e3:.3f}", f"{r['device_over_floor']:.2f}")
    _print_wide(table)


@with_base_options(exclude=("cost_model", "replicas", "tp", "router", "predictor", "oracle_lengths"))
def validate(
    opts: dict,
    profile_path: Annotated[Optional[Path], typer.Option("--profile", help="GPU profile for the table model (default: data/profiles/<gpu>__<model>.parquet).", rich_help_panel=G)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Local safetensors checkpoint (default: random weights).", rich_help_panel=G)] = None,
    device: Annotated[str, typer.Option(help="Torch device.", rich_help_panel=G)] = "cuda",
    report: Annotated[Optional[Path], typer.Option(help="Also write the report as JSON here.", rich_help_panel=G)] = None,
    max_model_len: Annotated[Optional[int], typer.Option("--max-model-len", help="Longest sequence served (default: the model's).", rich_help_panel=G)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay a trace window on the GPU and in the simulator (profile table and roofline); report relative errors."""
    from replay.gpu.profiler import default_profile_path
    from replay.gpu.validate import report_rows, validate as run_validate
    from replay.sources import load_workload

    _need_cuda(device)
    with user_errors():
        config = build_config({**opts, "cost_model": "roofline", "replicas": 1, "tp": 1, "router": "round_robin",
                               "predictor": None, "oracle_lengths": False}, max_model_len=max_model_len)
        path = profile_path or default_profile_path(model_config(config.model), gpu_spec(config.gpu).name)
        if not Path(path).is_file():
            raise ValueError(f"{path}: no GPU profile; make one with `tracelab replay profile --model {config.model}`")
        workload = load_workload(config.workload, opts["data"])
        rep = run_validate(config, workload, profile=str(path), device=device,
                           weights_path=str(weights) if weights else None)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(rep, indent=2, sort_keys=True))
    if as_json:
        print(json.dumps(rep, indent=2, sort_keys=True))
        return
    table = Table(title=f"fidelity: {rep['trace']} ({rep['num_requests']} requests), {rep['model']}, "
                        f"{rep['num_kv_blocks']} KV blocks")
    for c in ("metric", "real GPU", "table sim", "table error", "roofline sim", "roofline error"):
        table.add_column(c, justify="right")
    for name, real, tab, tab_e, roof, roof_e in report_rows(rep):
        table.add_row(name, f"{real:.4g}", f"{tab:.4g}", f"{tab_e:+.1%}", f"{roof:.4g}", f"{roof_e:+.1%}")
    _print_wide(table)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
    app.command("validate")(validate)
