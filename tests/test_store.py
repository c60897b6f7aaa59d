"""Tests for hyre_engine/store.py (DuckDB store), on ":memory:" and on a real file."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from hyre_engine import store as store_mod
from hyre_engine.store import MEMORY, Store, StoreStats, default_db_path, text_hash

TABLES = (
    "pools",
    "texts",
    "pairs",
    "labels",
    "embeddings",
    "ensembles",
    "prediction_sets",
    "head_predictions",
    "sessions",
    "session_labels",
    "profiles",
    "results",
)


def make_frame(n_pairs: int, *, start: int = 0, groups=("u1", "u2"), shared_prompt: bool = False):
    """A canonical preference frame: each pair judged once per group (labels alternate)."""
    rows = []
    for i in range(start, start + n_pairs):
        for j, group in enumerate(groups):
            rows.append(
                {
                    "pair_id": f"p{i}",
                    "prompt": "shared prompt" if shared_prompt else f"prompt {i}",
                    "response_a": f"answer A{i}",
                    "response_b": f"answer B{i}",
                    "label": "a" if (i + j) % 2 == 0 else "b",
                    "group": group,
                    "annotator": f"{group}-annotator",
                    "source_row": i * 10 + j,
                }
            )
    return pd.DataFrame(rows)


def table_counts(store: Store) -> dict[str, int]:
    cur = store._cursor()
    return {t: cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}


@pytest.fixture
def store():
    with Store(MEMORY) as s:
        yield s


@pytest.fixture
def pool(store):
    return store.add_pool("demo", make_frame(5), source="unit test")


def fake_vectors(hashes, dim=8):
    """Deterministic vectors derived from the hash, so any mix-up of order shows."""
    return np.array(
        [[int(h[k * 2 : k * 2 + 2], 16) for k in range(dim)] for h in hashes], np.float32
    )


def add_ensemble(store, pool_id, ensemble_id="ens1", config=None):
    weights = st_save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    store.put_ensemble(
        ensemble_id=ensemble_id,
        pool_id=pool_id,
        backbone_id="bb",
        config=config or {"n_heads": 4, "hidden": 16},
        weights=weights,
        train_fingerprint="train-fp",
        meta={"beta": 1.0},
    )
    return ensemble_id


# ---------------------------------------------------------------- text hash


def test_text_hash_is_stable_and_unambiguous():
    h = text_hash("q", "r")
    assert h == text_hash("q", "r") and len(h) == 64 and int(h, 16) >= 0
    assert text_hash("q", "r") != text_hash("r", "q")
    # A separator-joined encoding would make these two collide.
    assert text_hash("a\x1fb", "c") != text_hash("a", "b\x1fc")
    assert text_hash("", "x") != text_hash("x", "")


# ---------------------------------------------------------------- pools


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
    assert (info["pool_id"], info["name"], info["source"]) == (pool_id, "demo", "file.jsonl")
    assert (info["n_pairs"], info["n_labels"]) == (3, 6)
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


# ---------------------------------------------------------------- embeddings


def test_embeddings_round_trip_in_requested_order(store):
    hashes = [text_hash("p", f"r{i}") for i in range(6)]
    vectors = fake_vectors(hashes)
    assert store.put_embeddings("bb", hashes[:4], vectors[:4]) == 4
    assert store.put_embeddings("bb", hashes, vectors) == 2  # only the two new ones
    query = [hashes[5], hashes[0], hashes[5], hashes[3]]
    got = store.get_embeddings("bb", query)
    assert got.dtype == np.float32 and got.flags.writeable
    np.testing.assert_array_equal(got, vectors[[5, 0, 5, 3]])
    # the same text under another backbone is a different embedding
    assert store.missing_embeddings("other-bb", hashes[:2]) == hashes[:2]
    assert store.get_embeddings("bb", []).shape == (0, 8)


def test_embeddings_keep_first_vector_and_validate(store):
    hashes = [text_hash("p", "a"), text_hash("p", "b")]
    store.put_embeddings("bb", hashes, np.ones((2, 3)))
    assert store.put_embeddings("bb", hashes, np.zeros((2, 3))) == 0
    np.testing.assert_array_equal(store.get_embeddings("bb", hashes), np.ones((2, 3)))
    with pytest.raises(KeyError, match="1 text hashes have no 'bb' embedding"):
        store.get_embeddings("bb", [hashes[0], "deadbeef"])
    with pytest.raises(ValueError, match=r"dim 3, got \(1, 4\)"):
        store.put_embeddings("bb", ["x"], np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"\(n_hashes, dim\) = \(2, d\), got \(3, 3\)"):
        store.put_embeddings("bb", ["x", "y"], np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        store.put_embeddings("bb", ["x"], np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="repeat"):
        store.put_embeddings("bb", ["x", "x"], np.ones((2, 3)))


def test_list_column_to_matrix_across_chunks():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    full = store_mod._list_array(m)
    chunked = pa.chunked_array([full.slice(0, 1), full.slice(1, 3)])
    np.testing.assert_array_equal(store_mod._list_column_to_matrix(chunked), m)
    ragged = pa.chunked_array([pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))])
    with pytest.raises(RuntimeError, match="different lengths"):
        store_mod._list_column_to_matrix(ragged)


# ---------------------------------------------------------------- ensembles and Z


def test_ensemble_round_trip_and_find(store, pool):
    add_ensemble(store, pool)
    got = store.get_ensemble("ens1")
    assert got["config"] == {"n_heads": 4, "hidden": 16} and got["meta"] == {"beta": 1.0}
    np.testing.assert_array_equal(st_load(got["weights"])["w"], np.arange(6).reshape(2, 3))
    # key order of the config does not matter; any changed input does
    assert store.find_ensemble(pool, "bb", {"hidden": 16, "n_heads": 4}, "train-fp") == "ens1"
    assert store.find_ensemble(pool, "bb", {"hidden": 32, "n_heads": 4}, "train-fp") is None
    assert store.find_ensemble(pool, "bb", {"hidden": 16, "n_heads": 4}, "other-fp") is None
    assert store.find_ensemble(pool, "bb2", {"hidden": 16, "n_heads": 4}, "train-fp") is None
    listed = store.list_ensembles(pool)
    assert listed["ensemble_id"].tolist() == ["ens1"] and listed["n_bytes"].iloc[0] == len(
        got["weights"]
    )
    assert store.list_ensembles("pool_other").empty
    with pytest.raises(KeyError, match="no ensemble"):
        store.get_ensemble("missing")
    with pytest.raises(KeyError, match="no pool"):
        add_ensemble(store, "pool_missing", "ens2")
    with pytest.raises(ValueError, match="config is not JSON serialisable"):
        store.put_ensemble(
            ensemble_id="e3",
            pool_id=pool,
            backbone_id="bb",
            config={"f": object()},
            weights=b"",
            train_fingerprint="t",
        )


def test_head_predictions_round_trip(store, pool):
    add_ensemble(store, pool)
    add_ensemble(store, pool, "ens2")
    assert store.get_head_predictions("ens1", pool) is None
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((5, 7))
    z2 = rng.standard_normal((5, 3)).astype(np.float32)
    store.put_head_predictions("ens1", pool, z1)
    store.put_head_predictions("ens2", pool, z2)
    got = store.get_head_predictions("ens1", pool)
    assert got.dtype == np.float32 and got.shape == (5, 7) and got.flags.writeable
    np.testing.assert_array_equal(got, z1.astype(np.float32))
    np.testing.assert_array_equal(store.get_head_predictions("ens2", pool), z2)
    # storing again replaces
    store.put_head_predictions("ens1", pool, -z1)
    np.testing.assert_array_equal(
        store.get_head_predictions("ens1", pool), (-z1).astype(np.float32)
    )
    assert table_counts(store)["head_predictions"] == 10


def test_head_predictions_validate(store, pool):
    add_ensemble(store, pool)
    with pytest.raises(ValueError, match=r"Z has shape \(4, 2\) but pool .* has 5 pairs"):
        store.put_head_predictions("ens1", pool, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(n_items, n_heads\)"):
        store.put_head_predictions("ens1", pool, np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        store.put_head_predictions("ens1", pool, np.full((5, 2), np.inf))
    with pytest.raises(KeyError, match="no ensemble"):
        store.put_head_predictions("ens9", pool, np.zeros((5, 2)))
    assert store.get_head_predictions("ens1", pool) is None


# ---------------------------------------------------------------- sessions


@pytest.fixture
def session_setup(store, pool):
    add_ensemble(store, pool)
    return pool, "ens1"


def test_session_resume_and_identity(store, session_setup):
    pool, ens = session_setup
    a = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    assert store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens) == a
    b = store.get_or_create_session(user="bob", pool_id=pool, ensemble_id=ens)
    p = store.get_or_create_session(
        user="ann", pool_id=pool, ensemble_id=ens, mode="persona", persona="u1"
    )
    p2 = store.get_or_create_session(
        user="ann", pool_id=pool, ensemble_id=ens, mode="persona", persona="u2"
    )
    assert len({a, b, p, p2}) == 4
    info = store.get_session(p)
    assert (info["user"], info["mode"], info["persona"], info["n_labels"]) == (
        "ann",
        "persona",
        "u1",
        0,
    )
    assert store.get_session(a)["persona"] is None
    assert store.list_sessions(pool, user="ann")["session_id"].tolist() == [a, p, p2]
    with pytest.raises(ValueError, match="persona"):
        store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens, mode="persona")
    with pytest.raises(ValueError, match="mode must be one of"):
        store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens, mode="robot")
    with pytest.raises(KeyError, match="no ensemble"):
        store.get_or_create_session(user="ann", pool_id=pool, ensemble_id="nope")


def test_session_labels_undo_reset_and_isolation(store, session_setup):
    pool, ens = session_setup
    ann = store.get_or_create_session(user="ann", pool_id=pool, ensemble_id=ens)
    bob = store.get_or_create_session(user="bob", pool_id=pool, ensemble_id=ens)
    assert [
        store.add_session_label(ann, row_index=i, pair_id=f"p{i}", label=lab)
        for i, lab in [(3, "a"), (0, "skip"), (4, "b")]
    ] == [0, 1, 2]
    assert store.add_session_label(bob, row_index=1, pair_id="p1", label="b") == 0

    labels = store.session_labels(ann)
    assert labels[["seq", "row_index", "pair_id", "label"]].values.tolist() == [
        [0, 3, "p3", "a"],
        [1, 0, "p0", "skip"],
        [2, 4, "p4", "b"],
    ]
    assert labels["created_at"].is_monotonic_increasing
    assert store.session_labels(bob)["pair_id"].tolist() == ["p1"]  # bob sees only his label

    undone = store.undo_session_label(ann)
    assert {k: undone[k] for k in ("seq", "row_index", "pair_id", "label")} == {
        "seq": 2,
        "row_index": 4,
        "pair_id": "p4",
        "label": "b",
    }
    assert store.add_session_label(ann, row_index=2, pair_id="p2", label="a") == 2
    assert store.session_labels(ann)["pair_id"].tolist() == ["p3", "p0", "p2"]

    with pytest.raises(ValueError, match="already labelled"):
        store.add_session_label(ann, row_index=3, pair_id="p3", label="b")
    with pytest.raises(ValueError, match="row_index 1 is pair 'p1'"):
        store.add_session_label(ann, row_index=1, pair_id="p2", label="a")
    with pytest.raises(ValueError, match="label must be one of"):
        store.add_session_label(ann, row_index=1, pair_id="p1", label="A")
    with pytest.raises(KeyError, match="no session"):
        store.add_session_label("session_x", row_index=1, pair_id="p1", label="a")

    assert store.update_session(ann, strategy="bald", beta=2.0) == {"strategy": "bald", "beta": 2.0}
    assert store.update_session(ann, beta=0.5) == {"strategy": "bald", "beta": 0.5}
    assert store.reset_session(ann) == 3
    assert store.session_labels(ann).empty and store.undo_session_label(ann) is None
    assert store.get_session(ann)["settings"] == {"strategy": "bald", "beta": 0.5}
    assert store.session_labels(bob)["pair_id"].tolist() == ["p1"]
    store.delete_session(bob)
    assert store.list_sessions()["session_id"].tolist() == [ann]


# ---------------------------------------------------------------- profiles and results


def test_profiles(store, session_setup):
    _, ens = session_setup
    assert store.get_profile("ann", ens) is None
    store.save_profile(
        user="ann",
        ensemble_id=ens,
        weights=[0.25, 0.75, 0, 0],
        labels=[{"row_index": 3, "label": "a"}],
        meta={"beta": 1},
    )
    store.save_profile(user="ann", ensemble_id=ens, weights=np.array([0.5, 0.5, 0, 0]), labels=[])
    store.save_profile(
        user="bob", ensemble_id=ens, weights=np.full(4, 0.25), labels=[{"row_index": 1}]
    )
    got = store.get_profile("ann", ens)
    np.testing.assert_array_equal(got["weights"], [0.5, 0.5, 0, 0])
    assert got["labels"] == [] and got["meta"] == {}
    listed = store.list_profiles(ens)
    assert listed[["user", "n_heads", "n_labels"]].values.tolist() == [["ann", 4, 0], ["bob", 4, 1]]
    store.delete_profile("ann", ens)
    assert store.get_profile("ann", ens) is None
    with pytest.raises(KeyError, match="no profile"):
        store.delete_profile("ann", ens)
    with pytest.raises(ValueError, match=r"shape \(n_heads,\)"):
        store.save_profile(user="ann", ensemble_id=ens, weights=np.ones((2, 2)), labels=[])
    with pytest.raises(ValueError, match="non-negative"):
        store.save_profile(user="ann", ensemble_id=ens, weights=[-1.0, 2.0], labels=[])


def test_results_cache(store):
    assert store.get_result("eval:x") is None
    value = {"n": [0, 1], "summary": {"hyre": {"mean": [np.float64(0.5), 0.75]}}}
    store.put_result("eval:x", value)
    assert store.get_result("eval:x") == {"n": [0, 1], "summary": {"hyre": {"mean": [0.5, 0.75]}}}
    store.put_result("eval:x", {"n": [5]})
    assert store.get_result("eval:x") == {"n": [5]}
    with pytest.raises(ValueError, match="not JSON serialisable"):
        store.put_result("eval:y", {"f": object()})
    assert store.get_result("eval:y") is None


# ---------------------------------------------------------------- cascades, files, threads


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


def test_file_persists_across_reopen(tmp_path):
    path = tmp_path / "sub" / "hyre.duckdb"
    z = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with Store(path) as s:
        pool = s.add_pool("demo", make_frame(5))
        hashes = s.pool_texts(pool)["text_hash"].tolist()
        s.put_embeddings("bb", hashes, fake_vectors(hashes))
        add_ensemble(s, pool)
        s.put_head_predictions("ens1", pool, z)
        sid = s.get_or_create_session(user="ann", pool_id=pool, ensemble_id="ens1")
        s.add_session_label(sid, row_index=2, pair_id="p2", label="b")
        s.put_result("k", {"v": 1})
    assert path.exists()
    with Store(path) as s:
        assert s.get_pool("demo")["pool_id"] == pool
        assert s.missing_embeddings("bb", hashes) == []
        np.testing.assert_array_equal(s.get_embeddings("bb", hashes), fake_vectors(hashes))
        np.testing.assert_array_equal(s.get_head_predictions("ens1", pool), z)
        assert s.get_or_create_session(user="ann", pool_id=pool, ensemble_id="ens1") == sid
        assert s.session_labels(sid)["pair_id"].tolist() == ["p2"]
        assert s.get_result("k") == {"v": 1}
        s._cursor().execute("UPDATE schema_version SET version = 999")
    with pytest.raises(RuntimeError, match="schema version"):
        Store(path)


def test_default_path_from_env(tmp_path, monkeypatch):
    target = tmp_path / "env.duckdb"
    monkeypatch.setenv("HYRE_DB", str(target))
    assert default_db_path() == str(target)
    with Store() as s:
        assert s.path == str(target)
    assert target.exists()
    monkeypatch.delenv("HYRE_DB")
    assert default_db_path().endswith("data/hyre.duckdb")


def test_closed_store_refuses_work():
    s = Store(MEMORY)
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.list_pools()


def test_threads_share_one_store(store, session_setup):
    pool, ens = session_setup
    z = np.arange(10, dtype=np.float32).reshape(5, 2)
    store.put_head_predictions(ens, pool, z)
    n_threads, n_rounds = 6, 5
    errors: list[BaseException] = []
    cursors = {}
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            cursors[t] = id(store._cursor())
            barrier.wait()
            sid = store.get_or_create_session(user=f"user{t}", pool_id=pool, ensemble_id=ens)
            for r in range(n_rounds):
                store.add_session_label(sid, row_index=r, pair_id=f"p{r}", label="ab"[(t + r) % 2])
                # every thread writes the same hashes too: writes must not conflict
                hashes = [text_hash("shared", f"text {r}"), text_hash(f"thread {t}", f"text {r}")]
                store.put_embeddings("bb", hashes, fake_vectors(hashes))
                np.testing.assert_array_equal(store.get_head_predictions(ens, pool), z)
                assert len(store.session_labels(sid)) == r + 1
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(set(cursors.values())) == n_threads  # a cursor per thread
    sessions = store.list_sessions(pool)
    assert sorted(sessions["user"]) == [f"user{t}" for t in range(n_threads)]
    assert sessions["n_labels"].tolist() == [n_rounds] * n_threads
    for t, sid in zip(sessions["user"], sessions["session_id"], strict=True):
        k = int(t.removeprefix("user"))
        assert store.session_labels(sid)["label"].tolist() == [
            "ab"[(k + r) % 2] for r in range(n_rounds)
        ]
    assert table_counts(store)["embeddings"] == n_rounds * (1 + n_threads)
    # the finished threads' cursors are closed when the next thread asks for one
    store._cursor()
    fresh = threading.Thread(target=store._cursor)
    fresh.start()
    fresh.join()
    assert len(store._cursors) <= 2


def test_a_file_held_by_another_process_is_a_clear_error(tmp_path):
    import subprocess
    import sys
    import time

    from hyre_engine.store import StoreLockedError

    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from hyre_engine.store import Store; s = Store(sys.argv[1]); "
         "print('open', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError, match="in use by another process.*HYRE_DB"):
            Store(path)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    with Store(path) as store:  # free again once the other process is gone
        assert store.list_pools().empty
