"""hyre_engine.experiments.finetune."""

import json

import numpy as np
import pytest

from hyre_engine.cli import main
from hyre_engine.experiments import finetune


def test_finetune_task_target_is_consistent_with_training_data():
    d = finetune.finetune_task(0, n_train=100, n_pool=50, n_test=80)
    assert d["x_train"].shape == (100, 5) and d["x_test"].shape == (80, 5)
    # the target boundary labels every training point as the training data does
    assert np.array_equal((d["x_train"] @ d["w"] > 0).astype(np.float32), d["y_train"])
    assert 0 < d["y_test"].mean() < 1


@pytest.mark.slow  # trains a small ensemble through the command line
def test_repro_finetune_cli_writes_the_design_json(tmp_path, capsys, aligned_fractions):
    path = tmp_path / "finetune.json"
    assert main(["repro", "finetune", "--quick", "--seeds", "1", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["n"] == list(finetune.FINETUNE_QUICK.n_values)
    assert {"hyre", "finetune", "uniform"} <= set(result["summary"])
    aligned_fractions(result)
    out = capsys.readouterr().out
    assert "hyre" in out and "finetune" in out and "n" in out


@pytest.mark.slow
def test_finetune_hyre_beats_finetuning_with_one_label_and_loses_with_many():
    # The paper's claim, on quick sizes, averaged over 3 seeds.
    result = finetune.run_finetune(seeds=3, quick=True)
    hyre, tuned = result["summary"]["hyre"]["mean"], result["summary"]["finetune"]["mean"]
    assert hyre[0] > tuned[0]  # n = 1
    assert tuned[-1] > hyre[-1]  # n = 64
