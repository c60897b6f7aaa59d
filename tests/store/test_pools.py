"""Tests for hyre_engine/store/pools.py (importing frames (atomic, validated), adding pairs, deleting with cascades), through the Store facade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from store_helpers import add_ensemble, fake_vectors, make_frame, table_counts

from hyre_engine.store import Store, StoreStats, text_hash


def test_add_pool_round_trip(store):
    frame = make_frame(3)
    pool_id = store.add_pool("demo", frame, source="file.jsonl")

    pairs = store.pool_pairs(pool_id)
    assert pairs["row_index"].tolist() == [0, 1, 2]
    assert pairs["pair_id"].tolist() == ["p0", "p1", "p2"]
    assert pairs["hash_a"].tolist() == [text_hash(f"prompt {i}", f"answer A{i}") for i in range(3)]
    # metadata of the pair's first row, as JSON
    assert pairs["meta"].tolist() == [{"source_row": 0}, {"source_row": 10}, {"source_row": 20}]

    labels = store.pool_labels(pool_id)
    assert list(labels.columns) == ["row_index", "pair_id", "group", "annotator", "label"]
    assert labels["row_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert labels["label"].tolist() == frame["label"].tolist()
    assert labels["group"].tolist() == frame["group"].tolist()
    u2 = store.pool_labels(pool_id, groups=["u2"])
    assert u2["group"].tolist() == ["u2"] * 3 and u2["label"].tolist() == ["b", "a", "b"]
    assert len(store.pool_labels(pool_id, groups="u1")) == 3

    groups = store.pool_groups(pool_id)
    assert groups.to_dict("list") == {"group": ["u1", "u2"], "n_labels": [3, 3]}

    info = store.get_pool("demo")
    assert info == store.get_pool(pool_id)
    assert (info.pool_id, info.name, info.source) == (pool_id, "demo", "file.jsonl")
    assert (info.n_pairs, info.n_labels) == (3, 6)
    assert store.list_pools()["name"].tolist() == ["demo"]
    assert store.n_pairs(pool_id) == 3
    with pytest.raises(KeyError, match="nope"):
        store.get_pool("nope")


def test_pool_texts_are_unique_in_first_appearance_order(store):
    frame = make_frame(2, groups=("u1",))
    # p2 reuses p0's response A under the same prompt: one text, two pairs
    frame.loc[len(frame)] = ["p2", "prompt 0", "answer A0", "other", "a", "u1", "x", 0]
    pool_id = store.add_pool("demo", frame)
    texts = store.pool_texts(pool_id)
    expected = [
        ("prompt 0", "answer A0"),
        ("prompt 0", "answer B0"),
        ("prompt 1", "answer A1"),
        ("prompt 1", "answer B1"),
        ("prompt 0", "other"),
    ]
    assert list(zip(texts["prompt"], texts["response"], strict=True)) == expected
    assert texts["text_hash"].tolist() == [text_hash(p, r) for p, r in expected]
    assert store.pool_text_count(pool_id) == len(expected)  # counted without reading them
    assert store.stats.texts_added == 5


def test_rows_without_label_and_group_are_kept(store):
    frame = pd.DataFrame(
        {
            "pair_id": [1, 2],  # non-string ids are stored as strings
            "prompt": ["", "q"],  # an empty prompt is allowed
            "response_a": ["a", "b"],
            "response_b": ["c", "d"],
            "label": ["a", None],
        }
    )
    pool_id = store.add_pool("unlabelled", frame)
    assert store.pool_pairs(pool_id)["pair_id"].tolist() == ["1", "2"]
    labels = store.pool_labels(pool_id)
    assert labels["pair_id"].tolist() == ["1"] and labels["group"].isna().all()
    assert store.pool_groups(pool_id)["n_labels"].tolist() == [1]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f.drop(columns=["response_b"]), "missing required columns"),
        (lambda f: f.iloc[0:0], "no rows"),
        (lambda f: f.assign(label=["a", "b", "c", "a"]), "label must be one of"),
        (lambda f: f.assign(prompt=["x", None, "y", "y"]), "column 'prompt' has missing values"),
        (
            lambda f: f.assign(response_a=["x", "changed", "y", "y"]),
            "p0.*different prompt/response",
        ),
    ],
)
def test_bad_frame_raises_and_leaves_store_intact(store, mutate, match):
    good = store.add_pool("good", make_frame(4))
    before = table_counts(store)
    bad = mutate(make_frame(2, start=100).assign(pair_id=["p0", "p0", "p1", "p1"]))
    with pytest.raises(ValueError, match=match):
        store.add_pool("bad", bad)
    assert table_counts(store) == before
    assert store.pool_pairs(good)["pair_id"].tolist() == ["p0", "p1", "p2", "p3"]


def test_duplicate_pool_name_and_atomic_replace(store):
    old = store.add_pool("demo", make_frame(3))
    add_ensemble(store, old)
    with pytest.raises(ValueError, match="already exists"):
        store.add_pool("demo", make_frame(2))
    new = store.add_pool("demo", make_frame(2, start=50), replace=True)
    assert new != old
    assert store.list_pools()["pool_id"].tolist() == [new]
    assert store.pool_pairs(new)["pair_id"].tolist() == ["p50", "p51"]
    # the old pool's ensemble went with it
    assert store.list_ensembles().empty
    with pytest.raises(KeyError):
        store.pool_pairs(old)


def test_failure_midway_rolls_back_everything(store, monkeypatch):
    """A write that fails after texts and pairs went in leaves no trace, and keeps the pool it replaces."""
    good = store.add_pool("demo", make_frame(3))
    before = table_counts(store)
    stats_before = store.stats.as_dict()
    real = Store._registered
    calls = []

    def failing_registered(self, cur, table):
        calls.append(table.column_names)
        if "label" in table.column_names:  # texts and pairs are already inserted by now
            raise RuntimeError("disk full")
        return real(self, cur, table)

    monkeypatch.setattr(Store, "_registered", failing_registered)
    with pytest.raises(RuntimeError, match="disk full"):
        store.add_pool("demo", make_frame(4, start=10), replace=True)
    with pytest.raises(RuntimeError, match="disk full"):
        store.add_pool("other", make_frame(4, start=10))
    assert any("prompt" in c and "row_index" in c for c in calls)  # the pairs insert did run
    monkeypatch.undo()

    assert table_counts(store) == before
    assert store.stats.as_dict() == stats_before
    assert store.list_pools()["pool_id"].tolist() == [good]
    assert store.pool_pairs(good)["pair_id"].tolist() == ["p0", "p1", "p2"]
    # and the store still works afterwards
    assert store.add_pairs(good, make_frame(1, start=3)) == 1


def test_add_pairs_embeds_only_new_texts(store):
    pool_id = store.add_pool("demo", make_frame(20))
    hashes = store.pool_texts(pool_id)["text_hash"].tolist()
    assert store.missing_embeddings("bb", hashes) == hashes
    assert store.put_embeddings("bb", hashes, fake_vectors(hashes)) == 40
    assert store.missing_embeddings("bb", store.pool_texts(pool_id)["text_hash"]) == []

    store.stats.reset()
    # 10 new pairs, plus rows of 3 pairs already in the pool
    frame = pd.concat([make_frame(3, start=0), make_frame(10, start=20)], ignore_index=True)
    assert store.add_pairs(pool_id, frame) == 10
    pairs = store.pool_pairs(pool_id)
    assert pairs["row_index"].tolist() == list(range(30))
    assert pairs["pair_id"].tolist()[20:] == [f"p{i}" for i in range(20, 30)]
    missing = store.missing_embeddings("bb", store.pool_texts(pool_id)["text_hash"])
    new_pairs = pairs.iloc[20:]
    assert missing == [
        h for a, b in zip(new_pairs.hash_a, new_pairs.hash_b, strict=True) for h in (a, b)
    ]
    # the repeated label rows of p0..p2 were not added twice
    assert store.stats.as_dict() == {
        **StoreStats().as_dict(),
        "texts_added": 20,
        "pairs_added": 10,
        "labels_added": 20,
    }

    store.stats.reset()
    assert store.add_pairs(pool_id, frame) == 0
    assert store.stats.as_dict() == StoreStats().as_dict()  # nothing new, nothing written


def test_add_pairs_rejects_changed_texts(store, pool):
    before = table_counts(store)
    frame = make_frame(2, start=3)
    frame.loc[frame.pair_id == "p3", "response_b"] = "edited"
    frame = pd.concat([frame, make_frame(1, start=9)], ignore_index=True)
    with pytest.raises(ValueError, match="'p3' already in pool"):
        store.add_pairs(pool, frame)
    assert table_counts(store) == before
    with pytest.raises(KeyError, match="no pool"):
        store.add_pairs("pool_missing", make_frame(1))


def test_delete_cascades(store, session_setup):
    pool, ens = session_setup
    other = store.add_pool("other", make_frame(2, start=100))
    add_ensemble(store, other, "ens-other")
    store.put_head_predictions(ens, pool, np.zeros((5, 2)))
    store.put_head_predictions("ens-other", other, np.ones((2, 2)))
    sid = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    store.add_session_label(sid, row_index=0, pair_id="p0", label="a")
    store.save_profile(user="ann", ensemble_id=ens, weights=np.ones(2) / 2, labels=[])
    hashes = store.pool_texts(pool)["text_hash"].tolist()
    store.put_embeddings("bb", hashes, fake_vectors(hashes))
    other_counts = table_counts(store)

    store.delete_pool(pool)
    counts = table_counts(store)
    assert counts["pools"] == 1 and counts["pairs"] == 2 and counts["labels"] == 4
    assert counts["ensembles"] == 1 and counts["head_predictions"] == 2
    assert counts["sessions"] == counts["session_labels"] == counts["profiles"] == 0
    # the content-addressed caches stay
    assert counts["texts"] == other_counts["texts"] and counts["embeddings"] == len(hashes)
    np.testing.assert_array_equal(store.get_head_predictions("ens-other", other), np.ones((2, 2)))
    with pytest.raises(KeyError):
        store.delete_pool(pool)

    store.delete_ensemble("ens-other")
    assert store.get_head_predictions("ens-other", other) is None
    assert store.list_ensembles().empty and store.n_pairs(other) == 2
