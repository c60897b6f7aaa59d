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
    np.testing.assert_allclose(session.snapshot().weights, batch.weights, atol=1e-12)


def test_undo_restores_previous_weights_and_change():
    logits, truth = _pool()
    session = LiveSession(logits)
    session.add_label(5, truth[5])
    before = session.snapshot().weights.copy()
    session.add_label(6, truth[6])
    assert not np.allclose(session.snapshot().weights, before)
    undone = session.undo()
    assert undone.item == 6
    np.testing.assert_array_equal(session.snapshot().weights, before)
    assert session.snapshot().n_labels == 1
    assert session.undo().item == 5
    assert session.undo() is None
    np.testing.assert_allclose(session.snapshot().weights, np.full(12, 1 / 12))


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
    panels = session.snapshot()
    held_out = panels.held_out
    assert len(held_out.hyre) == 16
    assert held_out.best_head_oracle[0] == 1.0  # head 0 is the persona
    assert held_out.hyre[-1] > held_out.uniform[-1] + 0.2
    assert int(np.argmax(panels.weights)) == 0


def test_prequential_accuracy_counts_predictions_before_each_label():
    logits, truth = _pool()
    session = LiveSession(logits)
    events = [session.add_label(i, truth[i]) for i in (1, 2, 3)]
    pre = session.snapshot().running
    expected = np.cumsum([e.hyre_correct for e in events]) / np.arange(1, 4)
    np.testing.assert_allclose(pre.hyre, expected)
    assert pre.n_values == [1, 2, 3]
    # the first prediction is the uniform ensemble's
    assert events[0].hyre_correct == events[0].uniform_correct


def test_weight_change_highlights_the_last_label():
    logits, truth = _pool()
    session = LiveSession(logits)
    assert not session.snapshot().weight_change.any()
    session.add_label(0, truth[0])
    change = session.snapshot().weight_change
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
    np.testing.assert_array_equal(again.snapshot().weights, first.snapshot().weights)
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


def test_a_tie_counts_half_whichever_side_was_chosen():
    # two heads with opposite margins: the uniform P(A) is exactly 0.5 on every pair. The
    # one tie rule gives half credit; before it, a tie counted as right for "b" only.
    logits = np.array([[1.0, -1.0], [2.0, -2.0], [0.5, -0.5]], dtype=np.float32)
    session = LiveSession(logits)
    a = session.add_label(0, "a")
    assert (a.hyre_correct, a.uniform_correct) == (0.5, 0.5)
    session.undo()
    b = session.add_label(0, "b")
    assert (b.hyre_correct, b.uniform_correct) == (0.5, 0.5)
    assert session.snapshot().running.hyre == [0.5]


def test_persona_labels_travel_as_labels_and_held_out_ends_as_none():
    logits, truth = _pool(n_items=6, n_heads=4)
    truth = truth.copy()
    truth[2] = None  # the persona never judged pair 2
    session = LiveSession(logits, truth=truth)
    assert session.has_truth
    assert session.persona_label(0) == truth[0] and session.persona_label(2) is None
    for i in (0, 1, 3, 4, 5):
        session.add_label(i, truth[i])
    held = session.snapshot().held_out
    assert held.n_values == list(range(6))
    assert held.hyre[-1] is None  # every judged pair is labelled: nothing left to score
    with pytest.raises(ValueError, match="no persona labels"):
        LiveSession(logits).persona_label(0)
    with pytest.raises(ValueError, match="truth labels must be"):
        LiveSession(logits[:6], truth=np.array(["a", "b", "c", None, "a", "a"], dtype=object))


def test_snapshot_orders_heads_and_marks_gainers():
    logits, truth = _pool()
    session = LiveSession(logits)
    session.add_label(0, truth[0])
    snap = session.snapshot()
    w = snap.weights
    assert (np.diff(w[snap.heaviest_first]) <= 0).all()
    np.testing.assert_array_equal(snap.gained, snap.weight_change > 0)
    assert snap.n_heads == 12 and snap.max_entropy == pytest.approx(np.log(12))
    assert snap.head_coords.shape == (12, 2)


def test_strategy_and_skips_change_only_through_methods():
    logits, _ = _pool(n_items=10)
    session = LiveSession(logits, strategy="random")
    with pytest.raises(ValueError):
        session.set_strategy("nope")
    assert session.strategy == "random"
    session.set_strategy("entropy")
    assert session.strategy == "entropy"
    item = session.next_item()
    session.skip(item)
    assert session.is_answered(item) and session.next_item() != item
    session.unskip(item)
    assert not session.is_answered(item)


# ---------------------------------------------------------------- bound to the store


