"""The structured prior through the pipeline, the store, evaluate, the live session and profiles.

Real small data (two taste clusters of training annotators over a stand-in encoder, the
one tests/test_calibration.py builds), a real DuckDB file, real tiny ensembles.
"""

import json
from dataclasses import replace

import duckdb
import numpy as np
import pytest
from test_calibration import TINY, TRAIN_ANNOTATORS, HashEncoder, _store, plain_and_flipped_builds

from hyre_engine import pipeline
from hyre_engine.evaluate import evaluate_pools
from hyre_engine.live import LiveSession, open_live, reopen_live
from hyre_engine.numerics import label_targets
from hyre_engine.personal import PersonalModel, personal_margins
from hyre_engine.personal_prior import PersonalPrior, annotator_basis
from hyre_engine.pipeline import (
    BuildConfig,
    build_pool,
    ensemble_prior,
    pool_differences,
    predict_pool,
)
from hyre_engine.profiles import (
    PERSONA_LABELS,
    WeightSource,
    parse_profile,
    profile_document,
    source_weights,
    stored_meta,
)
from hyre_engine.reweight import holdout_annotators
from hyre_engine.store import Store

UNCALIBRATED = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, calibrate=False, **TINY)


def _built(tmp_path, name="s", config=UNCALIBRATED, **kwargs):
    store, pool = _store(tmp_path, name, **kwargs)
    report = build_pool(store, pool, config, backbone=HashEncoder())
    return store, pool, report.ensemble_id


def _with_prior(store, eid, rho=10.0):
    """Store the prior from every training annotator at strength rho, as a calibration that chose it does."""
    prior = ensemble_prior(store, eid, rho=rho)
    store.set_ensemble_meta(eid, replace(store.get_ensemble(eid, with_weights=False).meta, rho=rho))
    return prior


def test_the_prior_round_trips_through_the_store_and_goes_with_its_ensemble(tmp_path):
    store, pool, eid = _built(tmp_path)
    assert store.personal_prior(eid) is None and store.get_prior_basis(eid) is None
    prior = _with_prior(store, eid, rho=10.0)
    # from every training annotator over the stored ensemble's own Z (targets never)
    labels = pipeline.training_rows(store, pool, ["crowd"])
    assert set(labels["annotator"]) == set(TRAIN_ANNOTATORS)
    pairs = store.pool_pairs(pool)
    xa, xb = pipeline.pair_embeddings(store, HashEncoder.id, pairs)
    U, e = annotator_basis(pipeline.annotator_groups(  # noqa: N806
        labels, TRAIN_ANNOTATORS, pipeline.pair_rows(pairs), pipeline.load_model(store, eid), xa, xb))
    np.testing.assert_array_equal(prior.U, U)
    np.testing.assert_array_equal(prior.e, e)
    store.close()
    again = Store(tmp_path / "s.duckdb")
    loaded = again.personal_prior(eid)
    assert loaded.rho == 10.0 and loaded.key == prior.key and loaded.U.dtype == np.float32
    np.testing.assert_array_equal(loaded.U, U)
    np.testing.assert_array_equal(loaded.e, e)
    assert again.get_ensemble(eid, with_weights=False).meta.rho == 10.0
    assert ensemble_prior(again, eid).key == prior.key  # rho=None: the stored one
    assert ensemble_prior(again, eid, rho=0) is None
    assert ensemble_prior(again, eid, rho=100).e is not None and ensemble_prior(again, eid, rho=100).rho == 100
    again.delete_ensemble(eid)
    assert again.get_prior_basis(eid) is None


def test_an_old_store_without_a_prior_loads_isotropic(tmp_path):
    store, pool, eid = _built(tmp_path)
    store.close()
    # what a file from before structured priors holds: no prior table, no rho in the meta
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("DROP TABLE prior_bases")
    con.close()
    store = Store(tmp_path / "s.duckdb")
    meta = store.get_ensemble(eid, with_weights=False).meta
    assert meta.rho is None and "rho" not in meta.to_json()
    assert store.personal_prior(eid) is None and ensemble_prior(store, eid) is None
    # a meta that names a rho with no basis is a broken store, said so
    store.set_ensemble_meta(eid, replace(meta, rho=5))
    with pytest.raises(ValueError, match="rho 5 but no prior basis"):
        store.personal_prior(eid)
    with pytest.raises(ValueError, match="orthonormal"):
        store.put_prior_basis(eid, np.ones((8, 2)), np.ones(2))
    with pytest.raises(KeyError):
        store.put_prior_basis("no-such-ensemble", np.eye(8)[:, :1], np.ones(1))


