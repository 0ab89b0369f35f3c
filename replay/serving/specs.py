"""Hardware and model shapes for the serving simulator, and the memory arithmetic built on them.

`GpuSpec` and `ModelConfig` are plain frozen configs (no I/O); `gpu_spec(name)` / `model_config(name)`
read the shipped tables `replay/serving/data/{gpus,models}.json` (names case-insensitive, with aliases).
The helpers below compute parameter counts, per-GPU weight and KV-cache bytes under tensor parallelism
(Megatron-style sharding: every linear layer and the vocabulary split `tp` ways; KV heads split, and
replicated when `tp` exceeds them, as vLLM does) and the number of KV blocks that fit on one GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources

DEFAULT_ACTIVATION_RESERVE_BYTES = 2 * 2**30
"""Memory kept free for activations, CUDA graphs and the allocator (2 GiB; vLLM profiles this instead)."""


def _check_positive(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not value > 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One accelerator's peak rates and memory (datasheet numbers, per GPU)."""

    name: str
    """Canonical name, e.g. "H100-SXM"."""
    peak_bf16_flop_per_s: float
    """Dense (no sparsity) BF16 tensor-core peak, FLOP/s."""
    hbm_bandwidth_bytes_per_s: float
    """Device-memory (HBM) bandwidth, bytes/s."""
    memory_bytes: int
    """Device memory the driver reports, bytes."""
    pcie_bandwidth_bytes_per_s: float
    """Host link bandwidth per direction (used for KV swap), bytes/s."""
    nvlink_bandwidth_bytes_per_s: float
    """GPU-GPU link bandwidth per direction (tensor-parallel all-reduce), bytes/s."""
    idle_power_w: float | None = None
    """Board power when idle, watts (optional)."""
    peak_power_w: float | None = None
    """Board power limit (TDP), watts (optional)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("GpuSpec.name must be non-empty")
        _check_positive(self, ("peak_bf16_flop_per_s", "hbm_bandwidth_bytes_per_s", "memory_bytes",
                               "pcie_bandwidth_bytes_per_s", "nvlink_bandwidth_bytes_per_s", "peak_power_w"))
        if self.idle_power_w is not None and self.idle_power_w < 0:
            raise ValueError(f"GpuSpec.idle_power_w must be >= 0, got {self.idle_power_w!r}")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Shape of a decoder-only (Llama-style) transformer."""

    name: str
    """Canonical name, e.g. "Llama-2-7B"."""
    num_layers: int
    """Transformer blocks."""
    hidden_size: int
    """Residual-stream width (embedding dimension)."""
    num_heads: int
    """Query heads per layer."""
    num_kv_heads: int
    """Key/value heads per layer (fewer than num_heads under grouped-query attention)."""
    head_dim: int
    """Width of one attention head."""
    ffn_size: int
    """MLP intermediate width."""
    vocab_size: int
    """Vocabulary size (embedding and LM-head rows)."""
    dtype_bytes: int = 2
    """Bytes per weight and per KV element (2 for bf16/fp16)."""
    max_model_len: int = 4096
    """Longest sequence (prompt + output) the model serves, tokens."""
    gated_mlp: bool = True
    """True for SwiGLU-style MLPs (gate, up and down projections), False for a two-matrix MLP."""
    tie_word_embeddings: bool = False
    """True when the LM head reuses the embedding matrix (counted once in parameters)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ModelConfig.name must be non-empty")
        _check_positive(self, ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                               "ffn_size", "vocab_size", "max_model_len"))
        if self.dtype_bytes not in (1, 2, 4):
            raise ValueError(f"ModelConfig.dtype_bytes must be 1, 2 or 4, got {self.dtype_bytes!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")


# -- loading the shipped tables ---------------------------------------------------------------------

class UnknownSpecError(KeyError):
    """A GPU or model name that the shipped tables do not know (a KeyError whose message lists the known names)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _load(table: str, key: str) -> list[dict]:
    text = resources.files("replay.serving").joinpath("data", table).read_text(encoding="utf-8")
    return json.loads(text)[key]


def _lookup(entries: list[dict], name: str, kind: str) -> dict:
    wanted = _normalize(name)
    for entry in entries:
        names = [entry["name"], *entry.get("aliases", [])]
        if wanted in {_normalize(n) for n in names}:
            return entry
    known = ", ".join(f"{e['name']} (aliases: {', '.join(e.get('aliases', []))})" for e in entries)
    raise UnknownSpecError(f"unknown {kind} {name!r}; known: {known}")


def _build(cls: type, entry: dict):
    allowed = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in entry.items() if k in allowed})


def known_gpus() -> list[str]:
    """Canonical names of the shipped GPUs."""
    return [e["name"] for e in _load("gpus.json", "gpus")]


def known_models() -> list[str]:
    """Canonical names of the shipped model shapes."""
    return [e["name"] for e in _load("models.json", "models")]


