import numpy as np
import pytest

from hyre_engine.pca import FunctionPCA


def _heads(n_items=30, n_heads=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n_items, n_heads))


@pytest.mark.parametrize("shape", [(30, 8), (5, 12)])
def test_full_reconstruction_is_exact(shape):
    z = _heads(*shape)
    pca = FunctionPCA().fit(z)
    assert pca.components_.shape == (min(shape), shape[0])
    assert pca.head_coords_.shape == (shape[1], min(shape))
    np.testing.assert_allclose(pca.reconstruct(), z, atol=1e-10)
    np.testing.assert_allclose(pca.reconstruct(0), np.repeat(pca.mean_[:, None], shape[1], 1))


def test_truncated_reconstruction_is_the_best_low_rank_fit():
    z = _heads()
    pca = FunctionPCA().fit(z)
    for p in (1, 3):
        err = np.linalg.norm(pca.reconstruct(p) - z)
        # Eckart-Young: the residual is the discarded singular values.
        np.testing.assert_allclose(err, np.sqrt((pca.singular_values_[p:] ** 2).sum()))


def test_rank_one_construction_recovers_the_direction():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=40)
    u = rng.normal(size=40)
    u /= np.linalg.norm(u)
    c = rng.normal(size=10)
    c -= c.mean()
    z = mean[:, None] + np.outer(u, c)
    pca = FunctionPCA(n_components=2).fit(z)
    np.testing.assert_allclose(pca.mean_, mean, atol=1e-12)
    sign = np.sign(u[np.argmax(np.abs(u))])  # svd_flip: largest loading positive
    np.testing.assert_allclose(pca.components_[0], sign * u, atol=1e-10)
    np.testing.assert_allclose(pca.head_coords_[:, 0], sign * c, atol=1e-10)
    np.testing.assert_allclose(pca.explained_variance_ratio_[0], 1.0, atol=1e-12)
    np.testing.assert_allclose(pca.explained_variance_[0], c.var(ddof=1))
    assert pca.components_[0][np.argmax(np.abs(pca.components_[0]))] > 0


def test_attributes_are_consistent():
    z = _heads()
    pca = FunctionPCA().fit(z)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(8), atol=1e-10)
    np.testing.assert_allclose(pca.explained_variance_ratio_.sum(), 1.0)
    # The last component of 8 centred heads has zero variance: compare with an absolute tolerance.
    np.testing.assert_allclose(
        pca.explained_variance_, pca.head_coords_.var(axis=0, ddof=1), rtol=1e-10, atol=1e-12
    )
    assert (np.diff(pca.singular_values_) <= 0).all()
    np.testing.assert_allclose(pca.transform(z), pca.head_coords_, atol=1e-10)
    # Ratios are of the total variance, also when fewer components are kept.
    small = FunctionPCA(n_components=3).fit(z)
    np.testing.assert_allclose(small.explained_variance_ratio_, pca.explained_variance_ratio_[:3])
    assert small.explained_variance_ratio_.sum() < 1.0


def test_signs_are_stable_across_refits_and_head_permutations():
    z = _heads(seed=3)
    a = FunctionPCA(n_components=5).fit(z)
    b = FunctionPCA(n_components=5).fit(z.copy())
    np.testing.assert_array_equal(a.components_, b.components_)
    perm = np.random.default_rng(0).permutation(z.shape[1])
    c = FunctionPCA(n_components=5).fit(z[:, perm])
    np.testing.assert_allclose(c.components_, a.components_, atol=1e-10)
    np.testing.assert_allclose(c.head_coords_, a.head_coords_[perm], atol=1e-10)
    # Negating every head's deviation from the mean does not flip the loadings either.
    d = FunctionPCA(n_components=5).fit(2 * a.mean_[:, None] - z)
    np.testing.assert_allclose(d.components_, a.components_, atol=1e-10)


def test_sample_statistics_match_the_fit():
    z = _heads(n_items=6, n_heads=20, seed=4)
    pca = FunctionPCA().fit(z)
    s = pca.sample(40_000, seed=0)
    assert s.shape == (6, 40_000)
    np.testing.assert_array_equal(s, pca.sample(40_000, seed=0))
    np.testing.assert_allclose(s.mean(axis=1), pca.mean_, atol=0.05)
    coords = pca.components_ @ (s - pca.mean_[:, None])
    np.testing.assert_allclose(coords.var(axis=1), pca.explained_variance_, rtol=0.05)
    # Samples stay in the span of the kept components.
    top2 = FunctionPCA(n_components=2).fit(z).sample(100, seed=1)
    resid = top2 - pca.mean_[:, None]
    resid -= pca.components_[:2].T @ (pca.components_[:2] @ resid)
    np.testing.assert_allclose(resid, 0.0, atol=1e-10)


def test_identical_heads_give_zero_variance_not_nan():
    z = np.repeat(np.arange(4.0)[:, None], 3, axis=1)
    pca = FunctionPCA().fit(z)
    np.testing.assert_array_equal(pca.explained_variance_ratio_, np.zeros(3))
    np.testing.assert_allclose(pca.reconstruct(), z)


