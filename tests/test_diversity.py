import numpy as np
import pytest

from hyre_engine.diversity import distinct_heads, head_correlations


def _clustered(n_items=500, sizes=(5, 3, 1, 7), noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_items, len(sizes)))
    cols = []
    for c, size in enumerate(sizes):
        for _ in range(size):
            # Same function up to scale, shift and a little noise: correlation ~0.999.
            cols.append(rng.uniform(0.5, 2) * centres[:, c] + rng.normal() + noise * rng.normal(size=n_items))
    return np.stack(cols, axis=1)


def test_counts_the_constructed_clusters():
    Z = _clustered()
    result = distinct_heads(Z)
    assert result.n_distinct == 4
    assert result.n_heads == 16
    assert sorted(result.sizes.tolist()) == [1, 3, 5, 7]
    # Heads of one constructed cluster share a label, and labels follow first appearance.
    np.testing.assert_array_equal(result.labels[:5], 0)
    np.testing.assert_array_equal(result.labels[5:8], 1)


def test_threshold_splits_loose_clusters():
    Z = _clustered(noise=0.5)  # correlation within a cluster ~0.8-0.95
    assert distinct_heads(Z).n_distinct > 4
    assert distinct_heads(Z, threshold=0.5).n_distinct == 4


def test_complete_linkage_does_not_chain():
    # A chain a - b - c where neighbours correlate 0.99 but a and c only ~0.96.
    rng = np.random.default_rng(1)
    base, step = rng.normal(size=2000), rng.normal(size=2000)
    Z = np.stack([base, base + 0.14 * step, base + 0.28 * step], axis=1)
    corr = head_correlations(Z)
    assert corr[0, 1] > 0.98 and corr[1, 2] > 0.98 and corr[0, 2] < 0.98
    assert distinct_heads(Z).n_distinct == 2


def test_independent_heads_are_all_distinct_and_constant_heads_are_one():
    rng = np.random.default_rng(2)
    assert distinct_heads(rng.normal(size=(300, 20))).n_distinct == 20
    Z = np.concatenate([np.full((50, 3), 2.0), rng.normal(size=(50, 2))], axis=1)
    result = distinct_heads(Z)
    assert result.n_distinct == 3
    assert result.sizes[0] == 3


def test_subsampled_rows_give_the_same_count():
    Z = _clustered(n_items=5000)
    assert distinct_heads(Z, max_rows=1000).n_distinct == distinct_heads(Z).n_distinct == 4


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        distinct_heads(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        distinct_heads(np.zeros(5))
    with pytest.raises(ValueError, match="threshold"):
        distinct_heads(np.zeros((4, 2)), threshold=1.5)
