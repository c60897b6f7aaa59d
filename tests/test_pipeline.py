"""Pipeline: pool -> embeddings -> ensemble -> Z, incremental, on a few prompts of the demo pool.

Everything runs for real: the embedded MiniLM backbone, small ensembles
(8 heads, 16 hidden units), a temporary DuckDB file. The demo pool is cut to a
few prompts (6 answers, 15 pairs each) so that embedding and training take a
second or two.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from hyre_engine.backbone import load_backbone
from hyre_engine.data import read_preferences
from hyre_engine.demo import DEMO_POOL_NAME, DEMO_TRAIN_GROUPS, ensure_demo
from hyre_engine.pipeline import (
    BuildConfig,
    build_pool,
    ensure_embeddings,
    predict_pool,
)
from hyre_engine.store import Store, text_hash

DEMO_PAIRS = Path(__file__).resolve().parents[1] / "data" / "demo" / "pairs.jsonl"
# Small ensembles keep training well under a second on one CPU thread.
SMALL = {"n_heads": 8, "hidden": 16}
# The bound for a rebuild with nothing new (demo pool); the subset must beat it easily.
REBUILD_SECONDS = 2.0
# The demo pool answers every question in 6 variants, judged as all 15 pairs.
TEXTS_PER_PROMPT, PAIRS_PER_PROMPT = 6, 15
TRAIN_PROMPTS = 3  # prompts in the training subset: 18 texts, 45 pairs



@pytest.fixture(scope="module")
def demo_rows() -> list[dict]:
    return [json.loads(line) for line in DEMO_PAIRS.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def prompt_ids(demo_rows) -> list[str]:
    return list(dict.fromkeys(r["prompt_id"] for r in demo_rows))


def rows_of(demo_rows: list[dict], prompt_ids: list[str]) -> list[dict]:
    wanted = set(prompt_ids)
    return [r for r in demo_rows if r["prompt_id"] in wanted]


def unlabelled_pairs(rows: list[dict]) -> pd.DataFrame:
    """The distinct pairs of some demo rows, without labels (as a user's new pool would be)."""
    frame = pd.DataFrame(rows)[["pair_id", "prompt", "response_a", "response_b"]]
    return frame.drop_duplicates("pair_id").reset_index(drop=True)


def hashes_of(pairs: pd.DataFrame) -> set[str]:
    return {
        text_hash(p, r)
        for side in ("response_a", "response_b")
        for p, r in zip(pairs["prompt"], pairs[side], strict=True)
    }


@pytest.fixture(scope="module")
def subset_file(tmp_path_factory, demo_rows, prompt_ids) -> Path:
    path = tmp_path_factory.mktemp("demo") / "pairs.jsonl"
    rows = rows_of(demo_rows, prompt_ids[:TRAIN_PROMPTS])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def minilm():
    return load_backbone()


def small_config(**overrides) -> BuildConfig:
    return BuildConfig(**{**SMALL, "train_groups": list(DEMO_TRAIN_GROUPS), **overrides})


@pytest.fixture(scope="module")
def built(tmp_path_factory, subset_file, minilm):
    """One store with the subset pool built once; tests add pools, never change this one."""
    store = Store(tmp_path_factory.mktemp("db") / "pipeline.duckdb")
    pool = store.add_pool("subset", read_preferences(subset_file), source=str(subset_file))
    events: list[tuple[str, int, int]] = []
    report = build_pool(
        store, pool, small_config(), backbone=minilm, progress=lambda *e: events.append(e)
    )
    yield SimpleNamespace(store=store, pool=pool, report=report, events=events)
    store.close()


def test_first_build_embeds_trains_and_predicts_everything(built):
    r = built.report
    n_texts, n_pairs = TRAIN_PROMPTS * TEXTS_PER_PROMPT, TRAIN_PROMPTS * PAIRS_PER_PROMPT
    assert (r.n_pairs, r.n_texts) == (n_pairs, n_texts)
    assert (r.embedded, r.embeddings_reused) == (n_texts, 0)
    assert r.trained and r.predicted
    assert r.n_train_rows == n_pairs  # the crowd labels each pair once
    Z = built.store.get_head_predictions(r.ensemble_id, built.pool)  # noqa: N806
    assert Z.shape == (n_pairs, SMALL["n_heads"])
    assert np.isfinite(Z).all()
    # the random priors keep the heads different functions
    assert np.ptp(Z, axis=1).min() > 0
    assert r.ensemble_id in set(built.store.list_ensembles(built.pool)["ensemble_id"])


def test_progress_reports_embed_train_predict_in_order_and_finishes_each(built):
    stages = list(dict.fromkeys(stage for stage, _, _ in built.events))
    for earlier, later in [("embed", "train"), ("train", "predict")]:
        assert stages.index(earlier) < stages.index(later)
    for stage in ("embed", "train", "predict"):
        done = [d for s, d, _ in built.events if s == stage]
        totals = {t for s, _, t in built.events if s == stage}
        assert len(totals) == 1 and done[-1] == totals.pop()
        assert done == sorted(done)
    embed_total = {t for s, _, t in built.events if s == "embed"}
    assert embed_total == {built.report.n_texts}


def test_rebuild_with_nothing_new_computes_nothing(built, minilm):
    store, before = built.store, built.store.stats.as_dict()
    Z0 = store.get_head_predictions(built.report.ensemble_id, built.pool)  # noqa: N806
    events: list[tuple] = []
    start = time.perf_counter()
    again = build_pool(
        store, built.pool, small_config(), backbone=minilm, progress=lambda *e: events.append(e)
    )
    elapsed = time.perf_counter() - start
    assert (again.embedded, again.embeddings_reused) == (0, built.report.n_texts)
    assert not again.trained and not again.predicted
    assert again.ensemble_id == built.report.ensemble_id
    assert (built.report.differences, again.differences) == (built.report.n_pairs, 0)  # D reused
    assert events == []  # no stage even started
    assert store.stats.as_dict() == before  # not one row written
    assert elapsed < REBUILD_SECONDS
    np.testing.assert_array_equal(store.get_head_predictions(again.ensemble_id, built.pool), Z0)
    assert ensure_embeddings(store, built.pool, minilm) == (0, built.report.n_texts)


def test_other_ensemble_settings_retrain_but_reuse_embeddings(built, minilm):
    before = built.store.stats.as_dict()
    other = build_pool(built.store, built.pool, small_config(seed=1), backbone=minilm)
    assert other.trained and other.predicted
    assert other.embedded == 0 and other.embeddings_reused == built.report.n_texts
    assert other.ensemble_id != built.report.ensemble_id
    assert built.store.stats.embeddings_added == before["embeddings_added"]


def test_adding_pairs_embeds_only_their_new_texts(built, minilm, demo_rows, prompt_ids, subset_file):
    store = built.store
    base = unlabelled_pairs(rows_of(demo_rows, prompt_ids[:TRAIN_PROMPTS]))
    # A second pool over the same texts embeds nothing: embeddings are shared by text.
    pool = store.add_pool("growing", read_preferences(subset_file))
    first = build_pool(store, pool, small_config(), backbone=minilm)
    assert (first.embedded, first.trained) == (0, True)
    Z0 = store.get_head_predictions(first.ensemble_id, pool)  # noqa: N806

    # 10 new pairs: 7 of a question the pool has not seen (new texts), and 3 old
    # pairs shown the other way round under new ids (texts already embedded).
    fresh = unlabelled_pairs(rows_of(demo_rows, [prompt_ids[TRAIN_PROMPTS]])).head(7)
    swapped = base.head(3).rename(columns={"response_a": "response_b", "response_b": "response_a"})
    swapped["pair_id"] = "swapped:" + swapped["pair_id"]
    new_pairs = pd.concat([fresh, swapped], ignore_index=True)
    expected_new = len(hashes_of(new_pairs) - hashes_of(base))
    assert 0 < expected_new < len(hashes_of(new_pairs))

    before = store.stats.embeddings_added
    assert store.add_pairs(pool, new_pairs) == 10
    grown = build_pool(store, pool, small_config(), backbone=minilm)
    assert grown.n_pairs == first.n_pairs + 10
    assert grown.embedded == expected_new
    assert grown.embeddings_reused == first.n_texts
    assert store.stats.embeddings_added - before == expected_new
    # unlabelled pairs leave the training rows as they were: same ensemble, Z extended
    assert not grown.trained and grown.predicted and grown.ensemble_id == first.ensemble_id
    Z1 = store.get_head_predictions(grown.ensemble_id, pool)  # noqa: N806
    assert Z1.shape == (first.n_pairs + 10, SMALL["n_heads"])
    np.testing.assert_allclose(Z1[: first.n_pairs], Z0, atol=1e-5)
    # a pair shown the other way round has the opposite margin under every head
    rows = store.pool_pairs(pool).set_index("pair_id")["row_index"]
    orig = rows[base["pair_id"].head(3)].to_numpy()
    flip = rows[swapped["pair_id"]].to_numpy()
    np.testing.assert_allclose(Z1[flip], -Z1[orig], atol=1e-5)

    # new training labels change what the ensemble learns from: retrain, embed nothing
    labelled = swapped.assign(label="b", group="crowd", annotator="newcomer")
    store.add_pairs(pool, labelled)
    relabelled = build_pool(store, pool, small_config(), backbone=minilm)
    assert relabelled.trained and relabelled.embedded == 0
    assert relabelled.n_train_rows == first.n_train_rows + 3



def test_predict_pool_scores_a_second_pool_with_the_trained_ensemble(
    built, minilm, demo_rows, prompt_ids
):
    store, ensemble_id = built.store, built.report.ensemble_id
    train_pairs = store.pool_pairs(built.pool)
    train_Z = store.get_head_predictions(ensemble_id, built.pool)  # noqa: N806
    # 5 training pairs in reverse order, then the 15 pairs of a question never trained on
    copied = train_pairs.iloc[[9, 7, 5, 3, 1]][["pair_id", "prompt", "response_a", "response_b"]]
    unseen = unlabelled_pairs(rows_of(demo_rows, [prompt_ids[TRAIN_PROMPTS + 1]]))
    other = store.add_pool("other", pd.concat([copied, unseen], ignore_index=True))
    new_texts = len(hashes_of(unseen))
    assert new_texts == TEXTS_PER_PROMPT

    before = store.stats.as_dict()
    Z = predict_pool(store, ensemble_id, other, minilm)  # noqa: N806
    assert Z.shape == (5 + PAIRS_PER_PROMPT, SMALL["n_heads"]) and np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:5], train_Z[[9, 7, 5, 3, 1]], atol=1e-5)
    assert store.stats.embeddings_added - before["embeddings_added"] == new_texts
    np.testing.assert_array_equal(store.get_head_predictions(ensemble_id, other), Z)

    # cached: the second call computes and writes nothing
    after = store.stats.as_dict()
    np.testing.assert_array_equal(predict_pool(store, ensemble_id, other, minilm), Z)
    assert store.stats.as_dict() == after


