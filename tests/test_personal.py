import math

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from hyre_engine.acquisition import select
from hyre_engine.personal import (
    DEFAULT_LAMBDA,
    PersonalHead,
    PersonalModel,
    embedding_differences,
    fit_logistic,
    gaussian_logit_bald,
    gaussian_logit_entropy,
    mixture_margins,
    personal_margins,
    probit_probability,
)


def _unit_rows(rng, n, dim):
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def pool():
    rng = np.random.default_rng(0)
    n_pairs, n_heads, dim = 300, 12, 24
    D = (_unit_rows(rng, n_pairs, dim) - _unit_rows(rng, n_pairs, dim)).astype(np.float32)
    Z = rng.normal(scale=2.0, size=(n_pairs, n_heads)).astype(np.float32)
    rows = rng.choice(n_pairs, size=15, replace=False)
    y = rng.integers(0, 2, size=15).astype(float)
    return Z, D, rows, y


def _objective(v, D, y, o, lam):
    m = o + D @ v
    return np.logaddexp(0.0, -(2 * y - 1) * m).sum() + 0.5 * lam * v @ v


# ---- known answers


@pytest.mark.parametrize("lam", [0.1, 1.0, 3.0])
def test_zero_offset_map_matches_sklearn_logistic_regression(lam):
    rng = np.random.default_rng(1)
    X = _unit_rows(rng, 40, 60)  # n < dim: the dual form must still be exact
    y = (rng.random(40) < 0.5).astype(float)
    v = fit_logistic(X, y, lam=lam)
    sk = LogisticRegression(fit_intercept=False, C=1.0 / lam, solver="newton-cholesky", tol=1e-14,
                            max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(v, sk.coef_[0], atol=1e-6)


def test_map_with_offset_matches_scipy_minimize():
    rng = np.random.default_rng(2)
    X = _unit_rows(rng, 25, 10)
    y = (rng.random(25) < 0.5).astype(float)
    o = rng.normal(scale=1.5, size=25)
    v = fit_logistic(X, y, lam=0.1, offsets=o)
    ref = minimize(_objective, np.zeros(10), args=(X, y, o, 0.1), method="BFGS",
                   jac=lambda v, *_: X.T @ (1 / (1 + np.exp(-(o + X @ v))) - y) + 0.1 * v, tol=1e-12)
    np.testing.assert_allclose(v, ref.x, atol=1e-6)
    # The offset matters: without it the fit is a different v.
    assert np.abs(fit_logistic(X, y, lam=0.1) - v).max() > 1e-2


def test_laplace_covariance_and_pool_variances_are_exact(pool):
    Z, D, rows, y = pool
    o = np.random.default_rng(3).normal(size=rows.size)
    head = PersonalHead.from_labels(D, rows, y, o, lam=0.3)
    DL = D[rows].astype(np.float64)
    p = 1 / (1 + np.exp(-(o + DL @ head.v)))
    H = 0.3 * np.eye(D.shape[1]) + DL.T @ (DL * (p * (1 - p))[:, None])
    sigma = np.linalg.inv(H)
    np.testing.assert_allclose(head.covariance(), sigma, atol=1e-9)
    expected = np.einsum("ij,jk,ik->i", D.astype(np.float64), sigma, D.astype(np.float64))
    np.testing.assert_allclose(head.variances(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head.margin_variance(D[:5]), expected[:5], rtol=1e-9)
    np.testing.assert_allclose(head.corrections(), D.astype(np.float64) @ head.v, atol=1e-5)


# ---- sequential, batch, undo, zero


def test_sequential_equals_batch(pool):
    Z, D, rows, y = pool
    model = PersonalModel(Z, D, lam=DEFAULT_LAMBDA)
    for r, label in zip(rows, y, strict=True):
        model.add(int(r), label)
    # Batch: the final weights' offsets on every labelled row, all labels at once.
    offsets = mixture_margins(Z[rows], model.weights)
    batch = PersonalHead.from_labels(D, rows, y, offsets, lam=DEFAULT_LAMBDA)
    np.testing.assert_allclose(model.v, batch.v, atol=1e-8)
    replayed = PersonalModel.replay(Z, D, rows, y, lam=DEFAULT_LAMBDA)
    np.testing.assert_array_equal(replayed.v, model.v)


def test_each_label_refits_all_offsets_to_convergence(pool):
    Z, D, rows, y = pool
    model = PersonalModel(Z, D, beta=2.0)
    for r, label in zip(rows, y, strict=True):
        model.add(int(r), label)
        o = mixture_margins(Z[model.head.rows], model.weights)
        DL = D[model.head.rows].astype(np.float64)
        p = 1 / (1 + np.exp(-(o + DL @ model.v)))
        grad = DL.T @ (p - model.head.labels) + model.lam * model.v
        assert np.abs(grad).max() < 1e-9


def test_undo_is_exact(pool):
    Z, D, rows, y = pool
    model = PersonalModel(Z, D)
    for r, label in zip(rows[:6], y[:6], strict=True):
        model.add(int(r), label)
    v, w = model.v.copy(), model.weights.copy()
    var, m = model.head.variances().copy(), model.margins().copy()
    model.add(int(rows[6]), y[6]).add(int(rows[7]), y[7])
    model.undo().undo()
    np.testing.assert_array_equal(model.v, v)
    np.testing.assert_array_equal(model.weights, w)
    np.testing.assert_array_equal(model.head.variances(), var)
    np.testing.assert_array_equal(model.margins(), m)
    for _ in range(6):
        model.undo()
    np.testing.assert_array_equal(model.v, np.zeros(D.shape[1]))
    with pytest.raises(ValueError, match="nothing to undo"):
        model.undo()


def test_zero_before_any_label_is_hyre(pool):
    Z, D, _, _ = pool
    model = PersonalModel(Z, D)
    assert model.n_labels == 0
    np.testing.assert_array_equal(model.v, np.zeros(D.shape[1]))
    np.testing.assert_array_equal(model.head.corrections(), np.zeros(len(Z)))
    # The offset is the uniform ensemble's prediction, logit(mean_k sigmoid(z_k)), not its mean margin.
    p_uniform = (1 / (1 + np.exp(-Z.astype(np.float64)))).mean(axis=1)
    np.testing.assert_allclose(model.margins(), np.log(p_uniform / (1 - p_uniform)), atol=1e-6)
    np.testing.assert_allclose(model.probabilities(), p_uniform, atol=1e-7)
    np.testing.assert_allclose(model.head_mean(), Z.astype(np.float64).mean(axis=1), atol=1e-5)
    # Prior variance of every pair's margin: ||d||^2 / lambda.
    np.testing.assert_allclose(model.head.variances(),
                               (D.astype(np.float64) ** 2).sum(1) / DEFAULT_LAMBDA, rtol=1e-6)
    assert model.flip_share() == 0.0


def test_mixture_margins_are_the_ensembles_prediction_in_log_space():
    rng = np.random.default_rng(11)
    Z = rng.normal(scale=3.0, size=(50, 7))
    w = rng.dirichlet(np.ones(7))
    p = (1 / (1 + np.exp(-Z))) @ w
    np.testing.assert_allclose(mixture_margins(Z, w), np.log(p / (1 - p)), rtol=1e-10, atol=1e-10)
    # Heads that all agree far past float64's sigmoid: a plain logit would be inf, this is exact.
    far = np.array([[60.0, 80.0], [-900.0, -700.0], [40.0, -40.0]])
    m = mixture_margins(far, np.array([0.5, 0.5]))
    assert np.isfinite(m).all()
    # logit = log p - log(1 - p), with 1 - p = (e^-60 + e^-80) / 2 and p = (e^-900 + e^-700) / 2
    np.testing.assert_allclose(m[:2], [60.0 + np.log(2) - np.log1p(np.exp(-20.0)), -700.0 - np.log(2)], rtol=1e-12)
    assert abs(m[2]) < 1e-12  # two opposite heads, equal weight: an even mixture
    # One head with all the weight is that head's margin.
    np.testing.assert_allclose(mixture_margins(Z, np.eye(7)[2]), Z[:, 2], rtol=1e-12)
    # Its sign is the ensemble's choice; the mean margin's can differ.
    disagree = np.array([[-9.0, 2.0, 2.0]])  # one head sure of B, two fairly sure of A
    assert mixture_margins(disagree, np.full(3, 1 / 3))[0] > 0 > disagree.mean()


def test_pool_offsets_are_the_mixture_margins_under_any_weights(pool):
    Z, D, rows, y = pool
    # Saturated rows: every head sure of A (float32 sigmoid is 1.0), of B, or opposite and sure.
    Z = Z.copy()
    Z[0], Z[1], Z[2, ::2], Z[2, 1::2] = 50.0, -45.0, 30.0, -30.0
    model = PersonalModel(Z, D, beta=2.0)
    np.testing.assert_allclose(model.offsets(), mixture_margins(Z, model.weights), rtol=1e-6, atol=1e-6)
    for r, label in zip(rows, y, strict=True):
        model.add(int(r), label)
    assert np.abs(model.weights - 1 / Z.shape[1]).max() > 1e-3
    np.testing.assert_allclose(model.offsets(), mixture_margins(Z, model.weights), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.margins(), model.offsets() + D.astype(np.float64) @ model.v, atol=1e-5)
    assert model.offsets()[0] > 40 and model.offsets()[1] < -40


def test_personal_at_n_zero_is_the_uniform_ensemble_in_the_protocol():
    from hyre_engine.protocol import evaluate_group

    rng = np.random.default_rng(12)
    n, heads = 400, 30
    # Confident heads that disagree: their mean margin and their mean probability differ in sign often.
    Z = (rng.normal(size=(n, heads)) * rng.gamma(0.5, 8.0, size=heads)).astype(np.float32)
    D = rng.normal(size=(n, 8)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(float)
    p = (1 / (1 + np.exp(-Z.astype(np.float64)))).mean(axis=1)
    assert np.mean(np.sign(p - 0.5) != np.sign(Z.astype(np.float64).mean(axis=1))) > 0.05
    r = evaluate_group(Z, y, diffs=D, n_values=[0, 1], seeds=3, methods=["uniform", "personal"])
    assert r.methods["personal"]["mean"][0] == r.methods["uniform"]["mean"][0]
    model = PersonalModel(Z, D)
    np.testing.assert_array_equal(np.sign(model.margins()), np.sign(p - 0.5))


def test_capacity_growth_keeps_the_fit(pool):
    Z, D, _, _ = pool
    rng = np.random.default_rng(5)
    rows = rng.choice(len(Z), size=40, replace=False)  # past the initial capacity of 16
    y = rng.integers(0, 2, size=40)
    model = PersonalModel.replay(Z, D, rows, y, reweight=False)
    np.testing.assert_allclose(model.head.corrections(), D.astype(np.float64) @ model.v, atol=1e-5)


def test_residual_model_keeps_uniform_weights(pool):
    Z, D, rows, y = pool
    model = PersonalModel.replay(Z, D, rows, y, reweight=False)
    np.testing.assert_array_equal(model.weights, np.full(Z.shape[1], 1 / Z.shape[1]))
    v = fit_logistic(D[rows], y, offsets=mixture_margins(Z[rows], model.weights))
    np.testing.assert_allclose(model.v, v, atol=1e-8)


def test_labels_move_the_model_towards_the_person():
    rng = np.random.default_rng(6)
    n, dim = 400, 16
    D = rng.normal(size=(n, dim)).astype(np.float32)
    truth = rng.normal(size=dim)
    y = (D @ truth > 0).astype(float)
    Z = rng.normal(size=(n, 5)).astype(np.float32)  # heads that know nothing of this person
    model = PersonalModel(Z, D, lam=0.1)
    order = rng.permutation(n)[:40]
    before = np.mean((model.margins() > 0) == y)
    for r in order:
        model.add(int(r), y[r])
    rest = np.setdiff1d(np.arange(n), order)
    assert np.mean((model.margins()[rest] > 0) == y[rest]) > max(before, 0.5) + 0.2
    assert 0.0 < model.flip_share() <= 1.0


# ---- scoring


def test_probit_probability_matches_monte_carlo():
    rng = np.random.default_rng(7)
    mu, s2 = 1.2, 4.0
    f = rng.normal(mu, math.sqrt(s2), size=400_000)
    mc = np.mean(1 / (1 + np.exp(-f)))
    assert abs(float(probit_probability(mu, s2)) - mc) < 0.01


def test_bald_matches_quadrature_and_vanishes_without_uncertainty():
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    for mu, s2 in [(0.0, 4.0), (1.5, 1.0), (3.0, 0.5), (4.0, 4.0), (0.0, 0.3)]:
        f = mu + math.sqrt(s2) * nodes
        p = 1 / (1 + np.exp(-f))
        a = np.abs(f)  # entropy of sigmoid(f), stable in the tails
        h = np.log1p(np.exp(-a)) + a * np.exp(-a) / (1 + np.exp(-a))
        pm = weights @ p
        exact = -(pm * math.log(pm) + (1 - pm) * math.log(1 - pm)) - weights @ h
        # Two approximations (probit link, Gaussian-shaped entropy): within ~12%.
        assert abs(float(gaussian_logit_bald(mu, s2)) - exact) < 0.12 * exact + 0.005
    assert float(gaussian_logit_bald(0.7, 0.0)) == 0.0
    # Entropy is highest at mu = 0; BALD grows with the variance at fixed mu.
    assert gaussian_logit_entropy(0.0, 1.0) > gaussian_logit_entropy(2.0, 1.0)
    assert gaussian_logit_bald(0.0, 5.0) > gaussian_logit_bald(0.0, 0.5)


def test_next_item_never_repeats_a_label_and_prefers_uncertain_pairs(pool):
    Z, D, rows, y = pool
    model = PersonalModel(Z, D)
    asked = []
    for _ in range(8):
        item = model.next_item("personal_bald", seed=0)
        assert item not in asked
        asked.append(item)
        model.add(item, 1)
    mu, s2 = model.predictive()
    scores = model.score("personal_bald")
    assert scores.shape == (len(Z),)
    np.testing.assert_allclose(scores, gaussian_logit_bald(mu, s2))
    # the one-pass pick is select's pick, with or without an exclude
    for seed, exclude in ((3, None), (4, [int(np.argmax(scores))])):
        labelled = np.union1d(model.head.rows, exclude or []).astype(np.int64)
        assert model.next_item("personal_bald", exclude=exclude, seed=seed) == select(
            scores, 1, exclude=labelled, seed=seed)[0]
    # exact ties (identical pairs) go through select's seeded tie-break
    tied = PersonalModel(np.zeros((50, 3), np.float32), np.tile(D[:1], (50, 1)))
    picks = [tied.next_item("personal_bald", seed=seed) for seed in range(8)]
    assert picks == [int(select(tied.score("personal_bald"), 1, seed=seed)[0]) for seed in range(8)]
    assert len(set(picks)) > 1
    with pytest.raises(ValueError, match="unknown personal strategy"):
        model.score("nope")


def test_both_scorers_grow_with_the_variance_at_a_fixed_mean():
    # what the bounded query relies on: a variance bound gives a score bound
    mu = np.concatenate([np.linspace(-60, 60, 1201), [0.0, 1e-8, -1e-3]])
    s2 = np.concatenate([[0.0], np.logspace(-8, 6, 1500)])
    m, v = np.meshgrid(mu, s2, indexing="ij")
    for scorer in (gaussian_logit_bald, gaussian_logit_entropy):
        scores = scorer(m, v)
        # non-decreasing along the variance, up to float64 rounding of the scores
        assert (np.diff(scores, axis=1) >= -1e-15 * np.abs(scores[:, 1:]) - 1e-300).all()


def test_the_float32_bald_screen_is_within_its_tolerance():
    from hyre_engine.acquisition import BALD_SCREEN_TOLERANCE, gaussian_logit_bald_screen

    mu = np.concatenate([np.linspace(-200, 200, 2001), [0.0, 1e-6]])
    s2 = np.concatenate([[0.0], np.logspace(-8, 7, 1200)])
    m, v = np.meshgrid(mu, s2, indexing="ij")
    error = np.abs(gaussian_logit_bald_screen(m, v) - gaussian_logit_bald(m, v)).max()
    assert error < BALD_SCREEN_TOLERANCE / 10  # measured 1e-7 or so


@pytest.mark.parametrize("strategy", ["personal_bald", "personal_entropy"])
def test_bounded_next_item_is_the_whole_pool_pick(strategy):
    rng = np.random.default_rng(7)
    n_pairs, n_heads, dim = 3000, 20, 96
    D = (_unit_rows(rng, n_pairs, dim) - _unit_rows(rng, n_pairs, dim)).astype(np.float32)
    Z = rng.normal(scale=2.0, size=(n_pairs, n_heads)).astype(np.float32)
    truth = rng.normal(size=dim)
    model = PersonalModel(Z, D)
    bounded = 0
    for step in range(25):
        mask = np.zeros(n_pairs, dtype=bool)
        mask[model.head.rows] = True
        fast = model._bounded_best(strategy, mask)
        item = model.next_item(strategy, seed=step)  # the bounded path: nothing scored yet
        scores = model.score(strategy)  # now the whole pool
        assert item == int(select(scores, 1, exclude=model.head.rows, seed=step)[0])
        if fast is not None:
            bounded += 1
            assert fast == item
        # the exact variances of a few rows are those of the whole pool's
        some = rng.choice(n_pairs, size=20, replace=False)
        np.testing.assert_allclose(model.head.variances_at(some), model.head.variances()[some], rtol=1e-5)
        assert (model.head.variances() <= model.head.prior_variances() + 1e-12).all()
        model.add(item, float(D[item] @ truth + Z[item].mean() > 0))
    assert bounded >= 20  # with 25 labels in 96 dimensions most queries are decided by the bound


def test_personal_margins_from_stored_weights_and_v(pool):
    Z, D, rows, y = pool
    model = PersonalModel.replay(Z, D, rows, y)
    np.testing.assert_allclose(personal_margins(Z, D, model.weights, model.v), model.margins(), atol=1e-4)


# ---- bad input


def test_bad_input_raises_value_errors_naming_the_problem(pool):
    Z, D, rows, y = pool
    bad = D.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PersonalHead(bad)
    with pytest.raises(ValueError, match="lambda"):
        PersonalHead(D, lam=0.0)
    with pytest.raises(ValueError, match="lambda"):
        PersonalHead(D, lam=-1)
    with pytest.raises(ValueError, match="lambda"):
        PersonalModel(Z, D, lam=float("nan"))
    with pytest.raises(ValueError, match="same pool"):
        PersonalModel(Z[:-1], D)
    with pytest.raises(ValueError, match="2-D"):
        PersonalHead(D[0])
    head = PersonalHead(D)
    with pytest.raises(ValueError, match="offsets must have shape"):
        head.add(0, 1, np.zeros(3))
    with pytest.raises(ValueError, match="outside the pool"):
        head.add(len(D), 1, np.zeros(1))
    with pytest.raises(ValueError, match="label must be 0"):
        head.add(0, 0.5, np.zeros(1))
    with pytest.raises(ValueError, match="dim"):
        head.margin_variance(np.zeros((2, D.shape[1] + 1)))
    with pytest.raises(ValueError, match="same shape"):
        embedding_differences(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="dim"):
        personal_margins(Z, D, np.full(Z.shape[1], 1 / Z.shape[1]), np.zeros(D.shape[1] + 1))
    # A rejected label leaves the head as it was.
    assert head.n_labels == 0
    np.testing.assert_array_equal(head.v, np.zeros(D.shape[1]))


# ---- the protocol's personal methods


def _person(seed=9, n=120, dim=16, heads=6):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(n, dim)).astype(np.float32)
    y = (D @ rng.normal(size=dim) > 0).astype(float)
    Z = rng.normal(size=(n, heads)).astype(np.float32)  # heads that know nothing of this person
    return Z, D, y


def test_protocol_scores_personal_methods_on_the_same_rows():
    from hyre_engine.protocol import evaluate_group

    Z, D, y = _person()
    r = evaluate_group(Z, y, diffs=D, lam=0.1, n_values=[0, 1, 30], seeds=3,
                       methods=["uniform", "hyre", "personal", "residual", "probe", "user_ceiling"])
    m = {k: v["mean"] for k, v in r.methods.items()}
    assert m["probe"][0] == 0.5  # nothing learnt: every pair a tie
    assert m["personal"][2] > m["uniform"][2] + 0.15
    assert m["residual"][2] > m["uniform"][2] + 0.15
    assert len(set(m["user_ceiling"])) == 1  # the ceiling ignores n
    # Without diffs the personal methods are left out, as single and finetune are.
    assert "personal" not in evaluate_group(Z, y, n_values=[0, 1], seeds=1).methods


def test_personal_protocol_active_order_and_lambda_calibration():
    from hyre_engine.protocol import (
        PERSONAL_METHODS,
        adaptation_order,
        calibrate_lambda,
        evaluate_group,
    )

    Z, D, y = _person()
    order = adaptation_order(Z, y, 10, strategy="personal_bald", beta=1.0, loss="zero-one", seed=0,
                             diffs=D, lam=0.1)
    assert len(set(order.tolist())) == 10
    with pytest.raises(ValueError, match="needs diffs"):
        adaptation_order(Z, y, 10, strategy="personal_bald", beta=1.0, loss="zero-one", seed=0)
    r = evaluate_group(Z, y, diffs=D, n_values=[0, 20], seeds=2, strategy="personal_entropy",
                       methods=PERSONAL_METHODS)
    assert set(r.methods) == {"uniform", "hyre", "personal", "residual", "probe", "user_ceiling"}
    assert r.methods["personal"]["mean"][1] > r.methods["uniform"]["mean"][1]
    assert r.flip_share["mean"][0] == 0.0 and r.flip_share["mean"][1] > 0.0
    assert "flip_share" in r.to_json() and "flip_share" not in evaluate_group(Z, y, seeds=1).to_json()
    cal = calibrate_lambda([(Z, D, y)], beta=1.0, lambdas=[0.1, 1000.0], n_values=[10], seeds=2)
    assert cal["lam"] == 0.1  # a prior so tight v cannot move loses to a real fit
    with pytest.raises(ValueError, match="positive"):
        calibrate_lambda([(Z, D, y)], beta=1.0, lambdas=[0.0])


def test_fit_is_the_replayed_model_with_one_newton_solve():
    # protocol scores folds with PersonalModel.fit: the replay's last refit solves the same MAP
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(60, 12))
    D = rng.normal(size=(60, 9))
    rows = rng.permutation(60)[:15]
    y = (rng.random(15) > 0.5).astype(float)
    for reweight in (True, False):
        replayed = PersonalModel.replay(Z, D, rows, y, beta=2.0, lam=0.3, reweight=reweight)
        fitted = PersonalModel.fit(Z, D, rows, y, beta=2.0, lam=0.3, reweight=reweight)
        np.testing.assert_allclose(fitted.weights, replayed.weights, rtol=1e-12)
        np.testing.assert_allclose(fitted.margins(), replayed.margins(), atol=2e-5)  # float32 cross matrix
        np.testing.assert_allclose(fitted.v, replayed.v, atol=1e-8)
    with pytest.raises(ValueError, match="no undo history"):
        fitted.undo()
    with pytest.raises(ValueError, match="pool indices"):
        PersonalModel.fit(Z, D, [60], [1.0])
    assert PersonalModel.fit(Z, D, [], []).margins().shape == (60,)
