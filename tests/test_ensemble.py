import json

import numpy as np
import pytest
import torch

from hyre_engine import ensemble as ens

KINDS = ["shared", "epinet", "vanilla"]



def tiny(kind="shared", **kw):
    base = dict(kind=kind, input_dim=5, n_heads=8, hidden=16, prior_scale=1.0, index_dim=4, seed=0)
    base.update(kw)
    return ens.EnsembleConfig(**base)


def preference_data(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    xa = rng.normal(size=(n, d)).astype(np.float32)
    xb = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = ((xa - xb) @ w > 0).astype(np.float32)
    return xa, xb, y


def head_accuracy(Z, y):
    return ((Z > 0) == (y[:, None] > 0.5)).mean(axis=0)


# ---------------------------------------------------------------- config


def test_config_json_round_trip():
    cfg = tiny(mask_groups=["ann1", "ann2"], trunk_layers=2)
    text = json.dumps(cfg.to_dict())
    back = ens.EnsembleConfig.from_dict(json.loads(text))
    assert back == cfg
    assert back.mask_groups == ["ann1", "ann2"]


def test_config_rejects_unknown_kind_and_bad_values():
    with pytest.raises(ValueError, match="valid kinds.*shared.*epinet.*vanilla"):
        ens.EnsembleConfig(kind="mixture", input_dim=3)
    with pytest.raises(ValueError, match="n_heads"):
        ens.EnsembleConfig(input_dim=3, n_heads=0)
    with pytest.raises(ValueError, match="prior_scale"):
        ens.EnsembleConfig(input_dim=3, prior_scale=-1)
    with pytest.raises(ValueError, match="unknown EnsembleConfig keys.*colour"):
        ens.EnsembleConfig.from_dict({"input_dim": 3, "colour": "red"})
    with pytest.raises(ValueError, match="repeat"):
        ens.EnsembleConfig(input_dim=3, mask_groups=["a", "a"])


def test_paper_defaults():
    cfg = ens.EnsembleConfig(input_dim=384)
    assert (cfg.n_heads, cfg.hidden, cfg.index_dim) == (100, 128, 10)
    assert cfg.kind == "shared" and cfg.trunk_layers == 0 and cfg.n_layers == 1


# ---------------------------------------------------------------- building and shapes


@pytest.mark.parametrize("kind", KINDS)
def test_output_shape_and_seeded_build(kind):
    model = ens.build_ensemble(tiny(kind))
    x = torch.randn(7, 5)
    assert model(x).shape == (7, 8)
    same = ens.build_ensemble(tiny(kind))
    other = ens.build_ensemble(tiny(kind, seed=1))
    assert ens.fingerprint(model) == ens.fingerprint(same)
    assert ens.fingerprint(model) != ens.fingerprint(other)
    # heads are different functions
    assert model(x).std(dim=1).min() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_deeper_heads_and_trunk(kind):
    model = ens.build_ensemble(tiny(kind, n_layers=2, trunk_layers=2, trunk_hidden=6))
    assert model(torch.randn(3, 5)).shape == (3, 8)


def test_build_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ens.build_ensemble(tiny("epinet"))
    assert torch.equal(torch.rand(3), expected)


def test_shared_heads_match_a_loop_over_heads():
    model = ens.build_ensemble(tiny("shared", prior_scale=2.0))
    x = torch.randn(6, 5)
    out = model(x)
    h, p = model.heads, model.prior
    for k in range(8):
        learn = torch.relu(x @ h.w0[k] + h.b0[k]) @ h.w_out[k] + h.b_out[k]
        prior = torch.relu(x @ p.w0[k] + p.b0[k]) @ p.w_out[k] + p.b_out[k]
        torch.testing.assert_close(out[:, k], learn + 2.0 * prior)


def test_epinet_matches_its_formula_for_one_index():
    model = ens.build_ensemble(tiny("epinet", prior_scale=1.5))
    x = torch.randn(4, 5)
    out = model(x)
    phi = model.base(x)
    base = phi @ model.base_out_w + model.base_out_b
    for k in (0, 5):
        z = model.indices[k]
        prior = torch.relu(phi @ model.prior_w0 + model.prior_b0) @ model.prior_w1
        hidden = torch.relu(phi @ model.epi_wf + z @ model.epi_wz + model.epi_b0)
        learn = hidden @ model.epi_w1 + model.epi_b1
        torch.testing.assert_close(out[:, k], base + 1.5 * prior @ z + learn @ z)


@pytest.mark.parametrize("kind", ["shared", "epinet"])
def test_priors_are_frozen_buffers_and_unchanged_by_training(kind):
    model = ens.build_ensemble(tiny(kind))
    names = {name for name, _ in model.named_parameters()}
    buffers = dict(model.named_buffers())
    prior_names = [n for n in buffers if "prior" in n or n == "indices"]
    assert prior_names and not any("prior" in n for n in names)
    before = {n: buffers[n].clone() for n in prior_names}
    learn_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    xa, xb, y = preference_data()
    ens.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, epochs=3, device="cpu")
    after = dict(model.named_buffers())
    for n in prior_names:
        assert torch.equal(after[n], before[n]), n
    assert any(not torch.equal(p, learn_before[n]) for n, p in model.named_parameters())


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("kind", KINDS)
def test_every_head_fits_a_small_preference_task(kind):
    xa, xb, y = preference_data(n=96)
    model = ens.build_ensemble(tiny(kind))
    report = ens.fit_ensemble(
        model,
        task="preference",
        inputs=(xa, xb),
        targets=y,
        epochs=60,
        batch_size=32,
        lr=1e-2,
        device="cpu",
    )
    assert report.steps == 60 * 3 and report.device.startswith("CPU")
    assert report.final_loss < report.epoch_losses[0]
    Z = ens.predict_pairs(model, xa, xb)
    assert head_accuracy(Z, y).min() >= 0.9