@pytest.mark.slow
def test_calibration_chooses_rho_from_training_annotators_only(tmp_path, monkeypatch):
    seen = []
    real = pipeline.annotator_groups

    def spy(labels, names, *args, **kwargs):
        seen.append((set(labels["group"]), list(names)))
        return real(labels, names, *args, **kwargs)

    monkeypatch.setattr(pipeline, "annotator_groups", spy)
    config = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, **TINY)
    reports, stores = plain_and_flipped_builds(tmp_path, config)
    cal = reports[0].calibration
    held = holdout_annotators(sorted(TRAIN_ANNOTATORS), fraction=config.calibration_holdout, seed=config.seed)
    assert cal["holdout_annotators"] == held
    # held-out annotators are scored; the basis comes from the other training annotators;
    # never a target row
    assert all(groups == {"crowd"} for groups, _ in seen)
    assert seen[0][1] == held and seen[1][1] == sorted(set(TRAIN_ANNOTATORS) - set(held))
    assert set(cal["rho_scores"]) == {"0", "10", "100"} and cal["prior_rank"] >= 1
    best = max(cal["rho_scores"].values())
    assert cal["rho"] == min(float(r) for r, s in cal["rho_scores"].items() if s == best)  # ties: smaller rho
    # flipping every target label changes nothing
    assert reports[1].calibration == cal and reports[1].rho == reports[0].rho == cal["rho"]
    for store, report in zip(stores, reports, strict=True):
        stored = store.personal_prior(report.ensemble_id)
        if cal["rho"] == 0:
            assert stored is None and store.get_prior_basis(report.ensemble_id) is None
        else:  # the stored prior comes from every training annotator over the final ensemble
            assert stored.rho == cal["rho"] and seen[-1][1] == sorted(TRAIN_ANNOTATORS)
    if cal["rho"]:
        np.testing.assert_array_equal(stores[0].personal_prior(reports[0].ensemble_id).U,
                                      stores[1].personal_prior(reports[1].ensemble_id).U)


def test_evaluate_takes_the_ensembles_rho_unless_given(tmp_path):
    store, pool, eid = _built(tmp_path)
    common = dict(config=UNCALIBRATED, n_values=[0, 3], seeds=2, methods=["uniform", "personal"],
                  target_groups=["target"], backbone=HashEncoder())
    iso = evaluate_pools(store, pool, pool, **common)
    assert (iso["rho"], iso["rho_source"], iso["prior_rank"]) == (0.0, "default", 0)
    given = evaluate_pools(store, pool, pool, rho=100.0, **common)
    assert (given["rho"], given["rho_source"]) == (100.0, "given") and given["prior_rank"] >= 1
    assert given["summary"]["uniform"] == iso["summary"]["uniform"]
    assert given["summary"]["personal"] != iso["summary"]["personal"]
    assert evaluate_pools(store, pool, pool, rho=0.0, **common)["summary"] == iso["summary"]
    _with_prior(store, eid, rho=100.0)
    stored = evaluate_pools(store, pool, pool, **common)
    assert (stored["rho"], stored["rho_source"]) == (100.0, "ensemble")
    assert stored["summary"] == given["summary"]