def gpu_spec(name: str) -> GpuSpec:
    """The shipped `GpuSpec` called `name` (case-insensitive; aliases such as "h100" accepted).

    Raises UnknownSpecError (a KeyError) listing the known names and aliases when there is none.
    """
    entry = _lookup(_load("gpus.json", "gpus"), name, "GPU")
    return _build(GpuSpec, {**entry, "memory_bytes": int(entry["memory_bytes"])})


def model_config(name: str) -> ModelConfig:
    """The shipped `ModelConfig` called `name` (case-insensitive; aliases such as "llama-3-8b" accepted).

    Raises UnknownSpecError (a KeyError) listing the known names and aliases when there is none.
    """
    return _build(ModelConfig, _lookup(_load("models.json", "models"), name, "model"))


# -- parameter and memory arithmetic ------------------------------------------------------------------

def check_tensor_parallel(model: ModelConfig, tp: int) -> None:
    """Raise ValueError unless `tp` splits the model's heads evenly (vLLM's rule)."""
    if tp < 1:
        raise ValueError(f"tensor parallel degree must be >= 1, got {tp}")
    if model.num_heads % tp:
        raise ValueError(f"{model.name}: num_heads {model.num_heads} is not divisible by tp={tp}")
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise ValueError(f"{model.name}: num_kv_heads {model.num_kv_heads} and tp={tp} do not divide one another")


def layer_linear_param_count(model: ModelConfig) -> int:
    """Matmul weights of one transformer block (Q, K, V, O projections and the MLP)."""
    q_o = 2 * model.hidden_size * model.num_heads * model.head_dim
    k_v = 2 * model.hidden_size * model.num_kv_heads * model.head_dim
    mlp = (3 if model.gated_mlp else 2) * model.hidden_size * model.ffn_size
    return q_o + k_v + mlp


def param_count(model: ModelConfig) -> int:
    """All parameters: blocks (matmuls and two RMSNorms each), final norm, embedding and LM head."""
    blocks = model.num_layers * (layer_linear_param_count(model) + 2 * model.hidden_size)
    embeddings = (1 if model.tie_word_embeddings else 2) * model.vocab_size * model.hidden_size
    return blocks + model.hidden_size + embeddings


def weight_bytes_per_gpu(model: ModelConfig, tp: int = 1) -> int:
    """Weight bytes each of `tp` GPUs holds (everything sharded `tp` ways; the replicated norms are negligible)."""
    check_tensor_parallel(model, tp)
    return -(-param_count(model) * model.dtype_bytes // tp)


def kv_heads_per_gpu(model: ModelConfig, tp: int = 1) -> int:
    """KV heads stored per GPU: split `tp` ways, one replicated head per GPU when tp > num_kv_heads."""
    check_tensor_parallel(model, tp)
    return max(1, model.num_kv_heads // tp)


def kv_bytes_per_token(model: ModelConfig, tp: int = 1) -> int:
    """KV-cache bytes one token occupies on each GPU (K and V, all layers)."""
    return 2 * model.num_layers * kv_heads_per_gpu(model, tp) * model.head_dim * model.dtype_bytes


def kv_block_bytes(model: ModelConfig, block_size: int, tp: int = 1) -> int:
    """Bytes of one KV block of `block_size` tokens on each GPU."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return block_size * kv_bytes_per_token(model, tp)


def kv_capacity_blocks(model: ModelConfig, gpu: GpuSpec, tp: int = 1, block_size: int = 16,
                       gpu_memory_utilization: float = 0.9,
                       activation_reserve_bytes: int = DEFAULT_ACTIVATION_RESERVE_BYTES) -> int:
    """KV blocks that fit per GPU: (memory * utilization - weights/tp - activation reserve) // block bytes.

    Raises ValueError naming the shortfall when the weights and reserve leave no room for one block.
    """
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if activation_reserve_bytes < 0:
        raise ValueError(f"activation_reserve_bytes must be >= 0, got {activation_reserve_bytes}")
    budget_bytes = int(gpu.memory_bytes * gpu_memory_utilization)
    weights_bytes = weight_bytes_per_gpu(model, tp)
    free_bytes = budget_bytes - weights_bytes - activation_reserve_bytes
    block_bytes = kv_block_bytes(model, block_size, tp)
    if free_bytes < block_bytes:
        raise ValueError(
            f"{model.name} does not fit on {gpu.name} with tp={tp}: {weights_bytes / 1e9:.1f} GB of weights per GPU "
            f"+ {activation_reserve_bytes / 1e9:.1f} GB activation reserve vs {budget_bytes / 1e9:.1f} GB usable "
            f"({gpu_memory_utilization:.0%} of {gpu.memory_bytes / 1e9:.1f} GB); use a larger tp or GPU")
    return free_bytes // block_bytes
