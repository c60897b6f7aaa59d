import math

import numpy as np
import pytest

from hyre_engine.reweight import (
    DEFAULT_BETA,
    LOSSES,
    Posterior,
    effective_heads,
    example_losses,
    log_weights_from_losses,
    weight_entropy,
    weighted_probability,
    weighted_value,
    weights_from_losses,
)


def _random_task(loss, n=40, k=7, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, k))
    if loss == "squared":
        y = rng.normal(size=n)
    else:
        y = rng.integers(0, 2, size=n)
    return z, y


# ---- example_losses ---------------------------------------------------------------------


def test_zero_one_loss_known_values_with_tie_as_half():
    z = np.array([[2.0, -1.0, 0.0], [-3.0, 0.5, 0.0]])
    y = np.array([1, 0])
    expected = np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 0.5]])
    np.testing.assert_array_equal(example_losses(z, y), expected)


def test_cross_entropy_is_bradley_terry_log_loss_and_stable():
    z = np.array([[0.0, 1.0, -2.0]])
    got = example_losses(z, np.array([1]), loss="cross-entropy")
    expected = -np.log(1.0 / (1.0 + np.exp(-z)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # y = 0 flips the sign of the margin.
    got0 = example_losses(z, np.array([0]), loss="cross-entropy")
    np.testing.assert_allclose(got0, -np.log(1.0 / (1.0 + np.exp(z))), rtol=1e-12)
    # Huge logits: no overflow, the loss is |z| when wrong and ~0 when right.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big = example_losses(np.array([[-1000.0, 1000.0]]), np.array([1]), loss="cross-entropy")
    np.testing.assert_allclose(big, [[1000.0, 0.0]], atol=1e-12)


def test_squared_loss_for_regression():
    z = np.array([[1.0, 3.0], [0.0, -2.0]])
    y = np.array([2.0, 0.5])
    np.testing.assert_array_equal(example_losses(z, y, loss="squared"), [[1.0, 1.0], [0.25, 6.25]])


@pytest.mark.parametrize("loss", ["zero-one", "cross-entropy"])
def test_binary_losses_reject_labels_outside_0_1(loss):
    with pytest.raises(ValueError, match=r"0 or 1.*2"):
        example_losses(np.zeros((3, 2)), np.array([0, 1, 2]), loss=loss)
    with pytest.raises(ValueError, match="0 or 1"):
        example_losses(np.zeros((1, 2)), np.array([0.5]), loss=loss)


def test_example_losses_rejects_bad_input():
    with pytest.raises(ValueError, match="preds contains NaN"):
        example_losses(np.array([[np.nan, 0.0]]), np.array([1]))
    with pytest.raises(ValueError, match="y contains NaN or inf"):
        example_losses(np.zeros((1, 2)), np.array([np.inf]), loss="squared")
    with pytest.raises(ValueError, match=r"y has shape \(2,\).*\(3, 2\)"):
        example_losses(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="preds must be 2-D"):
        example_losses(np.zeros(3), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*zero-one"):
        example_losses(np.zeros((1, 2)), np.array([1]), loss="hinge")


# ---- weights ----------------------------------------------------------------------------


def test_weights_known_answer_and_default_beta():
    assert DEFAULT_BETA == 1.0
    w = weights_from_losses(np.array([0.0, 1.0, 3.0]))
    e = np.exp(-np.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(w, e / e.sum(), rtol=1e-14)
    w2 = weights_from_losses(np.array([0.0, 1.0]), beta=2.5)
    np.testing.assert_allclose(w2[0] / w2[1], math.exp(2.5), rtol=1e-12)


def test_no_examples_gives_uniform_weights_and_beta_zero_too():
    np.testing.assert_allclose(weights_from_losses(np.zeros(5)), np.full(5, 0.2), rtol=1e-15)
    np.testing.assert_allclose(
        weights_from_losses(np.array([0.0, 7.0, 1e6]), beta=0.0), np.full(3, 1 / 3), rtol=1e-15
    )


def test_weights_stable_for_huge_losses_and_many_heads():
    w = weights_from_losses(np.array([1e6, 1e6 + 1.0]))
    np.testing.assert_allclose(w, weights_from_losses(np.array([0.0, 1.0])), rtol=1e-12)
    rng = np.random.default_rng(1)
    L = rng.random(10_000) * 1e6
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        w = weights_from_losses(L)
    assert np.isfinite(w).all() and math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    assert w.argmax() == L.argmin()
    # beta * L overflows for every head but the best one, which takes all the weight.
    lw = log_weights_from_losses(L, beta=1e306)
    assert lw[L.argmin()] == 0.0 and (np.delete(lw, L.argmin()) < -1e300).all()
    one_hot = np.zeros(10_000)
    one_hot[L.argmin()] = 1.0
    np.testing.assert_array_equal(np.exp(lw), one_hot)


def test_single_head_gets_all_weight():
    np.testing.assert_array_equal(weights_from_losses(np.array([42.0])), [1.0])


def test_log_prior_shapes_the_weights_and_minus_inf_switches_a_head_off():
    prior = np.log(np.array([0.5, 0.3, 0.2]))
    np.testing.assert_allclose(weights_from_losses(np.zeros(3), log_prior=prior), [0.5, 0.3, 0.2])
    L = np.array([0.0, 1.0, 2.0])
    w = weights_from_losses(L, log_prior=prior)
    e = np.array([0.5, 0.3, 0.2]) * np.exp(-L)
    np.testing.assert_allclose(w, e / e.sum(), rtol=1e-14)
    w = weights_from_losses(L, log_prior=np.array([-np.inf, 0.0, 0.0]))
    assert w[0] == 0.0 and math.isclose(w.sum(), 1.0)


def test_weights_reject_bad_input():
    for beta in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="beta must be finite and >= 0"):
            weights_from_losses(np.zeros(3), beta=beta)
    with pytest.raises(ValueError, match="losses contains NaN or inf"):
        weights_from_losses(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="losses must be 1-D"):
        weights_from_losses(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="losses is empty"):
        weights_from_losses(np.zeros(0))
    with pytest.raises(ValueError, match=r"log_prior has shape \(2,\), need \(3,\)"):
        weights_from_losses(np.zeros(3), log_prior=np.zeros(2))
    with pytest.raises(ValueError, match="log_prior contains NaN"):
        weights_from_losses(np.zeros(2), log_prior=np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="zero prior weight"):
        weights_from_losses(np.zeros(2), log_prior=np.full(2, -np.inf))


def test_effective_heads_and_entropy_known_values():
    assert math.isclose(effective_heads(np.full(4, 0.25)), 4.0)
    assert math.isclose(effective_heads(np.array([1.0, 0.0, 0.0])), 1.0)
    assert math.isclose(effective_heads(np.array([0.5, 0.5, 0.0])), 2.0)
    assert math.isclose(weight_entropy(np.full(4, 0.25)), math.log(4))
    assert weight_entropy(np.array([0.0, 1.0, 0.0])) == 0.0
    with pytest.raises(ValueError, match="negative"):
        effective_heads(np.array([1.5, -0.5]))
    with pytest.raises(ValueError, match="sum to 1"):
        weight_entropy(np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="w contains NaN"):
        weight_entropy(np.array([np.nan, 1.0]))


# ---- Posterior --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_sequential_adds_equal_one_batch_add(loss):
    z, y = _random_task(loss)
    batch = Posterior(z.shape[1], loss=loss).add(z, y)
    seq = Posterior(z.shape[1], loss=loss)
    for i in range(len(y)):
        seq.add(z[i], y[i])
    chunks = Posterior(z.shape[1], loss=loss)
    for part in np.array_split(np.arange(len(y)), 4):
        chunks.add(z[part], y[part])
    for post in (seq, chunks):
        assert post.n_examples == batch.n_examples == len(y)
        np.testing.assert_allclose(post.losses, batch.losses, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(post.weights, batch.weights, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(post.log_weights, batch.log_weights, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_posterior_matches_the_formula(loss):
    z, y = _random_task(loss, seed=3)
    post = Posterior(z.shape[1], loss=loss, beta=0.7).add(z, y)
    L = example_losses(z, y, loss=loss).sum(axis=0)
    np.testing.assert_allclose(post.losses, L, rtol=1e-12)
    np.testing.assert_allclose(post.weights, weights_from_losses(L, beta=0.7), rtol=1e-12)
    assert math.isclose(post.entropy, weight_entropy(post.weights))
    assert math.isclose(post.effective_heads, effective_heads(post.weights))


def test_head_that_is_always_right_dominates():
    # Head 0 agrees with every label, head 1 with none, head 2 with half: w0/wk = exp(Lk - L0).
    y = np.array([1, 0, 1, 0])
    z = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [2.0, -2.0, -2.0], [-2.0, 2.0, -2.0]])
    post = Posterior(3).add(z, y)
    np.testing.assert_array_equal(post.losses, [0.0, 4.0, 2.0])
    w = post.weights
    np.testing.assert_allclose([w[0] / w[1], w[0] / w[2]], [math.exp(4), math.exp(2)])


@pytest.mark.parametrize("loss", LOSSES)
def test_undo_restores_previous_weights_exactly(loss):
    z, y = _random_task(loss, seed=5)
    post = Posterior(z.shape[1], loss=loss)
    snapshots = [(post.weights, post.losses, post.n_examples)]
    for part in (slice(0, 1), slice(1, 9), slice(9, 10), slice(10, 40)):
        post.add(z[part], y[part])
        snapshots.append((post.weights, post.losses, post.n_examples))
    snapshots.pop()
    while snapshots:
        w, L, n = snapshots.pop()
        post.undo()
        np.testing.assert_array_equal(post.weights, w)
        np.testing.assert_array_equal(post.losses, L)
        assert post.n_examples == n
    np.testing.assert_allclose(post.weights, np.full(z.shape[1], 1 / z.shape[1]), rtol=1e-15)
    with pytest.raises(ValueError, match="nothing to undo"):
        post.undo()


def test_posterior_starts_uniform_and_add_chains():
    post = Posterior(4)
    np.testing.assert_allclose(post.weights, np.full(4, 0.25))
    assert post.n_examples == 0 and math.isclose(post.effective_heads, 4.0)
    assert post.add(np.array([1.0, -1.0, 1.0, 1.0]), 1) is post
    assert post.n_examples == 1
    # Returned arrays are copies: editing them cannot corrupt the posterior.
    post.losses[:] = 99
    post.log_weights[:] = 0
    np.testing.assert_array_equal(post.losses, [0, 1, 0, 0])


def test_posterior_rejects_bad_input():
    post = Posterior(3)
    with pytest.raises(ValueError, match=r"shape \(2,\) but the posterior has 3 heads"):
        post.add(np.zeros(2), 1)
    with pytest.raises(ValueError, match=r"shape \(4, 2\) but the posterior has 3 heads"):
        post.add(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="needs a scalar y"):
        post.add(np.zeros(3), np.array([1, 0]))
    with pytest.raises(ValueError, match=r"\(n_heads,\) or \(n, n_heads\)"):
        post.add(np.zeros((1, 1, 3)), np.zeros(1))
    with pytest.raises(ValueError, match="0 or 1"):
        post.add(np.zeros(3), 3)
    with pytest.raises(ValueError, match="preds contains NaN"):
        post.add(np.array([0.0, np.nan, 1.0]), 1)
    assert post.n_examples == 0  # failed adds leave no trace
    with pytest.raises(ValueError, match="n_heads must be a positive integer"):
        Posterior(0)
    with pytest.raises(ValueError, match="unknown loss"):
        Posterior(3, loss="hinge")
    with pytest.raises(ValueError, match="beta"):
        Posterior(3, beta=-1)
    with pytest.raises(ValueError, match="log_prior has shape"):
        Posterior(3, log_prior=np.zeros(4))


# ---- weighted predictions ---------------------------------------------------------------


def test_weighted_probability_known_values_and_stable():
    z = np.array([[0.0, 1000.0], [-1000.0, 0.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = weighted_probability(z, np.array([0.25, 0.75]))
    np.testing.assert_allclose(p, [0.25 * 0.5 + 0.75, 0.75 * 0.5], rtol=1e-6)
    z = np.array([[math.log(3.0), 0.0]])  # sigmoid(log 3) = 0.75
    np.testing.assert_allclose(weighted_probability(z, np.array([1.0, 0.0])), [0.75], rtol=1e-12)


def test_weighted_value_known_values():
    v = np.array([[1.0, 3.0, 5.0], [0.0, 0.0, 6.0]])
    np.testing.assert_allclose(weighted_value(v, np.array([0.5, 0.0, 0.5])), [3.0, 3.0])


def test_weighted_predictions_reject_bad_input():
    with pytest.raises(ValueError, match="w has length 3 but the predictions have 2 heads"):
        weighted_probability(np.zeros((4, 2)), np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="w has length 1 but the predictions have 2 heads"):
        weighted_value(np.zeros((4, 2)), np.array([1.0]))
    with pytest.raises(ValueError, match="logits contains NaN or inf"):
        weighted_probability(np.array([[np.inf, 0.0]]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="values must be 2-D"):
        weighted_value(np.zeros(2), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="sum to 1"):
        weighted_value(np.zeros((1, 2)), np.array([0.5, 0.6]))
