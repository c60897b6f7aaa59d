"""Annotator-aware heads and beta calibration through the pipeline.

A tiny stand-in text encoder (a fixed random vector per text) keeps every build to
a second or so; the pipeline, the ensemble, the store and the calibration are real.
"""

import hashlib

import numpy as np
import pandas as pd
import pytest

from hyre_engine import ensemble as ens
from hyre_engine.evaluate import evaluate_pools
from hyre_engine.personal import DEFAULT_CALIBRATION_LAMBDAS
from hyre_engine.pipeline import (
    BuildConfig,
    build_pool,
    calibrate_beta,
    ensemble_record_id,
    load_model,
    train_on_rows,
    training_rows,
)
from hyre_engine.protocol import evaluate_group
from hyre_engine.reweight import CALIBRATION_MIN_ANNOTATORS, holdout_annotators
from hyre_engine.store import Store

DIM = 8
N_ITEMS = 24
TRAIN_ANNOTATORS = [f"t{i}" for i in range(8)]
TARGET_ANNOTATORS = ["u0", "u1"]
# Tiny but real: 8 heads of 8 hidden units train in well under a second.
TINY = dict(n_heads=8, hidden=8, seed=3, calibration_betas=(1.0, 4.0), calibration_seeds=2)


class HashEncoder:
    """Stand-in backbone: each (prompt, response) gets a fixed N(0, 1) vector of size DIM."""

    id = "hash-encoder-test"

    def embed(self, prompts, responses, *, progress=None):
        out = []
        for p, r in zip(prompts, responses, strict=True):
            seed = int(hashlib.sha256(f"{p}\0{r}".encode()).hexdigest()[:8], 16)
            out.append(np.random.default_rng(seed).normal(size=DIM))
        return np.array(out, dtype=np.float32)


def _frame(*, flip_targets: bool = False, seed: int = 0) -> pd.DataFrame:
    """Pairs of items; two taste clusters of training annotators; targets in their own group."""
    rng = np.random.default_rng(seed)
    encoder = HashEncoder()
    texts = [f"item {i}" for i in range(N_ITEMS)]
    x = encoder.embed(["q"] * N_ITEMS, texts)
    tastes = rng.normal(size=(2, DIM))
    rows = []
    for group, names in (("crowd", TRAIN_ANNOTATORS), ("target", TARGET_ANNOTATORS)):
        for a, name in enumerate(names):
            utility = x @ tastes[a % 2]
            for _ in range(30):
                i, j = rng.choice(N_ITEMS, size=2, replace=False)
                prefer_a = utility[i] > utility[j]
                if group == "target" and flip_targets:
                    prefer_a = not prefer_a
                rows.append(dict(pair_id=f"p{i}-{j}", prompt="q", response_a=texts[i], response_b=texts[j],
                                 label="a" if prefer_a else "b", group=group, annotator=name))
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(["pair_id", "group", "annotator"]).reset_index(drop=True)


def _store(tmp_path, name="s", **kwargs) -> tuple[Store, str]:
    store = Store(tmp_path / f"{name}.duckdb")
    return store, store.add_pool("toy", _frame(**kwargs), source="test")


def test_saved_mask_matches_the_training_annotators_and_round_trips(tmp_path):
    store, pool = _store(tmp_path)
    config = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, calibrate=False, **TINY)
    report = build_pool(store, pool, config, backbone=HashEncoder())
    model = load_model(store, report.ensemble_id)
    assert model.config.mask_groups == sorted(TRAIN_ANNOTATORS)  # targets never in the mask
    expected = ens.make_head_mask(8, len(TRAIN_ANNOTATORS), fraction=0.25, seed=3)
    np.testing.assert_array_equal(model.head_mask.numpy(), expected)
    assert (expected.sum(axis=1) == 2).all()
    # the mask is part of the weights, hence of the fingerprint and the stored id (which
    # also names the pool the ensemble belongs to)
    assert report.ensemble_id == ensemble_record_id(model, {}, pool)
    again = ens.ensemble_from_bytes(*ens.ensemble_to_bytes(model))
    np.testing.assert_array_equal(again.head_mask.numpy(), expected)
    other = BuildConfig(train_groups=["crowd"], annotator_fraction=0.5, calibrate=False, **TINY)
    assert build_pool(store, pool, other, backbone=HashEncoder()).ensemble_id != report.ensemble_id
    # without annotator-aware heads there is no mask at all
    plain = BuildConfig(train_groups=["crowd"], annotator_fraction=None, calibrate=False, **TINY)
    assert load_model(store, build_pool(store, pool, plain, backbone=HashEncoder()).ensemble_id).head_mask is None


