"""Profiles page: AppTest on the small demo DB, and its helpers on constructed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.ensemble import fingerprint
from hyre_engine.pipeline import load_model
from hyre_engine.store import Store
from pages import _explore_helpers as hx

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


def _profile_bytes(info: dict, *, fingerprint: str, user: str = "carol", weights=None) -> bytes:
    k = info["n_heads"]
    w = np.arange(1, k + 1, dtype=float) if weights is None else weights
    doc = {
        "user": user, "ensemble_id": info["ensemble_id"], "fingerprint": fingerprint,
        "weights": list(w), "labels": [{"pair_id": "p1", "row_index": 0, "label": "a"}],
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
    assert saved is not None and len(saved["labels"]) == N_ALICE
    rows = [lab["row_index"] for lab in saved["labels"]]
    expected = hx.weights_from_labels(z, rows, [lab["label"] for lab in saved["labels"]])
    np.testing.assert_allclose(saved["weights"], expected)
    # the comparison now lists the profile next to the session and the personas
    names = at.dataframe[1].value["who"].tolist()
    assert "alice · session" in names and "alice · profile" in names

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
    np.testing.assert_allclose(carol["weights"], np.arange(1, k + 1) / (k * (k + 1) / 2))

    # score the example candidates with the uniform weights: both rankings agree
    at.selectbox(key="profiles_score_source").set_value("uniform").run()
    at.button(key="profiles_rank").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert sorted(table["rank"].tolist()) == list(range(1, 4))
    assert (table["vs uniform"] == "=").all()
    assert any("Both" in i.value for i in at.info)
    # carol's weights re-rank the same candidates (same cached rewards, no re-embedding)
    at.selectbox(key="profiles_score_source").set_value("profile:carol").run()
    assert not at.exception, at.exception
    carol_table = at.dataframe[-1].value
    assert sorted(carol_table["candidate"].tolist()) == [1, 2, 3]
    assert "carol reward" in carol_table.columns


# ---------------------------------------------------------------- helpers


FP = "fedcba9876543210"


def _doc(**changes) -> bytes:
    doc = {
        "user": "dana", "ensemble_id": "e1", "fingerprint": FP, "weights": [1.0, 3.0],
        "labels": [{"pair_id": "p", "label": "b"}], "beta": 1.0, "created_at": "now",
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_parse_profile_accepts_and_normalises():
    profile = hx.parse_profile(_doc(), n_heads=2, ensemble_fingerprint=FP)
    np.testing.assert_allclose(profile.weights, [0.25, 0.75])
    assert profile.user == "dana" and profile.labels == [{"pair_id": "p", "label": "b"}]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x80not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (_doc(weights=None) .replace(b'"weights": null, ', b""), "lacks weights"),
        (_doc(fingerprint="0000000000000000"), f"fingerprint 0000000000000000.*is {FP}"),
        (_doc(weights=[1.0, 2.0, 3.0]), "3 entries; the ensemble has 2 heads"),
        (b'{"user": "d", "ensemble_id": "e", "fingerprint": "' + FP.encode() + b'", "weights": [NaN, 1], '
         b'"labels": [], "beta": 1, "created_at": "x"}', "finite numbers"),
        (_doc(weights=[-1.0, 2.0]), "non-negative"),
        (_doc(labels=[{"pair_id": "p", "label": "c"}]), r"labels\[0\]"),
        (_doc(beta=-1), "'beta'"),
    ],
)
def test_parse_profile_refuses_bad_files(raw, match):
    with pytest.raises(hx.ProfileError, match=match):
        hx.parse_profile(raw, n_heads=2, ensemble_fingerprint=FP)


def test_profile_document_round_trips():
    source = hx.WeightSource("session:s", "erin", "session", "")
    w = hx.Weights(source, np.array([0.2, 0.8]), [{"pair_id": "p", "row_index": 4, "label": "a"}], 2.0)
    doc = hx.profile_document(w, user="erin", ensemble_id="e1", ensemble_fingerprint=FP)
    assert set(hx.PROFILE_KEYS) <= set(doc)
    back = hx.parse_profile(json.dumps(doc).encode(), n_heads=2, ensemble_fingerprint=FP)
    np.testing.assert_allclose(back.weights, w.weights)
    assert back.beta == 2.0 and back.labels == w.labels


def test_rank_candidates_personalised_against_uniform():
    # candidate 1 is best on average; head 1 alone prefers candidate 3
    rewards = np.array([[2.0, 0.0], [1.0, 0.5], [0.0, 1.0]])
    ranked = hx.rank_candidates(rewards, np.array([0.0, 1.0]))
    assert ranked["candidate"].tolist() == [3, 2, 1]
    assert ranked["uniform_rank"].tolist() == [3, 2, 1]
    assert ranked["moved"].tolist() == [2, 0, -2]
    np.testing.assert_allclose(ranked["uniform"], [0.5, 0.75, 1.0])
    same = hx.rank_candidates(rewards, np.array([0.5, 0.5]))
    assert (same["moved"] == 0).all()
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(3,\)"):
        hx.rank_candidates(rewards, np.ones(3) / 3)


def test_similarity_and_agreement_matrices():
    w = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    sim = hx.similarity_matrix(w)
    np.testing.assert_allclose(sim, [[1, 0, 2**-0.5], [0, 1, 2**-0.5], [2**-0.5, 2**-0.5, 1]])
    # head 0 prefers A on both items, head 1 B on item 0 only
    z = np.array([[2.0, -2.0], [2.0, 1.0]])
    agree = hx.agreement_matrix(z, w[:2])
    np.testing.assert_allclose(agree, [[1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(ValueError, match="non-zero"):
        hx.similarity_matrix(np.zeros((2, 3)))
