"""Fitting ensembles (hyre_engine.training): joint training, masks, fine-tuning."""


import numpy as np
import pytest
import torch

from hyre_engine import ensemble as ens
from hyre_engine import training


@pytest.mark.parametrize("kind", ["shared", "epinet"])
def test_priors_are_frozen_buffers_and_unchanged_by_training(kind, tiny, preference_data):
    model = ens.build_ensemble(tiny(kind))
    names = {name for name, _ in model.named_parameters()}
    buffers = dict(model.named_buffers())
    prior_names = [n for n in buffers if "prior" in n or n == "indices"]
    assert prior_names and not any("prior" in n for n in names)
    before = {n: buffers[n].clone() for n in prior_names}
    learn_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    xa, xb, y = preference_data()
    training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, epochs=3, device="cpu")
    after = dict(model.named_buffers())
    for n in prior_names:
        assert torch.equal(after[n], before[n]), n
    assert any(not torch.equal(p, learn_before[n]) for n, p in model.named_parameters())


def fit_preference(model, xa, xb, y, **options):
    """`training.fit_ensemble` on the pairs (xa, xb) with targets y, on the CPU."""
    return training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, device="cpu", **options)


@pytest.mark.parametrize("kind", ens.KINDS)
def test_every_head_fits_a_small_preference_task(kind, tiny, preference_data, head_accuracy):
    xa, xb, y = preference_data(n=96)
    model = ens.build_ensemble(tiny(kind))
    report = fit_preference(model, xa, xb, y, epochs=60, batch_size=32, lr=1e-2)
    assert report.steps == 60 * 3 and report.device.startswith("CPU")
    assert report.final_loss < report.epoch_losses[0]
    Z = ens.predict_pairs(model, xa, xb)
    assert head_accuracy(Z, y).min() >= 0.9


def test_classification_and_regression_tasks_fit(tiny, head_accuracy):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    yc = (X[:, 0] > 0).astype(np.float32)
    yr = (X[:, 0] - 0.5 * X[:, 1]).astype(np.float32)
    clf = ens.build_ensemble(tiny())
    training.fit_ensemble(
        clf, task="classification", inputs=X, targets=yc, epochs=60, lr=1e-2, device="cpu"
    )
    assert head_accuracy(ens.predict(clf, X), yc).min() >= 0.95
    reg = ens.build_ensemble(tiny())
    training.fit_ensemble(
        reg, task="regression", inputs=X, targets=yr, epochs=100, lr=1e-2, device="cpu"
    )
    rmse = np.sqrt(((ens.predict(reg, X) - yr[:, None]) ** 2).mean(axis=0))
    assert rmse.max() < 0.3 * yr.std()


def test_training_is_reproducible_on_cpu(tiny, preference_data):
    xa, xb, y = preference_data()
    outs = []
    for _ in range(2):
        model = ens.build_ensemble(tiny())
        training.fit_ensemble(
            model, task="preference", inputs=(xa, xb), targets=y, epochs=3, seed=4, device="cpu"
        )
        outs.append(ens.predict_pairs(model, xa, xb))
    np.testing.assert_array_equal(outs[0], outs[1])
    model = ens.build_ensemble(tiny())
    training.fit_ensemble(
        model, task="preference", inputs=(xa, xb), targets=y, epochs=3, seed=5, device="cpu"
    )
    assert not np.array_equal(ens.predict_pairs(model, xa, xb), outs[0])


def test_progress_and_steps_override(tiny, preference_data):
    xa, xb, y = preference_data(n=50)
    calls = []
    model = ens.build_ensemble(tiny())
    report = fit_preference(model, xa, xb, y, steps=7, batch_size=16,
                            progress=lambda step, total, loss: calls.append((step, total, loss)))
    assert report.steps == 7
    assert [c[0] for c in calls] == list(range(1, 8)) and {c[1] for c in calls} == {7}
    assert all(np.isfinite(c[2]) for c in calls)


def test_default_epochs_give_small_data_enough_steps(tiny, preference_data):
    xa, xb, y = preference_data(n=10)
    model = ens.build_ensemble(tiny())
    report = training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, device="cpu")
    assert report.steps == training.DEFAULT_MIN_STEPS  # one batch per epoch
    assert len(report.epoch_losses) == training.DEFAULT_MIN_STEPS


