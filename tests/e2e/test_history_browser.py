"""History in Chromium: edit an old label, and the weights equal a fresh replay of the store.

The weights are read from the Label page's weight chart (each bar's data-weight in the page):
the tab that edited the label, and a new tab of the same person (a fresh replay on the
server), must show the same K weights, and they must differ from those before the edit.
"""

from __future__ import annotations

import pytest
from page_js import METRIC

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD_TIMEOUT_MS = 90_000
STEP_TIMEOUT_MS = 20_000
EXCEPTION = "[data-testid='stException']"
# head index -> weight, from the bars of the weight chart (exact weights, as the server sent them)
# the chart settles with the metrics' rerun; a short pause lets it arrive
_WEIGHTS = """() => {
  const bars = document.querySelectorAll('.st-key-weights-chart svg rect[data-head]');
  if (!bars.length) return null;
  const out = {};
  for (const b of bars) out[b.dataset.head] = Number(b.dataset.weight);
  return out;
}"""


def _open_label(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function(f"() => ({_WEIGHTS})() !== null", timeout=LOAD_TIMEOUT_MS)
    # the SVG bars arrive with the page's first elements, before its keys are bound (plotly
    # drew later): a key pressed before the page has settled is lost
    page.wait_for_function(f"() => ({METRIC})('Labels') !== null", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                           timeout=LOAD_TIMEOUT_MS)


def _wait_labels(page, text: str) -> None:
    page.wait_for_function(f"(n) => ({METRIC})('Labels') === n", arg=text, timeout=STEP_TIMEOUT_MS)


def _weights(page, n_labels: str) -> dict[str, float]:
    _wait_labels(page, n_labels)
    page.wait_for_timeout(800)
    page.wait_for_function(f"() => ({_WEIGHTS})() !== null", timeout=STEP_TIMEOUT_MS)
    return page.evaluate(_WEIGHTS)


def _nav(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()


def test_editing_an_old_label_gives_the_weights_of_a_fresh_replay(app_server, browser_page):
    page, url = browser_page, app_server["url"]
    _open_label(page, f"{url}/?user=edith")
    for i, key in enumerate("aaba", start=1):
        page.keyboard.press(key)
        _wait_labels(page, f"{i} / 30")
    before = _weights(page, "4 / 30")

    _nav(page, "History")
    page.wait_for_selector(".st-key-history-actions", timeout=LOAD_TIMEOUT_MS)
    page.locator("[data-testid='stSelectbox']", has_text="Label to change").click()
    page.locator("[role='option']", has_text="#1 ·").first.click()
    page.wait_for_selector(".st-key-hist_a button:disabled", timeout=STEP_TIMEOUT_MS)  # #1 was A
    page.locator(".st-key-hist_b button:visible").first.click()
    page.wait_for_function("() => document.body.innerText.includes('changed from A to B')", timeout=STEP_TIMEOUT_MS)
    assert page.locator(EXCEPTION).count() == 0

    _nav(page, "Label")
    edited = _weights(page, "4 / 30")
    fresh_tab = page.context.browser.new_page(viewport={"width": 1440, "height": 1300})
    try:
        _open_label(fresh_tab, f"{url}/?user=edith")
        fresh = _weights(fresh_tab, "4 / 30")
    finally:
        fresh_tab.close()
    assert set(edited) == set(fresh) == set(before) and len(fresh) == app_server["info"]["n_heads"]
    assert all(abs(edited[k] - fresh[k]) <= 1e-12 for k in fresh), "edited tab and a fresh replay differ"
    assert any(abs(edited[k] - before[k]) > 1e-9 for k in fresh), "changing a label left the weights as they were"
    assert page.locator(EXCEPTION).count() == 0
