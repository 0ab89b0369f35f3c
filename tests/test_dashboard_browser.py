"""End to end in a real browser: ``streamlit run`` on a loopback port, driven by Playwright in Debian's
headless Chromium (``/usr/bin/chromium``; Playwright never downloads a browser here).

Every page is opened by URL and by clicking its sidebar link; the test asserts what is visible, saves a
screenshot per page and writes each page's render time (navigation start until the page's known element
is visible) to ``render_times.json``, all under ``$TRACELAB_ARTIFACTS`` or ``test-artifacts/dashboard``.
Timings are recorded, never asserted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from tests.test_dashboard_app import APP, dashboard_lake

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parent.parent
PAGES = (
    # (url path, sidebar link, title, text that only shows once the page's data is there, element that must be visible)
    ("", "Catalog", "Catalog", "Quarantined rows by reason", '[data-testid="stDataFrame"]'),
    ("explorer", "Trace explorer", "Trace explorer", "arrival rate", ".js-plotly-plot"),
    ("characterization", "Characterization", "Characterization", "Prompt and output lengths", ".js-plotly-plot"),
    ("predictors", "Predictors", "Predictors", "Held-out metrics (baselines first)", ".js-plotly-plot"),
    ("replay", "Replay", "Replay", "Launch a short serving replay", ".js-plotly-plot"),
)
TIMEOUT_MS = 60_000


def artifacts_dir() -> Path:
    """Where screenshots and timings go (gitignored by default)."""
    out = Path(os.environ.get("TRACELAB_ARTIFACTS") or REPO / "test-artifacts") / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        pytest.skip("the playwright package is missing: pip install playwright (in the test extra)")
    return start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(root: Path, log: Path):
    """Start ``streamlit run`` on a free loopback port; (process, base url) once it answers its health check."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--data", str(root)]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "TRACELAB_DATA": str(root)},
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read().strip() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"streamlit did not answer on {url} within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def browser():
    start = sync_playwright()
    with start() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sync_playwright()  # skip before building anything when the browser is missing
    root = dashboard_lake(tmp_path_factory)
    proc, url = serve(root, artifacts_dir() / "streamlit.log")
    yield {"url": url, "root": str(root)}
    proc.terminate()
    proc.wait(timeout=20)


def _visible(page, title: str, text: str, selector: str) -> None:
    page.get_by_role("heading", name=title, exact=True).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.locator(selector).first.wait_for(state="visible", timeout=TIMEOUT_MS)


def test_every_page_renders_in_the_browser(browser, server):
    out = artifacts_dir()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    times: dict[str, dict] = {}
    for path, link, title, text, selector in PAGES:
        t0 = time.perf_counter()
        page.goto(f"{server['url']}/{path}", timeout=TIMEOUT_MS)
        _visible(page, title, text, selector)
        times[title] = {"url_s": round(time.perf_counter() - t0, 3)}
        assert page.locator('[data-testid="stException"]').count() == 0, f"{title}: exception shown"
        page.screenshot(path=str(out / f"{path or 'catalog'}.png"), full_page=True)
    page.goto(f"{server['url']}/", timeout=TIMEOUT_MS)
    _visible(page, *PAGES[0][2:])
    for _, link, title, text, selector in PAGES[1:] + PAGES[:1]:  # in-app navigation: one session, sidebar links
        t0 = time.perf_counter()
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
        _visible(page, title, text, selector)
        times[title]["sidebar_s"] = round(time.perf_counter() - t0, 3)
    with duckdb.connect(str(Path(server["root"]) / "catalog.duckdb"), read_only=True) as con:
        num_traces, rows_out = con.execute("SELECT count(*), sum(rows_out) FROM traces").fetchall()[0]
    values = page.get_by_test_id("stMetricValue").all_inner_texts()
    assert values[:2] == [f"{num_traces:,}", f"{rows_out:,}"]
    page.goto(f"{server['url']}/replay", timeout=TIMEOUT_MS)
    _visible(page, "Replay", "Launch a short serving replay", ".js-plotly-plot")
    for want in ("TTFT", "KV cache in use (share of blocks)", "batch size (running requests)"):
        page.get_by_text(want, exact=True).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.close()
    assert not errors, errors
    record = {"pages": times, "chromium": browser.version, "machine_cpus": os.cpu_count()}
    (out / "render_times.json").write_text(json.dumps(record, indent=2) + "\n")
    assert set(times) == {p[2] for p in PAGES}


def test_empty_lake_in_the_browser(browser, tmp_path):
    proc, url = serve(tmp_path / "empty", artifacts_dir() / "streamlit-empty.log")
    try:
        page = browser.new_page()
        page.goto(f"{url}/", timeout=TIMEOUT_MS)
        page.get_by_text("tracelab quickstart").first.wait_for(state="visible", timeout=TIMEOUT_MS)
        page.goto(f"{url}/predictors", timeout=TIMEOUT_MS)
        page.get_by_text("tracelab predict train", exact=False).first.wait_for(state="visible", timeout=TIMEOUT_MS)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(artifacts_dir() / "empty-lake.png"))
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
