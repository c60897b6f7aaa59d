"""Users-file sign-ins kept in the store: only a token's hash, refused once forged, expired or revoked."""

from __future__ import annotations

import time

import pytest

from hyre_engine.store.signins import token_hash


def test_a_sign_in_is_found_by_its_token_and_stored_only_hashed(store):
    token = store.open_signin("ann", role="annotator", credential="c1", hours=1)
    record = store.signin(token)
    assert (record.user_name, record.role, record.credential) == ("ann", "annotator", "c1")
    rows = store._cursor().execute("SELECT * FROM signins").fetchall()
    assert len(rows) == 1 and rows[0][0] == token_hash(token)
    assert not any(token in str(value) for value in rows[0])  # the token itself is nowhere
    assert store.open_signin("ann", role="annotator", credential="c1", hours=1) != token


@pytest.mark.parametrize("forged", ["", "x" * 43, "a" * 10_000, None, 42])
def test_a_forged_token_signs_nobody_in(store, forged):
    store.open_signin("ann", role="annotator", credential="c1", hours=1)
    assert store.signin(forged) is None
    assert store.revoke_signin(forged) is False


def test_an_expired_or_revoked_token_signs_nobody_in(store):
    short = store.open_signin("ann", role="annotator", credential="c1", hours=0.2 / 3600)  # 0.2 s
    kept = store.open_signin("bob", role="admin", credential="c2", hours=1)
    time.sleep(0.3)
    assert store.signin(short) is None and store.signin(kept).user_name == "bob"
    assert store.revoke_signin(kept) is True
    assert store.signin(kept) is None and store.revoke_signin(kept) is False
    store.open_signin("cy", role="annotator", credential="c3", hours=1)  # tidies up the dead ones
    assert store._cursor().execute("SELECT user_name FROM signins").fetchall() == [("cy",)]


def test_a_sign_in_needs_a_positive_lifetime(store):
    with pytest.raises(ValueError, match="positive number of hours"):
        store.open_signin("ann", role="annotator", credential="c1", hours=0)
