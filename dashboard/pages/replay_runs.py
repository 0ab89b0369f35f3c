"""Replay: finished serving, cluster and fleet runs side by side, and a form to launch a short serving replay."""

import streamlit as st

from dashboard import cached, charts, launch, results, ui

st.title("Replay")
root = ui.data_root()
runs_dir = results.results_dir(root)
serve_stamp = results.stamp(runs_dir, "*/summary.json")
cluster_stamp = results.stamp(runs_dir / results.CLUSTER_SUBDIR, "*/summary.json")
fleet_stamp = results.stamp(runs_dir / results.FLEET_SUBDIR, "*/summary.json")
serving, cluster, fleet = st.tabs(["Serving runs", "Cluster runs", "Fleet runs"])


def _launch_form() -> None:
    stamp = ui.catalog_stamp(root)
    kinds = cached.explorable(root, stamp) if stamp is not None else {}
    traces = [t for t, k in kinds.items() if k == "requests"]
    with st.expander("Launch a short serving replay", expanded=False):
        if not traces:
            st.caption(f"No request trace in the catalog: `{ui.INGEST}`")
            return
        policies = launch.policies()
        with st.form("launch"):
            c1, c2, c3 = st.columns(3)
            trace = c1.selectbox("trace", traces, key="launch_trace")
            policy = c2.selectbox("policy", list(policies), key="launch_policy",
                                  format_func=lambda p: f"{p} (oracle lengths)" if policies[p] else p)
            rate = c3.number_input("rate scale", 0.1, 50.0, 1.0, 0.5, key="launch_rate")
            c4, c5, c6 = st.columns(3)
            start = c4.number_input("window start (s)", 0.0, value=0.0, step=60.0, key="launch_start")
            duration = c5.number_input("window length (s)", 1.0, 7200.0, 300.0, 60.0, key="launch_duration")
            cap = c6.number_input("max requests", 1, launch.MAX_REQUESTS, 1000, 100, key="launch_cap")
            go = st.form_submit_button("run replay", key="launch_go")
        if go:
            try:
                config = launch.serve_config(trace, policy, rate, start, duration, int(cap))
                bar, state = st.progress(0.0, "replaying"), {"total": 1, "done": 0}

                def done(n: int) -> None:
                    state["done"] += n
                    bar.progress(min(state["done"] / state["total"], 1.0), f"{state['done']:,} requests done")

                with st.spinner("replaying (simulated H100, Llama-2-7B)"):
                    result = launch.launch(root, config, on_total=lambda n: state.update(total=max(n, 1)), on_done=done)
                st.success(f"run {result.run_id}: {result.summary['num_finished']:,} requests finished, "
                           f"TTFT p50 {ui.fmt(result.summary.get('ttft_p50_s'))} s → {result.path}")
            except (ValueError, FileNotFoundError) as exc:
                st.error(f"could not run: {exc}")


def _pick_runs(kind: str, stamp: tuple, folder, hint: str) -> tuple:
    """(runs, label -> path, picked labels) of one kind, after a multiselect (newest three by default) and
    their table; with no run, a line naming ``hint`` (the command to make one) and (None, {}, [])."""
    runs = cached.list_runs(root, stamp, kind)
    if runs.is_empty():
        st.info(f"No {'serving' if kind == 'serve' else kind} run under `{folder}` yet. Run {hint}.")
        return None, {}, []
    labels = dict(zip(runs["label"].to_list(), runs["path"].to_list()))
    picked = st.multiselect("runs", list(labels), default=list(labels)[:3], key=f"{kind}_runs")
    st.dataframe(runs.filter(runs["label"].is_in(picked)).drop("path"), hide_index=True, width="stretch")
    return runs, labels, picked


with serving:
    _launch_form()
    runs, labels, picked = _pick_runs("serve", serve_stamp, runs_dir, f"`{ui.SERVE}` (or use the form above)")
    if picked:
        c = st.columns(3)
        for col, (column, title) in zip(c, (("ttft_s", "TTFT"), ("tbt_p99_s", "per-request p99 TBT"),
                                             ("e2e_s", "E2E latency"))):
            curves = {lab: cached.run_cdf(labels[lab], serve_stamp, "requests", column, "status = 'finished'")
                      for lab in picked}
            col.plotly_chart(charts.cdfs(curves, title, "seconds", log_x=True), width="stretch", key=f"cdf-{column}")
        frames = {lab: cached.serve_series(labels[lab], serve_stamp) for lab in picked}
        c = st.columns(2)
        c[0].plotly_chart(charts.overlay(frames, "time_s", "tokens_per_s", "throughput: tokens computed per second",
                                         "replay seconds", "tokens/s"), width="stretch", key="tput")
        c[1].plotly_chart(charts.overlay(frames, "time_s", "finished_per_s", "finished requests per second",
                                         "replay seconds", "requests/s"), width="stretch", key="done")
        c = st.columns(2)
        c[0].plotly_chart(charts.overlay(frames, "time_s", "kv_use", "KV cache in use (share of blocks)",
                                         "replay seconds", "share"), width="stretch", key="kv")
        c[1].plotly_chart(charts.overlay(frames, "time_s", "batch", "batch size (running requests)",
                                         "replay seconds", "requests"), width="stretch", key="batch")

with cluster:
    runs, labels, picked = _pick_runs("cluster", cluster_stamp, runs_dir / results.CLUSTER_SUBDIR, f"`{ui.CLUSTER}`")
    if picked:
        sizes = results.by_size_frame({lab: cached.read_summary(labels[lab], cluster_stamp) for lab in picked})
        c = st.columns(2)
        for col, (column, title) in zip(c, (("jct_mean_s", "mean JCT by job size (GPUs)"),
                                             ("queue_mean_s", "mean queueing by job size (GPUs)"))):
            classes, values = results.pivot_sizes(sizes, column)
            col.plotly_chart(charts.bars(classes, values, title, "seconds"), width="stretch", key=f"size-{column}")
        c = st.columns(2)
        curves = {lab: cached.run_cdf(labels[lab], cluster_stamp, "jobs", "jct_s", "status = 'finished'")
                  for lab in picked}
        c[0].plotly_chart(charts.cdfs(curves, "job completion time", "seconds", log_x=True), width="stretch",
                          key="jct")
        frames = {lab: cached.cluster_series(labels[lab], cluster_stamp) for lab in picked}
        c[1].plotly_chart(charts.overlay(frames, "time_s", "utilization", "GPU allocation (share of the cluster)",
                                         "replay seconds", "share"), width="stretch", key="util")

with fleet:
    runs, labels, picked = _pick_runs("fleet", fleet_stamp, runs_dir / results.FLEET_SUBDIR, f"`{ui.FLEET}`")
    if picked:
        c = st.columns(2)
        for col, (column, title) in zip(c, (("ttft_s", "fleet TTFT"), ("tbt_p99_s", "fleet per-request p99 TBT"))):
            curves = {lab: cached.run_cdf(labels[lab], fleet_stamp, "requests", column, "status = 'finished'")
                      for lab in picked}
            col.plotly_chart(charts.cdfs(curves, title, "seconds", log_x=True), width="stretch", key=f"fleet-{column}")
        chosen = runs.filter(runs["label"].is_in(picked))
        c = st.columns(2)
        for col, (column, title, unit) in zip(c, (
                ("energy_per_output_token_j", "energy per output token", "J"),
                ("usd_per_1m_output_tokens", "cost per 1M output tokens", "USD"))):
            col.plotly_chart(charts.bars(chosen["label"].to_list(), {title: chosen[column].to_list()}, title, unit),
                             width="stretch", key=f"fleet-{column}")
