"""Characterization of ingested traces, workload models and replay metrics (issue 3; not built yet)."""
