"""Tests for hyre_engine/store/sessions.py (resuming, labels, undo and reset), through the Store facade."""

from __future__ import annotations

import pandas as pd
import pytest
from store_helpers import add_ensemble


def test_session_resume_and_identity(store, session_setup):
    pool, ens = session_setup
    a = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    assert store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens) == a
    b = store.get_or_create_session(user="bob", pool_id=pool, ensemble_id=ens)
    p = store.get_or_create_session(
        user="ann", pool_id=pool, ensemble_id=ens, mode="persona", persona="u1"
    )
    p2 = store.get_or_create_session(
        user="ann", pool_id=pool, ensemble_id=ens, mode="persona", persona="u2"
    )
    assert len({a, b, p, p2}) == 4
    info = store.get_session(p)
    assert (info.user, info.mode, info.persona, info.n_labels) == (
        "ann",
        "persona",
        "u1",
        0,
    )
    assert store.get_session(a).persona is None
    assert store.list_sessions(pool, user="ann")["session_id"].tolist() == [a, p, p2]
    with pytest.raises(ValueError, match="persona"):
        store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens, mode="persona")
    with pytest.raises(ValueError, match="mode must be one of"):
        store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens, mode="robot")
    with pytest.raises(KeyError, match="no ensemble"):
        store.get_or_create_session(user="ann", pool_id=pool, ensemble_id="nope")


def test_session_labels_undo_reset_and_isolation(store, session_setup):
    pool, ens = session_setup
    ann = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    bob = store.get_or_create_session(user="bob", pool_id=pool, ensemble_id=ens)
    assert [
        store.add_session_label(ann, row_index=i, pair_id=f"p{i}", label=lab)
        for i, lab in [(3, "a"), (0, "skip"), (4, "b")]
    ] == [0, 1, 2]
    assert store.add_session_label(bob, row_index=1, pair_id="p1", label="b") == 0

    labels = store.session_labels(ann)
    assert labels[["seq", "row_index", "pair_id", "label"]].values.tolist() == [
        [0, 3, "p3", "a"],
        [1, 0, "p0", "skip"],
        [2, 4, "p4", "b"],
    ]
    assert labels["created_at"].is_monotonic_increasing
    assert store.session_labels(bob)["pair_id"].tolist() == ["p1"]  # bob sees only his label

    undone = store.undo_session_label(ann)
    assert (undone.seq, undone.row_index, undone.pair_id, undone.label) == (2, 4, "p4", "b")
    assert store.add_session_label(ann, row_index=2, pair_id="p2", label="a") == 2
    assert store.session_labels(ann)["pair_id"].tolist() == ["p3", "p0", "p2"]

    with pytest.raises(ValueError, match="already labelled"):
        store.add_session_label(ann, row_index=3, pair_id="p3", label="b")
    with pytest.raises(ValueError, match="row_index 1 is pair 'p1'"):
        store.add_session_label(ann, row_index=1, pair_id="p2", label="a")
    with pytest.raises(ValueError, match="label must be one of"):
        store.add_session_label(ann, row_index=1, pair_id="p1", label="A")
    with pytest.raises(KeyError, match="no session"):
        store.add_session_label("session_x", row_index=1, pair_id="p1", label="a")

    assert store.update_session(ann, strategy="bald", beta=2.0) == {"strategy": "bald", "beta": 2.0}
    assert store.update_session(ann, beta=0.5) == {"strategy": "bald", "beta": 0.5}
    assert store.reset_session(ann) == 3
    assert store.session_labels(ann).empty and store.undo_session_label(ann) is None
    assert store.get_session(ann).settings == {"strategy": "bald", "beta": 0.5}
    assert store.session_labels(bob)["pair_id"].tolist() == ["p1"]
    store.delete_session(bob)
    assert store.list_sessions()["session_id"].tolist() == [ann]


# ---------------------------------------------------------------- label audit trail


def _label(store, session, pairs, row, label, **kw):
    return store.add_session_label(session, row_index=row, pair_id=pairs["pair_id"][row], label=label, **kw)


def test_audit_trail_keeps_undone_and_reset_labels_with_who_and_when(store, pool):
    from hyre_engine.store import AUDIT_ACTIONS

    ens = add_ensemble(store, pool)
    session = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    pairs = store.pool_pairs(pool, with_meta=False)
    for row, label in enumerate("abs"):
        _label(store, session, pairs, row, {"s": "skip"}.get(label, label))
    assert store.undo_session_label(session).row_index == 2
    assert store.reset_session(session, actor="admin-carol") == 2
    assert len(store.session_labels(session)) == 0
    history = store.label_history(session)
    assert list(history["action"]) == ["add"] * 3 + ["undo"] + ["reset"] * 2
    assert set(history["action"]) <= set(AUDIT_ACTIONS)
    assert list(history["actor"]) == ["ann"] * 4 + ["admin-carol"] * 2
    assert list(history["row_index"][-2:]) == [0, 1] and history["happened_at"].notna().all()
    assert history["batch"].iloc[-1] == history["batch"].iloc[-2] != ""


def test_reset_can_be_undone_exactly_once_and_only_on_an_empty_session(store, pool):
    ens = add_ensemble(store, pool)
    session = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    pairs = store.pool_pairs(pool, with_meta=False)
    for row, label in ((3, "a"), (1, "b"), (4, "skip")):
        _label(store, session, pairs, row, label)
    before = store.session_labels(session)[["seq", "row_index", "pair_id", "label"]]
    with pytest.raises(ValueError, match="no reset to undo"):
        store.undo_reset(session)
    store.reset_session(session)
    _label(store, session, pairs, 0, "a")
    with pytest.raises(ValueError, match="added since the reset"):
        store.undo_reset(session)
    store.undo_session_label(session)
    assert store.undo_reset(session, actor="ann") == 3
    after = store.session_labels(session)[["seq", "row_index", "pair_id", "label"]]
    pd.testing.assert_frame_equal(after.reset_index(drop=True), before.reset_index(drop=True), check_dtype=False)
    with pytest.raises(ValueError, match="no reset to undo"):
        store.undo_reset(session)
    assert store.label_history(session)["action"].iloc[-1] == "restore"


def test_labelling_a_pair_twice_says_which_label_it_already_has(store, pool):
    from hyre_engine.store import AlreadyLabelledError

    ens = add_ensemble(store, pool)
    session = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    pairs = store.pool_pairs(pool, with_meta=False)
    _label(store, session, pairs, 2, "a")
    with pytest.raises(AlreadyLabelledError, match="already labelled") as info:
        _label(store, session, pairs, 2, "b")
    assert info.value.seq == 0 and isinstance(info.value, ValueError)
    assert list(store.session_labels(session)["label"]) == ["a"]
