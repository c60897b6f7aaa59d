import numpy as np
import pytest

from hyre_engine.acquisition import PoolScorer
from hyre_engine.candidates import BLOCK_ROWS, CandidateSampler


def _logits(n=3000, k=12, seed=0):
    return np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32) * 2


def _run(sampler, w, steps, strategy="bald"):
    chosen = []
    for step in range(steps):
        item = sampler.next_item(strategy, w, step)
        chosen.append(item)
        sampler.mark_unavailable([item])
    return chosen


def test_never_returns_a_labelled_pair_until_the_pool_is_done():
    z = _logits(n=700)
    sampler = CandidateSampler(z, n_candidates=300, carry=8, seed=1)
    labelled = list(range(0, 700, 3))
    sampler.mark_unavailable(labelled)
    w = np.random.default_rng(2).dirichlet(np.ones(z.shape[1]))
    chosen = _run(sampler, w, 700 - len(labelled))
    assert not set(chosen) & set(labelled)
    assert len(set(chosen)) == len(chosen) == 700 - len(labelled)
    assert sampler.next_item("bald", w, 10_000) is None


def test_reproducible_with_a_seed_and_different_with_another():
    z = _logits()
    w = np.random.default_rng(3).dirichlet(np.ones(z.shape[1]))
    a = _run(CandidateSampler(z, n_candidates=512, seed=7), w, 30)
    b = _run(CandidateSampler(z, n_candidates=512, seed=7), w, 30)
    c = _run(CandidateSampler(z, n_candidates=512, seed=8), w, 30)
    assert a == b
    assert a != c


def test_sample_covering_the_pool_picks_what_full_scoring_picks():
    z = _logits(n=2 * BLOCK_ROWS + 17)
    w = np.random.default_rng(4).dirichlet(np.ones(z.shape[1]))
    sampler = CandidateSampler(z, n_candidates=len(z), seed=0)
    for strategy in ("entropy", "bald"):
        full = PoolScorer(z).score(strategy, w)
        items, scores = sampler.score(strategy, w, 0)
        keep = items >= 0
        np.testing.assert_allclose(scores[keep][np.argsort(items[keep])], full, atol=1e-5)
        assert sampler.next_item(strategy, w, 0) == int(np.argmax(full))


def test_fresh_sample_each_query_plus_the_previous_best():
    z = _logits(n=20 * BLOCK_ROWS)
    sampler = CandidateSampler(z, n_candidates=4 * BLOCK_ROWS, carry=16, seed=5)
    w = np.full(z.shape[1], 1 / z.shape[1])
    first = sampler.candidates(0)
    assert len(first) == 4 * BLOCK_ROWS
    chosen = sampler.next_item("entropy", w, 0)
    carried = set(sampler._carried.tolist())
    assert len(carried) == 16 and chosen not in carried
    sampler.mark_unavailable([chosen])
    second = sampler.candidates(1)
    assert carried <= set(second.tolist())
    assert set(first.tolist()) != set(second.tolist()) - carried


def test_float16_tables_pick_nearly_the_same_scores():
    z = _logits(n=1000)
    w = np.random.default_rng(6).dirichlet(np.ones(z.shape[1]))
    s32 = CandidateSampler(z, n_candidates=1000, seed=0).score("bald", w, 0)[1]
    s16 = CandidateSampler(z, n_candidates=1000, seed=0, dtype=np.float16).score("bald", w, 0)[1]
    np.testing.assert_allclose(s16, s32, atol=2e-3)


def test_bad_input_is_a_clear_error():
    z = _logits(n=100)
    with pytest.raises(ValueError, match="n_items, n_heads"):
        CandidateSampler(z[0])
    with pytest.raises(ValueError, match="not supported on sampled pools"):
        CandidateSampler(z).score("variance", np.full(12, 1 / 12), 0)
    with pytest.raises(ValueError, match="unknown scorer"):
        CandidateSampler(z).score("nope", np.full(12, 1 / 12), 0)
    with pytest.raises(ValueError, match="outside"):
        CandidateSampler(z).mark_unavailable([100])


def test_live_session_samples_queries_above_its_threshold():
    from hyre_engine.live import LiveSession

    z = _logits(n=4 * BLOCK_ROWS)
    truth = np.where(z.mean(axis=1) > 0, "a", "b").astype(object)
    whole = LiveSession(z, seed=3, truth=truth)
    assert whole.candidates_per_query is None and whole.sampler is None
    session = LiveSession(z, seed=3, truth=truth, sample_above=1000)
    assert session.candidates_per_query == len(z)  # the default sample exceeds this pool
    asked = []
    for _ in range(25):
        item = session.next_item()
        assert item not in asked
        asked.append(item)
        if len(asked) % 5 == 0:
            session.skip(item)
        else:
            session.add_label(item, truth[item])
    undone = session.undo()
    assert not session.sampler._unavailable[session.sampler._pos[undone.item]]
    replay = LiveSession(z, seed=3, truth=truth, sample_above=1000)
    replay.replay([(i, "skip" if (k + 1) % 5 == 0 else truth[i]) for k, i in enumerate(asked)])
    replay.undo()
    assert replay.next_item() == session.next_item()
    assert session.snapshot().held_out is not None
