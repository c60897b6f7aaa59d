"""hyre_engine.experiments.uci."""

import gzip

import numpy as np
import pytest
import torch

from hyre_engine import experiments
from hyre_engine.experiments import uci


def test_ood_split_holds_out_both_tails_by_mean_standardised_feature():
    rng = np.random.default_rng(0)
    # column 1 has a much larger scale: without standardising it would decide the order alone
    X = np.column_stack([rng.normal(size=200), 1000.0 * rng.normal(size=200), rng.normal(size=200)])
    tr, va, ood = uci.ood_split(X, seed=3)
    assert len(ood) == 20  # 5% at each end
    assert len(va) == 36 and len(tr) == 144  # 20% of the middle 180 for validation
    assert set(tr).isdisjoint(va) and set(tr).isdisjoint(ood) and set(va).isdisjoint(ood)
    assert sorted(np.concatenate([tr, va, ood]).tolist()) == list(range(200))
    score = ((X - X.mean(0)) / X.std(0)).mean(axis=1)
    ranks = np.argsort(np.argsort(score))
    assert sorted(ranks[ood].tolist()) == list(range(10)) + list(range(190, 200))
    # the middle split is random but seeded
    tr2, va2, _ = uci.ood_split(X, seed=3)
    tr3, _, _ = uci.ood_split(X, seed=4)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert not np.array_equal(tr, tr3)


def test_ood_split_ignores_constant_features_and_rejects_bad_input():
    X = np.column_stack([np.arange(40.0), np.full(40, 7.0)])
    tr, va, ood = uci.ood_split(X, val_fraction=0.0)
    assert ood.tolist() == [0, 1, 38, 39] and len(va) == 0 and len(tr) == 36
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        uci.ood_split(np.arange(10.0))
    with pytest.raises(ValueError, match="tail"):
        uci.ood_split(X, tail=0.6)


def test_active_hyre_regression_finds_the_true_head():
    rng = np.random.default_rng(0)
    y = rng.normal(size=60)
    Z = y[:, None] + rng.normal(scale=1.0, size=(60, 10))
    Z[:, 4] = y  # one head is exactly right
    var0 = Z.var(axis=1)
    chosen, w = uci.active_hyre_regression(Z, y, n_labels=12, beta=1.0)
    assert chosen[0] == int(np.argmax(var0))  # first query: highest variance under uniform w
    assert len(set(chosen.tolist())) == 12
    assert np.argmax(w) == 4 and w[4] > 0.99
    with pytest.raises(ValueError, match="n_labels"):
        uci.active_hyre_regression(Z, y, n_labels=61)


def test_dropout_heads_are_fixed_functions():
    torch.manual_seed(0)
    model = uci.DropoutMLP(3, hidden=8, n_heads=5, rate=0.5, seed=0)
    x = torch.randn(7, 3)
    h1, h2 = model.heads(x), model.heads(x)
    assert h1.shape == (7, 5) and torch.equal(h1, h2)
    assert h1.std(dim=1).min() > 0  # different masks give different functions
    # a head on one row equals the same head on that row inside a batch
    assert torch.allclose(model.heads(x[2:3])[0], h1[2])
    no_drop = uci.DropoutMLP(3, hidden=8, n_heads=4, rate=0.0, seed=0)
    out = no_drop.heads(x)
    assert torch.allclose(out, no_drop(x)[:, None].expand(-1, 4))
    with pytest.raises(ValueError, match="rate"):
        uci.DropoutMLP(3, rate=1.0)


def _write_fake_uci(root, name, X, y):
    folder = root / name
    folder.mkdir(parents=True)
    data = np.column_stack([X, y])
    with gzip.open(folder / "data.txt.gz", "wt") as fh:
        np.savetxt(fh, data)
    (folder / "index_features.txt").write_text("\n".join(str(i) for i in range(X.shape[1])) + "\n")
    (folder / "index_target.txt").write_text(f"{X.shape[1]}\n")


def test_run_uci_on_a_fake_data_folder(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 3))
    y = 100.0 + 10.0 * (X @ np.array([1.0, -0.5, 0.3])) + rng.normal(size=160)
    _write_fake_uci(tmp_path, "energy", X, y)
    loaded_X, loaded_y = uci.load_uci(tmp_path, "energy")
    assert np.allclose(loaded_X, X) and np.allclose(loaded_y, y)
    result = uci.run_uci(tmp_path, seeds=1, quick=True, datasets=("energy",))
    cells = result["rmse"]["energy"]
    assert set(cells) == set(uci.UCI_MODELS)
    for cell in cells.values():
        assert set(cell) == {"uniform", "hyre"}
        # original units: a target sd of ~11, so a trained model's error is far below 100
        assert 0 < cell["uniform"] < 100 and 0 < cell["hyre"] < 100
    assert result["rows"]["energy"] == {"train": 115, "val": 29, "ood": 16}
    assert "energy" in experiments.format_table(result)
    with pytest.raises(FileNotFoundError, match="kin8nm"):
        uci.load_uci(tmp_path, "kin8nm")
    with pytest.raises(ValueError, match="valid"):
        uci.load_uci(tmp_path, "boston")


def test_uci_folder_comes_from_the_flag_or_the_environment(tmp_path, monkeypatch):
    from hyre_engine.experiments.common import UCI_DIR_ENV_VAR, uci_dir

    monkeypatch.delenv(UCI_DIR_ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=UCI_DIR_ENV_VAR):
        uci_dir(None)
    monkeypatch.setenv(UCI_DIR_ENV_VAR, str(tmp_path))
    assert uci_dir(None) == tmp_path
    assert uci_dir(tmp_path / "other") == tmp_path / "other"


def test_no_experiment_names_a_folder_outside_the_repository():
    from pathlib import Path

    folder = Path(uci.__file__).parent
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert "shared/data" not in text and "parents[" not in text, path
