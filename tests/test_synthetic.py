import gzip
import json

import numpy as np
import pytest
import torch

from hyre_engine import synthetic as syn
from hyre_engine.cli import main


def _aligned_fractions(result):
    n = result["n"]
    for method, stats in result["summary"].items():
        assert len(stats["mean"]) == len(n) == len(stats["std"]), method
        assert all(0.0 <= v <= 1.0 for v in stats["mean"]), method
        assert all(v >= 0 for v in stats["std"]), method


# ---------------------------------------------------------------- OOD split


def test_ood_split_holds_out_both_tails_by_mean_standardised_feature():
    rng = np.random.default_rng(0)
    # column 1 has a much larger scale: without standardising it would decide the order alone
    X = np.column_stack([rng.normal(size=200), 1000.0 * rng.normal(size=200), rng.normal(size=200)])
    tr, va, ood = syn.ood_split(X, seed=3)
    assert len(ood) == 20  # 5% at each end
    assert len(va) == 36 and len(tr) == 144  # 20% of the middle 180 for validation
    assert set(tr).isdisjoint(va) and set(tr).isdisjoint(ood) and set(va).isdisjoint(ood)
    assert sorted(np.concatenate([tr, va, ood]).tolist()) == list(range(200))
    score = ((X - X.mean(0)) / X.std(0)).mean(axis=1)
    ranks = np.argsort(np.argsort(score))
    assert sorted(ranks[ood].tolist()) == list(range(10)) + list(range(190, 200))
    # the middle split is random but seeded
    tr2, va2, _ = syn.ood_split(X, seed=3)
    tr3, _, _ = syn.ood_split(X, seed=4)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert not np.array_equal(tr, tr3)


def test_ood_split_ignores_constant_features_and_rejects_bad_input():
    X = np.column_stack([np.arange(40.0), np.full(40, 7.0)])
    tr, va, ood = syn.ood_split(X, val_fraction=0.0)
    assert ood.tolist() == [0, 1, 38, 39] and len(va) == 0 and len(tr) == 36
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        syn.ood_split(np.arange(10.0))
    with pytest.raises(ValueError, match="tail"):
        syn.ood_split(X, tail=0.6)


# ---------------------------------------------------------------- building blocks


def test_labeler_votes_known_answer_and_shape_check():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    w = np.array([[1.0, -2.0], [-1.0, 0.5]])
    assert syn.labeler_votes(x, w).tolist() == [[1, 0], [0, 1], [0, 0]]
    with pytest.raises(ValueError, match="share d"):
        syn.labeler_votes(x, np.ones((2, 3)))


def test_finetune_task_target_is_consistent_with_training_data():
    d = syn.finetune_task(0, n_train=100, n_pool=50, n_test=80)
    assert d["x_train"].shape == (100, 5) and d["x_test"].shape == (80, 5)
    # the target boundary labels every training point as the training data does
    assert np.array_equal((d["x_train"] @ d["w"] > 0).astype(np.float32), d["y_train"])
    assert 0 < d["y_test"].mean() < 1


def test_gp_sample_is_seeded_and_smooth():
    x = np.linspace(-1, 1, 50)
    a, b = syn.gp_sample(x, seed=1), syn.gp_sample(x, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, syn.gp_sample(x, seed=2))
    assert np.abs(np.diff(a)).max() < 0.5  # lengthscale 0.5 on a step of 0.04
    with pytest.raises(ValueError, match="1-D"):
        syn.gp_sample(np.zeros((3, 2)), seed=0)


def test_active_hyre_regression_finds_the_true_head():
    rng = np.random.default_rng(0)
    y = rng.normal(size=60)
    Z = y[:, None] + rng.normal(scale=1.0, size=(60, 10))
    Z[:, 4] = y  # one head is exactly right
    var0 = Z.var(axis=1)
    chosen, w = syn.active_hyre_regression(Z, y, n_labels=12, beta=1.0)
    assert chosen[0] == int(np.argmax(var0))  # first query: highest variance under uniform w
    assert len(set(chosen.tolist())) == 12
    assert np.argmax(w) == 4 and w[4] > 0.99
    with pytest.raises(ValueError, match="n_labels"):
        syn.active_hyre_regression(Z, y, n_labels=61)


