"""The registry of known sources: one module per upstream family, each exporting ``SOURCES``."""

from __future__ import annotations

import importlib
from functools import lru_cache

from ingest.sources.base import Registry, Source

SOURCE_MODULES = ("azure_llm", "mooncake", "itp", "helios", "philly", "philly_derived", "alibaba_pai",
                  "synthetic_jobs")
"""Modules under ``ingest.sources`` whose ``SOURCES`` tuples make up the default registry."""


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The default registry (built once; sources are immutable)."""
    reg = Registry()
    for module in SOURCE_MODULES:
        for source in importlib.import_module(f"ingest.sources.{module}").SOURCES:
            reg.register(source)
    return reg


def get_source(name: str) -> Source:
    """The registered source called ``name``."""
    return registry().get(name)
