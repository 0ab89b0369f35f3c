"""Replay harness, LLM serving core and cluster scheduler core (issues 5 and 7; not built yet)."""
