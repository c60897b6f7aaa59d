"""The Data page in a real browser: upload a small file, import it, build a small
ensemble (reloading the page while it builds), work on it, and open Explore on it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# First load imports torch; the build loads the embedding model: a shared CPU is slow.
LOAD_TIMEOUT_MS = 90_000
BUILD_TIMEOUT_MS = 180_000
EXCEPTION = "[data-testid='stException']"
CHART = "[data-testid='stPlotlyChart'] .main-svg"
POOL = "e2e-pool"


def _design_file(path: Path, n_pairs: int = 12) -> Path:
    """~12 pairs x 2 groups in the DESIGN format (g1 prefers the short answer, g2 the long one)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["prompt", "response_a", "response_b", "label", "group"])
    for i in range(n_pairs):
        for group, label in (("g1", "a"), ("g2", "b")):
            writer.writerow([f"How do I do task {i}?", f"Short answer {i}.",
                             f"A long answer {i} with every detail spelled out.", label, group])
    path.write_text(out.getvalue())
    return path


def _nav(page, url_path: str) -> None:
    page.locator(f"[data-testid='stSidebarNav'] a[href$='/{url_path}']").click()


def _fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def test_upload_import_build_and_explore(app_server, browser_page, tmp_path):
    page = browser_page
    upload = _design_file(tmp_path / "prefs.csv")
    # A fresh server shows Streamlit's legacy pages/ menu until app.py has called
    # st.navigation once: load the root, then reload into the app's own menu.
    page.goto(app_server["url"])
    page.wait_for_selector("[data-testid='stSidebarNav']", timeout=LOAD_TIMEOUT_MS)
    page.reload()
    page.locator("[data-testid='stSidebar']").get_by_text("HyRe Studio").wait_for(timeout=LOAD_TIMEOUT_MS)
    _nav(page, "data")
    page.get_by_role("heading", name="Data").wait_for(timeout=LOAD_TIMEOUT_MS)

    page.locator("input[type='file']").set_input_files(str(upload))
    page.get_by_text("prefs.csv").wait_for(timeout=LOAD_TIMEOUT_MS)
    _fill(page, "Pool name", POOL)
    page.get_by_role("button", name="Preview").click()
    page.get_by_text("The first 20 of 24 judgements").wait_for(timeout=LOAD_TIMEOUT_MS)
    page.get_by_role("button", name="Import").click()
    page.get_by_text(f"Imported pool '{POOL}'").wait_for(timeout=LOAD_TIMEOUT_MS)
    assert page.locator(EXCEPTION).count() == 0

    _fill(page, "Heads (K)", "8")
    _fill(page, "Hidden units per head", "16")
    page.get_by_role("button", name="Build", exact=True).click()
    # the build runs on the server: a reload mid-build still shows it, and its end
    page.get_by_text("Building", exact=True).wait_for(timeout=LOAD_TIMEOUT_MS)
    page.reload()
    page.get_by_role("heading", name="Data").wait_for(timeout=LOAD_TIMEOUT_MS)
    job = page.locator("[data-testid='stProgress']").or_(page.get_by_text("Built: ensemble"))
    job.first.wait_for(timeout=LOAD_TIMEOUT_MS)
    page.get_by_text("Built: ensemble").wait_for(timeout=BUILD_TIMEOUT_MS)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    page.get_by_role("button", name="Work on this ensemble").click()
    page.locator("[data-testid='stSidebar']").get_by_text(POOL).first.wait_for(timeout=LOAD_TIMEOUT_MS)

    _nav(page, "explore")
    page.wait_for_selector(CHART, timeout=LOAD_TIMEOUT_MS)
    assert page.locator(EXCEPTION).count() == 0
    sidebar = page.locator("[data-testid='stSidebar']").inner_text()
    assert POOL in sidebar and "K = 8" in sidebar