def test_classification_and_regression_tasks_fit():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    yc = (X[:, 0] > 0).astype(np.float32)
    yr = (X[:, 0] - 0.5 * X[:, 1]).astype(np.float32)
    clf = ens.build_ensemble(tiny())
    ens.fit_ensemble(
        clf, task="classification", inputs=X, targets=yc, epochs=60, lr=1e-2, device="cpu"
    )
    assert head_accuracy(ens.predict(clf, X), yc).min() >= 0.95
    reg = ens.build_ensemble(tiny())
    ens.fit_ensemble(
        reg, task="regression", inputs=X, targets=yr, epochs=100, lr=1e-2, device="cpu"
    )
    rmse = np.sqrt(((ens.predict(reg, X) - yr[:, None]) ** 2).mean(axis=0))
    assert rmse.max() < 0.3 * yr.std()


def test_training_is_reproducible_on_cpu():
    xa, xb, y = preference_data()
    outs = []
    for _ in range(2):
        model = ens.build_ensemble(tiny())
        ens.fit_ensemble(
            model, task="preference", inputs=(xa, xb), targets=y, epochs=3, seed=4, device="cpu"
        )
        outs.append(ens.predict_pairs(model, xa, xb))
    np.testing.assert_array_equal(outs[0], outs[1])
    model = ens.build_ensemble(tiny())
    ens.fit_ensemble(
        model, task="preference", inputs=(xa, xb), targets=y, epochs=3, seed=5, device="cpu"
    )
    assert not np.array_equal(ens.predict_pairs(model, xa, xb), outs[0])


def test_progress_and_steps_override():
    xa, xb, y = preference_data(n=50)
    calls = []
    model = ens.build_ensemble(tiny())
    report = ens.fit_ensemble(
        model,
        task="preference",
        inputs=(xa, xb),
        targets=y,
        steps=7,
        batch_size=16,
        device="cpu",
        progress=lambda step, total, loss: calls.append((step, total, loss)),
    )
    assert report.steps == 7
    assert [c[0] for c in calls] == list(range(1, 8)) and {c[1] for c in calls} == {7}
    assert all(np.isfinite(c[2]) for c in calls)


