"""The Data page fine-tunes the backbone with the heads: a checkbox, its settings, a progress bar."""

from __future__ import annotations

import pytest

from hyre_engine import auth
from hyre_engine.store import Store

WORDS = ["question", "a", "short", "long", "detailed", "answer", "the", "is", "good", "bad"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_bert):
    """A randomly initialised 2-layer BERT (hidden 32) saved locally: nothing is downloaded."""
    words = WORDS + [str(i) for i in range(10)] + ["?", ".", ","]
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert-app"), words)


@pytest.fixture
def tiny_pool(app_db, open_page, upload_pool, tiny_model_dir, monkeypatch):
    """The Data page with a 12-pair pool "tiny" imported, calibration off and g1 training,
    the tiny model's folder among the allowed model folders: (the page, its database path, the pool id)."""
    monkeypatch.setenv(auth.MODEL_DIRS_ENV, str(tiny_model_dir.parent))
    path, _ = app_db
    at = open_page("pages/data.py")
    pool_id = upload_pool(at, path, 12)
    at.checkbox(key="data_calibrate").uncheck()
    at.multiselect(key=f"data_train_{pool_id}").set_value(["g1"])
    return at, path, pool_id


@pytest.mark.slow
def test_build_with_fine_tuning_reports_its_stages_and_stores_the_new_backbone(
        tiny_pool, tiny_model_dir, finish_builds):
    at, path, pool_id = tiny_pool
    at.radio(key="data_backbone").set_value("folder").run()
    at.text_input(key="data_backbone_path").set_value(str(tiny_model_dir))
    at.number_input(key="data_heads").set_value(4)
    at.number_input(key="data_hidden").set_value(8)
    at.checkbox(key="data_finetune").check().run()
    assert not at.exception, at.exception
    at.selectbox(key="data_ft_mode").set_value("full").run()
    at.number_input(key="data_ft_epochs").set_value(1)
    at.number_input(key="data_ft_blr_full").set_value(1e-3)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    [job] = finish_builds(path)
    assert job.stages == ("load", "embed", "finetune", "train", "predict") and job.fraction == 1.0
    at.run()
    assert [e.value for e in at.error] == []
    assert any("Built: ensemble" in s.value for s in at.success)
    with Store(path) as store:
        built = store.list_ensembles(pool_id)
        assert len(built) == 1 and "+ft-full-" in built["backbone_id"].iloc[0]
        assert built["config"].iloc[0]["finetune"]["epochs"] == 1


@pytest.mark.slow
def test_bad_fine_tuning_settings_are_an_error_on_the_page(tiny_pool, tiny_model_dir, finish_builds):
    at, path, pool_id = tiny_pool
    at.checkbox(key="data_finetune").check().run()
    at.selectbox(key="data_ft_mode").set_value("lora").run()
    at.radio(key="data_backbone").set_value("folder").run()
    at.text_input(key="data_backbone_path").set_value(str(tiny_model_dir)).run()
    # a window larger than the tiny model's 64 positions
    at.number_input(key="data_ft_maxlen").set_value(4096)
    at.button(key="data_build").click().run()
    assert not at.exception, at.exception
    [job] = finish_builds(path)
    assert job.status == "failed"
    at.run()
    assert any("exceeds the window" in e.value for e in at.error), [e.value for e in at.error]
    with Store(path) as store:
        assert store.list_ensembles(pool_id).empty
