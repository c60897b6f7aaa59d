"""AppTest of the History page and notes: change and delete an old label, the weights replay exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine import live
from hyre_engine.store import Store
from pages._shared.notes import POPOVER_KEY

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120
LIVE_KEY = "label_live"

pytestmark = pytest.mark.slow


def _replayed_weights(path: Path, info: dict, user: str) -> np.ndarray:
    """The weights of a fresh replay of the stored labels, outside the app."""
    with Store(path) as store:
        sid = store.get_or_create_session(user=user, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"])
        logits = store.get_head_predictions(info["ensemble_id"], info["pool_id"])
        pair_ids = store.pool_pairs(info["pool_id"], with_meta=False)["pair_id"].to_numpy(dtype=object)
        state = live.open_live(store, sid, logits.astype(np.float32), pair_ids,
                               beta=live.session_beta(store, sid), strategy="bald")
        return state.live.weights


def test_change_and_delete_an_old_label_from_history(app_db):
    path, info = app_db
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = "hana"
    at.run()
    for key in ("btn_a", "btn_a", "btn_b", "btn_tie"):
        at.button(key=key).click().run()
    assert not at.exception, at.exception
    before = at.session_state[LIVE_KEY].live.weights.copy()

    at.switch_page("pages/history.py").run()
    assert not at.exception, at.exception
    picker = at.selectbox(key="history_pick")
    assert picker.value == 3  # newest first
    picker.set_value(0).run()  # the first label: A
    assert at.button(key="hist_a").disabled
    at.button(key="hist_b").click().run()
    assert not at.exception, at.exception
    assert "changed from A to B" in at.success[0].value
    after = at.session_state[LIVE_KEY].live.weights
    assert not np.allclose(after, before)

    # delete asks first
    at.selectbox(key="history_pick").set_value(1).run()
    at.button(key="hist_delete").click().run()
    assert at.button(key="hist_delete_confirm")
    at.button(key="hist_delete_confirm").click().run()
    assert not at.exception, at.exception
    with Store(path) as store:
        sid = store.get_or_create_session(user="hana", pool_id=info["pool_id"], ensemble_id=info["ensemble_id"])
        assert store.session_labels(sid)["label"].tolist() == ["b", "b", "tie"]
        assert store.label_history(sid)["action"].tolist()[-2:] == ["edit", "delete"]
    np.testing.assert_array_equal(at.session_state[LIVE_KEY].live.weights, _replayed_weights(path, info, "hana"))

    # a note on a label shows in the list and is stored
    at.selectbox(key="history_pick").set_value(3).run()
    form_key = at.text_area[0].key
    assert form_key.startswith("history_note_") and form_key.endswith("_comment")
    at.text_area(key=form_key).input("unsure: both are long")
    at.checkbox(key=form_key.replace("_comment", "_flag")).check()
    at.button[-1].click().run()  # the form's Save note
    assert not at.exception, at.exception
    with Store(path) as store:
        notes = store.session_notes(sid)
    assert notes["comment"].tolist() == ["unsure: both are long"] and notes["flagged"].tolist() == [True]

    # back on the Label page the live session continues from the replayed labels
    at.switch_page("pages/label.py").run()
    assert not at.exception, at.exception
    np.testing.assert_array_equal(at.session_state[LIVE_KEY].live.weights, _replayed_weights(path, info, "hana"))


def test_history_without_labels_says_where_to_start(app_db):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = "nobody"
    at.run()
    at.switch_page("pages/history.py").run()
    assert not at.exception, at.exception
    assert "No labels yet" in at.info[0].value


def test_a_note_on_a_pair_not_labelled_shows_in_history(app_db):
    path, info = app_db
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = "noa"
    at.run()
    # the Label page's note on the pair shown, without judging it: the form is built once the
    # Note popover is opened (a closed one costs every label nothing)
    assert not [t for t in at.text_area if (t.key or "").startswith("label_note_")]
    at.session_state[POPOVER_KEY] = True
    at.run()
    area = next(t for t in at.text_area if (t.key or "").startswith("label_note_"))
    area.input("is this even a question?")
    at.checkbox(key=area.key.replace("_comment", "_flag")).check()
    next(b for b in at.button if b.label == "Save note").click().run()
    assert not at.exception, at.exception

    at.switch_page("pages/history.py").run()
    assert not at.exception, at.exception
    assert not at.info, "a note without a label is still something to show"
    assert any(m.value == "### Notes on pairs you have not labelled" for m in at.markdown)
    [table] = at.dataframe
    assert table.value["comment"].tolist() == ["is this even a question?"] and table.value["flag"].tolist() == ["⚑"]
    # its note is edited where it is listed
    form = next(t for t in at.text_area if (t.key or "").startswith("history_unlabelled_note_"))
    assert form.value == "is this even a question?"
    form.input("")
    at.checkbox(key=form.key.replace("_comment", "_flag")).uncheck()
    next(b for b in at.button if b.label == "Save note").click().run()
    assert not at.exception, at.exception
    assert "No labels yet" in at.info[0].value  # the note was the only thing: removed, nothing left
