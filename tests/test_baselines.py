import numpy as np
import pytest
from scipy.special import expit

from hyre_engine import baselines as bl


def log_loss(p, y):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


# ---------------------------------------------------------------- static combiners


def test_static_combiners_known_answers():
    Z = np.array([[2.0, -1.0, 3.0], [0.0, 0.0, 0.0], [-4.0, -4.0, 1.0]])
    np.testing.assert_allclose(bl.majority_vote(Z), [2 / 3, 0.5, 1 / 3])
    np.testing.assert_allclose(bl.uniform_probability(Z), expit(Z).mean(axis=1))
    np.testing.assert_allclose(bl.uniform_logit(Z), expit([4 / 3, 0.0, -7 / 3]))
    # mean of probabilities and sigmoid of mean logits differ when heads disagree
    assert bl.uniform_probability(Z)[0] != pytest.approx(bl.uniform_logit(Z)[0])


def test_confidence_weighted_known_answer():
    # p = 0.9 (weight 0.4) and p = 0.6 (weight 0.1): (0.4*0.9 + 0.1*0.6) / 0.5 = 0.84
    Z = np.log(np.array([[0.9 / 0.1, 0.6 / 0.4]]))
    np.testing.assert_allclose(bl.confidence_weighted(Z), [0.84])
    # all heads unsure: falls back to 0.5
    np.testing.assert_allclose(bl.confidence_weighted(np.zeros((2, 3))), [0.5, 0.5])


def test_entropy_weighted_known_answer_and_ordering():
    p = np.array([0.99, 0.5])
    Z = np.log(p / (1 - p))[None, :]
    H = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    w = np.exp(-H)
    np.testing.assert_allclose(bl.entropy_weighted(Z), [(w * p).sum() / w.sum()])
    # leans towards the confident head more than the plain mean does
    assert bl.entropy_weighted(Z)[0] > bl.uniform_probability(Z)[0]
    assert np.isfinite(bl.entropy_weighted(np.array([[60.0, -60.0, 0.0]]))).all()


@pytest.mark.parametrize(
    "fn",
    [
        bl.uniform_probability,
        bl.uniform_logit,
        bl.majority_vote,
        bl.confidence_weighted,
        bl.entropy_weighted,
    ],
)
def test_static_combiners_reject_bad_shapes(fn):
    with pytest.raises(ValueError, match=r"shape \(n_items, n_heads\).*\(3,\)"):
        fn(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        fn(np.array([[np.nan, 1.0]]))


def test_accuracy_counts_ties_as_half():
    assert bl.accuracy(np.array([0.9, 0.2, 0.5, 0.7]), np.array([1, 0, 1, 0])) == pytest.approx(
        2.5 / 4
    )
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        bl.accuracy(np.array([0.1, 0.2]), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="0 .*or 1"):
        bl.accuracy(np.array([0.1, 0.2]), np.array([2, 0]))


# ---------------------------------------------------------------- fitted weights and oracles


def test_convex_weights_concentrate_on_the_head_that_is_right():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=12).astype(float)
    right = np.where(y == 1, 3.0, -3.0)
    Z = np.column_stack([-right, right, rng.normal(size=12), -right * 0.5])
    w = bl.fit_convex_weights(Z, y)
    assert w.shape == (4,)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    assert np.argmax(w) == 1 and w[1] > 0.8
    assert bl.accuracy(expit(Z) @ w, y) == 1.0


def test_convex_weights_uniform_without_data_and_shrink_towards_uniform():
    np.testing.assert_allclose(
        bl.fit_convex_weights(np.zeros((0, 5)), np.zeros(0)), np.full(5, 0.2)
    )
    Z = np.array([[2.0, -2.0, 0.0]])
    y = np.array([1.0])
    light = bl.fit_convex_weights(Z, y, l2=0.0)
    heavy = bl.fit_convex_weights(Z, y, l2=100.0)
    assert light[0] > heavy[0] > 1 / 3
    assert np.abs(heavy - 1 / 3).max() < 0.05
    with pytest.raises(ValueError, match=r"y_adapt must have shape \(1,\)"):
        bl.fit_convex_weights(Z, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"Z_adapt must be 2-D with shape"):
        bl.fit_convex_weights(np.zeros(4), np.zeros(4))


