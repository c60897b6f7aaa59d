"""Regenerate the README's screenshots: every page at 1280 x 720 and 1920 x 1080, in Chromium.

    .venv/bin/python bench/screenshots.py --db path/to/store.duckdb [--out assets/screenshots] [--pages data]

The store is copied first (the original is never written). Without --db the demo is
built into a temporary store (1-2 minutes on a CPU, as on a first launch). The app is
started on a free loopback port; one person labels a few pairs by keyboard and writes
a comment, a second person labels too (so People shows agreement), the demo pool gets
guidelines, and each page is photographed at both sizes; the Data page with a build
running on the server (K = 500 heads on the demo pool, started from the page). Needs
/usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZES = ((1280, 720), (1920, 1080))
# page title in the navigation -> file stem
PAGES = {"Label": "label", "History": "history", "Explore": "explore", "People": "people",
         "Profiles": "profiles", "Evaluate": "evaluate", "Data": "data"}
GUIDELINES = ("## How to choose\n- **Correct** before **complete**: a wrong fact loses.\n"
              "- Prefer the answer that says when it is unsure.\n- Length is not quality.\n\n"
              "**Tie** when both are equally good, **Both bad** when neither is acceptable.")
LOAD_MS = 180_000
# The Data page is photographed while a build of this many heads runs (minutes on a CPU).
BUILD_HEADS = 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare_store(db: str | None, folder: Path) -> Path:
    path = folder / "screenshots.duckdb"
    if db:
        shutil.copyfile(db, path)
    else:
        from hyre_engine.demo import ensure_demo
        from hyre_engine.store import Store

        with Store(path) as store:
            ensure_demo(store)
    from hyre_engine.demo import DEMO_POOL_NAME
    from hyre_engine.store import Store

    with Store(path) as store:
        pool = store.get_pool(DEMO_POOL_NAME)
        store.set_guidelines(pool.pool_id, GUIDELINES, actor="screenshots")
    return path


def _serve(path: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HYRE_DB": str(path)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the app did not start; see {log}")


def _label(page, url: str, user: str, keys: str) -> None:
    page.goto(f"{url}/?user={user}")
    page.wait_for_selector(".st-key-live-strip svg[data-chart='accuracy']", timeout=LOAD_MS)
    for i, key in enumerate(keys, start=1):
        page.keyboard.press(key)
        page.wait_for_function(
            "(n) => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
            ".some(e => e.innerText.trim().startsWith(n + ' /'))", arg=str(i), timeout=30_000)


# The page has run: no "running" widget, something drawn in the main area, nothing stale (greyed).
_SETTLED = """() => !document.querySelector('[data-testid=stStatusWidget]')
  && document.querySelectorAll('[data-testid=stMain] [data-testid=stElementContainer]').length > 3
  && !document.querySelector('[data-testid=stMain] [data-stale=true]')"""


_TO_TOP = "() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; })"


def _settle(page) -> None:
    page.wait_for_timeout(1000)
    page.wait_for_function(_SETTLED, timeout=LOAD_MS)
    page.wait_for_timeout(2500)  # the other pages' plotly charts draw after the elements arrive
    page.wait_for_function(_SETTLED, timeout=LOAD_MS)


def _start_build(page) -> None:
    """Start a slow build on the Data page (many heads, calibrated) and wait until it shows as running."""
    page.locator("[data-testid='stSidebarNav'] a", has_text="Data").first.click()
    box = page.get_by_label("Heads (K)", exact=True)
    box.fill(str(BUILD_HEADS))
    box.press("Enter")
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Build", exact=True).click()
    page.get_by_text("Building", exact=True).first.wait_for(timeout=LOAD_MS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a store to copy (default: build the demo)")
    parser.add_argument("--out", default=str(REPO / "assets" / "screenshots"))
    parser.add_argument("--pages", default=",".join(PAGES.values()),
                        help=f"comma-separated pages to photograph (default: all of {', '.join(PAGES.values())})")
    args = parser.parse_args(argv)
    stems = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = sorted(set(stems) - set(PAGES.values()))
    if unknown:
        parser.error(f"unknown pages {unknown}; pages: {', '.join(PAGES.values())}")
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hyre-shots-") as tmp:
        path = _prepare_store(args.db, Path(tmp))
        port = _free_port()
        proc = _serve(path, port, Path(tmp) / "server.log")
        url = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                if set(stems) - {"data"}:  # the Data page shows no labels
                    _label(page, url, "sam", "abab")  # a second person: People shows agreement
                    _label(page, url, "alex", "abbaabab12")
                else:
                    page.goto(url)
                for title, stem in PAGES.items():
                    if stem not in stems:
                        continue
                    if stem == "data":
                        _start_build(page)
                    for width, height in SIZES:  # both sizes in a row: the build still runs for both
                        page.set_viewport_size({"width": width, "height": height})
                        page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
                        _settle(page)
                        page.evaluate(_TO_TOP)  # the Data page keeps the scroll of its Build button
                        page.wait_for_timeout(300)
                        target = out / f"{stem}-{width}x{height}.png"
                        page.screenshot(path=str(target))
                        print(f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
