"""The tracelab dashboard: ``tracelab dashboard [--data ROOT]``, or
``streamlit run dashboard/app.py -- --data ROOT``.

Multipage (``st.navigation``); every page is a thin script in ``pages/`` over :mod:`dashboard.data`,
:mod:`dashboard.results` and :mod:`dashboard.charts`.
"""

from pathlib import Path

import streamlit as st

from dashboard import ui

HERE = Path(__file__).resolve().parent
# (script, title, icon, url path) of each page; the first is the default. (A comment, not a docstring:
# Streamlit's magic would print a bare string on the page.)
PAGES = (
    ("pages/catalog.py", "Catalog", ":material/dataset:", "catalog"),
    ("pages/explorer.py", "Trace explorer", ":material/query_stats:", "explorer"),
    ("pages/characterization.py", "Characterization", ":material/insights:", "characterization"),
    ("pages/models.py", "Predictors", ":material/model_training:", "predictors"),
    ("pages/replay_runs.py", "Replay", ":material/replay:", "replay"),
)

st.set_page_config(page_title="tracelab", page_icon=":material/monitoring:", layout="wide")
pages = [st.Page(str(HERE / path), title=title, icon=icon, url_path=url, default=k == 0)
         for k, (path, title, icon, url) in enumerate(PAGES)]
ui.sidebar(ui.data_root())
st.navigation(pages).run()
