"""Catalog: every ingested trace with its rows, time span, source and quarantined rows by reason."""

import streamlit as st

from dashboard import cached, ui

st.title("Catalog")
root = ui.data_root()
stamp = ui.require_catalog(root)
overview = cached.catalog_overview(root, stamp)
traces, quarantine = overview["traces"], overview["quarantine"]

c1, c2, c3 = st.columns(3)
c1.metric("traces", f"{traces.height:,}")
c2.metric("rows", f"{int(traces['rows_out'].sum()):,}")
c3.metric("quarantined rows", f"{int(traces['rows_quarantined'].sum()):,}")
st.dataframe(traces, hide_index=True, width="stretch",
             column_config={"span_days": st.column_config.NumberColumn("span (days)", format="%.2f"),
                            "start": st.column_config.TextColumn("start (UTC)"),
                            "rows_out": st.column_config.NumberColumn("rows out", format="localized"),
                            "rows_quarantined": st.column_config.NumberColumn("quarantined", format="localized")})

st.subheader("Quarantined rows by reason")
if quarantine.is_empty():
    st.success("No row was quarantined: every upstream row made it into the lake.")
else:
    st.dataframe(quarantine, hide_index=True, width="stretch")

st.subheader("Ingest report")
trace = st.selectbox("trace", traces["trace"].to_list(), key="catalog_trace")
with st.expander(f"ingest info {trace}", expanded=False):
    st.json(cached.ingest_info(root, stamp, trace), expanded=1)
