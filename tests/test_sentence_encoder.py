"""MeanPoolEncoder (hyre_engine/sentence_encoder.py): the embedded MiniLM run without
sentence-transformers gives SentenceTransformer's own vectors, embedded or differentiable."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hyre_engine.backbone import TEMPLATE, default_model_path, load_backbone
from hyre_engine.demo import load_responses
from hyre_engine.sentence_encoder import MeanPoolEncoder, plain_mean_pooling_folder

# Every fifth demo answer (65 of 324, long and short, lists and questions) and the edge
# cases of tokenizing: surrounding whitespace, an empty text, one far past the window.
EDGE_TEXTS = ["  padded with spaces \n", "", "word " * 600, "Ünïcödé — naïve café? 😀"]


@pytest.fixture(scope="module")
def texts():
    rows = load_responses()[::5]
    return [TEMPLATE.format(prompt=r["prompt"], response=r["text"]) for r in rows] + EDGE_TEXTS


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)


def test_the_default_minilm_runs_on_the_bare_model_with_encodes_vectors(texts, reference):
    backbone = load_backbone(device="cpu")
    assert isinstance(backbone.model, MeanPoolEncoder) and backbone.encoder is backbone.model.model
    assert backbone.max_length == reference.max_seq_length == 256 and backbone.dim == 384
    ours = backbone.model.encode(texts, batch_size=16)
    theirs = reference.encode(texts, batch_size=16, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(texts), 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    # and through the backbone's own batching (the chunks a build embeds in)
    np.testing.assert_allclose(backbone.embed_texts(texts), theirs, atol=1e-6, rtol=0)


def test_the_differentiable_path_equals_sentence_transformers_forward(reference):
    backbone = load_backbone(device="cpu")
    batch = ["What is a prime number?\n\nA number with exactly two divisors.", "Short."]
    ours = backbone.model(backbone.model.preprocess(batch))["sentence_embedding"]
    theirs = reference(reference.preprocess(batch))["sentence_embedding"]
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    ours.sum().backward()  # joint fine-tuning trains through it
    assert backbone.encoder.embeddings.word_embeddings.weight.grad is not None


def test_loading_the_default_backbone_never_imports_sentence_transformers():
    code = ("import sys; from hyre_engine.backbone import load_backbone; b = load_backbone(device='cpu'); "
            "b.embed(['Why?'], ['Because.']); print('sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _folder(tmp_path, *, modules=None, pooling=None, settings=None, st_config=None):
    """A sentence-transformers folder's JSON files (no weights: the check reads only these)."""
    source = default_model_path()
    for name, override in (("modules.json", modules), ("sentence_bert_config.json", settings),
                           ("config_sentence_transformers.json", st_config)):
        doc = json.loads((source / name).read_text())
        (tmp_path / name).write_text(json.dumps(doc if override is None else override(doc)))
    (tmp_path / "1_Pooling").mkdir()
    doc = json.loads((source / "1_Pooling/config.json").read_text())
    (tmp_path / "1_Pooling/config.json").write_text(json.dumps(doc if pooling is None else pooling(doc)))
    return tmp_path


@pytest.mark.parametrize("change", [
    dict(pooling=lambda d: {**d, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}),
    dict(pooling=lambda d: {**d, "pooling_mode_max_tokens": True}),
    dict(settings=lambda d: {**d, "do_lower_case": True}),
    dict(st_config=lambda d: {**d, "prompts": {"query": "query: "}, "default_prompt_name": "query"}),
    dict(modules=lambda d: d + [{"idx": 3, "name": "3", "path": "3_Dense",
                                 "type": "sentence_transformers.models.Dense"}]),
    dict(modules=lambda d: [{**d[0], "path": "0_Transformer"}, *d[1:]]),
], ids=["cls-pooling", "mean-and-max", "lower-case", "prompts", "dense-layer", "transformer-in-subfolder"])
def test_other_sentence_transformers_folders_keep_the_library(tmp_path, change):
    (tmp_path / "plain").mkdir()
    (tmp_path / "changed").mkdir()
    assert plain_mean_pooling_folder(_folder(tmp_path / "plain"))
    assert not plain_mean_pooling_folder(_folder(tmp_path / "changed", **change))


def test_a_folder_without_normalize_is_plain_and_its_vectors_unnormalised(tmp_path):
    assert plain_mean_pooling_folder(_folder(tmp_path, modules=lambda d: d[:2]))
    assert not plain_mean_pooling_folder(tmp_path / "missing")
    encoder = load_backbone(device="cpu").model
    raw = MeanPoolEncoder(encoder.model, encoder.tokenizer, max_seq_length=256, normalize=False)
    texts = ["A short answer.", "A longer answer, with a list:\n- one\n- two"]
    unnormalised = raw.encode(texts)
    norms = np.linalg.norm(unnormalised, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(unnormalised / norms[:, None], encoder.encode(texts), atol=1e-6)