def test_embedding_differences_are_stored_and_grow_with_the_pool(built, minilm, monkeypatch):
    from hyre_engine import pipeline
    from hyre_engine.pipeline import ensure_differences, pair_embeddings, pool_differences

    monkeypatch.setattr(pipeline, "DIFFERENCES_CHUNK", 7)  # the growing pool's rows in several chunks

    store = built.store
    pairs = store.pool_pairs(built.pool, with_meta=False)
    xa, xb = pair_embeddings(store, minilm.id, pairs)
    D = store.get_pair_differences(minilm.id, built.pool)  # noqa: N806
    assert D.dtype == np.float32 and D.shape == (len(pairs), minilm.dim)
    np.testing.assert_array_equal(D, (xa - xb).astype(np.float32))
    # a pool that grows computes the new rows only, and the old rows stay as they were
    grown = store.add_pool("grows", pairs.iloc[:20][["pair_id", "prompt", "response_a", "response_b"]])
    assert ensure_differences(store, grown, minilm.id) == (20, 0)
    store.add_pairs(grown, pairs.iloc[20:30][["pair_id", "prompt", "response_a", "response_b"]])
    before = store.stats.difference_rows_added
    np.testing.assert_array_equal(pool_differences(store, grown, minilm.id), D[:30])
    assert store.stats.difference_rows_added - before == 10
    assert ensure_differences(store, grown, minilm.id) == (0, 30)
    with pytest.raises(ValueError, match="cannot append at row 3"):
        store.append_pair_differences(minilm.id, grown, D[:1], start=3)
    store.delete_pool(grown)
    assert store.get_pair_differences(minilm.id, grown) is None


