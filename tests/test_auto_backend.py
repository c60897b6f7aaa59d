"""backbone.auto_backend: many texts with the embedded MiniLM on a CPU go to ONNX Runtime int8."""

from __future__ import annotations

import pytest

from hyre_engine.backbone import (
    DEFAULT_BACKBONE,
    ONNX_AUTO_BACKEND,
    ONNX_AUTO_MIN_TEXTS,
    auto_backend,
    backend_of_id,
    onnx_auto_min_texts,
)


def test_the_rule_takes_onnx_for_many_texts_of_the_embedded_model_on_a_cpu(monkeypatch):
    monkeypatch.delenv("HYRE_ONNX_AUTO_MIN_TEXTS", raising=False)
    assert auto_backend(ONNX_AUTO_MIN_TEXTS, device="cpu") == ONNX_AUTO_BACKEND
    assert auto_backend(ONNX_AUTO_MIN_TEXTS, DEFAULT_BACKBONE, device="cpu") == ONNX_AUTO_BACKEND
    assert auto_backend(ONNX_AUTO_MIN_TEXTS - 1, device="cpu") == "auto"  # the export would not pay off
    # a user's own model folder stays on load_backbone's own choice (the export is for MiniLM)
    assert auto_backend(10**6, "/models/my-reward-model", device="cpu") == "auto"


def test_the_threshold_comes_from_the_environment_and_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv("HYRE_ONNX_AUTO_MIN_TEXTS", "5")
    assert onnx_auto_min_texts() == 5 and auto_backend(5, device="cpu") == ONNX_AUTO_BACKEND
    monkeypatch.setenv("HYRE_ONNX_AUTO_MIN_TEXTS", "0")
    assert auto_backend(10**6, device="cpu") == "auto"
    for bad in ("-1", "many", "2.5"):
        monkeypatch.setenv("HYRE_ONNX_AUTO_MIN_TEXTS", bad)
        with pytest.raises(ValueError, match="HYRE_ONNX_AUTO_MIN_TEXTS"):
            auto_backend(10, device="cpu")


def test_the_backend_is_read_back_from_an_id():
    base = "all-MiniLM-L6-v2@abc/max256/tpl-1234/model"
    assert backend_of_id(base) == "torch"
    assert backend_of_id(base + "/onnx-int8") == "onnx-int8"  # export version 1
    assert backend_of_id(base + "/onnx-int8-v2") == "onnx-int8"
    assert backend_of_id(base + "/onnx-v2+lora-1f2e") == "onnx"
