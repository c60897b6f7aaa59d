"""Users of the sessions: list, rename, merge, delete; notes on pairs; pool guidelines."""

from __future__ import annotations

import pytest
from store_helpers import add_ensemble

from hyre_engine.store.annotations import MAX_COMMENT_CHARS, NoteRecord


def _session(store, pool, user, ens="ens1", **kw):
    return store.get_or_create_session(user=user, pool_id=pool, ensemble_id=ens, **kw)


def _label(store, pool, session, row, label):
    pairs = store.pool_pairs(pool, with_meta=False)
    return store.add_session_label(session, row_index=row, pair_id=pairs["pair_id"][row], label=label)


def test_list_users_counts_labels_and_last_activity(store, pool):
    add_ensemble(store, pool)
    ann, bob = _session(store, pool, "ann"), _session(store, pool, "bob")
    demo = _session(store, pool, "ann", mode="persona", persona="u1")
    for row, label in enumerate("ab"):
        _label(store, pool, ann, row, label)
    _label(store, pool, demo, 0, "a")
    _label(store, pool, bob, 4, "skip")
    users = store.list_users().set_index("user")
    assert users.loc["ann", "n_labels"] == 2 and users.loc["ann", "n_persona_labels"] == 1
    assert users.loc["ann", "n_sessions"] == 2 and users.loc["bob", "n_labels"] == 1
    assert users.index[0] == "bob"  # most recently active first


def test_merge_appends_labels_keeps_the_targets_judgement_and_audits(store, pool):
    add_ensemble(store, pool)
    add_ensemble(store, pool, ensemble_id="ens2")
    kim, kimab = _session(store, pool, "kim"), _session(store, pool, "kimab")
    other = _session(store, pool, "kimab", ens="ens2")
    _label(store, pool, kim, 0, "a")
    for row, label in ((0, "b"), (2, "b"), (3, "tie")):
        _label(store, pool, kimab, row, label)
    _label(store, pool, other, 1, "a")
    store.set_note(kimab, row_index=2, pair_id="p2", comment="typo in B", flagged=True)
    store.save_profile(user="kimab", ensemble_id="ens1", weights=[0.5, 0.5], labels=[])

    out = store.merge_users("kimab", "kim", actor="admin")
    assert out == {"sessions_moved": 1, "labels_moved": 2, "conflicts": 1}
    assert set(store.list_users()["user"]) == {"kim"}
    labels = store.session_labels(kim)
    assert labels["row_index"].tolist() == [0, 2, 3] and labels["label"].tolist() == ["a", "b", "tie"]
    assert store.session_notes(kim)["comment"].tolist() == ["typo in B"]
    assert store.get_profile("kim", "ens1") is not None and store.get_profile("kimab", "ens1") is None
    # what left kimab's session is in its audit trail, with who
    gone = store.label_history(kimab)
    assert gone["action"].tolist()[-3:] == ["delete"] * 3 and set(gone["actor"].iloc[-3:]) == {"admin"}
    with pytest.raises(KeyError, match="no user named 'kimab'"):
        store.merge_users("kimab", "kim")
    with pytest.raises(ValueError, match="themselves"):
        store.merge_users("kim", "kim")


def test_rename_refuses_a_taken_name_and_delete_keeps_the_audit(store, pool):
    add_ensemble(store, pool)
    ann, _ = _session(store, pool, "ann"), _session(store, pool, "bob")
    _label(store, pool, ann, 1, "a")
    with pytest.raises(ValueError, match="already exists: merge"):
        store.rename_user("ann", "bob")
    with pytest.raises(ValueError, match="whitespace"):
        store.rename_user("ann", " ann2")
    store.rename_user("ann", "anna")
    assert store.get_session(ann).user == "anna" and store.session_labels(ann)["label"].tolist() == ["a"]
    assert store.delete_user("anna", actor="admin") == 1
    assert set(store.list_users()["user"]) == {"bob"}
    history = store.label_history(ann)
    assert history["action"].tolist() == ["add", "delete"] and history["actor"].iloc[-1] == "admin"


def test_notes_and_guidelines_are_stored_checked_and_removed(store, pool):
    add_ensemble(store, pool)
    ann = _session(store, pool, "ann")
    store.set_note(ann, row_index=1, pair_id="p1", comment="  why?  ")
    assert store.get_note(ann, 1) == NoteRecord(comment="why?", flagged=False)
    store.set_note(ann, row_index=1, pair_id="p1", comment="", flagged=True)
    assert store.get_note(ann, 1) == NoteRecord(comment="", flagged=True)
    store.set_note(ann, row_index=1, pair_id="p1")
    assert store.get_note(ann, 1) is None and store.session_notes(ann).empty
    with pytest.raises(ValueError, match="not pair 'p2'"):
        store.set_note(ann, row_index=1, pair_id="p2", comment="x")
    with pytest.raises(ValueError, match="at most"):
        store.set_note(ann, row_index=1, pair_id="p1", comment="x" * (MAX_COMMENT_CHARS + 1))

    assert store.get_guidelines(pool) is None
    store.set_guidelines(pool, "# Rules\nPrefer *honest* answers.", actor="admin")
    assert store.get_guidelines(pool).markdown.startswith("# Rules")
    with pytest.raises(KeyError, match="no pool"):
        store.set_guidelines("nope", "x")
    store.set_note(ann, row_index=2, pair_id="p2", comment="keep")
    store.delete_pool(pool)
    assert store._cursor().execute("SELECT count(*) FROM label_notes").fetchall()[0][0] == 0
    assert store._cursor().execute("SELECT count(*) FROM pool_guidelines").fetchall()[0][0] == 0
