"""Fixtures of the app tests: a small demo database, built once per test session.

The app reads $HYRE_DB (the contract between tests and app). The template is
the demo pool cut to its first prompts, with a small ensemble (K = 20 heads,
hidden = 32) trained on the crowd's labels, so building it takes seconds;
each test gets its own copy, so sessions never leak between tests.
tests/e2e/conftest.py loads `small_demo_once` from this file, so a full run builds it once.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pytest

from hyre_engine.data import read_preferences
from hyre_engine.demo import DEMO_POOL_NAME, DEMO_TRAIN_GROUPS, PAIRS_FILE
from hyre_engine.pipeline import BuildConfig, build_pool
from hyre_engine.store import DB_ENV_VAR, Store

# 8 prompts x 15 pairs = 120 pairs over 48 texts: embedded in a few seconds on a CPU.
SMALL_PROMPTS = 8
# A small ensemble still shows every panel; K = 20 keeps training to a second or two.
SMALL_CONFIG = dict(n_heads=20, hidden=32, train_groups=DEMO_TRAIN_GROUPS)
REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
# First runs import torch and the app: generous, the machine may be shared.
TIMEOUT = 120
# The longest a test waits for a build it started on the Data page (tiny pools: seconds).
BUILD_WAIT_S = 180


def build_small_demo(path: Path) -> dict:
    """Write the small demo DuckDB at ``path``; returns {pool_id, ensemble_id, n_pairs, n_heads}."""
    frame = read_preferences(PAIRS_FILE)
    keep = frame["prompt_id"].isin(frame["prompt_id"].unique()[:SMALL_PROMPTS])
    with Store(path) as store:
        pool_id = store.add_pool(DEMO_POOL_NAME, frame[keep].reset_index(drop=True), source="tests")
        report = build_pool(store, pool_id, BuildConfig(**SMALL_CONFIG))
    return {
        "pool_id": pool_id,
        "ensemble_id": report.ensemble_id,
        "n_pairs": report.n_pairs,
        "n_heads": SMALL_CONFIG["n_heads"],
    }


def small_demo_once(tmp_path_factory) -> tuple[Path, dict]:
    """The session's small demo template, built by whichever test directory asks first."""
    folder = tmp_path_factory.getbasetemp() / "small-demo"
    path, meta = folder / "template.duckdb", folder / "info.json"
    if not meta.exists():
        folder.mkdir(exist_ok=True)
        info = build_small_demo(path)
        meta.write_text(json.dumps(info))
    return path, json.loads(meta.read_text())


@pytest.fixture(scope="session")
def small_demo_template(tmp_path_factory) -> tuple[Path, dict]:
    return small_demo_once(tmp_path_factory)


@pytest.fixture
def app_db(small_demo_template, tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A private copy of the small demo DB, with $HYRE_DB pointing at it."""
    template, info = small_demo_template
    path = tmp_path / "hyre.duckdb"
    shutil.copyfile(template, path)
    monkeypatch.setenv(DB_ENV_VAR, str(path))
    yield path, info
    # A build the test started runs on a thread of this process: let it end before its file goes.
    from hyre_engine import jobs
    from pages._shared import context

    for job in jobs.REGISTRY.jobs(str(path)):
        jobs.REGISTRY.wait(job.job_id, BUILD_WAIT_S)

    context.get_store(str(path)).close()
    context.get_store.clear()
    context.pool_arrays.clear()
    gc.collect()


@pytest.fixture
def open_page():
    """``open_page("pages/data.py")``: the app run once, switched to that page, without an exception."""
    from streamlit.testing.v1 import AppTest

    def open_(page: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.run()
        at.switch_page(page).run()
        assert not at.exception, at.exception
        return at

    return open_


@pytest.fixture
def upload_pool(design_csv):
    """``upload_pool(at, path, n_pairs)``: import a DESIGN CSV of ``n_pairs`` pairs as pool
    "tiny" through the Data page ``at`` (database ``path``); returns the new pool's id."""

    def upload(at, path: Path, n_pairs: int) -> str:
        at.file_uploader(key="data_upload").set_value(("tiny.csv", design_csv(n_pairs=n_pairs), "text/csv"))
        at.text_input(key="data_pool_name").set_value("tiny").run()
        at.button(key="data_import").click().run()
        with Store(path) as store:
            pools = store.list_pools()
        return dict(zip(pools["name"], pools["pool_id"], strict=True))["tiny"]

    return upload


@pytest.fixture
def finish_builds():
    """``finish_builds(path)``: wait for every build of the database ``path`` that the Data page
    started on the server's job registry; returns them, newest first, all ended."""
    from hyre_engine import jobs

    def wait(path: Path) -> list:
        ended = [jobs.REGISTRY.wait(job.job_id, BUILD_WAIT_S) for job in jobs.REGISTRY.jobs(str(path))]
        assert not any(job.running for job in ended), "a build did not end in time"
        return ended

    return wait
