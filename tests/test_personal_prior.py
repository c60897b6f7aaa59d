"""The personal head's structured prior: the transform is the Sigma_0 MAP, rho = 0 is today's head.

Pure numpy checks on constructed data; the pipeline, store and profile paths are in
tests/test_personal_prior_store.py.
"""

import numpy as np
import pytest
from scipy.optimize import minimize

from hyre_engine.personal import PersonalHead, PersonalModel, fit_logistic, mixture_margins
from hyre_engine.personal_prior import (
    NoPriorDirection,
    PersonalPrior,
    annotator_basis,
    transform_or_same,
)
from hyre_engine.protocol import calibrate_prior, evaluate_group

DIM = 6


def _basis(seed=0, dim=DIM, rank=2):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(dim, rank)))  # noqa: N806
    return U.astype(np.float32), np.array([4.0, 1.0][:rank], dtype=np.float32)


def _problem(seed=1, n=14, dim=DIM):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(n, dim))  # noqa: N806
    y = (rng.random(n) < 0.5).astype(float)
    o = rng.normal(scale=0.5, size=n)
    return D, y, o


def _scipy_map(D, y, o, sigma0):  # noqa: N803
    """argmin sum softplus(-s (o + D v)) + v^T Sigma_0^-1 v / 2, by BFGS on the explicit objective."""
    prec = np.linalg.inv(sigma0)
    s = 2 * y - 1

    def f(v):
        m = s * (o + D @ v)
        return np.logaddexp(0, -m).sum() + 0.5 * v @ prec @ v

    def g(v):
        m = s * (o + D @ v)
        return D.T @ (-s / (1 + np.exp(m))) + prec @ v

    return minimize(f, np.zeros(D.shape[1]), jac=g, method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000}).x


@pytest.mark.parametrize("rho", [1.0, 10.0, 100.0])
def test_the_isotropic_head_on_d_t_is_the_structured_prior_map(rho):
    U, e = _basis()  # noqa: N806
    prior = PersonalPrior(U, e, rho)
    D, y, o = _problem()  # noqa: N806
    lam = 0.3
    u = PersonalHead.from_labels(prior.transform(D), np.arange(len(y)), y, o, lam=lam).v
    expected = _scipy_map(D, y, o, prior.covariance(lam))
    np.testing.assert_allclose(prior.to_v(u), expected, atol=1e-6)
    # and the isotropic MAP is a different point: the prior matters
    assert np.abs(fit_logistic(D, y, lam=lam, offsets=o) - expected).max() > 1e-3


def test_the_personal_model_reports_v_on_the_embeddings_and_its_laplace_variance():
    U, e = _basis()  # noqa: N806
    prior = PersonalPrior(U, e, 10.0)
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(30, 5))  # noqa: N806
    D = rng.normal(size=(30, DIM)).astype(np.float32)  # noqa: N806
    rows, y = np.array([3, 7, 1, 20, 11]), np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    lam = 0.5
    model = PersonalModel.replay(Z, D, rows, y, lam=lam, prior=prior)
    assert model.rho == 10.0
    o = mixture_margins(Z[rows], model.weights)
    D64 = D.astype(np.float64)  # noqa: N806
    v = _scipy_map(D64[rows], y, o, prior.covariance(lam))
    np.testing.assert_allclose(model.v, v, atol=1e-5)  # D T is float32
    np.testing.assert_allclose(model.margins(), model.offsets() + D64 @ model.v, atol=1e-5)
    # Laplace: Sigma = (Sigma_0^-1 + D_L^T S D_L)^-1 on v, each pair's d^T Sigma d
    p = 1 / (1 + np.exp(-(o + D64[rows] @ v)))
    sigma = np.linalg.inv(np.linalg.inv(prior.covariance(lam)) + D64[rows].T @ (D64[rows] * (p * (1 - p))[:, None]))
    np.testing.assert_allclose(model.head.variances(), np.einsum("ij,jk,ik->i", D64, sigma, D64), rtol=1e-4,
                               atol=1e-6)
    # the fast fit is the replay's
    np.testing.assert_allclose(PersonalModel.fit(Z, D, rows, y, lam=lam, prior=prior).v, model.v, atol=1e-8)


