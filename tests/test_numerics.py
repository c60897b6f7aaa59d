"""The shared numeric primitives: one sigmoid, one entropy, one accuracy with one tie rule."""

import numpy as np
import pytest
from scipy.special import expit

from hyre_engine import numerics as nm


def test_sigmoid_is_stable_in_the_tails_and_keeps_float32():
    z = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    p = nm.sigmoid(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, expit(z), rtol=1e-12)
    assert nm.sigmoid(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert nm.sigmoid(np.array([0, 1])).dtype == np.float64


def test_binary_entropy_and_its_logit_form_agree():
    z = np.linspace(-20, 20, 81)
    np.testing.assert_allclose(nm.entropy_from_logits(z), nm.binary_entropy(nm.sigmoid(z)), atol=1e-9)
    assert nm.binary_entropy(np.array([0.0, 1.0])).tolist() == [0.0, 0.0]
    assert nm.binary_entropy(np.array([0.5]))[0] == pytest.approx(np.log(2))


def test_accuracy_counts_a_tie_as_half_for_either_side():
    # The one tie rule: P(A) = 0.5 earns half whichever response was preferred.
    p = np.array([0.5, 0.5, 0.9, 0.1])
    assert nm.correct(p, np.array([1.0, 0.0, 1.0, 1.0])).tolist() == [0.5, 0.5, 1.0, 0.0]
    assert nm.accuracy(np.array([0.5]), np.array([0.0])) == 0.5
    assert nm.accuracy(np.array([0.5]), np.array([1.0])) == 0.5
    assert np.isnan(nm.accuracy(np.array([]), np.array([])))


def test_accuracy_counts_a_rounded_tie_as_half():
    # all heads at exactly 0.5, reweighted: the weighted mean is 0.5 up to rounding
    w = np.random.default_rng(0).dirichlet(np.ones(7))
    p = np.full((3, 7), 0.5) @ w + np.array([1e-16, -1e-16, 0.0])
    assert nm.accuracy(p, np.array([1.0, 0.0, 1.0])) == 0.5


def test_the_baselines_and_the_protocol_use_the_same_accuracy():
    from hyre_engine import baselines, protocol

    assert baselines.accuracy is nm.accuracy
    assert protocol.accuracy is nm.accuracy


def test_validators_name_the_problem():
    with pytest.raises(ValueError, match=r"Z must be 2-D with shape \(n_items, n_heads\).*\(3,\)"):
        nm.finite_logits(np.zeros(3), "Z")
    with pytest.raises(ValueError, match="n_heads >= 1"):
        nm.finite_logits(np.zeros((3, 0)), "Z", min_heads=1)
    with pytest.raises(ValueError, match="Z contains NaN or inf"):
        nm.finite_logits(np.array([[np.nan]]), "Z")
    with pytest.raises(ValueError, match="must be numeric"):
        nm.as_finite("x", np.array(["a"]))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        nm.binary_targets(np.zeros(3), 2)
    with pytest.raises(ValueError, match="0 .*or 1"):
        nm.binary_targets(np.array([2.0]), 1)
    assert nm.finite_logits(np.zeros((2, 3), dtype=np.float32)).dtype == np.float32
    assert nm.finite_logits(np.zeros((2, 3), dtype=np.int64)).dtype == np.float64


def test_label_values_map_to_targets():
    assert nm.SESSION_LABELS == (*nm.PAIR_LABELS, *nm.NO_PREFERENCE)
    assert not set(nm.PAIR_LABELS) & set(nm.NO_PREFERENCE)
    np.testing.assert_array_equal(nm.label_targets(["a", "b", "a"]), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="skip"):
        nm.label_targets(["a", "skip"])
