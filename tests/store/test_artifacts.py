"""Tests for hyre_engine/store/artifacts.py (embeddings, ensembles and head predictions (Z)), through the Store facade."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from store_helpers import add_ensemble, fake_vectors, table_counts

from hyre_engine.store import EnsembleMeta, text_hash


def test_embeddings_round_trip_in_requested_order(store):
    hashes = [text_hash("p", f"r{i}") for i in range(6)]
    vectors = fake_vectors(hashes)
    assert store.put_embeddings("bb", hashes[:4], vectors[:4]) == 4
    assert store.put_embeddings("bb", hashes, vectors) == 2  # only the two new ones
    query = [hashes[5], hashes[0], hashes[5], hashes[3]]
    got = store.get_embeddings("bb", query)
    assert got.dtype == np.float32 and got.flags.writeable
    np.testing.assert_array_equal(got, vectors[[5, 0, 5, 3]])
    # the same text under another backbone is a different embedding
    assert store.missing_embeddings("other-bb", hashes[:2]) == hashes[:2]
    assert store.get_embeddings("bb", []).shape == (0, 8)


def test_embeddings_keep_first_vector_and_validate(store):
    hashes = [text_hash("p", "a"), text_hash("p", "b")]
    store.put_embeddings("bb", hashes, np.ones((2, 3)))
    assert store.put_embeddings("bb", hashes, np.zeros((2, 3))) == 0
    np.testing.assert_array_equal(store.get_embeddings("bb", hashes), np.ones((2, 3)))
    with pytest.raises(KeyError, match="1 text hashes have no 'bb' embedding"):
        store.get_embeddings("bb", [hashes[0], "deadbeef"])
    with pytest.raises(ValueError, match=r"dim 3, got \(1, 4\)"):
        store.put_embeddings("bb", ["x"], np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"\(n_hashes, dim\) = \(2, d\), got \(3, 3\)"):
        store.put_embeddings("bb", ["x", "y"], np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        store.put_embeddings("bb", ["x"], np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="repeat"):
        store.put_embeddings("bb", ["x", "x"], np.ones((2, 3)))


def test_ensemble_round_trip_and_find(store, pool):
    add_ensemble(store, pool)
    got = store.get_ensemble("ens1")
    assert got.config == {"n_heads": 4, "hidden": 16} and got.meta == EnsembleMeta(beta=1.0)
    np.testing.assert_array_equal(st_load(got.weights)["w"], np.arange(6).reshape(2, 3))
    # key order of the config does not matter; any changed input does
    assert store.find_ensemble(pool, "bb", {"hidden": 16, "n_heads": 4}, "train-fp") == "ens1"
    assert store.find_ensemble(pool, "bb", {"hidden": 32, "n_heads": 4}, "train-fp") is None
    assert store.find_ensemble(pool, "bb", {"hidden": 16, "n_heads": 4}, "other-fp") is None
    assert store.find_ensemble(pool, "bb2", {"hidden": 16, "n_heads": 4}, "train-fp") is None
    listed = store.list_ensembles(pool)
    assert listed["ensemble_id"].tolist() == ["ens1"] and listed["n_bytes"].iloc[0] == len(
        got.weights
    ) == got.n_bytes
    assert store.list_ensembles("pool_other").empty
    with pytest.raises(KeyError, match="no ensemble"):
        store.get_ensemble("missing")
    with pytest.raises(KeyError, match="no pool"):
        add_ensemble(store, "pool_missing", "ens2")
    with pytest.raises(ValueError, match="config is not JSON serialisable"):
        store.put_ensemble(
            ensemble_id="e3",
            pool_id=pool,
            backbone_id="bb",
            config={"f": object()},
            weights=b"",
            train_fingerprint="t",
        )


def test_head_predictions_round_trip(store, pool):
    add_ensemble(store, pool)
    add_ensemble(store, pool, "ens2")
    assert store.get_head_predictions("ens1", pool) is None
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((5, 7))
    z2 = rng.standard_normal((5, 3)).astype(np.float32)
    store.put_head_predictions("ens1", pool, z1)
    store.put_head_predictions("ens2", pool, z2)
    got = store.get_head_predictions("ens1", pool)
    assert got.dtype == np.float32 and got.shape == (5, 7) and got.flags.writeable
    np.testing.assert_array_equal(got, z1.astype(np.float32))
    np.testing.assert_array_equal(store.get_head_predictions("ens2", pool), z2)
    # storing again replaces
    store.put_head_predictions("ens1", pool, -z1)
    np.testing.assert_array_equal(
        store.get_head_predictions("ens1", pool), (-z1).astype(np.float32)
    )
    assert table_counts(store)["head_predictions"] == 10


def test_head_predictions_validate(store, pool):
    add_ensemble(store, pool)
    with pytest.raises(ValueError, match=r"Z has shape \(4, 2\) but pool .* has 5 pairs"):
        store.put_head_predictions("ens1", pool, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(n_items, n_heads\)"):
        store.put_head_predictions("ens1", pool, np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        store.put_head_predictions("ens1", pool, np.full((5, 2), np.inf))
    with pytest.raises(KeyError, match="no ensemble"):
        store.put_head_predictions("ens9", pool, np.zeros((5, 2)))
    assert store.get_head_predictions("ens1", pool) is None


def test_reweightable_ensembles_leave_out_one_head_baselines(store, pool):
    assert store.reweightable_ensembles().empty
    add_ensemble(store, pool, "ens1")
    add_ensemble(store, pool, "single", config={"n_heads": 1, "hidden": 16})
    assert store.list_ensembles()["ensemble_id"].tolist() == ["ens1", "single"]
    assert store.reweightable_ensembles()["ensemble_id"].tolist() == ["ens1"]
