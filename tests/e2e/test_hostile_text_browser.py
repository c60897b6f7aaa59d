"""A pool of hostile text in a real browser: Label (person and persona), Explore, Profiles,
History and People show it without a dialog, without a request to any host but the app's,
and without a live link from data (issue 12)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD_TIMEOUT_MS = 90_000
EVIL = "evil.example"
# Texts: every way Markdown or HTML could fetch, run or link (the sanitiser's corpus).
TEXTS = [
    f"![p](http://{EVIL}/md-image.png) plain words after the image",
    f'<img src="http://{EVIL}/raw-image.png" onerror="alert(1)"> raw image tag',
    "<script>alert(1)</script> a script tag",
    "[click me](javascript:alert(1)) a javascript link",
    f'<a href="http://{EVIL}/raw-link">a raw HTML link</a>',
    f"<iframe src=\"http://{EVIL}/frame\"></iframe><svg onload=\"alert(1)\"></svg> frames",
    f"<style>@import url(http://{EVIL}/style.css);</style> a style tag",
    f"[ref]\n\n[ref]: javascript:alert(1)\n\n![also](//{EVIL}/protocol-relative.png)",
    "$\\href{javascript:alert(1)}{x}$ and $x^2$ in LaTeX",
]
# Names of groups (personas, heatmap ticks, plotly traces) and pair ids.
GROUPS = [f'<a href="http://{EVIL}/group-link">g</a>', f"![g](http://{EVIL}/group.png)",
          '<img src=x onerror="alert(2)">']


def _hostile_pool(path: Path) -> Path:
    """12 pairs of hostile prompts and answers, labelled by a crowd and three hostile groups."""
    rows = []
    for i in range(12):
        for g, group in enumerate(["crowd", "crowd2", *GROUPS]):
            rows.append({
                "pair_id": f"<b>p{i}</b>![i](http://{EVIL}/pair-{i}.png)",
                "prompt": TEXTS[i % len(TEXTS)] + f" prompt {i}",
                "response_a": TEXTS[(i + 1) % len(TEXTS)] + f" answer A {i} " + "long words " * 30,
                "response_b": TEXTS[(i + 2) % len(TEXTS)] + f" answer B {i}",
                "label": "ab"[(i + g) % 2],
                "group": group,
                "annotator": f"{group}-{i % 3}",
            })
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> Path:
    from hyre_engine.data import read_preferences
    from hyre_engine.pipeline import BuildConfig, build_pool
    from hyre_engine.store import Store

    folder = tmp_path_factory.mktemp("hostile")
    db = folder / "hostile.duckdb"
    frame = read_preferences(_hostile_pool(folder / "hostile.jsonl"))
    with Store(db) as store:
        pool_id = store.add_pool(GROUPS[0], frame, source="tests")
        build_pool(store, pool_id, BuildConfig(n_heads=8, hidden=16, train_groups=["crowd", "crowd2"],
                                               calibrate=False))
    return db


def _watch(page, origin: str) -> dict[str, list]:
    seen = {"dialogs": [], "foreign": []}

    def on_dialog(dialog):
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda req: None if req.url.startswith((origin, "data:", "blob:", "about:"))
            else seen["foreign"].append(req.url))
    return seen


LINKS_JS = """() => Array.from(document.querySelectorAll('a')).map(a =>
    a.getAttribute('href') || a.getAttribute('xlink:href') || '').filter(h => h)"""


def _links_from_data(page) -> list[str]:
    hrefs = page.evaluate(LINKS_JS)
    return [h for h in hrefs if EVIL in h or not h.startswith(("http://127.0.0.1", "/", "#", "http", "blob:"))]


def _settle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_timeout(800)


def _check(page, seen: dict, where: str) -> None:
    _settle(page)
    assert not page.locator("[data-testid='stException']").count(), where
    assert seen["dialogs"] == [], where
    assert seen["foreign"] == [], where
    assert _links_from_data(page) == [], where
    assert page.locator(f"img[src*='{EVIL}'], iframe, script[src*='{EVIL}']").count() == 0, where


# What each page shows once it has rendered what the data fills in.
READY = {
    "explore": "[data-testid='stPlotlyChart']",
    "profiles": "[data-testid='stPlotlyChart']",
    "history": ".st-key-history-actions",  # the label just given, its pair in full
    "people": "[data-testid='stDataFrame']",  # the hostile user's row
}


def test_hostile_pool_renders_inert_on_every_page_of_its_labels(serve_app, hostile_db, tmp_path, browser_page):
    page = browser_page
    with serve_app(hostile_db, tmp_path / "server.log") as url:
        seen = _watch(page, url)
        page.goto(url + "/?user=" + "%3Cimg%20src%3Dhttp%3A%2F%2Fevil.example%2Fuser.png%3E")
        page.get_by_role("button", name="A is better").wait_for(timeout=LOAD_TIMEOUT_MS)
        _settle(page)
        # the hostile texts are there, shown as text
        assert page.get_by_text(re.compile(r"answer B \d+")).count() > 0
        assert page.get_by_text(re.compile(r"prompt \d+")).count() > 0
        for more in page.get_by_text("Show the whole answer").all():
            more.click()
        _check(page, seen, "label")
        page.get_by_role("button", name="A is better").click()
        _check(page, seen, "label after a click")
        page.get_by_text("A simulated persona labels").click()
        page.get_by_role("button", name="One label").click()
        _check(page, seen, "persona")
        for url_path, ready in READY.items():
            page.locator(f"[data-testid='stSidebarNav'] a[href$='/{url_path}']").click()
            page.locator(ready).first.wait_for(timeout=LOAD_TIMEOUT_MS)
            _settle(page)
            if url_path == "history":
                # the hostile texts of the labelled pair are there, as text
                assert page.get_by_text(re.compile(r"prompt \d+")).count() > 0
            for expander in page.locator("[data-testid='stExpander'] summary").all()[:6]:
                expander.click()
            if url_path == "profiles":
                page.get_by_role("tab", name="Compare").click()
                page.locator("[data-testid='stPlotlyChart'] .main-svg").last.wait_for(timeout=LOAD_TIMEOUT_MS)
                # the hostile group names are the heatmap's ticks, as text
                assert page.locator("svg text", has_text="href").count() > 0
            _check(page, seen, url_path)