def test_the_live_session_and_profiles_use_the_ensembles_prior(tmp_path):
    store, pool, eid = _built(tmp_path)
    prior = _with_prior(store, eid, rho=10.0)
    Z = predict_pool(store, eid, pool, HashEncoder())  # noqa: N806
    D = pool_differences(store, pool, HashEncoder.id)  # noqa: N806
    pairs = store.pool_pairs(pool)
    pair_ids = pairs["pair_id"].to_numpy(dtype=object)
    source = WeightSource("persona:target", "target", "persona", "test")
    w = source_weights(store, source, logits=Z, pair_ids=pair_ids, pool_id=pool, ensemble_id=eid, diffs=D)
    assert w.rho == 10.0 and w.lam is not None
    rows = np.array([r["row_index"] for r in w.labels])
    y = label_targets(np.array([r["label"] for r in w.labels], dtype=object))
    assert len(rows) == min(PERSONA_LABELS, len(rows)) > 3
    structured = PersonalModel.replay(Z, D, rows, y, beta=w.beta, lam=w.lam, prior=prior)
    isotropic = PersonalModel.replay(Z, D, rows, y, beta=w.beta, lam=w.lam)
    np.testing.assert_allclose(w.v, structured.v, atol=1e-12)
    assert np.abs(w.v - isotropic.v).max() > 1e-4
    # export -> import: v is on the embeddings, so the imported profile scores the pool exactly
    raw = json.dumps(profile_document(w, user="ann", ensemble_id=eid, ensemble_fingerprint="fp")).encode()
    profile = parse_profile(raw, n_heads=Z.shape[1], ensemble_fingerprint="fp", dim=D.shape[1], pair_ids=pair_ids)
    assert profile.rho == 10.0 and profile.lam == w.lam
    np.testing.assert_array_equal(profile.v, w.v)
    np.testing.assert_allclose(personal_margins(Z, D, profile.weights, profile.v), structured.margins(), atol=1e-4)
    np.testing.assert_allclose(prior.to_v(prior.to_u(profile.v)), profile.v, atol=1e-10)
    store.save_profile(user="ann", ensemble_id=eid, weights=profile.weights, labels=profile.labels,
                       meta=stored_meta(profile, "import"))
    saved = source_weights(store, WeightSource("profile:ann", "ann", "profile", "saved"), logits=Z,
                           pair_ids=pair_ids, pool_id=pool, ensemble_id=eid, diffs=D)
    assert saved.rho == 10.0
    np.testing.assert_array_equal(saved.v, w.v)
    with pytest.raises(ValueError, match="'rho'"):
        parse_profile(raw.replace(b'"rho": 10.0', b'"rho": -1'), n_heads=Z.shape[1], ensemble_fingerprint="fp")
    # the live session: the same v as the model, and a replay keeps the prior
    session_id = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=eid)
    live = LiveSession(Z, diffs=D, lam=w.lam, beta=w.beta, prior=prior)
    for r, label in zip(rows[:5], y[:5], strict=True):
        live.add_label(int(r), "a" if label else "b")
        store.add_session_label(session_id, row_index=int(r), pair_id=str(pair_ids[r]),
                                label="a" if label else "b")
    np.testing.assert_allclose(live.personal.v, PersonalModel.replay(Z, D, rows[:5], y[:5], beta=w.beta, lam=w.lam,
                                                                     prior=prior).v, atol=1e-12)
    state = open_live(store, session_id, Z, pair_ids, beta=w.beta, strategy="random", diffs=D, lam=w.lam,
                      prior=prior)
    np.testing.assert_array_equal(state.live.personal.v, live.personal.v)
    assert state.matches(store.get_session(session_id), w.beta, w.lam, prior)
    assert not state.matches(store.get_session(session_id), w.beta, w.lam, None)
    assert not state.matches(store.get_session(session_id), w.beta, w.lam, prior.with_rho(100.0))
    np.testing.assert_array_equal(reopen_live(store, state).live.personal.v, live.personal.v)
    assert isinstance(state.live.prior, PersonalPrior)


@pytest.mark.slow
def test_a_deferred_calibration_stores_the_same_prior_as_a_build_that_calibrates(tmp_path):
    config = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, **TINY)
    store, pool = _store(tmp_path, "now")
    now = build_pool(store, pool, config, backbone=HashEncoder())
    later_store, later_pool = _store(tmp_path, "later")
    later = build_pool(later_store, later_pool, config, backbone=HashEncoder(), defer_calibration=True)
    assert pipeline.calibration_pending(later_store.get_ensemble(later.ensemble_id, with_weights=False).meta)
    assert later_store.personal_prior(later.ensemble_id) is None  # isotropic until it is calibrated
    meta = pipeline.finish_calibration(later_store, later.ensemble_id)
    assert meta.calibration == now.calibration and meta.rho == (now.rho or None) and meta.lam == now.lam
    if now.rho:
        a, b = store.personal_prior(now.ensemble_id), later_store.personal_prior(later.ensemble_id)
        assert a.rho == b.rho == now.rho
        np.testing.assert_array_equal(a.U, b.U)
        np.testing.assert_array_equal(a.e, b.e)
    else:
        assert later_store.get_prior_basis(later.ensemble_id) is None