def test_default_epochs_give_small_data_enough_steps():
    xa, xb, y = preference_data(n=10)
    model = ens.build_ensemble(tiny())
    report = ens.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, device="cpu")
    assert report.steps == ens.DEFAULT_MIN_STEPS  # one batch per epoch
    assert len(report.epoch_losses) == ens.DEFAULT_MIN_STEPS


def test_standardisation_is_fitted_once_and_kept():
    xa, xb, y = preference_data()
    model = ens.build_ensemble(tiny())
    ens.fit_ensemble(
        model,
        task="preference",
        inputs=(xa * 10 + 3, xb * 10 + 3),
        targets=y,
        epochs=1,
        device="cpu",
    )
    mean = model.input_mean.clone()
    np.testing.assert_allclose(
        mean.numpy(), np.concatenate([xa, xb]).mean(0) * 10 + 3, rtol=1e-4, atol=1e-4
    )
    ens.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, epochs=1, device="cpu")
    assert torch.equal(model.input_mean, mean)
    raw = ens.build_ensemble(tiny(standardize=False))
    ens.fit_ensemble(raw, task="preference", inputs=(xa + 3, xb), targets=y, epochs=1, device="cpu")
    assert torch.equal(raw.input_mean, torch.zeros(5))


def test_training_input_validation():
    xa, xb, y = preference_data(n=10)
    model = ens.build_ensemble(tiny())
    with pytest.raises(ValueError, match="valid tasks"):
        ens.fit_ensemble(model, task="ranking", inputs=(xa, xb), targets=y)
    with pytest.raises(ValueError, match=r"xa must have shape \(n, 5\)"):
        ens.fit_ensemble(model, task="preference", inputs=(xa[:, :3], xb), targets=y)
    with pytest.raises(ValueError, match="same shape"):
        ens.fit_ensemble(model, task="preference", inputs=(xa, xb[:4]), targets=y)
    with pytest.raises(ValueError, match=r"targets must have shape \(10,\)"):
        ens.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y[:3])
    with pytest.raises(ValueError, match="0 or 1"):
        ens.fit_ensemble(model, task="classification", inputs=xa, targets=y * 2)
    with pytest.raises(ValueError, match="no head_mask"):
        ens.fit_ensemble(
            model, task="preference", inputs=(xa, xb), targets=y, row_groups=np.zeros(10, int)
        )
    with pytest.raises(ValueError, match="pair"):
        ens.fit_ensemble(model, task="preference", inputs=xa, targets=y)


# ---------------------------------------------------------------- head x group mask


def test_make_head_mask_properties():
    mask = ens.make_head_mask(20, 7, fraction=0.3, seed=0)
    assert mask.shape == (20, 7) and mask.dtype == bool
    assert (mask.sum(axis=1) == 2).all()  # round(0.3 * 7) = 2
    assert mask.any(axis=0).all()
    np.testing.assert_array_equal(mask, ens.make_head_mask(20, 7, fraction=0.3, seed=0))
    assert not np.array_equal(mask, ens.make_head_mask(20, 7, fraction=0.3, seed=1))
    # exactly enough slots: every group is used exactly once
    tight = ens.make_head_mask(3, 6, fraction=1 / 3, seed=2)
    np.testing.assert_array_equal(tight.sum(axis=0), np.ones(6))
    # at least one group per head even for a tiny fraction
    assert (ens.make_head_mask(4, 10, fraction=0.01, seed=0).sum(axis=1) == 1).all()
    with pytest.raises(ValueError, match="fraction"):
        ens.make_head_mask(4, 3, fraction=0.0, seed=0)


