"""The labelling workflow in Chromium at a laptop's 1280 x 720: 30 labels by keyboard with
the live strip in view, the name field never takes shortcut keys, reset asks first, and
the ? overlay lists the keys. Screenshots of the Label page go to $HYRE_SCREENSHOTS when set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from page_js import METRIC

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD_TIMEOUT_MS = 90_000
STEP_TIMEOUT_MS = 20_000
LAPTOP = {"width": 1280, "height": 720}
N_LABELS = 30
STRIP = ".st-key-live-strip"
ACTIONS = ".st-key-actions"
EXCEPTION = "[data-testid='stException']"
NAME = "[data-testid='stSidebar'] input[aria-label='Your name']"


def _laptop_page(browser_page):
    browser_page.set_viewport_size(LAPTOP)
    return browser_page


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"{STRIP} svg[data-chart='accuracy']", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(f"() => ({METRIC})('Labels') !== null", timeout=LOAD_TIMEOUT_MS)


def _wait_labels(page, text: str) -> None:
    page.wait_for_function(f"(n) => ({METRIC})('Labels') === n", arg=text, timeout=STEP_TIMEOUT_MS)


def _in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] \
        and box["x"] >= 0 and box["x"] + box["width"] <= size["width"]


def _stored_count(page, url: str, user: str) -> str:
    """The Labels metric a fresh tab of ``user`` shows: what the store holds (the server owns the file)."""
    other = page.context.browser.new_page(viewport=LAPTOP)
    try:
        _open(other, f"{url}/?user={user}")
        return other.evaluate(METRIC, "Labels")
    finally:
        other.close()


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("HYRE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def test_thirty_labels_by_keyboard_keep_the_live_strip_in_view(app_server, browser_page):
    page = _laptop_page(browser_page)
    _open(page, f"{app_server['url']}/?user=keys30")
    assert _in_viewport(page, STRIP) and _in_viewport(page, ACTIONS)
    _screenshot(page, "label-page-1280x720.png")
    keys = "ab12" * (N_LABELS // 4) + "ab"
    for i, key in enumerate(keys[:N_LABELS], start=1):
        page.keyboard.press(key)
        _wait_labels(page, f"{i} / 30")
        # the pair's buttons and the strip never leave the screen
        assert _in_viewport(page, STRIP), f"live strip left the viewport after {i} labels"
        assert _in_viewport(page, ACTIONS), f"buttons left the viewport after {i} labels"
    assert page.locator(EXCEPTION).count() == 0
    assert "Goal reached: 30 / 30" in page.inner_text("body")
    assert _stored_count(page, app_server["url"], "keys30") == "30 / 30"
    _screenshot(page, "label-page-goal-1280x720.png")


def test_a_name_typed_then_a_key_keeps_the_name(app_server, browser_page):
    page = _laptop_page(browser_page)
    _open(page, f"{app_server['url']}/?user=first")
    field = page.locator(NAME)
    field.click()
    field.fill("kim")
    field.press("Enter")
    page.wait_for_function("() => window.location.search.includes('user=kim')", timeout=STEP_TIMEOUT_MS)
    # the rerun under the new name has finished when the sidebar names kim
    page.wait_for_function("() => document.querySelector('[data-testid=stSidebar]').innerText.includes('User kim')",
                           timeout=STEP_TIMEOUT_MS)
    # Enter handed the keys back to the page
    assert page.evaluate("() => document.activeElement.tagName") != "INPUT"
    page.keyboard.press("a")
    _wait_labels(page, "1 / 30")
    page.keyboard.press("b")
    _wait_labels(page, "2 / 30")
    assert page.locator(NAME).input_value() == "kim"
    assert "user=kim" in page.url and "kimab" not in page.url
    assert _stored_count(page, app_server["url"], "kim") == "2 / 30"
    assert _stored_count(page, app_server["url"], "kimab") == "0 / 30"


def test_reset_only_after_confirming_and_keys_overlay(app_server, browser_page):
    page = _laptop_page(browser_page)
    _open(page, f"{app_server['url']}/?user=resetter")
    page.keyboard.press("a")
    _wait_labels(page, "1 / 30")
    page.keyboard.press("?")
    page.wait_for_selector("[role='dialog']", timeout=STEP_TIMEOUT_MS)
    assert "Can't judge" in page.inner_text("[role='dialog']")
    page.keyboard.press("Escape")
    page.wait_for_selector("[role='dialog']", state="detached", timeout=STEP_TIMEOUT_MS)

    page.get_by_text("Advanced: query strategy").click()
    page.locator(".st-key-btn_reset button:visible").first.click()
    page.wait_for_selector(".st-key-btn_reset_confirm button", timeout=STEP_TIMEOUT_MS)
    assert page.evaluate(METRIC, "Labels") == "1 / 30"  # nothing deleted yet
    page.locator(".st-key-btn_reset_cancel button").click()
    # the rerun swaps the confirmation back for the button (a stale copy may linger a moment)
    page.wait_for_selector(".st-key-btn_reset_confirm", state="detached", timeout=STEP_TIMEOUT_MS)
    page.wait_for_selector(".st-key-btn_reset button:visible", timeout=STEP_TIMEOUT_MS)
    assert _stored_count(page, app_server["url"], "resetter") == "1 / 30"
    page.locator(".st-key-btn_reset button:visible").first.click()
    page.locator(".st-key-btn_reset_confirm button").click()
    _wait_labels(page, "0 / 30")
    assert _stored_count(page, app_server["url"], "resetter") == "0 / 30"
    assert page.locator(EXCEPTION).count() == 0
