"""The first launch in a real browser: a fresh install (no database file) served by
`python app.py`, reloaded and opened in a second tab while the server builds the demo
with the real embedded MiniLM; every view follows the one build, then the Label page opens."""

from __future__ import annotations

import time

import pytest

from hyre_engine import demo_embeddings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The whole first launch (the demo's 324 texts on the real MiniLM, K = 100 heads): about a
# minute on a quiet 2-core machine, several under load.
LAUNCH_TIMEOUT_S = 600
LOAD_TIMEOUT_MS = 90_000
EXCEPTION = "[data-testid='stException']"
# What the first-launch screen shows of its server job: the bar's value and its "Started N s ago".
JOB_JS = """() => {
  const box = document.querySelector('.st-key-first-launch-progress');
  if (!box) return null;
  const bar = box.querySelector('[role="progressbar"]');
  const started = box.innerText.match(/Started (\\d+) s ago/);
  return {value: bar ? Number(bar.getAttribute('aria-valuenow')) : null,
          started: started ? Number(started[1]) : null, text: box.innerText};
}"""
USABLE_JS = """() => {
  const on = (key) => { const b = document.querySelector(`.st-key-${key} button`); return b && !b.disabled; };
  return !!document.querySelector('.st-key-prompt-card') && on('btn_a') && on('btn_b');
}"""


def _job_view(page) -> tuple[dict, float]:
    """What the screen shows of the job, and when it was read (time.monotonic)."""
    # the caption and the bar arrive as separate elements: wait until both are drawn
    page.wait_for_function(f"(((j) => j && j.started != null && j.value != null)(({JOB_JS})()))",
                           timeout=LOAD_TIMEOUT_MS)
    return page.evaluate(JOB_JS), time.monotonic()


def _same_job(first: tuple[dict, float], later: tuple[dict, float]) -> None:
    """``later`` shows the job ``first`` showed: started as long before, its bar no lower."""
    (a, t_a), (b, t_b) = first, later
    assert abs(b["started"] - (a["started"] + (t_b - t_a))) <= 3, (a, b, t_b - t_a)
    assert b["value"] >= a["value"], (a, b)


def test_reload_and_a_second_tab_follow_the_one_first_launch(serve_app, browser_page, tmp_path):
    db = tmp_path / "fresh" / "hyre.duckdb"  # does not exist: a fresh install
    log = tmp_path / "server.log"
    # without the demo's shipped vectors: the texts are embedded, so the build lasts long
    # enough to reload and open a tab during it (what a user whose model differs waits for)
    with serve_app(db, log, env={demo_embeddings.ENV: "0"}) as url:
        page = browser_page
        page.goto(url)
        page.get_by_text("Getting the demo ready").wait_for(timeout=LOAD_TIMEOUT_MS)
        before = _job_view(page)
        # a reload during the first launch: the same job, at least as far along, not restarted
        page.reload()
        page.get_by_text("Getting the demo ready").wait_for(timeout=LOAD_TIMEOUT_MS)
        _same_job(before, _job_view(page))
        # a second tab opened while it runs shows the same job (on a fast machine it may
        # have ended already: then the second tab opens on the Label page like the first)
        other = page.context.browser.new_page(viewport=page.viewport_size)
        other.goto(url)
        other.wait_for_function(f"({USABLE_JS})() || !!({JOB_JS})()", timeout=LOAD_TIMEOUT_MS)
        if other.evaluate(JOB_JS) is not None and other.evaluate(JOB_JS)["started"] is not None:
            _same_job(before, _job_view(other))
        for tab in (page, other):
            tab.wait_for_function(USABLE_JS, timeout=LAUNCH_TIMEOUT_S * 1000)
            assert tab.locator(EXCEPTION).count() == 0
        other.close()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    from hyre_engine.store import Store

    with Store(db) as store:
        pools = store.list_pools()
        assert list(pools["name"]) == ["demo"]
        assert len(store.list_ensembles(pools["pool_id"].iloc[0])) == 1


def test_a_fresh_install_opens_on_the_label_page_with_the_shipped_vectors(serve_app, browser_page, tmp_path):
    db = tmp_path / "fresh" / "hyre.duckdb"
    log = tmp_path / "server.log"
    with serve_app(db, log) as url:
        page = browser_page
        page.goto(url)
        page.wait_for_function(USABLE_JS, timeout=LAUNCH_TIMEOUT_S * 1000)
        assert page.locator(EXCEPTION).count() == 0
    text = log.read_text()
    assert "Traceback" not in text and "not usable" not in text, text[-3000:]
    from hyre_engine.backbone import default_backbone_id
    from hyre_engine.store import Store

    with Store(db) as store:
        pool_id = store.list_pools()["pool_id"].iloc[0]
        texts = store.pool_texts(pool_id)["text_hash"].tolist()
        # every text's vector is the shipped one: nothing was embedded on this machine
        assert not store.missing_embeddings(default_backbone_id(), texts)