def test_standardisation_is_fitted_once_and_kept(tiny, preference_data):
    xa, xb, y = preference_data()
    model = ens.build_ensemble(tiny())
    training.fit_ensemble(
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
    training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y, epochs=1, device="cpu")
    assert torch.equal(model.input_mean, mean)
    raw = ens.build_ensemble(tiny(standardize=False))
    training.fit_ensemble(raw, task="preference", inputs=(xa + 3, xb), targets=y, epochs=1, device="cpu")
    assert torch.equal(raw.input_mean, torch.zeros(5))


def test_training_input_validation(tiny, preference_data):
    xa, xb, y = preference_data(n=10)
    model = ens.build_ensemble(tiny())
    with pytest.raises(ValueError, match="valid tasks"):
        training.fit_ensemble(model, task="ranking", inputs=(xa, xb), targets=y)
    with pytest.raises(ValueError, match=r"xa must have shape \(n, 5\)"):
        training.fit_ensemble(model, task="preference", inputs=(xa[:, :3], xb), targets=y)
    with pytest.raises(ValueError, match="same shape"):
        training.fit_ensemble(model, task="preference", inputs=(xa, xb[:4]), targets=y)
    with pytest.raises(ValueError, match=r"targets must have shape \(10,\)"):
        training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=y[:3])
    with pytest.raises(ValueError, match="0 or 1"):
        training.fit_ensemble(model, task="classification", inputs=xa, targets=y * 2)
    with pytest.raises(ValueError, match="no head_mask"):
        training.fit_ensemble(
            model, task="preference", inputs=(xa, xb), targets=y, row_groups=np.zeros(10, int)
        )
    with pytest.raises(ValueError, match="pair"):
        training.fit_ensemble(model, task="preference", inputs=xa, targets=y)


