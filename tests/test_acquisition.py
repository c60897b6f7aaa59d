import math

import numpy as np
import pytest

from hyre_engine.acquisition import (
    SCORERS,
    PoolScorer,
    bald,
    entropy,
    get_scorer,
    select,
    variance,
)
from hyre_engine.reweight import Posterior, weighted_probability

LOG2 = math.log(2.0)


def _sigmoid64(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


# ---- scorers ----------------------------------------------------------------------------


def test_entropy_and_bald_known_values():
    p = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 1.0]])
    w = np.array([0.5, 0.5])
    # Total disagreement, agreement on a coin flip, confident agreement.
    np.testing.assert_allclose(entropy(p, w), [LOG2, LOG2, 0.0], atol=1e-12)
    np.testing.assert_allclose(bald(p, w), [LOG2, 0.0, 0.0], atol=1e-12)


def test_scorers_use_the_current_weights_not_a_uniform_average():
    p = np.array([[0.0, 1.0], [0.2, 0.2]])
    w = np.array([1.0, 0.0])  # the labels have ruled out head 1
    np.testing.assert_allclose(entropy(p, w), [0.0, -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))])
    np.testing.assert_allclose(bald(p, w), [0.0, 0.0], atol=1e-12)
    # Uniform weights would rank item 0 first; the current weights rank item 1 first.
    assert select(entropy(p, np.array([0.5, 0.5])))[0] == 0
    assert select(entropy(p, w))[0] == 1


def test_bald_matches_the_definition_on_random_inputs():
    rng = np.random.default_rng(0)
    p = rng.random((50, 6))
    w = rng.dirichlet(np.ones(6))

    def h(q):
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))

    np.testing.assert_allclose(bald(p, w), h(p @ w) - h(p) @ w, rtol=1e-10)
    assert (bald(p, w) >= -1e-12).all()  # Jensen: never negative


