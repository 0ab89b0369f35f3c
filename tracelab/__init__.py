"""The ``tracelab`` umbrella command: ``tracelab ingest ...`` and ``tracelab quickstart``."""
