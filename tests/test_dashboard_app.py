"""The dashboard: pure data and chart functions, and every page under ``streamlit.testing.v1.AppTest``,
on a lake with real traces, a trained model and replay runs, and on an empty lake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts, data, launch, results, ui
from ingest.paths import traces_dir

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PAGES = {"catalog": "pages/catalog.py", "explorer": "pages/explorer.py", "characterization": "pages/characterization.py",
         "predictors": "pages/models.py", "replay": "pages/replay_runs.py"}
TITLES = {"catalog": "Catalog", "explorer": "Trace explorer", "characterization": "Characterization",
          "predictors": "Predictors", "replay": "Replay"}
MODEL = "length-code"


def dashboard_lake(tmp_path_factory) -> Path:
    """A data root with Azure 2023 and the derived Philly tables ingested, a tiny response-length model
    (trained for real, 5 boosting iterations), two serving replays, one cluster and one fleet replay. Built once per
    test session (a marker file in the session's temp folder), shared with the browser test."""
    from analysis.catalog import open_catalog
    from ingest.pipeline import run_source
    from predictors.export import export_bundle
    from predictors.report import write_evaluation
    from predictors.train import TrainConfig, evaluation_rows, train
    from replay.cluster.harness import ClusterConfig, run_cluster
    from replay.fleet.harness import run_fleet
    from replay.fleet.search import fleet_energy
    from replay.fleet.sink import write_fleet_run
    from replay.fleet.topology import FleetConfig, PoolConfig
    from replay.harness import ServeConfig, run_serve
    from replay.sources import WorkloadSpec

    root = tmp_path_factory.getbasetemp() / "dashboard-lake"
    if (root / ".built").is_file():
        return root
    found = traces_dir()
    if found is None or not found.is_dir():
        pytest.skip("real traces not available: set TRACELAB_TRACES or put shared/traces beside the checkout")
    for source, folder in (("azure_llm_2023", "azure_llm_2023"), ("philly_derived", "philly")):
        run_source(source, found / folder, data_root=root)
    con = open_catalog(root)
    try:  # one OpenMP thread: conftest sets OMP_NUM_THREADS before scikit-learn loads
        bundle, report = train(con, TrainConfig("response-length", ("azure_llm_2023_code",), max_iter=5))
    finally:
        con.close()
    export_bundle(bundle, root / "models" / MODEL, check_rows=evaluation_rows(report))
    write_evaluation(report, root / "models" / MODEL)
    window = WorkloadSpec(trace="azure_llm_2023_conv", duration_s=120.0, rate_scale=2.0)
    run_serve(ServeConfig(workload=window), data_root=root)
    run_serve(ServeConfig(workload=window, policy="sjf", predictor="oracle", oracle_lengths=True), data_root=root)
    run_cluster(ClusterConfig(trace="philly_sia_jobs", max_jobs=800, num_nodes=4), data_root=root)
    fleet = FleetConfig(serve=ServeConfig(workload=window), layout="disaggregated",
                        pools=(PoolConfig("prefill", 1, "h100"), PoolConfig("decode", 1, "h100")))
    result = run_fleet(fleet, data_root=root)
    write_fleet_run(fleet, result, fleet_energy(fleet, result).summary, data_root=root)
    (root / ".built").write_text("ok")
    return root


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> str:
    return str(dashboard_lake(tmp_path_factory))


def sql(root: str, query: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(Path(root) / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def app(root: str | Path, monkeypatch, page: str | None = None) -> AppTest:
    """The app run once against ``root`` (and switched to ``page``); no exception allowed."""
    monkeypatch.setenv("TRACELAB_DATA", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page is not None:
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------- pure functions

def test_reason_class_drops_per_row_detail():
    assert data.reason_class("duplicate row (identical to line 10021)") == "duplicate row"
    assert data.reason_class("blank line") == "blank line"
    assert data.reason_class("bad value: 'x' in column y") == "bad value"


def test_trace_kind_prefers_requests_then_jobs():
    assert data.trace_kind("requests") == "requests"
    assert data.trace_kind("attempts,jobs") == "jobs"
    assert data.trace_kind("utilization") == "utilization"


def test_where_builds_parameterized_filters():
    sql_text, params = data.where("jobs", "t", (10.0, 20.0), data.JobFilter(vcs=("a", "b"), min_gpus=2, statuses=("failed",)))
    assert sql_text == ('trace = ? AND submit_s BETWEEN ? AND ? AND "group" IN (?, ?) AND status IN (?) AND num_gpus >= ?')
    assert params == ["t", 10.0, 20.0, "a", "b", "failed", 2.0]
    assert data.where("requests", "r") == ("trace = ?", ["r"])


def test_window_ends_map_to_the_exact_trace_span():
    assert data.window_from_hours(0.0, 3435.95, 0.0, 0.954, 0.954) == (0.0, 3435.95)
    assert data.window_from_hours(10.0, 7210.0, 1.0, 1.5, 2.0) == (3610.0, 5410.0)


def test_bin_width_keeps_series_short():
    assert data.bin_width_s(100.0) == 1.0
    assert data.bin_width_s(3600.0) == 10.0
    six_months = 183 * 86400.0
    assert six_months / data.bin_width_s(six_months) <= data.MAX_BINS


def test_data_root_from_argv_then_env(tmp_path):
    assert ui.root_from_argv(["--data", str(tmp_path)], {}) == str(tmp_path.resolve())
    assert ui.root_from_argv([f"--data={tmp_path}"], {"TRACELAB_DATA": "/elsewhere"}) == str(tmp_path.resolve())
    assert ui.root_from_argv([], {"TRACELAB_DATA": str(tmp_path)}) == str(tmp_path.resolve())


def test_fmt():
    assert ui.fmt(None) == "n/a" and ui.fmt(float("nan")) == "n/a"
    assert ui.fmt(1234567) == "1,234,567" and ui.fmt(978123.4) == "978,123" and ui.fmt(0.123456) == "0.1235"


def test_thin_caps_points_and_keeps_means():
    fig = charts.series_figure({"s": (list(range(10_000)), [1.0] * 10_000)}, "t", "x", "y")
    charts.thin(fig, max_points=500)
    assert len(fig.data[0].y) <= 500 and set(fig.data[0].y) == {1.0}


def test_cdfs_fall_back_to_linear_axis_with_zeros():
    fig = charts.cdfs({"a": ([0.0, 1.0], [0.0, 1.0])}, "t", "x", log_x=True)
    assert fig.layout.xaxis.type == "linear"
    assert charts.cdfs({"a": ([1.0, 2.0], [0.0, 1.0])}, "t", "x", log_x=True).layout.xaxis.type == "log"


def test_pivot_sizes():
    frame = results.by_size_frame({"r1": {"by_size": {"1": {"num_jobs": 3, "jct_mean_s": 10.0}, "2-4": {"num_jobs": 0}}},
                                   "r2": {"by_size": {"1": {"num_jobs": 1, "jct_mean_s": 5.0}}}})
    classes, values = results.pivot_sizes(frame, "jct_mean_s")
    assert classes == ["1", "2-4"] and values == {"r1": [10.0, None], "r2": [5.0, None]}


def test_serve_config_uses_oracle_only_for_predictive_policies():
    assert launch.serve_config("t", "fcfs", 2.0, 0.0, 60.0, 100).predictor is None
    sjf = launch.serve_config("t", "sjf", 1.0, 0.0, 60.0, 100)
    assert sjf.predictor == "oracle" and sjf.oracle_lengths
    with pytest.raises(ValueError):
        launch.serve_config("t", "fcfs", 1.0, 0.0, 60.0, launch.MAX_REQUESTS + 1)


def test_dashboard_command_execs_streamlit(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from tracelab.cli import app as cli

    seen = {}
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: seen.update(argv=argv, env=env))
    result = CliRunner().invoke(cli, ["dashboard", "--data", str(tmp_path), "--port", "8599"])
    assert result.exit_code == 0, result.output
    argv = seen["argv"]
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("dashboard/app.py")
    assert argv[argv.index("--server.port") + 1] == "8599" and argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[-2:] == ["--data", str(tmp_path.resolve())] and seen["env"]["TRACELAB_DATA"] == str(tmp_path.resolve())


# ---------------------------------------------------------------- data functions on the lake

def test_catalog_overview_matches_the_catalog(lake):
    overview = data.catalog_overview(lake)
    traces = {r["trace"]: r for r in overview["traces"].to_dicts()}
    expected = dict(sql(lake, "SELECT trace, rows_out FROM traces"))
    assert {t: r["rows_out"] for t, r in traces.items()} == expected
    assert traces["azure_llm_2023_conv"]["kind"] == "requests" and traces["philly_sia_jobs"]["kind"] == "jobs"
    lo, hi = sql(lake, "SELECT min(arrival_s), max(arrival_s) FROM requests WHERE trace = 'azure_llm_2023_conv'")[0]
    assert traces["azure_llm_2023_conv"]["span_days"] == pytest.approx((hi - lo) / 86400)
    q = overview["quarantine"].filter(overview["quarantine"]["trace"] == "philly_sia_jobs")
    assert q["rows"].sum() == sql(lake, "SELECT count(*) FROM quarantine WHERE trace = 'philly_sia_jobs'")[0][0] > 0
    assert "duplicate row" in q["reason"].to_list()


def test_explorer_loaders_agree_with_sql(lake):
    lo, hi, n = data.trace_span(lake, "philly_sia_jobs", "jobs")
    window = (lo, lo + (hi - lo) / 2)
    vc = data.job_options(lake, "philly_sia_jobs")["vcs"][0]
    jf = data.JobFilter(vcs=(vc,), min_gpus=1)
    rate = data.arrival_series(lake, "philly_sia_jobs", "jobs", window, jf)
    count = sql(lake, 'SELECT count(*) FROM jobs WHERE trace = ? AND submit_s BETWEEN ? AND ? AND "group" = ? '
                      "AND num_gpus >= 1", ["philly_sia_jobs", *window, vc])[0][0]
    assert rate["count"].sum() == count == data.window_summary(lake, "philly_sia_jobs", "jobs", window, jf)["rows"] > 0
    assert rate.height <= data.MAX_BINS + 1
    parts = data.job_breakdown(lake, "philly_sia_jobs", window, jf)
    assert parts["gpus"]["jobs"].sum() == parts["status"]["jobs"].sum() == count
    cdf = data.value_cdf(lake, "azure_llm_2023_conv", "requests", "output_tokens")
    lo_tok, hi_tok = sql(lake, "SELECT min(output_tokens), max(output_tokens) FROM requests WHERE trace = 'azure_llm_2023_conv'")[0]
    assert cdf.height == data.CDF_POINTS and cdf["value"][0] == lo_tok and cdf["value"][-1] == hi_tok
    assert cdf["value"].is_sorted()


def test_models_and_runs_loaders(lake):
    models = results.list_models(lake)
    assert models["name"].to_list() == [MODEL] and models["task"][0] == "response_length"
    card = results.model_card(lake, MODEL)["card"]
    metrics = results.metrics_frame(card)
    assert metrics["model"][0] == "global_median" and metrics.filter(metrics["kind"] == "model").height >= 1
    assert results.features_frame(card)["feature"][0] == "prompt_tokens"
    serve = results.list_runs(lake, "serve")
    assert serve.height == 2 and {lab.split()[0] for lab in serve["label"]} == {"fcfs", "sjf"}
    path = serve["path"][0]
    finished = results.read_summary(path)["num_finished"]
    ttft, q = results.run_cdf(path, "requests", "ttft_s", "status = 'finished'")
    assert len(ttft) == data.CDF_POINTS and ttft == sorted(ttft) and finished > 0
    series = results.serve_series(path)
    assert 0 < series.height <= data.MAX_BINS + 1 and series["kv_use"].max() <= 1.0
    cluster = results.list_runs(lake, "cluster")
    assert cluster.height == 1 and cluster["num_jobs"][0] == 800
    util = results.cluster_series(cluster["path"][0])
    assert 0 < util.height <= data.MAX_BINS + 1 and 0 < util["utilization"].max() <= 1.0
    fleet = results.list_runs(lake, "fleet")
    summary = results.read_summary(fleet["path"][0])
    assert fleet.height == 1 and fleet["label"][0].startswith("1xh100 prefill + 1xh100 decode x2 azure_llm_2023_conv")
    assert fleet["num_kv_transfers"][0] == summary["num_kv_transfers"] > 0
    assert fleet["energy_per_output_token_j"][0] == summary["energy"]["energy_per_output_token_j"] > 0


# ---------------------------------------------------------------- pages with data

def test_catalog_page(lake, monkeypatch):
    at = app(lake, monkeypatch)
    assert at.title[0].value == "Catalog"
    n = sql(lake, "SELECT count(*), sum(rows_out), sum(rows_quarantined) FROM traces")[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"traces": f"{n[0]:,}", "rows": f"{n[1]:,}", "quarantined rows": f"{n[2]:,}"}
    table = at.dataframe[0].value
    assert len(table) == n[0] and "azure_llm_2023_conv" in set(table["trace"])
    assert "duplicate row" in set(at.dataframe[1].value["reason"])


def test_explorer_page_requests_and_filtered_jobs(lake, monkeypatch):
    at = app(lake, monkeypatch, "explorer")
    at.selectbox(key="explorer_trace").select("azure_llm_2023_conv").run()
    assert not at.exception
    total = sql(lake, "SELECT count(*) FROM requests WHERE trace = 'azure_llm_2023_conv'")[0][0]
    assert at.metric[0].value == f"{total:,}"  # the full window keeps every request
    assert len(at.get("plotly_chart")) == 3
    at.selectbox(key="explorer_trace").select("philly_sia_jobs").run()
    vc = at.multiselect(key="explorer_vcs").options[0]
    at.multiselect(key="explorer_vcs").select(vc).run()
    assert not at.exception
    count = sql(lake, 'SELECT count(*) FROM jobs WHERE trace = ? AND "group" = ?', ["philly_sia_jobs", vc])[0][0]
    assert at.metric[0].value == f"{count:,}"
    assert len(at.get("plotly_chart")) == 3 and at.dataframe[0].value["jobs"].sum() == count


def test_characterization_page_one_trace_and_comparison(lake, monkeypatch):
    at = app(lake, monkeypatch, "characterization")
    at.selectbox(key="char_trace").select("azure_llm_2023_conv").run()
    assert not at.exception
    assert [s.value for s in at.subheader][:3] == ["Overview", "Arrivals", "Prompt and output lengths"]
    assert len(at.get("plotly_chart")) >= 4
    at.radio(key="char_view").set_value("Compare two traces").run()
    at.selectbox(key="cmp_first").select("azure_llm_2023_code").run()
    assert not at.exception
    assert at.selectbox(key="cmp_second").value == "azure_llm_2023_conv"
    charts_ = at.get("plotly_chart")
    assert [s.value for s in at.subheader] == ["Key numbers", "Lengths"] and len(charts_) == 2
    names = {t["name"] for t in json.loads(charts_[0].proto.spec)["data"]}
    assert names == {"azure_llm_2023_code", "azure_llm_2023_conv"}


def test_predictors_page(lake, monkeypatch):
    at = app(lake, monkeypatch, "predictors")
    assert at.header[0].value == f"{MODEL}: response length model"
    card = json.loads((Path(lake) / "models" / MODEL / "card.json").read_text())
    metrics = at.dataframe[3].value
    assert list(metrics["model"]) == list(card["metrics"]["test"])
    assert metrics.set_index("model").loc["boosted", "mae"] == pytest.approx(card["metrics"]["test"]["boosted"]["mae"])
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any("calibration" in t for t in titles) and "Permutation importance" in titles


def test_replay_page_runs_side_by_side_and_launch(lake, monkeypatch):
    at = app(lake, monkeypatch, "replay")
    assert [len(d.value) for d in at.dataframe] == [2, 1, 1]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    for want in ("TTFT", "per-request p99 TBT", "E2E latency", "KV cache in use (share of blocks)",
                 "batch size (running requests)", "mean JCT by job size (GPUs)", "GPU allocation (share of the cluster)",
                 "fleet TTFT", "fleet per-request p99 TBT", "energy per output token", "cost per 1M output tokens"):
        assert want in titles
    at.selectbox(key="launch_trace").select("azure_llm_2023_code")
    at.number_input(key="launch_duration").set_value(60.0)
    at.number_input(key="launch_cap").set_value(50)
    at.button(key="launch_go").click().run()
    assert not at.exception and "requests finished" in at.success[0].value
    assert results.list_runs(lake, "serve").height == 3


# ---------------------------------------------------------------- empty lake

@pytest.mark.parametrize("page", list(PAGES))
def test_pages_on_an_empty_lake_name_the_command(tmp_path, monkeypatch, page):
    at = app(tmp_path / "data", monkeypatch, None if page == "catalog" else page)
    assert at.title[0].value == TITLES[page]
    text = " ".join(i.value for i in at.info)
    expected = {"predictors": "tracelab predict train", "replay": "tracelab replay serve"}.get(page, "tracelab quickstart")
    assert expected in text


def test_catalog_without_traces(tmp_path, monkeypatch):
    from ingest.catalog import rebuild
    from ingest.paths import data_paths

    rebuild(data_paths(tmp_path))
    at = app(tmp_path, monkeypatch, "explorer")
    assert "holds no traces" in at.info[0].value and "tracelab ingest run" in at.info[0].value