def test_a_head_never_learns_from_annotators_outside_its_mask(tmp_path):
    store, pool = _store(tmp_path)
    build_pool(store, pool, BuildConfig(train_groups=["crowd"], calibrate=False, **TINY), backbone=HashEncoder())
    pairs = store.pool_pairs(pool)
    labels = training_rows(store, pool, ["crowd"])
    config = BuildConfig(annotator_fraction=0.25, calibrate=False, **TINY)
    flipped = labels.copy()
    victim = flipped["annotator"] == "t5"
    flipped.loc[victim, "label"] = flipped.loc[victim, "label"].map({"a": "b", "b": "a"})
    encoder = HashEncoder()
    z = [ens.predict_pairs(train_on_rows(store, encoder.id, pairs, rows, config), *_xs(store, pairs))
         for rows in (labels, flipped)]
    mask = ens.make_head_mask(8, len(TRAIN_ANNOTATORS), fraction=0.25, seed=3)
    sees = mask[:, sorted(TRAIN_ANNOTATORS).index("t5")]
    assert sees.any() and (~sees).any()
    np.testing.assert_array_equal(z[0][:, ~sees], z[1][:, ~sees])  # untouched, bit for bit
    assert (np.abs(z[0][:, sees] - z[1][:, sees]).max(axis=0) > 1e-3).all()


def _weights_id(store, report) -> str:
    """The fingerprint of a build's trained weights: equal across stores when the
    weights are, unlike the store id, which also names the pool."""
    return ens.fingerprint(load_model(store, report.ensemble_id))


def _xs(store, pairs):
    encoder = HashEncoder()
    return (store.get_embeddings(encoder.id, pairs["hash_a"].tolist()),
            store.get_embeddings(encoder.id, pairs["hash_b"].tolist()))


def plain_and_flipped_builds(tmp_path, config) -> tuple[list, list]:
    """(reports, stores) of one build on the data and one with every target label flipped."""
    reports, stores = [], []
    for name, flip in (("plain", False), ("flipped", True)):
        store, pool = _store(tmp_path, name, flip_targets=flip)
        reports.append(build_pool(store, pool, config, backbone=HashEncoder()))
        stores.append(store)
    return reports, stores


@pytest.mark.slow
def test_calibration_uses_training_annotators_only(tmp_path):
    config = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, **TINY)
    reports, stores = plain_and_flipped_builds(tmp_path, config)
    cal = reports[0].calibration
    assert set(cal["holdout_annotators"]) < set(TRAIN_ANNOTATORS)
    assert cal["n_train_annotators"] == len(TRAIN_ANNOTATORS) - len(cal["holdout_annotators"])
    assert reports[0].beta == cal["beta"] == max(cal["betas"], key=lambda b: (cal["scores"][f"{b:g}"], -b))
    # lambda is chosen with beta, on the same held-out training annotators
    assert reports[0].lam == cal["lambda"] and set(cal["lambda_scores"]) == {
        f"{v:g}" for v in DEFAULT_CALIBRATION_LAMBDAS}
    # flipping every target label changes nothing: calibration (beta and lambda) and the
    # ensemble never saw them
    assert reports[1].calibration == cal
    assert reports[1].lam == reports[0].lam
    assert _weights_id(stores[1], reports[1]) == _weights_id(stores[0], reports[0])
    assert stores[0].get_ensemble(reports[0].ensemble_id).meta.beta == reports[0].beta
    assert stores[0].get_ensemble(reports[0].ensemble_id).meta.lam == reports[0].lam
    assert 1 <= reports[0].distinct_heads <= TINY["n_heads"]