@pytest.mark.parametrize("n", [1, 5, 20])
def test_convex_weights_reach_the_minimiser_that_slsqp_approaches(n):
    # the former solver (scipy's SLSQP with bounds and the sum constraint) as the reference:
    # the projected-gradient weights are as good or better, and satisfy the simplex's KKT
    # conditions (gradient equal on the support, no smaller off it)
    from scipy.optimize import minimize

    rng = np.random.default_rng(n)
    K = 30
    Z = rng.normal(size=(n, K)) * 2 + rng.normal(size=(n, 1)) * 2
    y = (rng.random(n) < 0.5).astype(float)
    P, u = expit(Z), np.full(K, 1 / K)
    ref = minimize(bl._convex_objective, u, args=(P, y, bl.DEFAULT_CONVEX_L2), jac=True, method="SLSQP",
                   bounds=[(0.0, 1.0)] * K, options={"maxiter": 500, "ftol": 1e-12},
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}]).x
    ref = np.clip(ref, 0, None) / np.clip(ref, 0, None).sum()
    w = bl.fit_convex_weights(Z, y)
    f, g = bl._convex_objective(w, P, y, bl.DEFAULT_CONVEX_L2)
    assert f <= bl._convex_objective(ref, P, y, bl.DEFAULT_CONVEX_L2)[0] + 1e-12
    np.testing.assert_allclose(w, ref, atol=1e-4)
    support = w > 1e-12
    assert np.ptp(g[support]) < 1e-8 and g[~support].min(initial=np.inf) >= g[support].min() - 1e-8
    np.testing.assert_allclose(bl.project_simplex(np.array([0.5, 2.0, -1.0])), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(bl.project_simplex(np.array([0.2, 0.3, 0.2])), [0.3, 0.4, 0.3])


def test_best_head_oracle_scores_every_head_as_accuracy_does_ties_included():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(30, 12)) * 2
    Z[rng.random(Z.shape) < 0.2] = 0.0  # P = 0.5: half credit
    y = (rng.random(30) < 0.5).astype(float)
    head_accs = [bl.accuracy(expit(Z[:, k]), y) for k in range(12)]
    assert bl.best_head_oracle(Z, y) == (int(np.argmax(head_accs)), max(head_accs))


def test_oracles_are_upper_bounds():
    rng = np.random.default_rng(3)
    n, K = 60, 6
    y = rng.integers(0, 2, size=n).astype(float)
    signal = np.where(y == 1, 1.0, -1.0)
    Z = signal[:, None] * rng.uniform(0.0, 2.0, size=K) + rng.normal(scale=1.5, size=(n, K))
    head, acc = bl.best_head_oracle(Z, y)
    head_accs = [bl.accuracy(expit(Z[:, k]), y) for k in range(K)]
    assert acc == max(head_accs) and head_accs[head] == acc
    w = bl.best_weights_oracle(Z, y)
    oracle_loss = log_loss(expit(Z) @ w, y)
    assert oracle_loss <= log_loss(bl.uniform_probability(Z), y) + 1e-6
    for k in range(K):  # every single head is a vertex of the simplex
        assert oracle_loss <= log_loss(expit(Z[:, k]), y) + 1e-6
    with pytest.raises(ValueError, match="at least one"):
        bl.best_head_oracle(np.zeros((0, 3)), np.zeros(0))


def test_best_head_oracle_known_answer():
    Z = np.array([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]])
    y = np.array([1, 1, 0])
    assert bl.best_head_oracle(Z, y) == (0, 1.0)


# ---------------------------------------------------------------- fine-tuning


