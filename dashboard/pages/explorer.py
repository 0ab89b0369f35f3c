"""Trace explorer: one trace, a time window, filters; arrival rate and length or duration distributions."""

import streamlit as st

from dashboard import cached, charts, data, ui
from dashboard.data import JobFilter

st.title("Trace explorer")
root, stamp, kinds = ui.traces_or_stop()
trace = st.selectbox("trace", list(kinds), key="explorer_trace", format_func=lambda t: f"{t} ({kinds[t]})")
kind = kinds[trace]
lo, hi, n = cached.trace_span(root, stamp, trace, kind)
span_h = max(round((hi - lo) / 3600, 3), 0.001)
start_h, end_h = st.slider("window (hours since the trace's first arrival)", 0.0, span_h, (0.0, span_h),
                           key="explorer_window")
window = data.window_from_hours(lo, hi, start_h, end_h, span_h)

jobs = None
if kind == "jobs":
    opts = cached.job_options(root, stamp, trace)
    c1, c2, c3, c4 = st.columns(4)
    vcs = c1.multiselect("VC", opts["vcs"], key="explorer_vcs", placeholder="all VCs")
    users = c2.multiselect("user", opts["users"], key="explorer_users", placeholder="all users")
    statuses = c3.multiselect("status", opts["statuses"], key="explorer_status", placeholder="all statuses")
    g_lo, g_hi = opts["gpus"]
    gpus = c4.slider("GPUs", g_lo, max(g_hi, g_lo + 1), (g_lo, max(g_hi, g_lo + 1)), key="explorer_gpus")
    jobs = JobFilter(tuple(vcs), tuple(users), gpus[0], gpus[1], tuple(statuses))

summary = cached.window_summary(root, stamp, trace, kind, window, jobs)
cols = st.columns(len(summary))
for col, (key, value) in zip(cols, summary.items()):
    col.metric(key.replace("_", " "), ui.fmt(value))
if not summary["rows"]:
    st.warning("No rows in this window with these filters.")
    st.stop()

rate = cached.arrival_series(root, stamp, trace, kind, window, jobs)
st.plotly_chart(charts.series(rate, "time_s", {"arrivals/s": "per_s"}, f"{trace}: arrival rate",
                              "seconds since trace start", "arrivals per second"), width="stretch", key="rate")
left, right = st.columns(2)
if kind == "requests":
    curves = {c: charts.cdf_of(cached.value_cdf(root, stamp, trace, kind, c, window, None))
              for c in ("prompt_tokens", "output_tokens")}
    left.plotly_chart(charts.cdfs({"prompt": curves["prompt_tokens"]}, "prompt tokens", "tokens", log_x=True),
                      width="stretch", key="prompt")
    right.plotly_chart(charts.cdfs({"output": curves["output_tokens"]}, "output tokens", "tokens", log_x=True),
                       width="stretch", key="output")
else:
    run = charts.cdf_of(cached.value_cdf(root, stamp, trace, kind, "run_s", window, jobs))
    queue = charts.cdf_of(cached.value_cdf(root, stamp, trace, kind, "queue_s", window, jobs))
    left.plotly_chart(charts.cdfs({"run time": run, "queueing delay": queue}, "job durations", "seconds", log_x=True),
                      width="stretch", key="durations")
    parts = cached.job_breakdown(root, stamp, trace, window, jobs)
    right.plotly_chart(charts.bars(["n/a" if g is None else f"{g:g}" for g in parts["gpus"]["num_gpus"].to_list()],
                                   {"jobs": parts["gpus"]["jobs"].to_list()}, "jobs by GPU count", "jobs"),
                       width="stretch", key="gpus")
    st.dataframe(parts["status"], hide_index=True, width="stretch")
