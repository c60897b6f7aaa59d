"""AppTest of the Label page on a small demo database (tests/app/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.store import Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")
# First runs import torch and fit the PCA: generous, the machine may be shared.
TIMEOUT = 120
LIVE_KEY = "label_live"

pytestmark = pytest.mark.slow


def _app(user: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = user
    return at.run()


def _weights(at: AppTest) -> np.ndarray:
    return at.session_state[LIVE_KEY].live.weights


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _session_labels(path: Path, info: dict, user: str, mode: str = "human", persona=None):
    with Store(path) as store:
        sid = store.get_or_create_session(
            user=user, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"], mode=mode,
            persona=persona,
        )
        return store.session_labels(sid)


def test_label_undo_and_reload(app_db):
    path, info = app_db
    at = _app("alice")
    assert not at.exception, at.exception
    assert _metric(at, "Labels") == "0 / 30"
    assert _metric(at, "Effective heads") == f"{info['n_heads']:.1f} / {info['n_heads']}"
    start = _weights(at)
    np.testing.assert_allclose(start, 1.0 / info["n_heads"])
    # the sidebar says what the page works on
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "K = 20" in sidebar and "alice" in sidebar

    history = [start]
    for key in ("btn_a", "btn_b", "btn_a"):
        at.button(key=key).click().run()
        assert not at.exception, at.exception
        history.append(_weights(at))
    assert _metric(at, "Labels") == "3 / 30"
    assert not np.allclose(history[-1], start), "three labels left the weights uniform"

    stored = _session_labels(path, info, "alice")
    assert stored["label"].tolist() == ["a", "b", "a"]
    assert stored["row_index"].nunique() == 3  # three different pairs were asked

    at.button(key="btn_undo").click().run()
    assert not at.exception, at.exception
    np.testing.assert_array_equal(_weights(at), history[2])
    assert _metric(at, "Labels") == "2 / 30"
    assert _session_labels(path, info, "alice")["label"].tolist() == ["a", "b"]

    # a new browser session (reload) replays the stored labels: same weights
    again = _app("alice")
    np.testing.assert_array_equal(_weights(again), history[2])
    assert _metric(again, "Labels") == "2 / 30"
    # another user starts from scratch and never sees alice's labels
    bob = _app("bob")
    assert _metric(bob, "Labels") == "0 / 30"
    np.testing.assert_allclose(_weights(bob), 1.0 / info["n_heads"])


def test_skip_and_reset(app_db):
    path, info = app_db
    at = _app("carol")
    at.button(key="btn_skip").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Labels") == "0 / 30"
    np.testing.assert_allclose(_weights(at), 1.0 / info["n_heads"])
    skipped = _session_labels(path, info, "carol")
    assert skipped["label"].tolist() == ["skip"]
    # the skipped pair is not asked again
    at.button(key="btn_a").click().run()
    labels = _session_labels(path, info, "carol")
    assert labels["row_index"].iloc[1] != labels["row_index"].iloc[0]
    # Advanced: reset asks first; Cancel keeps everything
    at.button(key="btn_reset").click().run()
    assert not at.exception, at.exception
    assert len(_session_labels(path, info, "carol")) == 2
    assert any("Remove all 2 answers" in w.value for w in at.warning)
    at.button(key="btn_reset_cancel").click().run()
    assert len(_session_labels(path, info, "carol")) == 2
    assert _metric(at, "Labels").startswith("1")
    # confirmed, it deletes the session's labels and returns to uniform weights
    at.button(key="btn_reset").click().run()
    at.button(key="btn_reset_confirm").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Labels").startswith("0")
    np.testing.assert_allclose(_weights(at), 1.0 / info["n_heads"])
    assert len(_session_labels(path, info, "carol")) == 0


def test_tie_both_bad_and_cant_judge_are_stored_but_teach_the_heads_nothing(app_db):
    path, info = app_db
    at = _app("erin")
    start = _weights(at)
    for key in ("btn_tie", "btn_both_bad", "btn_cant_judge"):
        at.button(key=key).click().run()
        assert not at.exception, at.exception
        np.testing.assert_array_equal(_weights(at), start)
    stored = _session_labels(path, info, "erin")
    assert stored["label"].tolist() == ["tie", "both_bad", "cant_judge"]
    assert stored["row_index"].nunique() == 3
    assert _metric(at, "Labels").startswith("0 /")
    # the tooltip of each says it gives no evidence
    assert "teaches the heads nothing" in at.button(key="btn_tie").help
    at.button(key="btn_undo").click().run()
    assert _session_labels(path, info, "erin")["label"].tolist() == ["tie", "both_bad"]


def test_goal_shows_progress_then_a_summary(app_db):
    path, info = app_db
    at = _app("fay")
    assert _metric(at, "Labels") == "0 / 30"
    at.number_input(key="adv_goal").set_value(5).run()
    assert _metric(at, "Labels") == "0 / 5"
    for _ in range(5):
        at.button(key="btn_a").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Labels") == "5 / 5"
    assert any("Goal reached: 5 / 5 labels" in s.value for s in at.success)
    # the goal is a setting of the session: a reload keeps it
    assert _metric(_app("fay"), "Labels") == "5 / 5"


def test_persona_mode_advances(app_db):
    path, info = app_db
    at = _app("dave")
    at.segmented_control(key="label_mode").set_value("persona").run()
    assert not at.exception, at.exception
    persona = at.selectbox(key="label_persona").value
    assert persona and persona != "crowd"
    assert _metric(at, "Labels") == "0"
    held_out_start = _metric(at, "Held-out accuracy")
    # before any label HyRe is the uniform ensemble: its "+0% vs uniform" is neither green nor an arrow
    start = next(m for m in at.metric if m.label == "Held-out accuracy").proto
    assert start.delta.startswith("+0%") and start.color == start.MetricColor.GRAY
    assert start.direction == start.MetricDirection.NONE

    at.button(key="btn_step").click().run()
    at.button(key="btn_step").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Labels") == "2"
    # Play: each run of the timed fragment lets the persona label one more pair
    at.button(key="btn_play").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Labels") == "3"
    assert at.button(key="btn_play").label == "Pause"
    # switching persona stops playback, and the button says Play in the same run
    with Store(path) as store:
        groups = store.pool_groups(info["pool_id"])["group"].dropna().tolist()
    other = next(g for g in groups if g not in ("crowd", persona))
    at.selectbox(key="label_persona").set_value(other).run()
    assert not at.exception, at.exception
    assert at.button(key="btn_play").label == "Play"
    at.selectbox(key="label_persona").set_value(persona).run()

    stored = _session_labels(path, info, "dave", mode="persona", persona=persona)
    assert len(stored) == 3
    # the persona answers with its own labels from the pool
    with Store(path) as store:
        truth = store.pool_labels(info["pool_id"], groups=[persona])
    by_row = dict(zip(truth["row_index"], truth["label"], strict=True))
    assert [by_row[r] for r in stored["row_index"]] == stored["label"].tolist()
    assert held_out_start.endswith("%")
    # the human session of the same user is untouched
    assert len(_session_labels(path, info, "dave")) == 0



def test_a_one_head_baseline_is_never_the_working_ensemble(app_db):
    # `evaluate` stores a one-head `single` model beside the ensemble; being the
    # newest must not make it the ensemble the pages reweight.
    from hyre_engine.pipeline import BuildConfig, build_pool

    path, info = app_db
    with Store(path) as store:
        single = build_pool(
            store, info["pool_id"],
            BuildConfig(n_heads=1, hidden=8, annotator_fraction=None, calibrate=False,
                        train_groups=["crowd"]),
        )
        assert single.ensemble_id != info["ensemble_id"]
    at = _app("dave")
    assert not at.exception, at.exception
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert f"K = {info['n_heads']}" in sidebar


def _pca_star(at: AppTest) -> tuple[float, float]:
    """The person's star on the function-space map, read from the rendered SVG."""
    import xml.etree.ElementTree as ET

    for element in at.markdown:
        if not element.value.startswith('<div class="hyre-live-chart">'):
            continue
        root = ET.fromstring(element.value)[0]
        if root.get("data-chart") != "pca":
            continue
        for star in root.iter("svg"):
            if star.get("class") == "person":
                return float(star.get("data-x")), float(star.get("data-y"))
    raise AssertionError("no star on the function-space map")


