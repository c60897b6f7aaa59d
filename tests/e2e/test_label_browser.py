"""The Label page in a real browser: keyboard labelling, live weights, reload keeps the
session, and two users in two tabs do not share labels."""

from __future__ import annotations

import statistics
import time

import pytest
from page_js import METRIC

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The target: the updated weight chart is visible within 1 s of the keypress.
TARGET_S = 1.0
# What the test tolerates on a shared 2-core machine before it calls the page broken.
LIMIT_S = 3.0
# First load imports torch and fits the PCA inside the server.
LOAD_TIMEOUT_MS = 90_000
N_LABELS = 5

WEIGHTS = ".st-key-weights-chart svg[data-chart='weights']"
EXCEPTION = "[data-testid='stException']"

# innerHTML of the weights chart (its bars), or "" while it is not drawn.
_WEIGHTS_HTML = f"""() => {{
  const el = document.querySelector("{WEIGHTS}");
  return el ? el.innerHTML : "";
}}"""


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(WEIGHTS, timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(f"() => ({METRIC})('Labels') !== null", timeout=LOAD_TIMEOUT_MS)


def test_keyboard_labelling_updates_weights_and_survives_reload(app_server, browser_page, tmp_path):
    page = browser_page
    url = f"{app_server['url']}/?user=e2e-user"
    _open(page, url)
    assert page.locator(EXCEPTION).count() == 0
    # The first visitor of a fresh server gets app.py's navigation, not an
    # automatic menu of every file in pages/ (helpers included).
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Explore" in nav and "common" not in nav.lower() and "helpers" not in nav.lower(), nav
    assert page.evaluate(METRIC, "Labels") == "0 / 30"
    first = page.evaluate(_WEIGHTS_HTML)
    assert first

    latencies = []
    for i, key in enumerate("abaab"[:N_LABELS], start=1):
        before = page.evaluate(_WEIGHTS_HTML)
        start = time.perf_counter()
        page.keyboard.press(key)
        page.wait_for_function(
            f"(prev) => {{ const h = ({_WEIGHTS_HTML})(); return h !== '' && h !== prev; }}",
            arg=before, timeout=LIMIT_S * 1000 * 5, polling="raf",
        )
        latencies.append(time.perf_counter() - start)
        page.wait_for_function(f"(n) => ({METRIC})('Labels') === n", arg=f"{i} / 30", timeout=15_000)
    assert page.locator(EXCEPTION).count() == 0
    assert page.evaluate(_WEIGHTS_HTML) != first, "the weight chart did not change"
    print(
        f"\nkeypress -> updated weight chart: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} labels (target {TARGET_S:.0f} s)"
    )
    assert statistics.median(latencies) < LIMIT_S

    effective = page.evaluate(METRIC, "Effective heads")
    page.reload()
    _open(page, url)
    assert page.evaluate(METRIC, "Labels") == f"{N_LABELS} / 30"
    assert page.evaluate(METRIC, "Effective heads") == effective
    assert page.locator(EXCEPTION).count() == 0
    shot = tmp_path / "label-page.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")

    # a second user in another tab starts from zero; the first keeps their labels
    other = page.context.browser.new_page(viewport={"width": 1440, "height": 1300})
    _open(other, f"{app_server['url']}/?user=someone-else")
    assert other.evaluate(METRIC, "Labels") == "0 / 30"
    page.reload()
    _open(page, url)
    assert page.evaluate(METRIC, "Labels") == f"{N_LABELS} / 30"



def test_first_visit_by_deep_link_gets_the_app_navigation(app_server, browser_page):
    # A fresh server whose first visitor opens /explore directly: Streamlit's
    # old pages/-folder mode would run that file alone, with a menu of every file.
    page = browser_page
    page.goto(f"{app_server['url']}/explore?user=deep-link")
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(
        "() => document.body.innerText.includes('Working on')", timeout=LOAD_TIMEOUT_MS
    )
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Label" in nav and "Explore" in nav, nav
    assert "common" not in nav.lower() and "helpers" not in nav.lower(), nav
    assert page.locator(EXCEPTION).count() == 0
