"""Tests for hyre_engine/store/sessions.py (resuming, labels, undo and reset), through the Store facade."""

from __future__ import annotations

import pytest


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
    assert (info["user"], info["mode"], info["persona"], info["n_labels"]) == (
        "ann",
        "persona",
        "u1",
        0,
    )
    assert store.get_session(a)["persona"] is None
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
    assert {k: undone[k] for k in ("seq", "row_index", "pair_id", "label")} == {
        "seq": 2,
        "row_index": 4,
        "pair_id": "p4",
        "label": "b",
    }
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
    assert store.get_session(ann)["settings"] == {"strategy": "bald", "beta": 0.5}
    assert store.session_labels(bob)["pair_id"].tolist() == ["p1"]
    store.delete_session(bob)
    assert store.list_sessions()["session_id"].tolist() == [ann]
