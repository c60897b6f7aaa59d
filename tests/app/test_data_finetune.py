"""The Data page fine-tunes the backbone with the heads: a checkbox, its settings, a progress bar."""

from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_data_page import APP, TIMEOUT, _pools, design_csv

from hyre_engine.store import Store

WORDS = ["question", "a", "short", "long", "detailed", "answer", "the", "is", "good", "bad"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden 32) saved locally: nothing is downloaded."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert-app")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [str(i) for i in range(10)] + ["?", ".", ","]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=32)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_build_with_fine_tuning_shows_progress_and_stores_the_new_backbone(app_db, tiny_model_dir):
    path, _ = app_db
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/data.py").run()
    at.file_uploader(key="data_upload").set_value(("tiny.csv", design_csv(n_pairs=12), "text/csv"))
    at.text_input(key="data_pool_name").set_value("tiny").run()
    at.button(key="data_import").click().run()
    pool_id = {p[1]: p[0] for p in _pools(path)}["tiny"]
    at.radio(key="data_backbone").set_value("folder").run()
    at.text_input(key="data_backbone_path").set_value(str(tiny_model_dir))
    at.number_input(key="data_heads").set_value(4)
    at.number_input(key="data_hidden").set_value(8)
    at.checkbox(key="data_calibrate").uncheck()
    at.multiselect(key=f"data_train_{pool_id}").set_value(["g1"])
    at.checkbox(key="data_finetune").check().run()
    assert not at.exception, at.exception
    at.selectbox(key="data_ft_mode").set_value("full").run()
    at.number_input(key="data_ft_epochs").set_value(1)
    at.number_input(key="data_ft_blr_full").set_value(1e-3)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    bars = at.get("progress")
    assert any("Fine-tuning the backbone" in (b.proto.text or "") for b in bars)
    assert all(b.value == 100 for b in bars)
    with Store(path) as store:
        built = store.list_ensembles(pool_id)
        assert len(built) == 1 and "+ft-full-" in built["backbone_id"].iloc[0]
        assert built["config"].iloc[0]["finetune"]["epochs"] == 1


@pytest.mark.slow
def test_bad_fine_tuning_settings_are_an_error_on_the_page(app_db, tiny_model_dir):
    path, _ = app_db
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/data.py").run()
    at.file_uploader(key="data_upload").set_value(("tiny.csv", design_csv(n_pairs=12), "text/csv"))
    at.text_input(key="data_pool_name").set_value("tiny").run()
    at.button(key="data_import").click().run()
    pool_id = {p[1]: p[0] for p in _pools(path)}["tiny"]
    at.checkbox(key="data_calibrate").uncheck()
    at.multiselect(key=f"data_train_{pool_id}").set_value(["g1"])
    at.checkbox(key="data_finetune").check().run()
    at.selectbox(key="data_ft_mode").set_value("lora").run()
    at.radio(key="data_backbone").set_value("folder").run()
    at.text_input(key="data_backbone_path").set_value(str(tiny_model_dir)).run()
    # a window larger than the tiny model's 64 positions
    at.number_input(key="data_ft_maxlen").set_value(4096)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    assert any("exceeds the window" in e.value for e in at.error), [e.value for e in at.error]
    with Store(path) as store:
        assert store.list_ensembles(pool_id).empty