@pytest.mark.parametrize("kind", ["shared", "vanilla"])
def test_head_gets_no_gradient_from_rows_outside_its_mask(kind, tiny, preference_data):
    mask = np.array([[True, False]] * 4 + [[False, True]] * 4)  # heads 0-3: group 0; 4-7: group 1
    model = ens.build_ensemble(tiny(kind, mask_groups=["g0", "g1"]), head_mask=mask)
    xa, xb, y = preference_data(n=12)
    row_mask = model.head_mask[:, torch.zeros(12, dtype=torch.long)].T  # all rows in group 0
    losses = training.head_losses(
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


def test_masked_fit_leaves_heads_without_the_groups_unchanged(tiny, preference_data):
    mask = np.array([[True, False]] * 4 + [[False, True]] * 4)
    model = ens.build_ensemble(tiny(mask_groups=["g0", "g1"]), head_mask=mask)
    before = {n: p.detach().clone() for n, p in model.heads.named_parameters()}
    xa, xb, y = preference_data(n=30)
    fit_preference(model, xa, xb, y, row_groups=np.zeros(30, dtype=np.int64), epochs=3)
    for n, p in model.heads.named_parameters():
        assert torch.equal(p[4:], before[n][4:]), n
        assert not torch.equal(p[:4], before[n][:4]), n
    with pytest.raises(ValueError, match="row_groups must index"):
        fit_preference(model, xa, xb, y, row_groups=np.full(30, 2))


def test_masked_loss_is_each_heads_mean_over_its_own_rows(tiny, preference_data):
    mask = np.array([[True, False], [False, True], [True, True]] + [[True, True]] * 5)
    model = ens.build_ensemble(tiny(mask_groups=["g0", "g1"]), head_mask=mask)
    xa, xb, y = preference_data(n=10)
    groups = np.array([0] * 3 + [1] * 7)
    t = [torch.from_numpy(xa), torch.from_numpy(xb)]
    yt = torch.from_numpy(y)
    row_mask = model.head_mask[:, torch.from_numpy(groups)].T
    with torch.no_grad():
        masked = training.head_losses(model, "preference", t, yt, row_mask)
        g0 = training.head_losses(model, "preference", [x[:3] for x in t], yt[:3])
        g1 = training.head_losses(model, "preference", [x[3:] for x in t], yt[3:])
        full = training.head_losses(model, "preference", t, yt)
    torch.testing.assert_close(masked[0], g0[0])
    torch.testing.assert_close(masked[1], g1[1])
    torch.testing.assert_close(masked[2], full[2])


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
        training.fit_ensemble(
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


def test_finetune_heads_adapts_a_copy_and_leaves_the_original():
    rng = np.random.default_rng(0)
    cfg = ens.EnsembleConfig(kind="shared", input_dim=4, n_heads=8, hidden=16, seed=0)
    model = ens.build_ensemble(cfg)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    training.fit_ensemble(
        model,
        task="classification",
        inputs=X,
        targets=(X[:, 0] > 0).astype(np.float32),
        epochs=5,
        device="cpu",
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # the target person disagrees: they want feature 1
    xa, xb = X[:6], X[6:12]
    y = (xa[:, 1] > xb[:, 1]).astype(np.float32)
    before = ens.predict_pairs(model, xa, xb)
    tuned = training.finetune_heads(
        model, task="preference", inputs=(xa, xb), targets=y, steps=60, lr=1e-2, device="cpu"
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    tuned_state = tuned.state_dict()
    for k in state:
        if "prior" in k or k.startswith("input_"):
            assert torch.equal(tuned_state[k], state[k]), k
    after = ens.predict_pairs(tuned, xa, xb)
    sign = 2 * y[:, None] - 1
    assert np.logaddexp(0, -sign * after).mean() < np.logaddexp(0, -sign * before).mean()
    assert ((after > 0) == (y[:, None] > 0.5)).mean() == 1.0


@pytest.mark.parametrize(("kind", "trunk"), [("shared", 0), ("vanilla", 0), ("vanilla", 1), ("epinet", 0)])
def test_batched_finetune_equals_a_loop_of_finetune_heads(kind, trunk):
    # float64: Adam divides by the root of each gradient's second moment, so a gradient
    # that is zero up to rounding (an output bias cancels in a margin) takes an O(lr) step
    # from float32 rounding noise, in either path; float64 noise is far under Adam's eps.
    rng = np.random.default_rng(3)
    cfg = ens.EnsembleConfig(kind=kind, input_dim=6, n_heads=5, hidden=8, trunk_layers=trunk, seed=1)
    model = ens.build_ensemble(cfg)
    # one hidden layer and no trunk: the wide first layer (training._WideMembers), else vmap
    assert training._WideMembers.applies(model) == (kind != "epinet" and not trunk)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    training.fit_ensemble(model, task="preference", inputs=(X[:30], X[30:]),
                          targets=(X[:30, 0] > X[30:, 0]).astype(np.float32), epochs=3, device="cpu")
    model = model.double()
    xa, xb = X[:30], X[30:]
    y = (xa[:, 1] > xb[:, 1]).astype(np.float32)
    # every seed and n of a group: nested draws of different sizes, two of the same size
    sets = [rng.permutation(30)[:n] for n in (1, 3, 3, 7)] + [np.arange(7)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batched = training.finetune_heads_batched(model, task="preference", inputs=(xa, xb), targets=y,
                                              adapt=sets, steps=40, lr=1e-2, device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    loop = np.stack([
        ens.predict_pairs(training.finetune_heads(model, task="preference", inputs=(xa[s], xb[s]), targets=y[s],
                                                  steps=40, lr=1e-2, device="cpu"), xa, xb)
        for s in sets
    ])
    untouched = ens.predict_pairs(model, xa, xb)
    assert np.abs(loop - untouched).max() > 0.5  # fine-tuning moved the heads
    np.testing.assert_allclose(batched, loop, atol=1e-5)


@pytest.mark.parametrize("task", ["preference", "classification", "regression"])
@pytest.mark.parametrize("prior_scale", [0.0, 1.0])
def test_wide_hand_written_gradients_follow_autograds_trajectory(task, prior_scale):
    # the wide layout's hand-written step against the stacked layout's autograd step, on
    # every task, with and without priors (float64, as above)
    rng = np.random.default_rng(5)
    model = ens.build_ensemble(ens.EnsembleConfig(input_dim=6, n_heads=4, hidden=8, prior_scale=prior_scale,
                                                  seed=2)).double()
    x = rng.normal(size=(40, 6))
    training._fit_input_stats(model, [x])
    xs = [x[:20], x[20:]] if task == "preference" else [x[:20]]
    y = (x[:20, 0] > x[20:, 0]) if task == "preference" else (x[:20, 1] > 0)
    y = y.astype(np.float64) if task != "regression" else x[:20, 2]
    rows = training._Batches.on(model, xs, y, None, torch.device("cpu"))
    sets = [rng.permutation(20)[:n] for n in (1, 3, 3, 8)]
    wide, stacked = (training._finetune_chunk(family(model, task, rows), sets, steps=30, lr=1e-2,
                                              betas=(0.9, 0.999), dev=torch.device("cpu"), progress=None)
                     for family in (training._WideMembers, training._StackedMembers))
    untouched = ens.predict(model, xs[0]) - (ens.predict(model, xs[1]) if task == "preference" else 0)
    assert np.abs(stacked - untouched).max() > 0.3  # the steps moved the outputs
    np.testing.assert_allclose(wide, stacked, atol=1e-6)


def test_batched_finetune_chunks_by_memory_and_counts_steps_over_chunks():
    rng = np.random.default_rng(0)
    model = ens.build_ensemble(ens.EnsembleConfig(input_dim=4, n_heads=3, hidden=4))
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    sets = [np.arange(n) for n in (1, 2, 3)]
    whole = training.finetune_heads_batched(model, task="classification", inputs=x, targets=y, adapt=sets,
                                            steps=5, device="cpu")
    per_member = 16 * sum(p.numel() for p in model.parameters())
    seen = []
    chunked = training.finetune_heads_batched(model, task="classification", inputs=x, targets=y, adapt=sets,
                                              steps=5, device="cpu", max_bytes=per_member,
                                              progress=lambda step, total, loss: seen.append((step, total)))
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    assert seen == [(s, 15) for s in range(1, 16)]  # 3 chunks of one member, 5 steps each
    with pytest.raises(ValueError, match=r"adapt\[1\] must be a non-empty"):
        training.finetune_heads_batched(model, task="classification", inputs=x, targets=y,
                                        adapt=[np.arange(2), np.arange(0)])
    with pytest.raises(ValueError, match=r"adapt\[0\] must index the 10 rows"):
        training.finetune_heads_batched(model, task="classification", inputs=x, targets=y, adapt=[np.array([10])])


@pytest.mark.parametrize("kind", ["shared", "vanilla"])
def test_masked_rows_fast_path_equals_the_dense_masked_fit(kind, tiny, preference_data, monkeypatch):
    # each head on its own rows (training._Batches._masked_loss) against the dense pass
    # with the (rows x heads) mask: the same fit up to the order of additions (float64)
    mask = ens.make_head_mask(8, 10, fraction=0.2, seed=0)
    xa, xb, y = preference_data(n=90)
    groups = np.arange(90) % 10
    fits, calls = {}, []
    for share in (0.0, 1.0):
        model = ens.build_ensemble(tiny(kind, mask_groups=[f"g{i}" for i in range(10)]), head_mask=mask).double()
        inner = model.learnable_rows
        monkeypatch.setattr(model, "learnable_rows", lambda x, inner=inner: calls.append(x.shape) or inner(x))
        monkeypatch.setattr(training, "MASKED_GATHER_SHARE", share)
        fit_preference(model, xa, xb, y, row_groups=groups, epochs=3, batch_size=32)
        fits[share] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert calls and all(shape[0] == 8 and shape[1] < 32 for shape in calls)  # per head, fewer rows
    for k, v in fits[0.0].items():
        torch.testing.assert_close(fits[1.0][k], v, rtol=0, atol=1e-10, msg=k)


def test_coarse_adam_tracks_the_fine_trajectory():
    assert training.coarse_adam(100, 1e-3, 1) == (100, 1e-3, (0.9, 0.999))
    steps, lr, (b1, b2) = training.coarse_adam(100, 1e-3, 10)
    assert (steps, b1, b2) == (10, 0.9**10, 0.999**10) and lr == pytest.approx(1e-2)
    rng = np.random.default_rng(0)
    model = ens.build_ensemble(ens.EnsembleConfig(input_dim=6, n_heads=10, hidden=16, seed=2))
    xa, xb = rng.normal(size=(2, 40, 6)).astype(np.float32)
    y = ((xa - xb) @ rng.normal(size=6) > 0).astype(np.float32)
    training.fit_ensemble(model, task="preference", inputs=(xa, xb), targets=1 - y, epochs=5, device="cpu")
    sets = [rng.permutation(40)[:n] for n in (1, 5, 10, 20)]
    fine, coarse, far = (training.finetune_heads_batched(model, task="preference", inputs=(xa, xb), targets=y,
                                                         adapt=sets, device="cpu", stride=s) for s in (1, 5, 100))
    untouched = ens.predict_pairs(model, xa, xb)
    moved = np.abs(fine - untouched).mean()
    assert moved > 0.1  # fine-tuning moved the margins
    # the coarse grid lands near the fine trajectory's end; one step of lr x 100 does not
    assert np.abs(coarse - fine).mean() < 0.25 * moved < np.abs(far - fine).mean()
    assert ((coarse > 0) == (fine > 0)).mean() > 0.95