def test_rho_zero_is_exactly_the_isotropic_head():
    U, e = _basis()  # noqa: N806
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(25, 4))  # noqa: N806
    D = rng.normal(size=(25, DIM)).astype(np.float32)  # noqa: N806
    rows, y = np.array([0, 5, 9, 2]), np.array([1, 0, 0, 1])
    zero = PersonalPrior(U, e, 0.0)
    assert zero.isotropic and zero.transform(D) is D and transform_or_same(D, None) is D
    base = PersonalModel.replay(Z, D, rows, y, lam=0.2)
    same = PersonalModel.replay(Z, D, rows, y, lam=0.2, prior=zero)
    np.testing.assert_array_equal(same.v, base.v)
    for a, b in zip(same.predictive(), base.predictive(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert same.next_item("personal_bald") == base.next_item("personal_bald")
    y_all = (rng.random(25) < 0.5).astype(float)
    kw = dict(diffs=D, n_values=[0, 2, 5], seeds=3, methods=["personal", "residual", "probe"])
    assert evaluate_group(Z, y_all, prior=zero, **kw).to_json() == evaluate_group(Z, y_all, **kw).to_json()


def test_t_and_its_inverse_round_trip_and_square_to_the_covariance():
    U, e = _basis(rank=3, dim=9)  # noqa: N806
    e = np.array([5.0, 0.0, 2.0], dtype=np.float32)  # a zero eigenvalue adds nothing
    prior = PersonalPrior(U, e, 30.0)
    u = np.random.default_rng(4).normal(size=(3, 9))
    np.testing.assert_allclose(prior.to_u(prior.to_v(u)), u, atol=1e-12)
    np.testing.assert_allclose(prior.to_u(prior.to_v(u[0])), u[0], atol=1e-12)
    T = prior.to_v(np.eye(9))  # noqa: N806
    np.testing.assert_allclose(T, T.T, atol=1e-12)
    np.testing.assert_allclose(T @ T, prior.covariance(1.0), atol=1e-6)
    D = np.random.default_rng(5).normal(size=(4, 9)).astype(np.float32)  # noqa: N806
    np.testing.assert_allclose(prior.transform(D), D @ T, atol=1e-5)
    assert prior.with_rho(0.0).isotropic and prior.with_rho(30.0).key == prior.key != prior.with_rho(3.0).key


def test_a_read_only_d_is_transformed_once():
    U, e = _basis()  # noqa: N806
    prior = PersonalPrior(U, e, 10.0)
    D = np.random.default_rng(6).normal(size=(12, DIM)).astype(np.float32)  # noqa: N806
    D.setflags(write=False)
    first = prior.shared_transform(D)
    assert prior.shared_transform(D) is first
    assert PersonalPrior(U, e, 10.0).shared_transform(D) is first  # same prior, same key
    assert PersonalPrior(U, e, 20.0).shared_transform(D) is not first


def test_annotator_basis_finds_the_direction_annotators_differ_along():
    rng = np.random.default_rng(7)
    dim = 10
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    groups = []
    for a in range(8):
        D = rng.normal(size=(120, dim))  # noqa: N806
        v_true = (3.0 if a % 2 else -3.0) * direction
        y = (rng.random(120) < 1 / (1 + np.exp(-D @ v_true))).astype(float)
        groups.append((np.zeros((120, 3)), D, y))
    U, e = annotator_basis(groups)  # noqa: N806
    assert U.dtype == np.float32 and e.dtype == np.float32 and U.shape == (dim, e.size)
    assert np.all(np.diff(e) <= 0) and abs(float(U[:, 0] @ direction)) > 0.95
    np.testing.assert_allclose(U.T.astype(float) @ U, np.eye(e.size), atol=1e-5)


def test_annotators_that_differ_in_no_direction_have_no_basis_and_the_build_calibrates_isotropic():
    from hyre_engine.pipeline import _basis_or_none

    # identical texts on both sides (a tiny model can embed every text alike): D = 0
    groups = [(np.zeros((20, 3)), np.zeros((20, 6)), (np.arange(20) % 2).astype(float)) for _ in range(3)]
    with pytest.raises(NoPriorDirection, match="no direction"):
        annotator_basis(groups)
    assert issubclass(NoPriorDirection, ValueError)
    assert _basis_or_none(groups) is None  # the calibration then tries only rho = 0


def test_calibration_ties_keep_the_isotropic_head_and_otherwise_take_the_best_rho():
    rng = np.random.default_rng(8)
    dim = 12
    # every difference lives in the first 6 coordinates, the basis in the last 6: D T = D,
    # so every rho scores exactly alike and the tie goes to rho = 0
    U = np.zeros((dim, 2), dtype=np.float32)  # noqa: N806
    U[8, 0] = U[10, 1] = 1.0
    groups = []
    for _ in range(3):
        D = np.zeros((40, dim))  # noqa: N806
        D[:, :6] = rng.normal(size=(40, 6))
        groups.append((rng.normal(size=(40, 4)), D, (rng.random(40) < 0.5).astype(float)))
    tie = calibrate_prior(groups, beta=1.0, basis=(U, np.array([2.0, 1.0], dtype=np.float32)), rhos=(0, 10, 100),
                          n_values=(3,), seeds=2)
    assert tie["rho"] == 0.0 and tie["rhos"] == [0.0, 10.0, 100.0]
    assert len({max(r["scores"].values()) for r in tie["by_rho"].values()}) == 1
    assert calibrate_prior(groups, beta=1.0, basis=None, n_values=(3,), seeds=2)["rhos"] == [0.0]
    # people who differ along one known direction: the structured prior should be chosen
    direction = np.zeros(dim)
    direction[0] = 1.0
    groups = []
    for a in range(4):
        D = rng.normal(size=(60, dim))  # noqa: N806
        y = (rng.random(60) < 1 / (1 + np.exp(-(4.0 if a % 2 else -4.0) * D @ direction))).astype(float)
        groups.append((np.zeros((60, 3)), D, y))
    basis = (direction[:, None].astype(np.float32), np.array([1.0], dtype=np.float32))
    out = calibrate_prior(groups, beta=1.0, basis=basis, rhos=(10, 100), n_values=(3, 6), seeds=4)
    best = {r: max(c["scores"].values()) for r, c in out["by_rho"].items()}
    assert out["rho"] > 0 and best[f"{out['rho']:g}"] == max(best.values()) > best["0"]
    assert out["lam"] == out["by_rho"][f"{out['rho']:g}"]["lam"] and out["prior_rank"] == 1


@pytest.mark.parametrize(
    "U, e, rho, match",
    [
        (np.full((4, 1), np.nan), [1.0], 1.0, "U contains NaN"),
        (np.eye(4)[:, :2], [1.0, np.inf], 1.0, "e contains NaN"),
        (np.eye(4)[:, :2], [1.0], 1.0, r"e must have shape \(2,\)"),
        (np.eye(4)[0], [1.0], 1.0, "U must be 2-D"),
        (np.ones((2, 3)), [1.0, 1.0, 1.0], 1.0, "1 <= r <= dim"),
        (np.eye(4)[:, :2], [1.0, -1.0], 1.0, "e must be >= 0"),
        (np.eye(4)[:, :2], [0.0, 0.0], 1.0, "positive maximum"),
        (np.eye(4)[:, :2] * 2, [1.0, 1.0], 1.0, "orthonormal"),
        (np.eye(4)[:, :2], [1.0, 1.0], -1.0, "rho"),
        (np.eye(4)[:, :2], [1.0, 1.0], float("nan"), "rho"),
        (np.eye(4)[:, :2], [1.0, 1.0], "strong", "rho"),
        (np.array([["a"], ["b"]]), [1.0], 1.0, "numeric"),
    ],
)
def test_a_bad_prior_raises_naming_the_problem(U, e, rho, match):  # noqa: N803
    with pytest.raises(ValueError, match=match):
        PersonalPrior(U, e, rho)


def test_bad_inputs_to_the_transforms_and_the_basis_raise():
    prior = PersonalPrior(np.eye(4)[:, :2], [1.0, 1.0], 5.0)
    with pytest.raises(ValueError, match="dim 3 but the prior's basis U has dim 4"):
        prior.transform(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        prior.transform(np.array([[np.nan, 0, 0, 0]]))
    with pytest.raises(ValueError, match="u has dim 5"):
        prior.to_v(np.ones(5))
    with pytest.raises(ValueError, match="at least 2 training annotators"):
        annotator_basis([(np.zeros((3, 2)), np.ones((3, 4)), np.array([1.0, 0.0, 1.0]))])
    with pytest.raises(ValueError, match="must be \\(logits, diffs, y\\)"):
        annotator_basis([(np.zeros((3, 2)), np.ones((3, 4)))])
    with pytest.raises(ValueError, match="same rows"):
        annotator_basis([(np.zeros((2, 2)), np.ones((3, 4)), np.ones(3))] * 2)
    with pytest.raises(ValueError, match="rho"):
        calibrate_prior([], beta=1.0, basis=None, rhos=(-1.0,))
