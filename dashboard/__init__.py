"""Streamlit dashboard: thin pages (``dashboard/pages``) over pure data and chart functions.

* ``data``: catalog and trace loaders (DuckDB does the work; small frames come back);
* ``results``: trained models (``data/models``) and replay runs (``data/results``);
* ``charts``: plotly figure builders (reusing ``analysis.report``), every figure capped in points;
* ``cached``: the same loaders behind ``st.cache_data``, keyed by data root and a stamp of the files;
* ``ui``: page helpers (data root, empty-lake messages, number tables).

Start it with ``tracelab dashboard [--data ROOT]``.
"""