def test_head_mask_is_a_saved_buffer():
    cfg = tiny(mask_groups=["a", "b", "c"])
    mask = ens.make_head_mask(8, 3, fraction=0.34, seed=0)
    model = ens.build_ensemble(cfg, head_mask=mask)
    np.testing.assert_array_equal(model.head_mask.numpy(), mask)
    all_true = ens.build_ensemble(cfg)
    assert all_true.head_mask.all()
    assert ens.fingerprint(model) != ens.fingerprint(all_true)
    back = ens.ensemble_from_bytes(*ens.ensemble_to_bytes(model))
    np.testing.assert_array_equal(back.head_mask.numpy(), mask)
    with pytest.raises(ValueError, match=r"shape \(8, 2\).*\(8, 3\)"):
        ens.set_head_mask(model, mask[:, :2])
    with pytest.raises(ValueError, match="no mask_groups"):
        ens.set_head_mask(ens.build_ensemble(tiny()), mask)


@pytest.mark.parametrize("kind", ["shared", "vanilla"])
def test_head_gets_no_gradient_from_rows_outside_its_mask(kind):
    mask = np.array([[True, False]] * 4 + [[False, True]] * 4)  # heads 0-3: group 0; 4-7: group 1
    model = ens.build_ensemble(tiny(kind, mask_groups=["g0", "g1"]), head_mask=mask)
    xa, xb, y = preference_data(n=12)
    row_mask = model.head_mask[:, torch.zeros(12, dtype=torch.long)].T  # all rows in group 0
    losses = ens.head_losses(
        model,
        "preference",
        [torch.from_numpy(xa), torch.from_numpy(xb)],
        torch.from_numpy(y),
        row_mask,
    )
    assert (losses[:4] > 0).all() and (losses[4:] == 0).all()
    losses.sum().backward()
    net = model.heads if kind == "shared" else model.members
    for name, p in net.named_parameters():
        assert p.grad[4:].abs().max() == 0, name
        assert p.grad[:4].abs().max() > 0, name


def test_masked_fit_leaves_heads_without_the_groups_unchanged():
    mask = np.array([[True, False]] * 4 + [[False, True]] * 4)
    model = ens.build_ensemble(tiny(mask_groups=["g0", "g1"]), head_mask=mask)
    before = {n: p.detach().clone() for n, p in model.heads.named_parameters()}
    xa, xb, y = preference_data(n=30)
    ens.fit_ensemble(
        model,
        task="preference",
        inputs=(xa, xb),
        targets=y,
        row_groups=np.zeros(30, dtype=np.int64),
        epochs=3,
        device="cpu",
    )
    for n, p in model.heads.named_parameters():
        assert torch.equal(p[4:], before[n][4:]), n
        assert not torch.equal(p[:4], before[n][:4]), n
    with pytest.raises(ValueError, match="row_groups must index"):
        ens.fit_ensemble(
            model,
            task="preference",
            inputs=(xa, xb),
            targets=y,
            row_groups=np.full(30, 2),
            device="cpu",
        )


def test_masked_loss_is_each_heads_mean_over_its_own_rows():
    mask = np.array([[True, False], [False, True], [True, True]] + [[True, True]] * 5)
    model = ens.build_ensemble(tiny(mask_groups=["g0", "g1"]), head_mask=mask)
    xa, xb, y = preference_data(n=10)
    groups = np.array([0] * 3 + [1] * 7)
    t = [torch.from_numpy(xa), torch.from_numpy(xb)]
    yt = torch.from_numpy(y)
    row_mask = model.head_mask[:, torch.from_numpy(groups)].T
    with torch.no_grad():
        masked = ens.head_losses(model, "preference", t, yt, row_mask)
        g0 = ens.head_losses(model, "preference", [x[:3] for x in t], yt[:3])
        g1 = ens.head_losses(model, "preference", [x[3:] for x in t], yt[3:])
        full = ens.head_losses(model, "preference", t, yt)
    torch.testing.assert_close(masked[0], g0[0])
    torch.testing.assert_close(masked[1], g1[1])
    torch.testing.assert_close(masked[2], full[2])


