"""The first launch in the app: the demo build is a server job that every tab follows.

A fresh install (no database file) opens on the first-launch screen, drawn from the job
in the server's registry; a second tab shows the same job and starts no build; when it
ends the Label page opens. The job runs the real demo pool on a tiny local BERT with a
small ensemble (tests/test_first_launch.py), started by the test so it can hold it.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from hyre_engine import first_launch, jobs
from hyre_engine.backbone import load_backbone
from hyre_engine.demo import DEMO_POOL_NAME, DEMO_TRAIN_GROUPS
from hyre_engine.pipeline import BuildConfig
from hyre_engine.store import DB_ENV_VAR

APP = str(Path(__file__).resolve().parents[2] / "app.py")
WAIT_S = 300
WORDS = ["what", "is", "a", "the", "why", "how", "and", "of", "to", "it", "you", "?", ".", ","]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, tiny_bert):
    return load_backbone(tiny_bert(tmp_path_factory.mktemp("tiny-bert-first-launch"), WORDS))


@pytest.fixture
def fresh_db(tmp_path, monkeypatch):
    """$HYRE_DB at a file that does not exist yet: a fresh install."""
    path = tmp_path / "hyre.duckdb"
    monkeypatch.setenv(DB_ENV_VAR, str(path))
    yield str(path)
    from pages._shared import context

    for job in jobs.REGISTRY.jobs(str(path)):
        jobs.REGISTRY.wait(job.job_id, WAIT_S)
    context.get_store(str(path)).close()
    context.get_store.clear()
    context.pool_arrays.clear()
    gc.collect()


def _tab():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.title, *at.error])


def test_every_tab_follows_the_one_demo_build_then_the_label_page_opens(fresh_db, backbone):
    gate = threading.Event()

    def held():  # the model arrives when the test lets go: the first launch runs until then
        gate.wait(WAIT_S)
        return backbone

    config = BuildConfig(n_heads=8, hidden=16, train_groups=DEMO_TRAIN_GROUPS, calibration_seeds=1)
    job = first_launch.start(fresh_db, backbone=held, config=config)
    first, second = _tab(), _tab()
    for tab in (first, second):
        text = _text(tab)
        assert "Getting the demo ready" in text and "Started" in text and "on the server" in text
        assert tab.get("progress")  # the job's bar
        assert not tab.sidebar.selectbox  # no page of the app until the demo is built
    # both tabs show the one job: neither started a build of its own
    assert [j.job_id for j in jobs.REGISTRY.jobs(fresh_db, kind=jobs.FIRST_LAUNCH)] == [job.job_id]
    gate.set()
    done = jobs.REGISTRY.wait(job.job_id, WAIT_S)
    assert done.status == jobs.DONE, done.error
    first.run()
    assert not first.exception, first.exception
    assert "Getting the demo ready" not in _text(first)
    from pages._shared import context

    ctx = first.session_state[context.CONTEXT_KEY]
    assert ctx.pool_name == DEMO_POOL_NAME and ctx.ensemble_id == done.ensemble_id and ctx.n_heads == 8
    assert first.button(key="btn_a") and first.button(key="btn_b")  # the Label page, ready to label
    assert len(jobs.REGISTRY.jobs(fresh_db, kind=jobs.FIRST_LAUNCH)) == 1


def test_a_failed_first_launch_says_why_and_offers_to_try_again(fresh_db):
    def broken():
        raise ValueError("the demo model is not installed")

    job = first_launch.start(fresh_db, backbone=broken)
    assert jobs.REGISTRY.wait(job.job_id, WAIT_S).status == jobs.FAILED
    at = _tab()
    assert any("The demo could not be built" in e.value and "the demo model is not installed" in e.value
               for e in at.error)
    assert at.button(key="first_launch_retry").label == "Try again"
    assert "Traceback" not in _text(at)
    # a later run shows the same failure and starts nothing by itself
    at.run()
    assert [j.job_id for j in jobs.REGISTRY.jobs(fresh_db, kind=jobs.FIRST_LAUNCH)] == [job.job_id]
