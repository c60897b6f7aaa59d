import json

import numpy as np
import pytest
import torch

from hyre_engine import ensemble as ens
from hyre_engine import training

# ---------------------------------------------------------------- config


def test_config_json_round_trip(tiny):
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


@pytest.mark.parametrize("kind", ens.KINDS)
def test_output_shape_and_seeded_build(kind, tiny):
    model = ens.build_ensemble(tiny(kind))
    x = torch.randn(7, 5)
    assert model(x).shape == (7, 8)
    same = ens.build_ensemble(tiny(kind))
    other = ens.build_ensemble(tiny(kind, seed=1))
    assert ens.fingerprint(model) == ens.fingerprint(same)
    assert ens.fingerprint(model) != ens.fingerprint(other)
    # heads are different functions
    assert model(x).std(dim=1).min() > 0


@pytest.mark.parametrize("kind", ens.KINDS)
def test_deeper_heads_and_trunk(kind, tiny):
    model = ens.build_ensemble(tiny(kind, n_layers=2, trunk_layers=2, trunk_hidden=6))
    assert model(torch.randn(3, 5)).shape == (3, 8)


def test_build_does_not_touch_global_rng(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ens.build_ensemble(tiny("epinet"))
    assert torch.equal(torch.rand(3), expected)


def test_shared_heads_match_a_loop_over_heads(tiny):
    model = ens.build_ensemble(tiny("shared", prior_scale=2.0))
    x = torch.randn(6, 5)
    out = model(x)
    h, p = model.heads, model.prior
    for k in range(8):
        learn = torch.relu(x @ h.w0[k] + h.b0[k]) @ h.w_out[k] + h.b_out[k]
        prior = torch.relu(x @ p.w0[k] + p.b0[k]) @ p.w_out[k] + p.b_out[k]
        torch.testing.assert_close(out[:, k], learn + 2.0 * prior)


def test_epinet_matches_its_formula_for_one_index(tiny):
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


# ---------------------------------------------------------------- training


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


def test_head_mask_is_a_saved_buffer(tiny):
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


# ---------------------------------------------------------------- prediction and storage


def test_predict_chunks_equal_whole_and_pairs_are_margins(tiny):
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


@pytest.mark.parametrize("kind", ens.KINDS)
def test_save_load_round_trip(tmp_path, kind, tiny, preference_data):
    cfg = tiny(kind, mask_groups=["x", "y"], trunk_layers=1, trunk_hidden=6)
    model = ens.build_ensemble(cfg, head_mask=ens.make_head_mask(8, 2, fraction=0.5, seed=3))
    xa, xb, y = preference_data()
    training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, epochs=2, device="cpu")
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


def test_fingerprint_is_short_deterministic_and_sees_weights(tiny):
    model = ens.build_ensemble(tiny())
    fp = ens.fingerprint(model)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert ens.fingerprint(model) == fp
    with torch.no_grad():
        model.heads.b_out[0] += 1e-3
    assert ens.fingerprint(model) != fp


# ---------------------------------------------------------------- why the priors


