"""The same person has the same weights on every page: Label's live session and the
weight sources of Explore and Profiles replay a session with one beta (live.session_beta)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hyre_engine import live, profiles
from hyre_engine.store import Store

# Far from the paper's 1 and from any calibrated value, so a page that fell back to
# another beta would give visibly different weights.
ENSEMBLE_BETA = 3.5
SESSION_BETA = 0.4
N_LABELS = 8


def _session(store: Store, info: dict, user: str, group: str, **settings) -> str:
    sid = store.get_or_create_session(user=user, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"])
    if settings:
        store.update_session(sid, **settings)
    for row in store.pool_labels(info["pool_id"], groups=[group]).iloc[:N_LABELS].itertuples():
        store.add_session_label(sid, row_index=row.row_index, pair_id=row.pair_id, label=row.label)
    return sid


def _set_ensemble_beta(store: Store, ensemble_id: str, beta: float) -> None:
    meta = replace(store.get_ensemble(ensemble_id).meta, beta=beta)
    store._cursor().execute("UPDATE ensembles SET meta = ? WHERE ensemble_id = ?",
                            [json.dumps(meta.to_json()), ensemble_id])


@pytest.mark.parametrize("settings, beta", [({}, ENSEMBLE_BETA), ({"beta": SESSION_BETA}, SESSION_BETA)])
def test_label_explore_and_profiles_give_one_user_the_same_weights(app_db, settings, beta):
    path, info = app_db
    with Store(path) as store:
        _set_ensemble_beta(store, info["ensemble_id"], ENSEMBLE_BETA)
        sid = _session(store, info, "alice", "maya", **settings)
        assert live.session_beta(store, sid) == beta
        z = store.get_head_predictions(info["ensemble_id"], info["pool_id"])
        pair_ids = np.array([f"p{i}" for i in range(len(z))], dtype=object)
        # the Label page: the live session opened at the session's beta
        state = live.open_live(store, sid, z, pair_ids, beta=live.session_beta(store, sid), strategy="bald")
        on_label = state.live.snapshot().weights
        # Explore and Profiles: the session as a weight source
        source = next(
            s for s in profiles.list_sources(
                store, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"], personas=[]
            ) if s.key == f"session:{sid}"
        )
        elsewhere = profiles.source_weights(
            store, source, logits=z, pair_ids=pair_ids, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"]
        )
    assert elsewhere.beta == beta
    np.testing.assert_allclose(elsewhere.weights, on_label, atol=1e-12)
    # and the weights really depend on beta: the paper's beta gives others
    rows = [r["row_index"] for r in elsewhere.labels]
    paper = profiles.weights_from_labels(z, rows, [r["label"] for r in elsewhere.labels], beta=1.0)
    assert not np.allclose(paper, on_label)


def test_label_explore_and_profiles_give_one_user_the_same_personal_head(app_db):
    """v too: the Label page's live session and the weight sources fit it with one beta and one lambda."""
    from hyre_engine.pipeline import pool_differences

    path, info = app_db
    with Store(path) as store:
        meta = replace(store.get_ensemble(info["ensemble_id"]).meta, beta=ENSEMBLE_BETA, lam=0.05)
        store._cursor().execute("UPDATE ensembles SET meta = ? WHERE ensemble_id = ?",
                                [json.dumps(meta.to_json()), info["ensemble_id"]])
        sid = _session(store, info, "bo", "maya")
        assert (live.session_beta(store, sid), live.session_lambda(store, sid)) == (ENSEMBLE_BETA, 0.05)
        z = store.get_head_predictions(info["ensemble_id"], info["pool_id"])
        diffs = pool_differences(store, info["pool_id"], store.get_ensemble(info["ensemble_id"]).backbone_id)
        pair_ids = np.array([f"p{i}" for i in range(len(z))], dtype=object)
        state = live.open_live(store, sid, z, pair_ids, beta=live.session_beta(store, sid), strategy="bald",
                               diffs=diffs, lam=live.session_lambda(store, sid))
        source = next(s for s in profiles.list_sources(store, pool_id=info["pool_id"],
                                                       ensemble_id=info["ensemble_id"], personas=[])
                      if s.key == f"session:{sid}")
        kwargs = dict(logits=z, pair_ids=pair_ids, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"],
                      diffs=diffs)
        elsewhere = profiles.source_weights(store, source, **kwargs)
        assert elsewhere.lam == 0.05 and np.abs(elsewhere.v).max() > 0
        np.testing.assert_allclose(elsewhere.v, state.live.personal.v, atol=1e-8)
        np.testing.assert_allclose(elsewhere.weights, state.live.weights, atol=1e-12)
        # HyRe only on the Label page: no personal head elsewhere either
        store.update_session(sid, method="hyre")
        assert profiles.source_weights(store, source, **kwargs).v is None
