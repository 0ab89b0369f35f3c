"""Predictors: trained models in data/models, their cards and evaluation plots."""

from pathlib import Path

import streamlit as st

from dashboard import cached, charts, results, ui

LENGTH_KEYS = ("acc50", "acc100", "bucket_acc", "kendall_tau", "spearman")
DURATION_KEYS = ("within_10", "within_50", "within_100", "within_1000", "spearman")

st.title("Predictors")
root = ui.data_root()
stamp = results.stamp(results.models_dir(root), "*/card.json")
models = cached.list_models(root, stamp)
if models.is_empty():
    ui.empty(f"No trained model under `{results.models_dir(root)}` yet.", ui.TRAIN, ui.QUICKSTART)
st.dataframe(models, hide_index=True, width="stretch")

name = st.selectbox("model", models["name"].to_list(), key="model_name")
got = cached.model_card(root, stamp, name)
card, evaluation = got["card"], got["evaluation"]
length = card.get("task") == "response_length"
metrics = results.metrics_frame(card)
st.header(f"{name}: {card.get('task', '?').replace('_', ' ')} model")
if evaluation and evaluation.get("signal"):
    st.caption(evaluation["signal"])

left, right = st.columns(2)
left.subheader("Training")
left.dataframe(ui.numbers_frame(results.training_summary(card)), hide_index=True, width="stretch")
right.subheader("Features")
right.dataframe(results.features_frame(card), hide_index=True, width="stretch")

st.subheader("Held-out metrics (baselines first)")
if metrics.is_empty():
    st.info("This card records no held-out metrics.")
else:
    st.dataframe(metrics, hide_index=True, width="stretch")
    st.plotly_chart(charts.metric_bars(metrics, LENGTH_KEYS if length else DURATION_KEYS,
                                       "Held-out metrics per model (higher is better)"), width="stretch", key="bars")

plots = st.columns(2)
sample = (evaluation or {}).get("sample")
if sample:
    plots[0].plotly_chart(charts.scatter(sample, "tokens" if length else "seconds"), width="stretch", key="scatter")
else:
    plots[0].caption("Predicted-vs-true scatter: evaluation.json keeps no test sample; it is in evaluation.html.")
main = "boosted" if length else "helios_blend"
rows = metrics.filter(metrics["model"] == main).to_dicts() if not metrics.is_empty() else []
if rows and rows[0].get("coverage_p50") is not None:
    plots[1].plotly_chart(charts.calibration(rows[0]), width="stretch", key="calibration")
bands = (card.get("metrics") or {}).get("helios_bands")
imp = (card.get("metrics") or {}).get("importance") or (evaluation or {}).get("importance")
more = st.columns(2)
if bands:
    more[0].plotly_chart(charts.helios_bands(bands), width="stretch", key="bands")
if imp:
    more[1].plotly_chart(charts.importance(imp), width="stretch", key="importance")
if got["html"]:
    st.download_button("evaluation report (HTML)", Path(got["html"]).read_bytes(), file_name=f"{name}-evaluation.html",
                       mime="text/html", key="download")