@pytest.mark.slow
def test_builds_are_reproducible_with_a_seed(tmp_path):
    config = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, **TINY)
    (store_a, pool_a), (store_b, pool_b) = _store(tmp_path, "a"), _store(tmp_path, "b")
    first = build_pool(store_a, pool_a, config, backbone=HashEncoder())
    second = build_pool(store_b, pool_b, config, backbone=HashEncoder())
    assert (_weights_id(store_a, first), first.beta, first.calibration) == (
        _weights_id(store_b, second), second.beta, second.calibration)
    store, pool = _store(tmp_path, "c")
    reseeded = build_pool(store, pool, BuildConfig(**{**config.__dict__, "seed": 4}), backbone=HashEncoder())
    assert _weights_id(store, reseeded) != _weights_id(store_a, first)
    # building again reuses everything, calibration included
    again = build_pool(store, pool, BuildConfig(**{**config.__dict__, "seed": 4}), backbone=HashEncoder())
    assert not again.trained and again.beta == reseeded.beta and "calibrate" not in again.seconds


def test_evaluate_uses_the_stored_beta_unless_given(tmp_path):
    store, pool = _store(tmp_path)
    config = BuildConfig(train_groups=["crowd"], annotator_fraction=0.25, **TINY)
    common = dict(config=config, n_values=[0, 2], seeds=2, methods=["uniform", "hyre"],
                  target_groups=["target"], backbone=HashEncoder())
    stored = evaluate_pools(store, pool, pool, **common)
    assert stored["beta_source"] == "calibrated"
    assert stored["beta"] == build_pool(store, pool, config, backbone=HashEncoder()).beta
    assert stored["calibration"]["holdout_annotators"]
    assert (stored["lambda"], stored["lambda_source"]) == (
        build_pool(store, pool, config, backbone=HashEncoder()).lam, "ensemble")
    given = evaluate_pools(store, pool, pool, beta=2.5, lam=0.7, **common)
    assert (given["beta"], given["beta_source"]) == (2.5, "given")
    assert (given["lambda"], given["lambda_source"]) == (0.7, "given")
    personal = evaluate_pools(store, pool, pool, **{**common, "methods": ["uniform", "personal", "residual",
                                                                         "probe", "user_ceiling"]})
    assert set(personal["summary"]) == {"uniform", "personal", "residual", "probe", "user_ceiling"}
    # Before any label the personal head is zero: personal is the (uniform) ensemble's margin.
    assert personal["summary"]["residual"]["mean"][0] == personal["summary"]["personal"]["mean"][0]
    assert len(stored["groups"]["target"]["weight_entropy"]["mean"]) == 2


def test_too_few_annotators_keep_the_default_beta(tmp_path):
    store, pool = _store(tmp_path)
    labels = training_rows(store, pool, ["crowd"])
    few = labels[labels["annotator"].isin(TRAIN_ANNOTATORS[: CALIBRATION_MIN_ANNOTATORS - 1])]
    result = calibrate_beta(store, "unused", store.pool_pairs(pool), few, BuildConfig(**TINY))
    assert result["beta"] == 1.0 and "skipped" in result


def test_holdout_is_seeded_sized_and_checked():
    names = [f"a{i}" for i in range(40)]
    held = holdout_annotators(names, fraction=0.15, seed=0)
    assert len(held) == 6 and held == sorted(held) and set(held) <= set(names)
    assert held == holdout_annotators(list(reversed(names)), fraction=0.15, seed=0)
    assert held != holdout_annotators(names, fraction=0.15, seed=1)
    assert len(holdout_annotators(names[:5], fraction=0.01, seed=0)) == 2  # at least two
    with pytest.raises(ValueError, match="at least 5 annotators"):
        holdout_annotators(names[:4], fraction=0.5, seed=0)
    with pytest.raises(ValueError, match="holdout"):
        holdout_annotators(names, fraction=1.0, seed=0)


def test_weight_entropy_falls_from_log_k_as_labels_come_in():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, 16))
    y = (logits[:, 2] > 0).astype(float)
    result = evaluate_group(logits, y, n_values=[0, 5, 20], seeds=3, methods=["hyre"], beta=3.0)
    ent = result.weight_entropy["mean"]
    assert ent[0] == pytest.approx(np.log(16))
    assert ent[2] < ent[1] < ent[0]
