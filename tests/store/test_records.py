"""The store's typed records: frozen, read by field, meta parsed and written back unchanged."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from store_helpers import add_ensemble

from hyre_engine.personal import DEFAULT_LAMBDA
from hyre_engine.reweight import DEFAULT_BETA
from hyre_engine.store import (
    EnsembleMeta,
    EnsembleRecord,
    LabelRecord,
    PoolRecord,
    ProfileMeta,
    ProfileRecord,
    ResultRecord,
    SessionRecord,
)

RECORDS = (PoolRecord, EnsembleRecord, SessionRecord, LabelRecord, ProfileRecord, ResultRecord,
           EnsembleMeta, ProfileMeta)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_every_record_is_a_frozen_dataclass_without_key_access(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert not hasattr(cls, "__getitem__") and not hasattr(cls, "get")


def test_get_pool_returns_a_typed_record(store, pool):
    got = store.get_pool("demo")
    assert isinstance(got, PoolRecord) and got == store.get_pool(pool)
    assert (got.pool_id, got.name, got.source, got.n_pairs, got.n_labels) == (pool, "demo", "unit test", 5, 10)
    assert isinstance(got.n_pairs, int) and isinstance(got.n_labels, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        got["name"]  # type: ignore[index]


def test_ensemble_meta_parses_the_known_keys_and_keeps_the_rest():
    stored = {"beta": 2, "lambda": 0.3, "train_groups": ["u1"], "calibration": {"scores": {"1": 0.7}},
              "model_config": {"n_heads": 4}, "backbone_path": "/m", "base_backbone_id": "b0",
              "written_by_a_newer_build": [1, 2]}
    meta = EnsembleMeta.from_json(stored)
    assert (meta.beta, meta.lam, meta.train_groups) == (2.0, 0.3, ("u1",))
    assert isinstance(meta.beta, float) and meta.model_config == {"n_heads": 4}
    assert (meta.backbone_path, meta.base_backbone_id) == ("/m", "b0")
    assert meta.extra == {"written_by_a_newer_build": [1, 2]}
    # written back, it is the stored object again (JSON types: lists, the key "lambda")
    assert meta.to_json() == {**stored, "beta": 2.0}
    assert EnsembleMeta.from_json(meta.to_json()) == meta


def test_ensemble_meta_defaults_are_the_engines():
    meta = EnsembleMeta.from_json({})
    assert meta.beta == DEFAULT_BETA and meta.lam is None and meta.lam_or_default == DEFAULT_LAMBDA
    assert meta.train_groups is None and meta.calibration is None and meta.extra == {}
    assert EnsembleMeta.from_json({"beta": None}).beta == DEFAULT_BETA
    with pytest.raises(ValueError, match="JSON object"):
        EnsembleMeta.from_json(["beta", 1])  # type: ignore[arg-type]


def test_get_ensemble_with_and_without_its_weights(store, pool):
    add_ensemble(store, pool)
    full = store.get_ensemble("ens1")
    light = store.get_ensemble("ens1", with_weights=False)
    assert isinstance(full, EnsembleRecord) and isinstance(full.meta, EnsembleMeta)
    assert full.weights is not None and light.weights is None
    assert full.n_bytes == light.n_bytes == len(full.weights)
    assert dataclasses.replace(full, weights=None) == light
    assert full.n_heads == 4 and full.meta.beta == 1.0 and full.pool_id == pool


def test_put_ensemble_takes_a_meta_record(store, pool):
    meta = EnsembleMeta(beta=0.5, lam=2.0, train_groups=("u2",), extra={"note": "x"})
    store.put_ensemble(ensemble_id="e", pool_id=pool, backbone_id="bb", config={"n_heads": 2},
                       weights=b"w", train_fingerprint="fp", meta=meta)
    assert store.get_ensemble("e").meta == meta
    raw = store._cursor().execute("SELECT meta FROM ensembles WHERE ensemble_id = 'e'").fetchall()[0][0]
    assert json.loads(raw) == {"beta": 0.5, "lambda": 2.0, "train_groups": ["u2"], "note": "x"}


def test_session_and_label_records(store, session_setup):
    pool, ens = session_setup
    sid = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    store.update_session(sid, strategy="bald")
    store.add_session_label(sid, row_index=1, pair_id="p1", label="a")
    got = store.get_session(sid)
    assert isinstance(got, SessionRecord)
    assert (got.user, got.pool_id, got.ensemble_id, got.mode, got.persona, got.n_labels) == (
        "ann", pool, ens, "human", None, 1)
    assert got.settings == {"strategy": "bald"} and got.updated_at >= got.created_at
    undone = store.undo_session_label(sid)
    assert isinstance(undone, LabelRecord)
    assert (undone.seq, undone.row_index, undone.pair_id, undone.label) == (0, 1, "p1", "a")
    with pytest.raises(KeyError, match="no session"):
        store.get_session("session_missing")


def test_profile_record_weights_are_read_only(store, session_setup):
    _, ens = session_setup
    store.save_profile(user="ann", ensemble_id=ens, weights=[0.5, 0.5, 0, 0], labels=[{"row_index": 1}],
                       meta=ProfileMeta(beta=2.0, source="session:s1"))
    got = store.get_profile("ann", ens)
    assert isinstance(got, ProfileRecord) and isinstance(got.meta, ProfileMeta)
    assert (got.meta.beta, got.meta.source, got.labels) == (2.0, "session:s1", [{"row_index": 1}])
    with pytest.raises(ValueError, match="read-only"):
        got.weights[0] = 1.0
    # the JSON key is "from", as the pages have always written it
    store.save_profile(user="bob", ensemble_id=ens, weights=np.full(4, 0.25), labels=[],
                       meta={"beta": 1, "from": "import", "created_at": "2026-01-01T00:00:00"})
    bob = store.get_profile("bob", ens).meta
    assert (bob.beta, bob.source, bob.created_at, bob.extra) == (1.0, "import", "2026-01-01T00:00:00", {})
    # a profile with a personal head keeps v and lambda (JSON "lambda") as typed fields
    store.save_profile(user="cy", ensemble_id=ens, weights=np.full(4, 0.25), labels=[],
                       meta={"beta": 1, "from": "import", "v": [0.5, -2], "lambda": 0.3})
    cy = store.get_profile("cy", ens).meta
    assert (cy.v, cy.lam, cy.extra) == ((0.5, -2.0), 0.3, {})
    assert cy.to_json()["lambda"] == 0.3 and cy.to_json()["v"] == [0.5, -2.0]
    assert store.get_profile("bob", ens).meta.v is None


def test_result_record(store):
    store.put_result("eval:x", {"n": [0, 1]})
    got = store.get_result("eval:x")
    assert isinstance(got, ResultRecord) and (got.key, got.value) == ("eval:x", {"n": [0, 1]})
    assert got.updated_at is not None
