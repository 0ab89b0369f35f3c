"""Characterization: the report's key numbers and figures for one trace, and two traces side by side."""

import streamlit as st

from dashboard import cached, ui

st.title("Characterization")
root, stamp, kinds = ui.traces_or_stop()

view = st.radio("view", ["One trace", "Compare two traces"], horizontal=True, key="char_view",
                label_visibility="collapsed")
if view == "One trace":
    trace = st.selectbox("trace", list(kinds), key="char_trace", format_func=lambda t: f"{t} ({kinds[t]})")
    with st.spinner(f"characterizing {trace} (cached after the first time)"):
        try:
            sections, _ = cached.characterization(root, stamp, trace)
        except (ValueError, LookupError) as exc:
            st.warning(f"{trace}: {exc}")
            sections = []
    ui.show_sections(sections, key="one")

else:
    first = st.selectbox("first trace", list(kinds), key="cmp_first")
    others = [t for t, k in kinds.items() if k == kinds[first] and t != first]
    if not others:
        st.info(f"Only one {kinds[first]} trace is ingested; ingest another to compare "
                f"(`{ui.INGEST}`).")
    else:
        second = st.selectbox("second trace", others, key="cmp_second")
        with st.spinner("comparing (cached after the first time)"):
            try:
                sections, _ = cached.comparison(root, stamp, (first, second))
            except (ValueError, LookupError) as exc:
                st.warning(str(exc))
                sections = []
        ui.show_sections(sections, key="cmp")
