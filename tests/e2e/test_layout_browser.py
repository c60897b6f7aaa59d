"""Layout in Chromium at a laptop's 1280 x 720: the Data page's Delete buttons show their whole label
(as a fifth column of each row they were cut to "D…"); in persona mode the Label page's live
strip shows its metric labels whole and the buttons and the pair are on screen."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD_TIMEOUT_MS = 90_000
LAPTOP = {"width": 1280, "height": 720}
DELETE = "[class*='st-key-data_del_'] button"
# Labels of the Delete buttons whose text is cut (its box narrower than the text it holds).
_CUT = """(sel) => [...document.querySelectorAll(sel)].filter(b => [...b.querySelectorAll(
  '[data-testid=stMarkdownContainer]')].some(e => e.scrollWidth > e.clientWidth + 1)).map(b => b.innerText)"""


def test_data_page_delete_buttons_are_not_cut_at_1280(app_server, browser_page):
    page = browser_page
    page.set_viewport_size(LAPTOP)
    page.goto(app_server["url"])
    page.locator("[data-testid='stSidebarNav'] a", has_text="Data").first.click()
    page.get_by_text("3 · Pools and ensembles").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    page.wait_for_selector(DELETE, timeout=LOAD_TIMEOUT_MS)
    page.wait_for_timeout(500)
    buttons = page.locator(DELETE)
    assert buttons.count() == 2  # the small demo's pool and its ensemble
    assert all("Delete" in t for t in buttons.all_inner_texts())
    assert page.evaluate(_CUT, DELETE) == []


# Metric labels and deltas in the live strip whose text is cut (wider than their box).
_CUT_METRICS = """() => [...document.querySelectorAll(
  '.st-key-live-strip [data-testid=stMetricLabel], .st-key-live-strip [data-testid=stMetricDelta]')]
  .flatMap(m => [m, ...m.querySelectorAll('*')]).filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => e.innerText)"""


def test_persona_mode_fits_the_strip_and_the_buttons_at_1280(app_server, browser_page):
    # the strip cut "Held-out accu…" and "+23% vs unifo…", and the pair started at y = 515
    page = browser_page
    page.set_viewport_size(LAPTOP)
    page.goto(app_server["url"])
    page.wait_for_selector(".st-key-live-strip svg[data-chart='accuracy']", timeout=LOAD_TIMEOUT_MS)
    page.locator(".st-key-label_mode button", has_text="A simulated persona labels").click()
    page.wait_for_selector(".st-key-persona-actions button", timeout=LOAD_TIMEOUT_MS)
    for n in range(1, 4):
        page.keyboard.press("n")
        page.wait_for_function(
            "(n) => [...document.querySelectorAll('.st-key-live-strip [data-testid=stMetricValue]')]"
            ".some(e => e.innerText.trim() === n)", arg=str(n), timeout=30_000)
    page.wait_for_timeout(800)
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop > 0) e.scrollTop = 0; })")
    labels = page.locator(".st-key-live-strip [data-testid=stMetricLabel]").all_inner_texts()
    assert "Held-out accuracy" in [t.strip() for t in labels]
    assert page.locator(".st-key-live-strip [data-testid=stMetricDelta]").count() == 1
    assert page.evaluate(_CUT_METRICS) == []
    buttons = page.locator(".st-key-persona-actions button:visible")
    texts = buttons.all_inner_texts()
    assert "One label" in texts[0] and "Undo" in texts[1], texts
    for box in (b.bounding_box() for b in buttons.all()):
        assert 0 <= box["y"] and box["y"] + box["height"] <= LAPTOP["height"]
    # the pair starts on the screen, and the strip's numbers are all in it
    assert page.locator("[class*='st-key-prompt-card']").first.bounding_box()["y"] < 480
    for box in (m.bounding_box() for m in page.locator(".st-key-live-strip [data-testid=stMetric]").all()):
        assert box["y"] + box["height"] <= LAPTOP["height"]
