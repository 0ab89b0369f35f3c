"""Ingest public GPU-cluster and LLM-serving traces into canonical Parquet and a DuckDB catalog.

The entry points are the ``ingest`` CLI (:mod:`ingest.cli`) and :func:`ingest.pipeline.run_source`.
"""
