"""The app in a real browser: ``streamlit run`` on 127.0.0.1 and a free port, headless Chromium
(Debian's /usr/bin/chromium driven by Playwright's Python package), every page opened, a sentence
submitted on "Which words move", the atlas computed on "Word atlas", no error element anywhere; screenshots under
``test-artifacts/browser/``. Run: ``pytest -m browser tests/test_browser.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("ADVVIZ_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [("", "Models"), ("words", "Which words move"), ("atlas", "Word atlas"), ("reconstructions", "Reconstructions"),
         ("space", "Representation space"), ("robustness", "Robustness")]
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright's Python package (.ci/app-deps.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(root: Path, logdir: Path):
    """``streamlit run`` the app over the models root ``root`` on a free port; yields its URL."""
    port = free_port()
    env = {**os.environ, "ADVVIZ_MODELS_DIR": str(root), "OMP_NUM_THREADS": "1"}
    log = open(logdir / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start; see {log.name}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@contextmanager
def browser_page():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1600})
        yield pg
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir):
    from test_app import build_models_root

    root = build_models_root(tmp_path_factory.mktemp("browser-models"))
    with serve(root, tmp_path_factory.mktemp("log")) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    with browser_page() as pg:
        yield pg


IDLE_JS = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
           " return a !== null && a.getAttribute('data-test-script-state') === 'notRunning'; }")


def wait_idle(pg, timeout_s: float = 90) -> None:
    """Until the app's script run has finished (stApp's data-test-script-state is notRunning)."""
    pg.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    time.sleep(0.5)  # a rerun triggered by the last action may not have started yet
    pg.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)


def check_page(pg, name: str) -> None:
    for _ in range(60):  # lazily loaded elements (charts, buttons) paint after the script ends
        if pg.locator('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]').count() == 0:
            break
        time.sleep(0.25)
    time.sleep(0.5)
    errors = pg.locator(ERRORS)
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()[:500]}"
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_every_page_opens_without_errors(server, page):
    for path, title in PAGES:
        page.goto(f"{server}/{path}")
        wait_idle(page)
        page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
        check_page(page, path or "models")


def test_words_page_draws_heatmap_for_a_typed_sentence(server, page):
    page.goto(f"{server}/words")
    wait_idle(page)
    box = page.locator("textarea[aria-label=\"Sentence\"]")
    box.fill("the plot is dull , boring and bad")
    page.get_by_role("button", name="Show which words move").click()
    wait_idle(page)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .heatmaplayer', timeout=60_000)
    assert page.locator('[data-testid="stPlotlyChart"] .heatmaplayer').count() >= 1
    labels = page.locator('[data-testid="stPlotlyChart"] .xtick text').evaluate_all(
        "els => els.map(e => e.textContent)")
    assert {"dull", "boring", "bad"} <= set(labels), labels  # one column per token
    check_page(page, "words-submitted")


def test_atlas_page_computes_and_lists_a_words_sentences(server, page):
    page.goto(f"{server}/atlas")
    wait_idle(page)
    page.get_by_role("button", name="Compute the atlas").click()
    wait_idle(page, 240)
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 2  # summary and the word table
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Sentences of")
    box.click()
    page.get_by_role("option").nth(1).click()  # the first word of the table
    wait_idle(page)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .heatmaplayer', timeout=60_000)
    check_page(page, "atlas-word")
    page.get_by_role("tab", name="Frequency vs ‖δ‖").click()
    page.wait_for_selector('[data-testid="stPlotlyChart"] .scatterlayer .point', timeout=60_000)
    check_page(page, "atlas-scatter")


def test_words_page_shows_ascc_substitution_weights(server, page):
    """``--attack ascc`` on "Which words move": the heatmap and, per token with substitutes, its
    bar of weights (issue 28)."""
    page.goto(f"{server}/words")
    wait_idle(page)
    attacks = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Attacks (rows)")
    attacks.locator("input").fill("ascc")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.locator("textarea[aria-label=\"Sentence\"]").fill("the plot is dull , boring and bad")
    page.get_by_role("button", name="Show which words move").click()
    wait_idle(page, 120)
    page.get_by_text("Substitution weights").first.wait_for(timeout=60_000)
    assert page.get_by_text("boring →").count() + page.get_by_text("dull →").count() >= 1
    check_page(page, "words-ascc")
