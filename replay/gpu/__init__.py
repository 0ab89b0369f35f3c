"""Real-GPU serving: the profiler, wall-clock replays through the TorchExecutor, and the fidelity check.

Everything here imports torch lazily (inside functions), so `replay` stays importable without it.
"""

import os
from pathlib import Path

PROFILES_ENV = "TRACELAB_GPU_PROFILES"
"""Environment variable naming the folder of measured GPU profiles (default: data/profiles in the repository)."""


def profiles_root() -> Path:
    """Where measured GPU profiles live: $TRACELAB_GPU_PROFILES, else data/profiles beside the packages."""
    env = os.environ.get(PROFILES_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "profiles"