def test_dropout_heads_are_fixed_functions():
    torch.manual_seed(0)
    model = syn.DropoutMLP(3, hidden=8, n_heads=5, rate=0.5, seed=0)
    x = torch.randn(7, 3)
    h1, h2 = model.heads(x), model.heads(x)
    assert h1.shape == (7, 5) and torch.equal(h1, h2)
    assert h1.std(dim=1).min() > 0  # different masks give different functions
    # a head on one row equals the same head on that row inside a batch
    assert torch.allclose(model.heads(x[2:3])[0], h1[2])
    no_drop = syn.DropoutMLP(3, hidden=8, n_heads=4, rate=0.0, seed=0)
    out = no_drop.heads(x)
    assert torch.allclose(out, no_drop(x)[:, None].expand(-1, 4))
    with pytest.raises(ValueError, match="rate"):
        syn.DropoutMLP(3, rate=1.0)


# ---------------------------------------------------------------- experiments (quick sizes)


@pytest.mark.slow  # the CLI imports every command module (transformers included)
def test_repro_finetune_cli_writes_the_design_json(tmp_path, capsys):
    path = tmp_path / "finetune.json"
    assert main(["repro", "finetune", "--quick", "--seeds", "1", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["n"] == list(syn.FINETUNE_QUICK.n_values)
    assert {"hyre", "finetune", "uniform"} <= set(result["summary"])
    _aligned_fractions(result)
    out = capsys.readouterr().out
    assert "hyre" in out and "finetune" in out and "n" in out


@pytest.mark.slow
def test_finetune_hyre_beats_finetuning_with_one_label_and_loses_with_many():
    # The paper's claim, on quick sizes, averaged over 3 seeds.
    result = syn.run_finetune(seeds=3, quick=True)
    hyre, tuned = result["summary"]["hyre"]["mean"], result["summary"]["finetune"]["mean"]
    assert hyre[0] > tuned[0]  # n = 1
    assert tuned[-1] > hyre[-1]  # n = 64


def test_run_labelers_quick_shape():
    result = syn.run_labelers(seeds=1, quick=True)
    assert result["prior_scale"] == [0.0, 3.0]
    assert len(result["max_agreement"]) == len(result["majority_agreement"]) == 2
    assert all(0 <= v <= 1 for v in result["max_agreement"] + result["majority_agreement"])
    assert set(result["summary"]) == {"hyre", "uniform", "single"}
    _aligned_fractions(result)
    # no labels: HyRe is the uniform ensemble
    assert result["summary"]["hyre"]["mean"][0] == result["summary"]["uniform"]["mean"][0]
    assert "prior scale" in syn.format_table(result)


def test_run_gp_quick_writes_offline_html(tmp_path):
    html = tmp_path / "gp.html"
    result = syn.run_gp(seeds=1, quick=True, html_path=html)
    n = result["n"]
    for stats in result["summary"].values():
        assert len(stats["mean"]) == len(n) and all(v >= 0 for v in stats["mean"])
    assert result["summary"]["hyre"]["mean"][0] == result["summary"]["uniform"]["mean"][0]
    ratios = result["explained_variance_ratio"]["mean"]
    assert len(ratios) == 3 and ratios == sorted(ratios, reverse=True) and sum(ratios) <= 1 + 1e-6
    text = html.read_text()
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inlined
    assert '<script src="http' not in text  # no CDN: the figure must work offline
    assert "explained variance" in syn.format_table(result)


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
    loaded_X, loaded_y = syn.load_uci(tmp_path, "energy")
    assert np.allclose(loaded_X, X) and np.allclose(loaded_y, y)
    result = syn.run_uci(tmp_path, seeds=1, quick=True, datasets=("energy",))
    cells = result["rmse"]["energy"]
    assert set(cells) == set(syn.UCI_MODELS)
    for cell in cells.values():
        assert set(cell) == {"uniform", "hyre"}
        # original units: a target sd of ~11, so a trained model's error is far below 100
        assert 0 < cell["uniform"] < 100 and 0 < cell["hyre"] < 100
    assert result["rows"]["energy"] == {"train": 115, "val": 29, "ood": 16}
    assert "energy" in syn.format_table(result)
    with pytest.raises(FileNotFoundError, match="kin8nm"):
        syn.load_uci(tmp_path, "kin8nm")
    with pytest.raises(ValueError, match="valid"):
        syn.load_uci(tmp_path, "boston")
