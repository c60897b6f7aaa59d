"""Tests for hyre_engine/store/results.py (profiles and the results cache), through the Store facade."""

from __future__ import annotations

import numpy as np
import pytest

from hyre_engine.store import ProfileMeta


def test_profiles(store, session_setup):
    _, ens = session_setup
    assert store.get_profile("ann", ens) is None
    store.save_profile(
        user="ann",
        ensemble_id=ens,
        weights=[0.25, 0.75, 0, 0],
        labels=[{"row_index": 3, "label": "a"}],
        meta={"beta": 1},
    )
    store.save_profile(user="ann", ensemble_id=ens, weights=np.array([0.5, 0.5, 0, 0]), labels=[])
    store.save_profile(
        user="bob", ensemble_id=ens, weights=np.full(4, 0.25), labels=[{"row_index": 1}]
    )
    got = store.get_profile("ann", ens)
    np.testing.assert_array_equal(got.weights, [0.5, 0.5, 0, 0])
    assert got.labels == [] and got.meta == ProfileMeta()
    listed = store.list_profiles(ens)
    assert listed[["user", "n_heads", "n_labels"]].values.tolist() == [["ann", 4, 0], ["bob", 4, 1]]
    store.delete_profile("ann", ens)
    assert store.get_profile("ann", ens) is None
    with pytest.raises(KeyError, match="no profile"):
        store.delete_profile("ann", ens)
    with pytest.raises(ValueError, match=r"shape \(n_heads,\)"):
        store.save_profile(user="ann", ensemble_id=ens, weights=np.ones((2, 2)), labels=[])
    with pytest.raises(ValueError, match="non-negative"):
        store.save_profile(user="ann", ensemble_id=ens, weights=[-1.0, 2.0], labels=[])


def test_results_cache(store):
    assert store.get_result("eval:x") is None
    value = {"n": [0, 1], "summary": {"hyre": {"mean": [np.float64(0.5), 0.75]}}}
    store.put_result("eval:x", value)
    assert store.get_result("eval:x").value == {"n": [0, 1], "summary": {"hyre": {"mean": [0.5, 0.75]}}}
    store.put_result("eval:x", {"n": [5]})
    assert store.get_result("eval:x").value == {"n": [5]}
    with pytest.raises(ValueError, match="not JSON serialisable"):
        store.put_result("eval:y", {"f": object()})
    assert store.get_result("eval:y") is None
