"""Profiles page: AppTest on the small demo DB (its engine code: tests/test_profiles.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.ensemble import fingerprint
from hyre_engine.pipeline import load_model
from hyre_engine.profiles import weights_from_labels
from hyre_engine.store import Store

APP = str(Path(__file__).resolve().parents[2] / "app.py")
# First runs import torch and fit the PCA: generous, the machine may be shared.
TIMEOUT = 120
N_ALICE = 6


def _seed_session(path: Path, info: dict, user: str, group: str, n: int) -> None:
    with Store(path) as store:
        sid = store.get_or_create_session(user=user, pool_id=info["pool_id"], ensemble_id=info["ensemble_id"])
        for row in store.pool_labels(info["pool_id"], groups=[group]).iloc[:n].itertuples():
            store.add_session_label(sid, row_index=row.row_index, pair_id=row.pair_id, label=row.label)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


# A pair of the small demo pool (its first prompt): an imported profile labels only pool pairs.
POOL_PAIR = "science-01:child-short~child-thorough"


def _profile_bytes(info: dict, *, fingerprint: str, user: str = "carol", weights=None,
                   pair_id: str = POOL_PAIR) -> bytes:
    k = info["n_heads"]
    w = np.arange(1, k + 1, dtype=float) if weights is None else weights
    doc = {
        "user": user, "ensemble_id": info["ensemble_id"], "fingerprint": fingerprint,
        "weights": list(w), "labels": [{"pair_id": pair_id, "row_index": 0, "label": "a"}],
        "beta": 1.0, "created_at": "2025-01-01T00:00:00+00:00",
    }
    return json.dumps(doc).encode()


@pytest.mark.slow
def test_profiles_save_import_and_score(app_db):
    path, info = app_db
    _seed_session(path, info, "alice", "maya", N_ALICE)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = "alice"
    at.run()
    at.switch_page("pages/profiles.py").run()
    assert not at.exception, at.exception
    assert _metric(at, "Labels") == str(N_ALICE)

    # save alice's session weights as a profile: the store holds exactly those weights
    at.button(key="profiles_save").click().run()
    assert not at.exception, at.exception
    with Store(path) as store:
        saved = store.get_profile("alice", info["ensemble_id"])
        z = store.get_head_predictions(info["ensemble_id"], info["pool_id"])
    assert saved is not None and len(saved.labels) == N_ALICE
    rows = [lab["row_index"] for lab in saved.labels]
    # replayed at the beta the Label page used: the ensemble's calibrated one (no session override)
    with Store(path) as store:
        label_beta = store.get_ensemble(info["ensemble_id"]).meta.beta
    assert saved.meta.beta == label_beta
    expected = weights_from_labels(z, rows, [lab["label"] for lab in saved.labels], beta=label_beta)
    np.testing.assert_allclose(saved.weights, expected)
    # the comparison now lists the profile next to the session and the personas
    names = at.dataframe[1].value["who"].tolist()
    assert "alice · session" in names and "alice · profile" in names
    # the columns that explain a table come before its free text, whose end a 1280 px screen cuts
    assert list(at.dataframe[0].value.columns) == ["pair", "preferred", "prompt"]
    assert list(at.dataframe[1].value.columns) == ["who", "score", "most alike"]

    # a profile of another ensemble is refused, naming both fingerprints
    with Store(path) as store:
        fp = fingerprint(load_model(store, info["ensemble_id"]))
    at.file_uploader(key="profiles_upload").upload(
        "other.json", _profile_bytes(info, fingerprint="0123456789abcdef"), "application/json"
    ).run()
    assert not at.exception, at.exception
    error = " ".join(e.value for e in at.error)
    assert "0123456789abcdef" in error and fp in error

    # a matching one is imported, weights normalised
    at.file_uploader(key="profiles_upload").upload(
        "carol.json", _profile_bytes(info, fingerprint=fp), "application/json"
    ).run()
    assert not at.error
    at.button(key="profiles_import").click().run()
    assert not at.exception, at.exception
    assert any("carol" in s.value for s in at.success)
    with Store(path) as store:
        carol = store.get_profile("carol", info["ensemble_id"])
    k = info["n_heads"]
    np.testing.assert_allclose(carol.weights, np.arange(1, k + 1) / (k * (k + 1) / 2))

    # score the example candidates with the uniform weights: both rankings agree
    at.selectbox(key="profiles_score_source").set_value("uniform").run()
    at.button(key="profiles_rank").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert sorted(table["rank"].tolist()) == list(range(1, 4))
    assert (table["vs uniform"] == "=").all()
    assert list(table.columns)[2] == "vs uniform" and list(table.columns)[-1] == "response"
    assert any("Both" in i.value for i in at.info)
    # carol's weights re-rank the same candidates (same cached rewards, no re-embedding)
    at.selectbox(key="profiles_score_source").set_value("profile:carol").run()
    assert not at.exception, at.exception
    carol_table = at.dataframe[-1].value
    assert sorted(carol_table["candidate"].tolist()) == [1, 2, 3]
    assert "carol reward" in carol_table.columns
