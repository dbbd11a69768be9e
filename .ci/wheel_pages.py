"""Open every page of a served advviz app in headless Chromium (Debian's, through Playwright) and fail
on a page that errors or does not render its title. Usage: wheel_pages.py URL ARTIFACT_DIR MODEL
(screenshots there; MODEL: a checkpoint name the Models page must list). Used by .ci/wheel-check.sh on the app served from an installed wheel."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGES = [("", "Models"), ("words", "Which words move"), ("atlas", "Word atlas"), ("reconstructions", "Reconstructions"),
         ("space", "Representation space"), ("robustness", "Robustness")]
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


IDLE_JS = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
           " return a !== null && a.getAttribute('data-test-script-state') === 'notRunning'; }")


def wait_idle(page, timeout_s: float = 180) -> None:
    """Until the app's script run has finished (as tests/test_browser.py waits)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    time.sleep(0.5)
    page.wait_for_function(IDLE_JS, timeout=timeout_s * 1000)


def main() -> int:
    url, out, model = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        print(f"the app did not answer at {url}", file=sys.stderr)
        return 1
    failed = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        for path, title in PAGES:
            page.goto(f"{url}/{path}")
            try:
                wait_idle(page)
                page.get_by_role("heading", name=title).first.wait_for(timeout=90_000)
                if path == "words":  # the page attacks its example sentence: the ‖δᵢ‖ heatmap must paint
                    page.wait_for_selector('[data-testid="stPlotlyChart"] .heatmaplayer', timeout=120_000)
                for _ in range(60):  # lazily loaded elements paint after the script ends
                    if page.locator('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]').count() == 0:
                        break
                    time.sleep(0.25)
                time.sleep(0.5)
            except Exception as e:  # noqa: BLE001 - any failure to render is a failed page
                failed.append(f"{title}: {type(e).__name__}")
            page.screenshot(path=str(out / f"{path or 'models'}.png"), full_page=True)
            errors = page.locator(ERRORS)
            if errors.count():
                failed.append(f"{title}: {errors.first.inner_text()[:200]!r}")
            if not path and model not in page.content():
                failed.append(f"{title}: the model {model} is not listed")
            print(f"  page {title}: {'ok' if not failed or not failed[-1].startswith(title) else failed[-1]}")
        browser.close()
    if failed:
        print("pages with errors: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