# ---------------------------------------------------------------- prediction and storage


def test_predict_chunks_equal_whole_and_pairs_are_margins():
    model = ens.build_ensemble(tiny("epinet"))
    X = np.random.default_rng(0).normal(size=(11, 5)).astype(np.float32)
    whole = ens.predict(model, X)
    assert whole.dtype == np.float32 and whole.shape == (11, 8)
    np.testing.assert_allclose(ens.predict(model, X, batch_size=3), whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ens.predict_pairs(model, X, X[::-1]), whole - whole[::-1], atol=1e-6)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 5\)"):
        ens.predict(model, X[:, :4])
    with pytest.raises(ValueError, match="same shape"):
        ens.predict_pairs(model, X, X[:3])


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, kind):
    cfg = tiny(kind, mask_groups=["x", "y"], trunk_layers=1, trunk_hidden=6)
    model = ens.build_ensemble(cfg, head_mask=ens.make_head_mask(8, 2, fraction=0.5, seed=3))
    xa, xb, y = preference_data()
    ens.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, epochs=2, device="cpu")
    path = tmp_path / "model"
    ens.save_ensemble(model, path)
    raw = (tmp_path / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and b"head_mask" in raw[8 : 8 + header_len]  # safetensors, not pickle
    assert json.loads((tmp_path / "model.json").read_text())["kind"] == kind
    loaded = ens.load_ensemble(path)
    np.testing.assert_array_equal(ens.predict(loaded, xa), ens.predict(model, xa))
    assert ens.fingerprint(loaded) == ens.fingerprint(model)
    weights, config_json = ens.ensemble_to_bytes(model)
    again = ens.ensemble_from_bytes(weights, config_json)
    np.testing.assert_array_equal(ens.predict(again, xb), ens.predict(model, xb))
    assert ens.fingerprint(again) == ens.fingerprint(model)


def test_fingerprint_is_short_deterministic_and_sees_weights():
    model = ens.build_ensemble(tiny())
    fp = ens.fingerprint(model)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert ens.fingerprint(model) == fp
    with torch.no_grad():
        model.heads.b_out[0] += 1e-3
    assert ens.fingerprint(model) != fp


# ---------------------------------------------------------------- why the priors


def test_random_priors_keep_heads_diverse_off_the_data():
    # The paper's UCI setup: a shared two-layer trunk, then the heads. Without priors
    # the heads collapse to nearly one function; with priors they all fit the data and
    # still disagree away from it. Regression keeps the outputs' scale comparable
    # (separable classification drives every logit to large values).
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(64, 2)).astype(np.float32)
    y = np.sin(2 * X[:, 0]).astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    far = (5 * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)
    spread, worst_fit = {}, {}
    for scale in (0.0, 3.0):
        cfg = ens.EnsembleConfig(
            kind="shared",
            input_dim=2,
            n_heads=8,
            hidden=32,
            prior_scale=scale,
            trunk_layers=2,
            trunk_hidden=32,
            seed=0,
        )
        model = ens.build_ensemble(cfg)
        ens.fit_ensemble(
            model,
            task="regression",
            inputs=X,
            targets=y,
            epochs=300,
            batch_size=64,
            lr=1e-2,
            device="cpu",
        )
        worst_fit[scale] = np.sqrt(((ens.predict(model, X) - y[:, None]) ** 2).mean(axis=0)).max()
        spread[scale] = ens.predict(model, far).std(axis=1).mean()
    assert worst_fit[0.0] < 0.2 and worst_fit[3.0] < 0.2  # every head fits (y has std ~0.6)
    assert spread[0.0] < 0.3
    assert spread[3.0] > 2.0
    assert spread[3.0] > 10 * spread[0.0]