def test_variance_known_values():
    v = np.array([[0.0, 2.0, 7.0], [1.0, 3.0, 5.0], [4.0, 4.0, 4.0]])
    np.testing.assert_allclose(variance(v, np.array([0.5, 0.5, 0.0])), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(variance(v, np.array([0.5, 0.0, 0.5])), [12.25, 4.0, 0.0])
    np.testing.assert_allclose(variance(v, np.array([0.0, 0.0, 1.0])), [0.0, 0.0, 0.0])


def test_random_scorer_needs_rng_and_is_reproducible():
    p = np.full((20, 3), 0.5)
    w = np.full(3, 1 / 3)
    rnd = get_scorer("random")
    with pytest.raises(ValueError, match="needs rng"):
        rnd(p, w)
    a = rnd(p, w, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, rnd(p, w, rng=7))
    assert a.shape == (20,) and ((a >= 0) & (a < 1)).all() and len(set(a)) == 20


def test_registry_and_unknown_names():
    assert set(SCORERS) == {"entropy", "bald", "variance", "random", "personal_entropy", "personal_bald"}
    assert get_scorer("bald") is bald
    with pytest.raises(
        ValueError, match="unknown scorer 'margin'.*bald, entropy, personal_bald, personal_entropy, random, variance"
    ):
        get_scorer("margin")


def test_scorers_reject_bad_input():
    p = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="w has length 3 but the predictions have 2 heads"):
        bald(p, np.full(3, 1 / 3))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        entropy(np.array([[0.5, 1.5]]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="preds contains NaN"):
        bald(np.array([[0.5, np.nan]]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="preds must be 2-D"):
        variance(np.zeros(3), np.array([1.0]))
    with pytest.raises(ValueError, match="negative"):
        entropy(p, np.array([1.5, -0.5]))
    with pytest.raises(ValueError, match="sum to 1"):
        variance(p, np.array([0.3, 0.3]))


# ---- select -----------------------------------------------------------------------------


def test_select_known_ranking():
    s = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    np.testing.assert_array_equal(select(s, 3), [1, 3, 2])
    np.testing.assert_array_equal(select(s), [1])
    np.testing.assert_array_equal(select(s, 2, exclude=[1]), [3, 2])
    np.testing.assert_array_equal(select(s, 2, exclude=np.array([0, 1, 0, 0, 0], bool)), [3, 2])
    assert select(s, 0).shape == (0,)
    assert select(s, 5).dtype.kind == "i"


def test_select_breaks_ties_randomly_but_reproducibly():
    s = np.array([0.3, 1.0, 1.0, 1.0, 0.2])
    picks = {int(select(s, 1, seed=seed)[0]) for seed in range(40)}
    assert picks == {1, 2, 3}
    for seed in range(5):
        np.testing.assert_array_equal(select(s, 2, seed=seed), select(s, 2, seed=seed))
    # The tie for the last place is drawn among the tied items only.
    s = np.array([5.0, 1.0, 1.0, 0.0])
    seen = {tuple(select(s, 2, seed=seed)) for seed in range(40)}
    assert seen == {(0, 1), (0, 2)}


def test_select_ranks_nan_last_but_keeps_it_eligible():
    s = np.array([np.nan, 0.1, -np.inf, 0.3])
    np.testing.assert_array_equal(select(s, 2), [3, 1])
    assert set(select(s, 4, seed=0)[2:]) == {0, 2}  # NaN ties with -inf at the bottom
    np.testing.assert_array_equal(select(s, 1, exclude=[1, 2, 3]), [0])


def test_select_never_returns_excluded_items():
    rng = np.random.default_rng(1)
    s = rng.random(200)
    s[:50] = 10.0  # the best items are all excluded
    excl = np.arange(50)
    got = select(s, 150, exclude=excl, seed=3)
    assert len(set(got)) == 150 and not set(got) & set(excl)
    assert (np.diff(s[got]) <= 0).all()


def test_select_rejects_bad_input():
    s = np.arange(5.0)
    with pytest.raises(ValueError, match="k=4 items but only 3 are eligible"):
        select(s, 4, exclude=[0, 1])
    with pytest.raises(ValueError, match="k=6"):
        select(s, 6)
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        select(s, -1)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        select(s, 1, exclude=[5])
    with pytest.raises(ValueError, match=r"boolean exclude must have shape \(5,\)"):
        select(s, 1, exclude=np.zeros(4, bool))
    with pytest.raises(ValueError, match="scores must be 1-D"):
        select(np.zeros((2, 2)))


# ---- PoolScorer -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(2)
    z = (rng.normal(size=(500, 16)) * 3).astype(np.float32)
    z[0] = 80.0  # extreme logits: p rounds to 1, entropies underflow
    z[1, ::2] = -80.0
    post = Posterior(16).add(z[:30].astype(np.float64), rng.integers(0, 2, size=30))
    return z, post.weights


@pytest.mark.parametrize("strategy", ["entropy", "bald"])
def test_pool_scorer_matches_plain_scorers(pool, strategy):
    z, w = pool
    ps = PoolScorer(z)
    for weights in (w, np.full(16, 1 / 16)):
        got = ps.score(strategy, weights)
        assert got.dtype == np.float32 and got.shape == (500,)
        expected = SCORERS[strategy](_sigmoid64(z), weights)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pool_scorer_variance_matches_plain_scorer_on_offset_values(pool):
    z, w = pool
    values = z + np.float32(100.0)  # a large common offset must not cost precision
    got = PoolScorer(values).score("variance", w)
    expected = variance(values.astype(np.float64), w)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_pool_scorer_probabilities_and_tiny_weights(pool):
    z, _ = pool
    ps = PoolScorer(z)
    # Weights far below float32's normal range (after many labels) are harmless.
    w = np.zeros(16)
    w[3], w[5] = 0.6, 0.4 - 1e-45
    w[6:] = 1e-46
    np.testing.assert_allclose(ps.probabilities(w), weighted_probability(z, w), atol=1e-6)
    np.testing.assert_allclose(ps.score("bald", w), bald(_sigmoid64(z), w), atol=1e-5)


def test_pool_scorer_random_and_selection_flow(pool):
    z, w = pool
    ps = PoolScorer(z)
    a = ps.score("random", w, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, ps.score("random", w, rng=4))
    with pytest.raises(ValueError, match="needs rng"):
        ps.score("random", w)
    nxt = select(ps.score("bald", w), 1, exclude=np.arange(30), seed=0)
    assert nxt[0] >= 30


def test_pool_scorer_rejects_bad_input(pool):
    z, w = pool
    ps = PoolScorer(z)
    with pytest.raises(ValueError, match="w has length 15 but the predictions have 16 heads"):
        ps.score("bald", w[:15] / w[:15].sum())
    with pytest.raises(ValueError, match="unknown scorer 'bold'"):
        ps.score("bold", w)
    with pytest.raises(ValueError, match="logits contains NaN or inf"):
        PoolScorer(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        PoolScorer(np.zeros(4))
    with pytest.raises(ValueError, match="non-empty"):
        PoolScorer(np.zeros((0, 3)))


def test_preference_strategies_come_from_the_registry():
    from hyre_engine.acquisition import (
        GAUSSIAN_SCORERS,
        PREFERENCE_STRATEGIES,
        REGRESSION_ONLY,
        PoolScorer,
    )

    assert set(PREFERENCE_STRATEGIES) | REGRESSION_ONLY | GAUSSIAN_SCORERS == set(SCORERS)
    with pytest.raises(ValueError, match="personal model's predictive"):
        PoolScorer(np.zeros((3, 2))).score("personal_bald", np.full(2, 0.5))
    assert PREFERENCE_STRATEGIES == ("random", "entropy", "bald")


def test_adaptive_order_is_the_step_repeated():
    from hyre_engine.acquisition import adaptive_order, next_query

    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 6))
    y = (z[:, 2] > 0).astype(float)
    post = Posterior(6)
    order = adaptive_order(z, y, 5, posterior=post, strategy="bald", seed=0)
    assert len(set(order.tolist())) == 5
    # the same loop by hand: one next_query per label
    again, manual = [], Posterior(6)
    scorer, gen = PoolScorer(z), np.random.default_rng(0)
    for _ in range(5):
        item = next_query(scorer, manual.weights, strategy="bald", exclude=again, rng=gen, seed=gen)
        again.append(item)
        manual.add(z[item], y[item])
    assert order.tolist() == again
    np.testing.assert_allclose(post.weights, manual.weights)
    assert next_query(scorer, manual.weights, strategy="bald", exclude=range(30)) is None
    with pytest.raises(ValueError, match="n_labels"):
        adaptive_order(z, y, 31, posterior=Posterior(6), strategy="bald")


# -- variety ------------------------------------------------------------------------


def test_varied_query_passes_over_the_prompt_just_asked():
    from hyre_engine.acquisition import varied_query

    scores = np.array([0.9, 0.8, 0.1, 0.7])
    prompts = np.array(["soap", "soap", "tea", "soap"], dtype=object)
    assert varied_query(scores, prompts) == 0  # no history: plain top score
    assert varied_query(scores, prompts, last_prompt="soap") == 2  # the only other prompt
    assert varied_query(scores, prompts, last_prompt="tea") == 0
    # only the same prompt is left: ask it rather than nothing
    assert varied_query(scores, prompts, last_prompt="soap", exclude=[2]) == 0
    assert varied_query(scores, prompts, exclude=np.ones(4, dtype=bool)) is None


def test_first_query_is_seeded_among_the_top_and_differs_between_people():
    from hyre_engine.acquisition import START_TOP, start_seed, varied_query

    rng = np.random.default_rng(0)
    scores = rng.random(200)
    prompts = np.arange(200).astype(object)
    top = set(np.argsort(-scores)[:START_TOP].tolist())
    starts = {varied_query(scores, prompts, first=True, seed=start_seed(f"user{i}")) for i in range(40)}
    assert starts <= top and len(starts) > 3
    # the same person starts at the same pair every time
    assert start_seed("kim") == start_seed("kim") != start_seed("lee")
    same = {varied_query(scores, prompts, first=True, seed=start_seed("kim")) for _ in range(5)}
    assert len(same) == 1
    assert varied_query(scores, prompts, first=True, seed=1, top=1) == int(np.argmax(scores))


def test_varied_query_refuses_bad_shapes():
    from hyre_engine.acquisition import varied_query

    with pytest.raises(ValueError, match=r"prompts must have shape \(3,\)"):
        varied_query(np.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="top must be a positive integer"):
        varied_query(np.zeros(3), ["a", "b", "c"], top=0)


def test_scorers_of_one_read_only_z_share_their_tables_and_score_the_same():
    import gc

    from hyre_engine import acquisition

    rng = np.random.default_rng(3)
    z = rng.normal(size=(50, 6)).astype(np.float32)
    private = PoolScorer(z.copy())  # writable: its own tables
    z.setflags(write=False)  # what the app caches for every session of a pool
    first, second = PoolScorer(z), PoolScorer(z)
    assert first._p is second._p and first._h is second._h
    assert not first._p.flags.writeable
    assert private._p is not first._p
    w = rng.dirichlet(np.ones(6))
    for strategy in ("bald", "entropy"):
        np.testing.assert_array_equal(first.score(strategy, w), private.score(strategy, w))
    # a read-only view of a writable array may still change: never shared
    view = np.ascontiguousarray(rng.normal(size=(8, 3)).astype(np.float32))[:]
    view.setflags(write=False)
    assert PoolScorer(view)._p is not PoolScorer(view)._p
    # the personal model's centred Z too: shared, read-only, the same predictive as a private copy
    from hyre_engine.personal import PersonalModel

    d = rng.normal(size=(50, 4)).astype(np.float32)
    one, two, own = PersonalModel(z, d), PersonalModel(z, d), PersonalModel(z.copy(), d)
    assert one._centred is two._centred and one._centred_sq is two._centred_sq
    assert not one._centred.flags.writeable and own._centred is not one._centred
    for model in (one, own):
        model.add(3, 1.0)
    for a, b in zip(one.predictive(), own.predictive(), strict=True):
        np.testing.assert_array_equal(a, b)
    key = id(z)
    del first, second, one, two, z
    gc.collect()
    assert not [k for k in acquisition._SHARED_TABLES if k[0] == key]
