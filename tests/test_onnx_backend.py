"""ONNX backend: local export of the embedded MiniLM, its cache, and vectors close to torch's."""

from __future__ import annotations

import numpy as np
import pytest

from hyre_engine.backbone import load_backbone
from hyre_engine.onnx_backend import ensure_export, export_dir, weights_hash

PROMPTS = ["Why is the sky blue?", "", "How do I boil an egg? " * 40, "Explain recursion."]
RESPONSES = [
    "Sunlight scatters off air molecules, and blue scatters most.",
    "Yes.",
    "Put it in boiling water for nine minutes, then cool it in cold water.",
    "A function that calls itself on a smaller input until a base case. " * 30,
]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def torch_vectors():
    backbone = load_backbone(device="cpu", backend="torch")
    return backbone, backbone.embed(PROMPTS, RESPONSES)


@pytest.mark.slow
def test_float32_export_matches_torch_across_batch_and_padding(cache, torch_vectors):
    reference_backbone, reference = torch_vectors
    onnx = load_backbone(device="cpu", backend="onnx", cache_dir=cache, batch_size=3)
    vectors = onnx.embed(PROMPTS, RESPONSES)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    # float32 both ways, same graph: only summation order differs
    assert cosine(vectors, reference).min() > 0.9999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # the Normalize module is exported
    one = onnx.embed(PROMPTS[:1], RESPONSES[:1])  # a batch of one, no padding
    assert np.allclose(one, vectors[:1], atol=1e-5)
    # same texts the model sees (the prompt is trimmed by the same tokenizer)
    assert onnx.format(PROMPTS, RESPONSES) == reference_backbone.format(PROMPTS, RESPONSES)


@pytest.mark.slow
def test_int8_is_close_and_backends_have_their_own_cache_key(cache, torch_vectors):
    reference_backbone, reference = torch_vectors
    int8 = load_backbone(device="cpu", backend="onnx-int8", cache_dir=cache)
    # int8 weights approximate: measured min 0.969 here (the two-word "Yes." text is the worst)
    assert cosine(int8.embed(PROMPTS, RESPONSES), reference).min() > 0.95
    fp32 = load_backbone(device="cpu", backend="onnx", cache_dir=cache)
    ids = {reference_backbone.id, fp32.id, int8.id}
    assert len(ids) == 3  # a vector of one backend is never served for another
    # the export recipe's version is in the id (from 2 on): an old export's vectors are never reused
    assert int8.id.endswith("/onnx-int8-v2") and fp32.id.endswith("/onnx-v2")


@pytest.mark.slow
def test_export_is_cached_and_leaves_no_temporary_folder(cache):
    from hyre_engine.backbone import default_model_path

    first = ensure_export(default_model_path(), "onnx", cache_dir=cache)
    again = ensure_export(default_model_path(), "onnx", cache_dir=cache)
    assert first == again and (first / "model.onnx").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert "site-packages" not in str(first)


def test_weights_hash_follows_the_weight_bytes(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "config.json").write_text("{}")
    before = weights_hash(tmp_path)
    (tmp_path / "config.json").write_text('{"changed": 1}')
    assert weights_hash(tmp_path) == before  # only weights key the export
    (tmp_path / "model.safetensors").write_bytes(b"\1" + b"\0" * 63)  # same size, other bytes
    assert weights_hash(tmp_path) != before
    assert export_dir(tmp_path, "onnx", tmp_path / "c").parent == tmp_path / "c"


def test_bad_backend_and_variant_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        load_backbone(device="cpu", backend="tensorrt")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown ONNX variant 'onnx-fp16'"):
        export_dir(tmp_path, "onnx-fp16")
    with pytest.raises(ValueError, match="no weight files"):
        weights_hash(tmp_path / "nowhere")


@pytest.mark.slow
def test_export_traces_eager_attention_without_the_sdpa_masking_ops(cache):
    # The SDPA trace adds Where / IsNaN masking per layer (slower on onnxruntime); the
    # eager trace is matmul, softmax, matmul: one Softmax per layer and no IsNaN.
    import onnx

    from hyre_engine.backbone import default_model_path

    folder = ensure_export(default_model_path(), "onnx", cache_dir=cache)
    ops = [node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node]
    assert "IsNaN" not in ops
    assert ops.count("Softmax") == 6  # MiniLM-L6: one attention per layer


@pytest.mark.slow
def test_scoring_loads_the_backend_that_embedded_the_ensemble(cache, monkeypatch, tmp_path):
    # An ensemble built with --embedding-backend onnx-int8 scores new texts (best-of-n) with
    # the same backend; it used to load torch and refuse the ensemble as another backbone's.
    import shutil

    from hyre_engine.backbone import backend_of_id, default_model_path
    from hyre_engine.profiles import load_scoring_backbone

    int8 = load_backbone(device="cpu", backend="onnx-int8", cache_dir=cache)
    built = export_dir(default_model_path(), "onnx-int8", cache)
    shutil.copytree(built, tmp_path / "onnx" / built.name)  # the default cache, already exported
    monkeypatch.setenv("HYRE_CACHE_DIR", str(tmp_path))
    scoring = load_scoring_backbone(int8.id)
    assert scoring.id == int8.id and scoring.backend == "onnx-int8"
    assert np.array_equal(scoring.embed(PROMPTS, RESPONSES), int8.embed(PROMPTS, RESPONSES))
    assert backend_of_id(int8.id) == "onnx-int8"
    assert backend_of_id(load_backbone(device="cpu", backend="onnx", cache_dir=cache).id) == "onnx"
    assert backend_of_id(load_backbone(device="cpu", backend="torch").id) == "torch"