def _stored_pool(tmp_path, n_items=12, n_heads=6):
    import pandas as pd

    from hyre_engine.store import Store

    logits, truth = _pool(n_items=n_items, n_heads=n_heads)
    ids = [f"p{i}" for i in range(n_items)]
    frame = pd.DataFrame({
        "pair_id": ids, "prompt": [f"q{i}" for i in ids], "response_a": [f"a{i}" for i in ids],
        "response_b": [f"b{i}" for i in ids], "label": list(truth), "group": "persona",
    })
    store = Store(tmp_path / "live.duckdb")
    pool_id = store.add_pool("t", frame)
    store.put_ensemble(ensemble_id="e", pool_id=pool_id, backbone_id="t",
                       config={"kind": "t", "n_heads": n_heads}, weights=b"\0", train_fingerprint="t")
    store.put_head_predictions("e", pool_id, logits)
    sid = store.get_or_create_session(user="u", pool_id=pool_id, ensemble_id="e")
    pair_ids = store.pool_pairs(pool_id, with_meta=False)["pair_id"].to_numpy(dtype=object)
    return store, pool_id, sid, logits, truth, pair_ids


def test_labels_go_to_the_store_first_and_a_reopened_session_continues(tmp_path):
    from hyre_engine import live

    store, pool_id, sid, logits, truth, pair_ids = _stored_pool(tmp_path)
    with store:
        state = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald")
        assert state.n_rows == 0 and state.is_current(store, sid, 1.0)
        first = state.live.snapshot().next_item
        event = live.record_label(store, state, first, "a")
        assert event.item == first and state.last_event is event
        assert live.record_label(store, state, state.live.next_item(), "skip") is None
        assert live.stored_rows(store, sid) == state.n_rows == 2
        assert store.session_labels(sid)["label"].tolist() == ["a", "skip"]
        assert not state.is_current(store, sid, 2.0)  # another beta: rebuild

        again = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald")
        np.testing.assert_array_equal(again.live.weights, state.live.weights)
        assert (again.last_item, again.last_label) == (state.last_item, "skip")

        # undo removes the skip first, then the label, from the store and the posterior
        live.undo_label(store, state)
        assert not state.live.is_answered(again.last_item)
        live.undo_label(store, state)
        np.testing.assert_allclose(state.live.weights, np.full(6, 1 / 6))
        assert live.undo_label(store, state) is None
        assert live.stored_rows(store, sid) == 0


def test_a_reopened_session_keeps_its_last_label_as_evidence(tmp_path):
    """After a reload, a session whose last answer was B still shows B's feedback, not 'no evidence'."""
    from hyre_engine import live

    store, pool_id, sid, logits, truth, pair_ids = _stored_pool(tmp_path)
    with store:
        state = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald")
        live.record_label(store, state, state.live.next_item(), "a")
        before = live.record_label(store, state, state.live.next_item(), "b")
        again = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald")
        assert again.last_label == "b"
        assert again.last_event == before
        live.record_label(store, again, again.live.next_item(), "tie")
        reopened = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald")
        assert reopened.last_label == "tie" and reopened.last_event is None


def test_persona_step_answers_with_the_group_labels(tmp_path):
    from hyre_engine import live

    store, pool_id, sid, logits, truth, pair_ids = _stored_pool(tmp_path)
    with store:
        by_group = live.group_truth(store, pool_id, "persona", len(truth))
        assert by_group.tolist() == truth.tolist()
        state = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald", truth=by_group)
        for _ in range(len(truth)):
            assert live.persona_step(store, state)
        assert not live.persona_step(store, state)  # every pair answered
        rows = store.session_labels(sid)
        assert [truth[r] for r in rows["row_index"]] == rows["label"].tolist()


def test_a_live_session_never_asks_the_same_prompt_twice_in_a_row():
    logits, _ = _pool(n_items=60, n_heads=12)
    prompts = np.array([f"q{i // 3}" for i in range(60)], dtype=object)  # 3 pairs per prompt
    session = LiveSession(logits, prompts=prompts, start=7)
    asked = []
    for _ in range(40):
        item = session.next_item()
        asked.append(item)
        if len(asked) % 5 == 0:
            session.skip(item)
        else:
            session.add_label(item, "a" if logits[item].mean() > 0 else "b")
    assert all(prompts[x] != prompts[y] for x, y in zip(asked, asked[1:], strict=False))
    # undo goes back to the state before: the next pair is the one asked then
    before = session.next_item()
    session.add_label(before, "a")
    session.undo()
    assert session.next_item() == before
    # replaying the same rows gives the same weights and the same next pair
    again = LiveSession(logits, prompts=prompts, start=7)
    again.replay([(e.item, e.label) for e in session.events])
    np.testing.assert_array_equal(again.weights, session.weights)


