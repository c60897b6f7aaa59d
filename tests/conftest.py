import os

# (importing hyre_engine sets the model-hub offline flags)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The tests train tiny models, which gain nothing from threads; on a shared,
    # oversubscribed CPU torch's spinning worker threads make them ~10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- small ensembles and data (tests/test_ensemble.py, tests/test_training.py) -------------


@pytest.fixture
def tiny():
    """A small EnsembleConfig of ``kind`` (5 inputs, 8 heads of 16 units), overridable by keyword."""
    from hyre_engine import ensemble as ens

    def make(kind="shared", **kw):
        return ens.EnsembleConfig(**{**dict(kind=kind, input_dim=5, n_heads=8, hidden=16, prior_scale=1.0,
                                            index_dim=4, seed=0), **kw})

    return make


@pytest.fixture
def preference_data():
    """(xa, xb, y): n seeded pairs in d dimensions, A preferred where a random linear reward says so."""
    import numpy as np

    def make(n=64, d=5, seed=0):
        rng = np.random.default_rng(seed)
        xa = rng.normal(size=(n, d)).astype(np.float32)
        xb = rng.normal(size=(n, d)).astype(np.float32)
        y = ((xa - xb) @ rng.normal(size=d) > 0).astype(np.float32)
        return xa, xb, y

    return make


@pytest.fixture
def head_accuracy():
    """Per head, the share of rows whose logit sign matches y: Z (n, K), y (n,) -> (K,)."""
    return lambda Z, y: ((Z > 0) == (y[:, None] > 0.5)).mean(axis=0)


@pytest.fixture
def design_csv():
    """``make(n_pairs=12, groups=("g1", "g2"))``: a DESIGN-format CSV (bytes), each pair judged
    once per group, g1 preferring A and g2 B."""
    import csv
    import io

    def make(n_pairs: int = 12, groups: tuple[str, ...] = ("g1", "g2")) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["prompt", "response_a", "response_b", "label", "group"])
        for i in range(n_pairs):
            for j, group in enumerate(groups):
                writer.writerow([f"Question {i}?", f"A short answer {i}.", f"A long, detailed answer {i}.",
                                 "ab"[j % 2], group])
        return out.getvalue().encode()

    return make


# -- a tiny local BERT (tests/test_joint_training.py, tests/app/test_data_finetune.py) -----


def save_tiny_bert(folder, words: list[str]):
    """A randomly initialised 2-layer BERT (hidden 32) whose vocabulary is ``words`` (plus BERT's
    special tokens), saved in ``folder``: nothing is downloaded. Returns the folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(words)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # ``vocab=``: transformers 5 ignores ``vocab_file=`` here and builds an empty vocabulary,
    # which makes every word [UNK] and every text of the same length the same text.
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=32)
    ids = tokenizer.convert_tokens_to_ids(list(words))
    if tokenizer.unk_token_id in ids:
        raise RuntimeError(f"the tiny tokenizer does not know {words[ids.index(tokenizer.unk_token_id)]!r}")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert():
    """`save_tiny_bert`, for module fixtures that build their own tiny model."""
    return save_tiny_bert
