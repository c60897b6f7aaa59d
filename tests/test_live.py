import numpy as np
import pytest

from hyre_engine.live import LiveSession
from hyre_engine.reweight import Posterior


def _pool(n_items=200, n_heads=12, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_items, n_heads)).astype(np.float32)
    # head 0 is exactly the persona: its margins carry the truth
    truth = np.where(logits[:, 0] > 0, "a", "b").astype(object)
    return logits, truth


def test_weights_match_a_batch_posterior():
    logits, truth = _pool()
    session = LiveSession(logits, seed=1)
    items = [3, 17, 42, 99]
    for i in items:
        session.add_label(i, truth[i])
    batch = Posterior(logits.shape[1]).add(
        logits[items].astype(np.float64), (truth[items] == "a").astype(float)
    )
    np.testing.assert_allclose(session.panels().weights, batch.weights, atol=1e-12)


def test_undo_restores_previous_weights_and_change():
    logits, truth = _pool()
    session = LiveSession(logits)
    session.add_label(5, truth[5])
    before = session.panels().weights.copy()
    session.add_label(6, truth[6])
    assert not np.allclose(session.panels().weights, before)
    undone = session.undo()
    assert undone.item == 6
    np.testing.assert_array_equal(session.panels().weights, before)
    assert session.panels().n_labels == 1
    assert session.undo().item == 5
    assert session.undo() is None
    np.testing.assert_allclose(session.panels().weights, np.full(12, 1 / 12))


def test_next_item_never_repeats_labelled_or_skipped():
    logits, truth = _pool(n_items=20)
    session = LiveSession(logits, strategy="bald")
    seen = set()
    for _ in range(10):
        item = session.next_item()
        assert item not in seen
        seen.add(item)
        session.add_label(item, truth[item])
    item = session.next_item()
    session.skip(item)
    assert session.next_item() != item
    for i in range(20):
        if i not in seen and i != item:
            session.add_label(i, truth[i])
    assert session.next_item() is None


def test_persona_held_out_accuracy_rises_towards_the_matching_head():
    logits, truth = _pool(n_items=300, n_heads=30, seed=3)
    session = LiveSession(logits, truth=truth, strategy="bald", seed=0)
    for _ in range(15):
        item = session.next_item()
        session.add_label(item, truth[item])
    panels = session.panels()
    held_out = panels.held_out
    assert len(held_out["hyre"]) == 16
    assert held_out["best_head_oracle"][0] == 1.0  # head 0 is the persona
    assert held_out["hyre"][-1] > held_out["uniform"][-1] + 0.2
    assert int(np.argmax(panels.weights)) == 0


def test_prequential_accuracy_counts_predictions_before_each_label():
    logits, truth = _pool()
    session = LiveSession(logits)
    events = [session.add_label(i, truth[i]) for i in (1, 2, 3)]
    pre = session.panels().prequential
    expected = np.cumsum([e.hyre_correct for e in events]) / np.arange(1, 4)
    np.testing.assert_allclose(pre["hyre"], expected)
    # the first prediction is the uniform ensemble's
    assert events[0].hyre_correct == events[0].uniform_correct


def test_weight_change_highlights_the_last_label():
    logits, truth = _pool()
    session = LiveSession(logits)
    assert not session.panels().weight_change.any()
    session.add_label(0, truth[0])
    change = session.panels().weight_change
    right = (logits[0] > 0) == (truth[0] == "a")
    assert (change[right] > 0).all() and (change[~right] < 0).all()


def test_replay_restores_a_stored_session():
    logits, truth = _pool()
    first = LiveSession(logits)
    stored = []
    for _ in range(4):
        item = first.next_item()
        first.add_label(item, truth[item])
        stored.append((item, truth[item]))
    stored.append((first.next_item(), "skip"))
    again = LiveSession(logits)
    again.replay(stored)
    np.testing.assert_array_equal(again.panels().weights, first.panels().weights)
    assert again.next_item() != stored[-1][0]


def test_bad_input_is_refused():
    logits, truth = _pool()
    session = LiveSession(logits)
    with pytest.raises(ValueError, match="label must be one of"):
        session.add_label(0, "c")
    with pytest.raises(ValueError, match="outside the pool"):
        session.add_label(10_000, "a")
    with pytest.raises(ValueError, match="n_items, n_heads"):
        LiveSession(logits[:, 0])
    with pytest.raises(ValueError, match="truth must have shape"):
        LiveSession(logits, truth=truth[:5])