def test_new_people_start_at_different_pairs():
    from hyre_engine.acquisition import start_seed

    logits, _ = _pool(n_items=200, n_heads=12)
    prompts = np.arange(200).astype(object)
    firsts = {LiveSession(logits, prompts=prompts, start=start_seed(f"u{i}")).next_item() for i in range(20)}
    assert len(firsts) > 3
    assert LiveSession(logits).next_item() == LiveSession(logits).next_item()


# ---------------------------------------------------------------- the personal model in the live loop


def _personal_pool(n_items=150, n_heads=8, dim=12, seed=3):
    """Heads that know nothing of the person; the person is a direction in the embedding."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_items, n_heads)).astype(np.float32)
    diffs = rng.normal(size=(n_items, dim)).astype(np.float32)
    truth = np.where(diffs @ rng.normal(size=dim) > 0, "a", "b").astype(object)
    return logits, diffs, truth


def test_the_live_session_drives_the_personal_model_and_undo_is_exact():
    from hyre_engine.acquisition import select
    from hyre_engine.personal import PersonalModel

    logits, diffs, truth = _personal_pool()
    session = LiveSession(logits, diffs=diffs, lam=0.1, truth=truth)
    hyre_only = LiveSession(logits, truth=truth)
    assert session.method == "personal" and hyre_only.method == "hyre"
    snap = session.snapshot()
    assert snap.flip_share == 0.0  # the personal head is zero before any label
    labelled = []
    for _ in range(8):
        item = session.next_item()
        # the next query is the personal model's BALD under its current posterior
        expected = PersonalModel.replay(logits, diffs, labelled, label_targets_of(truth, labelled), lam=0.1)
        best = select(expected.score("personal_bald"), 1, exclude=np.array(labelled, dtype=np.int64), seed=0)[0]
        assert item == best
        session.add_label(item, truth[item])
        hyre_only.add_label(item, truth[item])
        labelled.append(item)
    # one w for both methods, and v as a batch refit of the same labels gives it
    np.testing.assert_allclose(session.weights, hyre_only.weights, atol=1e-12)
    batch = PersonalModel.replay(logits, diffs, labelled, label_targets_of(truth, labelled), lam=0.1)
    np.testing.assert_allclose(session.personal.v, batch.v, atol=1e-8)
    v_before, w_before = session.personal.v.copy(), session.weights.copy()
    coords_before = session.snapshot().person_coords.copy()
    item = session.next_item()
    session.add_label(item, truth[item])
    assert not np.allclose(session.snapshot().person_coords, coords_before)  # labelling moves the person
    session.undo()
    np.testing.assert_array_equal(session.personal.v, v_before)
    np.testing.assert_array_equal(session.weights, w_before)
    np.testing.assert_array_equal(session.snapshot().person_coords, coords_before)
    snap = session.snapshot()
    assert snap.held_out.personal is not None and len(snap.held_out.personal) == 9
    assert len(snap.running.personal) == 8 and 0.0 < snap.flip_share < 1.0


def test_the_personal_query_is_varied_query_on_the_whole_pools_scores():
    from hyre_engine.acquisition import select, varied_query

    logits, diffs, truth = _personal_pool(n_items=600, dim=64, seed=5)
    prompts = np.array([f"q{i // 4}" for i in range(600)], dtype=object)  # 4 pairs per prompt
    for session in (LiveSession(logits, diffs=diffs, prompts=prompts, start=11),
                    LiveSession(logits, diffs=diffs, strategy="entropy")):
        for step in range(15):
            item = session.next_item()  # the personal model's bounded pick, after the first
            scores = session._scores()  # the whole pool's, as before
            labelled = np.array(sorted(set(session.labelled.tolist()) | session._skipped), dtype=np.int64)
            if session._prompts is None:
                expected = int(select(scores, 1, exclude=labelled, seed=session.seed)[0])
            else:
                first = step == 0
                expected = varied_query(scores, prompts, exclude=labelled, first=first,
                                        last_prompt=prompts[session._order[-1]] if session._order else None,
                                        seed=session.start if first else session.seed)
            assert item == expected
            if step % 6 == 5:
                session.skip(item)
            else:
                session.add_label(item, truth[item])


def label_targets_of(truth, rows):
    return (truth[np.asarray(rows, dtype=np.int64)] == "a").astype(float)


def test_hyre_only_places_the_person_at_the_weighted_mean_of_the_heads():
    logits, diffs, truth = _personal_pool()
    session = LiveSession(logits, diffs=diffs, method="hyre")
    for item in (4, 9, 30):
        session.add_label(item, truth[item])
    snap = session.snapshot()
    assert snap.method == "hyre" and not snap.personal
    np.testing.assert_allclose(snap.person_coords, snap.weights @ snap.head_coords, atol=1e-4)
    session.set_method("personal")  # both models learnt every label: the switch is immediate
    assert session.snapshot().personal and session.next_item() not in (4, 9, 30)
    with pytest.raises(ValueError, match="method must be one of"):
        session.set_method("paper")
    with pytest.raises(ValueError, match="needs the pool's embedding differences"):
        LiveSession(logits, method="personal")


def test_open_live_replays_the_personal_model(tmp_path):
    from hyre_engine import live

    store, pool_id, sid, logits, truth, pair_ids = _stored_pool(tmp_path)
    diffs = np.random.default_rng(0).normal(size=(logits.shape[0], 5)).astype(np.float32)
    with store:
        state = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald", diffs=diffs, lam=0.3)
        for _ in range(4):
            live.record_label(store, state, state.live.next_item(), "a")
        again = live.open_live(store, sid, logits, pair_ids, beta=1.0, strategy="bald", diffs=diffs, lam=0.3)
        np.testing.assert_array_equal(again.live.personal.v, state.live.personal.v)
        assert again.live.next_item() == state.live.next_item()
        assert again.is_current(store, sid, 1.0, 0.3) and not again.is_current(store, sid, 1.0, 0.1)
        assert live.session_method(store, sid) == "personal"
        store.update_session(sid, method="hyre")
        assert live.session_method(store, sid) == "hyre"


def test_sessions_on_the_apps_cached_z_share_its_scoring_tables():
    # the Label page hands every browser session the same read-only float32 Z (context.pool_arrays)
    z = np.random.default_rng(5).normal(size=(40, 8)).astype("float32", order="C")
    z.setflags(write=False)
    one, two = LiveSession(z, strategy="bald"), LiveSession(z, strategy="bald")
    assert one.logits is z and one.scorer._p is two.scorer._p and one.scorer._h is two.scorer._h
    one.add_label(one.snapshot().next_item, "a")
    assert two.snapshot().n_labels == 0  # shared tables, separate posteriors


def test_editing_or_deleting_an_old_label_replays_exactly(tmp_path):
    """After an old label is changed or deleted, the weights equal a fresh replay of the store."""
    from hyre_engine import live

    store, pool_id, sid, logits, truth, pair_ids = _stored_pool(tmp_path, n_items=12, n_heads=6)
    with store:
        state = live.open_live(store, sid, logits, pair_ids, beta=1.5, strategy="bald")
        for label in "ababa":
            live.record_label(store, state, state.live.next_item(), label)
        live.record_label(store, state, state.live.next_item(), "tie")
        rows = store.session_labels(sid)
        before = state.live.weights.copy()
        # another tab's state sees the edit by the revision, not by the row count
        other = live.open_live(store, sid, logits, pair_ids, beta=1.5, strategy="bald")
        state = live.change_label(store, state, 1, "a")  # the second label, b -> a
        assert not other.is_current(store, sid, 1.5) and state.is_current(store, sid, 1.5)
        assert not np.allclose(state.live.weights, before)
        state = live.change_label(store, state, 3, None)  # delete the fourth
        state = live.change_label(store, state, 5, "b")  # the tie becomes a preference

        stored = store.session_labels(sid)
        assert stored["seq"].tolist() == [0, 1, 2, 4, 5]
        assert stored["label"].tolist() == ["a", "a", "a", "a", "b"]
        assert stored["row_index"].tolist() == rows["row_index"].drop(index=3).tolist()
        # a fresh replay, and the posterior from scratch on the labels as they now stand
        fresh = live.open_live(store, sid, logits, pair_ids, beta=1.5, strategy="bald")
        np.testing.assert_array_equal(state.live.weights, fresh.live.weights)
        items = stored["row_index"].to_numpy()
        batch = Posterior(6, beta=1.5, loss="zero-one").add(
            logits[items].astype(np.float64), (stored["label"] == "a").to_numpy(dtype=float))
        np.testing.assert_allclose(state.live.weights, batch.weights, atol=1e-12)
        assert state.live.snapshot().next_item == fresh.live.snapshot().next_item
        # the deleted pair may be asked again; the audit trail has both changes, with who
        assert not state.live.is_answered(int(rows["row_index"][3]))
        history = store.label_history(sid)
        assert history["action"].tolist()[-3:] == ["edit", "delete", "edit"]
        assert set(history["actor"]) == {"u"}
        # undo after the edits still takes back the last row
        live.undo_label(store, state)
        assert store.session_labels(sid)["seq"].tolist() == [0, 1, 2, 4]
        with pytest.raises(KeyError, match="no label number 3"):
            store.edit_session_label(sid, 3, label="a")


def test_n_labels_matches_the_snapshot_without_building_one():
    logits, truth = _pool()
    session = LiveSession(logits, truth=truth)
    assert session.n_labels == 0
    for i in (5, 8, 13):
        session.add_label(i, truth[i])
    assert session.n_labels == session.snapshot().n_labels == 3
    session.undo()
    assert session.n_labels == session.snapshot().n_labels == 2