def test_bad_input():
    z = _heads()
    with pytest.raises(ValueError, match=r"n_components must be an integer in \[1, 8\]"):
        FunctionPCA(n_components=9).fit(z)
    with pytest.raises(ValueError, match="n_components"):
        FunctionPCA(n_components=0).fit(z)
    with pytest.raises(ValueError, match="Z contains NaN or inf"):
        FunctionPCA().fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="at least 1 item and 2 heads"):
        FunctionPCA().fit(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="Z must be 2-D"):
        FunctionPCA().fit(np.zeros(5))
    with pytest.raises(ValueError, match="not fitted"):
        FunctionPCA().transform(z)
    pca = FunctionPCA(n_components=3).fit(z)
    with pytest.raises(ValueError, match=r"shape \(29, 8\) but the PCA was fitted on 30 items"):
        pca.transform(z[:29])
    with pytest.raises(ValueError, match=r"n_components must be in \[0, 3\]"):
        pca.reconstruct(4)
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        pca.sample(-1, seed=0)


# ---------------------------------------------------------------- on a pool, the ends of a component


def test_fit_pool_pca_keeps_a_few_components_and_subsamples_large_pools(monkeypatch):
    from hyre_engine import pca as pca_module

    z = _heads(n_items=40, n_heads=8)
    pca = pca_module.fit_pool_pca(z)
    assert pca.n_components_ == min(pca_module.PCA_COMPONENTS, 8)
    np.testing.assert_allclose(pca_module.cumulative_variance_ratio(pca), np.cumsum(pca.explained_variance_ratio_))
    monkeypatch.setattr(pca_module, "PCA_MAX_ITEMS", 10)
    assert pca_module.fit_pool_pca(z).n_items_ == 10
    with pytest.raises(ValueError, match="n_items, n_heads"):
        pca_module.fit_pool_pca(z[:, 0])


def test_component_pairs_and_end_probabilities_on_a_known_axis():
    from hyre_engine.pca import component_pairs, end_probabilities

    # heads 0-2 like A on items 0-1 and B on items 4-5; heads 3-5 the opposite; items 2-3 agree
    z = np.zeros((6, 6))
    z[[0, 1], :3], z[[0, 1], 3:] = 3.0, -3.0
    z[[4, 5], :3], z[[4, 5], 3:] = -3.0, 3.0
    z[[2, 3]] = 1.0
    pca = FunctionPCA(n_components=2).fit(z)
    top, bottom = component_pairs(pca, 2)
    assert set(top[0].tolist()) | set(bottom[0].tolist()) == {0, 1, 4, 5}
    assert {frozenset(top[0].tolist()), frozenset(bottom[0].tolist())} == {frozenset({0, 1}), frozenset({4, 5})}
    plus, minus = end_probabilities(z, pca, 0, top[0], share=0.5)
    # on the most positive items the + end likes A more than the - end, by construction of the sign
    assert (plus > minus).all()
    np.testing.assert_allclose(np.sort(np.r_[plus, minus]), np.sort(1 / (1 + np.exp([-3, -3, 3, 3]))))
    plus_b, minus_b = end_probabilities(z, pca, 0, bottom[0], share=0.5)
    assert (plus_b < minus_b).all()


def test_axis_profile_counts_what_each_end_favours():
    import pandas as pd

    from hyre_engine.pca import WORDS, axis_profile

    pairs = pd.DataFrame(
        {
            "response_a": ["one two", "a b c d e f", "x"],
            "response_b": ["1 2 3 4 5 6", "y", "p q r s"],
            "meta": [
                {"style_a": "short", "style_b": "thorough", "topic": "t"},
                {"style_a": "thorough", "style_b": "short"},
                {"style_a": "short", "style_b": "thorough"},
            ],
        }
    )
    # + end favours A on item 0 and B on item 1 (negative loading): short both times
    by_name = {c.attribute: c for c in axis_profile(pairs, np.array([0]), np.array([1]))}
    assert by_name["style"].plus == (("short", 2),)
    assert by_name["style"].minus == (("thorough", 2),)
    assert by_name[WORDS].plus == ((1.5, 2),)  # (2 + 1) / 2
    assert by_name[WORDS].minus == ((6.0, 2),)
    assert "topic" not in by_name  # not a per-response attribute


def test_a_function_of_the_pool_projects_where_a_head_would():
    from hyre_engine.pca import PCA_MAX_ITEMS, fit_pool_pca, project_function

    rng = np.random.default_rng(4)
    Z = rng.normal(size=(300, 9))  # noqa: N806
    pca = fit_pool_pca(Z)
    np.testing.assert_allclose(project_function(pca, Z[:, 3]), pca.head_coords_[3], atol=1e-9)
    w = rng.dirichlet(np.ones(9))
    np.testing.assert_allclose(project_function(pca, Z @ w), w @ pca.head_coords_, atol=1e-9)
    big = rng.normal(size=(PCA_MAX_ITEMS + 50, 4)).astype(np.float32)
    sub = fit_pool_pca(big)  # fitted on a subsample of the rows: a whole-pool function still projects
    np.testing.assert_allclose(project_function(sub, big[:, 1]), sub.head_coords_[1], atol=1e-4)
    with pytest.raises(ValueError, match="margins"):
        project_function(pca, np.full(300, np.nan))
