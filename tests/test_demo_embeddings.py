"""The demo's shipped embeddings (hyre_engine/demo_embeddings.py): what they are keyed by
matches the installed model, they are that model's vectors, a first launch with them loads
no model, and a damaged, foreign or switched-off file leaves the build to embed as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from hyre_engine import demo_embeddings, first_launch
from hyre_engine.backbone import DeferredBackbone, default_backbone_id, load_backbone
from hyre_engine.demo import DEMO_TRAIN_GROUPS, ensure_demo, import_demo_pool, needs_build
from hyre_engine.pipeline import BuildConfig
from hyre_engine.store import Store

SAMPLE = 12  # texts re-embedded with the real model (of 324)


@pytest.fixture(scope="module")
def minilm():
    return load_backbone(None)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "demo.duckdb") as s:
        yield s


def _write(path, vectors, hashes, **meta):
    metadata = {"format": demo_embeddings.FORMAT, "version": demo_embeddings.VERSION,
                "backbone_id": "m@1/max256/tpl-x/model", "text_hashes": json.dumps(hashes), **meta}
    save_file({"vectors": vectors}, str(path), metadata=metadata)
    return path


def test_the_id_read_from_the_folder_is_the_loaded_models(minilm):
    assert default_backbone_id() == minilm.id


def test_the_shipped_file_holds_the_installed_models_vectors_of_every_demo_text(store, minilm):
    backbone_id, hashes, vectors = demo_embeddings.read()
    assert backbone_id == minilm.id
    texts = store.pool_texts(import_demo_pool(store))
    assert hashes == texts["text_hash"].tolist() and vectors.shape == (len(texts), minilm.dim)
    pick = np.linspace(0, len(texts) - 1, SAMPLE).astype(int)
    fresh = minilm.embed(texts["prompt"].iloc[pick].tolist(), texts["response"].iloc[pick].tolist())
    assert np.abs(fresh - vectors[pick]).max() <= demo_embeddings.CHECK_TOLERANCE


def test_seeding_fills_only_what_is_missing_and_only_for_its_backbone(store):
    pool_id = import_demo_pool(store)
    backbone_id, hashes, vectors = demo_embeddings.read()
    assert demo_embeddings.seed(store, pool_id, "another-model@0/max128/tpl-x/model") == 0
    assert demo_embeddings.seed(store, pool_id, backbone_id) == len(hashes)
    assert np.array_equal(store.get_embeddings(backbone_id, hashes[:5]), vectors[:5])
    assert demo_embeddings.seed(store, pool_id, backbone_id) == 0  # nothing left to fill


def test_switched_off_or_absent_it_seeds_nothing(store, monkeypatch, tmp_path):
    pool_id = import_demo_pool(store)
    backbone_id = demo_embeddings.read()[0]
    assert demo_embeddings.seed(store, pool_id, backbone_id, tmp_path / "none.safetensors") == 0
    monkeypatch.setenv(demo_embeddings.ENV, "0")
    assert demo_embeddings.seed(store, pool_id, backbone_id) == 0
    assert len(store.missing_embeddings(backbone_id, store.pool_texts(pool_id)["text_hash"].tolist())) == 324


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.write_bytes(b"not a safetensors file"), "not a readable safetensors file"),
    (lambda p: _write(p, np.zeros((2, 4), np.float32), ["a" * 64, "b" * 64], format="other"), "format 'other'"),
    (lambda p: _write(p, np.zeros((3, 4), np.float32), ["a" * 64, "b" * 64]), "expected float32 (2, dim)"),
    (lambda p: _write(p, np.zeros((2, 4), np.float64), ["a" * 64, "b" * 64]), "expected float32"),
    (lambda p: _write(p, np.full((2, 4), np.nan, np.float32), ["a" * 64, "b" * 64]), "NaN"),
    (lambda p: _write(p, np.zeros((2, 4), np.float32), ["a" * 64, "a" * 64]), "repeats a hash"),
    (lambda p: _write(p, np.zeros((2, 4), np.float32), ["a" * 64, "<b>"]), "sha256 hex"),
    (lambda p: _write(p, np.zeros((2, 4), np.float32), ["a" * 64], text_hashes="[1"), "not a JSON list"),
])
def test_a_damaged_file_is_refused_naming_the_problem(tmp_path, make, problem):
    path = tmp_path / "embeddings.safetensors"
    make(path)
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        demo_embeddings.read(path)


def test_a_first_launch_with_them_never_loads_the_model(store):
    assert needs_build(store)  # a fresh store
    pool_id = import_demo_pool(store)
    assert needs_build(store)  # imported, not built (an interrupted first launch)
    model = first_launch._default_backbone(store, pool_id, None)
    assert isinstance(model, DeferredBackbone) and not model.is_loaded
    config = BuildConfig(n_heads=4, hidden=8, train_groups=DEMO_TRAIN_GROUPS, calibration_seeds=1)
    report = ensure_demo(store, config=config, backbone=model, defer_calibration=True)
    assert report.embedded == 0 and report.embeddings_reused == 324 and report.predicted
    assert not model.is_loaded
    assert not needs_build(store)


def test_a_damaged_shipped_file_leaves_the_first_launch_to_embed(store, monkeypatch, tmp_path):
    monkeypatch.setattr(demo_embeddings, "EMBEDDINGS_FILE", tmp_path / "broken.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    model = first_launch._default_backbone(store, import_demo_pool(store), None)
    assert not isinstance(model, DeferredBackbone) and model.id == default_backbone_id()


def test_a_deferred_backbone_refuses_a_model_that_is_not_the_one_it_stood_for(minilm):
    deferred = DeferredBackbone("other@0/max8/tpl-0/model", lambda: minilm)
    with pytest.raises(ValueError, match="not the 'other@0"):
        deferred.embed(["q"], ["a"])
