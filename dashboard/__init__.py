"""Streamlit dashboard (issue 8; not built yet)."""