def test_labelling_moves_the_personal_marker_and_hyre_only_switches_the_method(app_db):
    path, info = app_db
    at = _app("pat")
    assert not at.exception, at.exception
    state = at.session_state[LIVE_KEY]
    assert state.live.method == "personal" and state.live.has_personal
    before = _pca_star(at)
    assert "Personal flips 0% of the pool" in " ".join(c.value for c in at.caption)
    for key in ("btn_a", "btn_b", "btn_b"):
        at.button(key=key).click().run()
        assert not at.exception, at.exception
    moved = _pca_star(at)
    assert moved != before
    np.testing.assert_allclose(moved, at.session_state[LIVE_KEY].live.snapshot().person_coords[:2])
    assert any(c.value.startswith("**Personal flips") for c in at.caption)
    # the personal model picks the next pair (by its own BALD: tests/test_live.py)
    assert at.session_state[LIVE_KEY].live.personal_speaks

    at.toggle(key="adv_hyre_only").set_value(True).run()
    assert not at.exception, at.exception
    live_session = at.session_state[LIVE_KEY].live
    assert live_session.method == "hyre"
    with Store(path) as store:
        sid = store.get_or_create_session(user="pat", pool_id=info["pool_id"], ensemble_id=info["ensemble_id"])
        assert store.get_session(sid).settings["method"] == "hyre"
    # HyRe alone places the person at the weighted mean of the heads, inside their cloud
    snap = live_session.snapshot()
    np.testing.assert_allclose(_pca_star(at), snap.weights @ snap.head_coords, atol=1e-3)
    assert "HyRe only: personal head off" in " ".join(c.value for c in at.caption)
    # a reload keeps the choice
    again = _app("pat")
    assert again.session_state[LIVE_KEY].live.method == "hyre" and again.toggle(key="adv_hyre_only").value
