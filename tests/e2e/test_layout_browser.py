"""Layout in Chromium at a laptop's 1280 x 720: the Data page's Delete buttons show their whole label
(as a fifth column of each row they were cut to "D…")."""

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
