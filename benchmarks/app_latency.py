"""First paint of each app page, cold and with a warm cache, in headless Chromium.

    python benchmarks/app_latency.py [--models-dir DIR] [--repeats 3] [--json out.json]

Starts ``streamlit run app/streamlit_app.py`` on 127.0.0.1 and a free port (models root: DIR, or
tiny checkpoints trained on the spot when DIR has none), opens every page once to warm the caches,
then opens each again ``--repeats`` times. "First paint" = from a full page load (reload) or a click in the sidebar navigation (nav) until the page's title
is shown, the script has finished (no running indicator) and its main output (a chart or table) is
drawn. Target: ≤ 3 s per page warm. Reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

PAGES = [("", "Models", '[data-testid="stDataFrame"]'),
         ("words", "Which words move", '[data-testid="stPlotlyChart"]'),
         ("atlas", "Word atlas", '[data-testid="stButton"]'),  # the atlas itself is computed on a click
         ("reconstructions", "Reconstructions", '[data-testid="stMarkdown"]'),
         ("space", "Representation space", '[data-testid="stPlotlyChart"]'),
         ("robustness", "Robustness", '[data-testid="stButton"]')]


def start_server(root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "ADVVIZ_MODELS_DIR": str(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "streamlit_app.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("streamlit did not start")


def _painted(pg, title: str, selector: str) -> None:
    from test_browser import IDLE_JS

    pg.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    pg.wait_for_selector(selector, timeout=120_000)
    pg.wait_for_function(IDLE_JS, timeout=120_000)


def first_paint(pg, url: str, title: str, selector: str) -> float:
    """A full page load (new browser session: JS bundle, websocket, script run)."""
    t0 = time.perf_counter()
    pg.goto(url)
    _painted(pg, title, selector)
    return time.perf_counter() - t0


def nav_paint(pg, title: str, selector: str) -> float:
    """Clicking the page in the sidebar navigation (what a user does once the app is open)."""
    t0 = time.perf_counter()
    pg.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    _painted(pg, title, selector)
    return time.perf_counter() - t0


def main() -> int:
    from test_app import build_models_root
    from test_browser import ARGS, CHROMIUM, free_port

    from advviz import registry

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    root = registry.models_root(args.models_dir)
    if not any(r["status"] == "ok" for r in registry.scan(root)):
        root = build_models_root(Path(tempfile.mkdtemp(prefix="advviz-bench-")))
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_server(root, port)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pg = browser.new_page(viewport={"width": 1500, "height": 1000})
            cold = {t: first_paint(pg, f"http://127.0.0.1:{port}/{p}", t, s) for p, t, s in PAGES}
            for i, (path, title, sel) in enumerate(PAGES):
                other = PAGES[(i + 1) % len(PAGES)]
                reload = [first_paint(pg, f"http://127.0.0.1:{port}/{path}", title, sel) for _ in range(args.repeats)]
                nav = []
                for _ in range(args.repeats):
                    nav_paint(pg, other[1], other[2])
                    nav.append(nav_paint(pg, title, sel))
                rows.append({"page": title, "cold_s": round(cold[title], 2),
                             "warm_reload_median_s": round(statistics.median(reload), 2),
                             "warm_nav_median_s": round(statistics.median(nav), 2), "warm_nav_max_s": round(max(nav), 2),
                             "within_3s": statistics.median(reload) <= 3.0 and max(nav) <= 3.0})
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"models root: {root}")
    print(f"{'page':24s} {'cold load':>9s} {'warm reload':>11s} {'warm nav':>9s} {'nav max':>8s}  ≤3 s  (seconds, medians)")
    for r in rows:
        print(f"{r['page']:24s} {r['cold_s']:9.2f} {r['warm_reload_median_s']:11.2f} {r['warm_nav_median_s']:9.2f} "
              f"{r['warm_nav_max_s']:8.2f}  {'yes' if r['within_3s'] else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"models_root": str(root), "pages": rows}, indent=2))
    return 0 if all(r["within_3s"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