def test_predict_pool_refuses_another_backbone(built, minilm):
    other = dataclasses.replace(minilm, template="Question: {prompt}\nAnswer: {response}")
    assert other.id != minilm.id
    before = built.store.stats.as_dict()
    with pytest.raises(ValueError, match="trained on backbone"):
        predict_pool(built.store, built.report.ensemble_id, built.pool, other)
    assert built.store.stats.as_dict() == before


def test_training_groups_without_labels_are_refused(built, minilm):
    with pytest.raises(ValueError, match="no labelled rows"):
        build_pool(built.store, built.pool, small_config(train_groups=["nobody"]), backbone=minilm)


@pytest.mark.slow
def test_ensure_demo_on_a_subset_builds_once_then_reuses_everything(
    tmp_path, subset_file, minilm
):
    with Store(tmp_path / "demo.duckdb") as store:
        first = ensure_demo(store, config=small_config(), backbone=minilm, pairs_path=subset_file)
        n_texts = TRAIN_PROMPTS * TEXTS_PER_PROMPT
        assert (first.embedded, first.embeddings_reused) == (n_texts, 0)
        assert first.trained and first.predicted
        assert first.n_pairs == TRAIN_PROMPTS * PAIRS_PER_PROMPT
        assert list(store.list_pools()["name"]) == [DEMO_POOL_NAME]

        before = store.stats.as_dict()
        again = ensure_demo(store, config=small_config(), backbone=minilm, pairs_path=subset_file)
        assert (again.embedded, again.embeddings_reused) == (0, n_texts)
        assert not again.trained and not again.predicted
        assert (again.pool_id, again.ensemble_id) == (first.pool_id, first.ensemble_id)
        assert store.stats.as_dict() == before  # not even the pool was imported again


def test_build_config_from_settings_inverts_ensemble_settings():
    for config in (BuildConfig(), BuildConfig(kind="epinet", n_heads=7, hidden=9, calibrate=False,
                                              annotator_fraction=None, seed=3),
                   BuildConfig(calibration_betas=(2.0, 4.0), calibration_n=(3,), calibration_seeds=2)):
        settings = config.ensemble_settings()
        again = BuildConfig.from_settings(settings, backbone=config.backbone,
                                          train_groups=config.train_groups)
        assert again == config
        assert again.reproduces(settings)
    other = BuildConfig.from_settings({**BuildConfig().ensemble_settings(), "future_key": 1},
                                      train_groups=["crowd"])
    assert other.train_groups == ["crowd"] and not other.reproduces({"kind": "shared"})


def test_build_stages_are_the_keys_a_build_reports():
    from hyre_engine.evaluate import EVALUATE_STAGES
    from hyre_engine.pipeline import BUILD_STAGES

    assert BUILD_STAGES == ("embed", "calibrate", "finetune", "train", "predict")
    assert EVALUATE_STAGES[: len(BUILD_STAGES)] == BUILD_STAGES and EVALUATE_STAGES[-1] == "evaluate"


def test_same_file_under_two_names_gets_two_ensembles_and_deletes_stay_apart(subset_file, minilm, tmp_path):
    """Regression: two pools of one file trained bit-identical weights under one
    ensemble_id, the second build took the ensemble over, and deleting the second
    pool deleted the first pool's sessions and predictions."""
    with Store(tmp_path / "two.duckdb") as store:
        frame = read_preferences(subset_file)
        first, second = (store.add_pool(n, frame, source=str(subset_file)) for n in ("one", "two"))
        r1 = build_pool(store, first, small_config(calibrate=False), backbone=minilm)
        r2 = build_pool(store, second, small_config(calibrate=False), backbone=minilm)
        assert r1.ensemble_id != r2.ensemble_id
        assert store.get_ensemble(r1.ensemble_id).pool_id == first
        assert store.get_ensemble(r2.ensemble_id).pool_id == second
        pairs = store.pool_pairs(first, with_meta=False)
        session = store.get_or_create_session(user="ann", pool_id=first, ensemble_id=r1.ensemble_id)
        store.add_session_label(session, row_index=0, pair_id=pairs["pair_id"][0], label="a")
        Z1 = store.get_head_predictions(r1.ensemble_id, first)  # noqa: N806
        store.delete_pool(second)
        np.testing.assert_array_equal(store.get_head_predictions(r1.ensemble_id, first), Z1)
        assert len(store.session_labels(session)) == 1
        assert set(store.list_ensembles()["ensemble_id"]) == {r1.ensemble_id}
        # the store itself refuses to re-point an ensemble to another pool
        third = store.add_pool("three", frame, source=str(subset_file))
        record = store.get_ensemble(r1.ensemble_id)
        with pytest.raises(ValueError, match="belongs to pool"):
            store.put_ensemble(ensemble_id=r1.ensemble_id, pool_id=third, backbone_id=record.backbone_id,
                               config=record.config, weights=record.weights,
                               train_fingerprint=record.train_fingerprint)


@pytest.mark.slow
def test_a_build_of_many_texts_embeds_on_onnx_int8_and_a_few_on_torch(tmp_path, subset_file, minilm, monkeypatch):
    # backbone.auto_backend: a build with no backbone given embeds with ONNX Runtime int8 once
    # the pool holds HYRE_ONNX_AUTO_MIN_TEXTS texts (18 here), with torch below that.
    monkeypatch.setenv("HYRE_CACHE_DIR", str(tmp_path / "cache"))
    store = Store(tmp_path / "auto.duckdb")
    pool = store.add_pool("subset", read_preferences(subset_file), source=str(subset_file))
    n_texts = store.pool_text_count(pool)
    monkeypatch.setenv("HYRE_ONNX_AUTO_MIN_TEXTS", str(n_texts + 1))
    few = build_pool(store, pool, small_config())
    assert few.backbone_id == minilm.id
    monkeypatch.setenv("HYRE_ONNX_AUTO_MIN_TEXTS", str(n_texts))
    many = build_pool(store, pool, small_config())
    assert many.backbone_id == load_backbone(backend="onnx-int8").id != minilm.id
    assert many.embedded == n_texts and many.embeddings_reused == 0  # its own vectors, never torch's under another name
    store.close()
