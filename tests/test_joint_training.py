"""Joint fine-tuning of a backbone with the heads, on a tiny BERT built here (no download)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyre_engine import ensemble as ens
from hyre_engine import joint_training as jt
from hyre_engine.backbone import load_backbone

WORDS = ["good", "bad", "kind", "rude", "yes", "no", "help", "harm", "the", "a", "answer", "question",
         "please", "thanks", "never", "always", "safe", "risky", "clear", "vague"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_bert):
    """A randomly initialised 2-layer BERT (hidden 32) with a word-level vocabulary, saved locally."""
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), WORDS)


def make_data(n: int = 24, seed: int = 0, groups: bool = False) -> jt.PreferenceTexts:
    rng = np.random.default_rng(seed)
    good, bad = WORDS[0:20:2], WORDS[1:20:2]
    a, b, y = [], [], []
    for _ in range(n):
        x = " ".join(rng.choice(good, 3))
        z = " ".join(rng.choice(bad, 3))
        if rng.random() < 0.5:
            a.append(x), b.append(z), y.append(1)
        else:
            a.append(z), b.append(x), y.append(0)
    row_groups = (np.arange(n) % 3).astype(np.int64) if groups else None
    return jt.PreferenceTexts(a, b, np.array(y), row_groups=row_groups)


def make_heads(backbone, *, groups: bool = False, seed: int = 0) -> ens.Ensemble:
    config = ens.EnsembleConfig(input_dim=backbone.dim, n_heads=4, hidden=8, seed=seed,
                                mask_groups=["g0", "g1", "g2"] if groups else None)
    model = ens.build_ensemble(config)
    if groups:
        ens.set_head_mask(model, ens.make_head_mask(4, 3, fraction=0.5, seed=seed))
    return model


def settings(**overrides) -> jt.JointTrainingConfig:
    base = dict(mode="full", epochs=1, batch_pairs=8, backbone_lr=1e-3, head_lr=1e-2, val_fraction=0.25)
    base.update(overrides)
    return jt.JointTrainingConfig(**base)


def test_one_epoch_changes_encoder_and_heads_but_never_the_priors(tiny_model_dir, tmp_path):
    backbone = load_backbone(tiny_model_dir, device="cpu")
    before = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    model = make_heads(backbone, groups=True)
    priors = {k: v.clone() for k, v in model.prior.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    # no warm start: the change to the heads comes from the joint step alone
    result = jt.finetune_backbone(backbone, model, make_data(groups=True), tmp_path / "ft",
                                  settings(warm_start_heads=False))
    after = result.trained.encoder.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert len(changed) > 0.5 * sum(v.is_floating_point() for v in before.values())
    assert any(not torch.equal(heads_before[k], v) for k, v in result.ensemble.heads.state_dict().items())
    for k, v in result.ensemble.prior.state_dict().items():
        assert torch.equal(priors[k], v), k  # bit-identical
    assert result.backbone_id.startswith(load_backbone(tiny_model_dir).id + "+ft-full-")


def test_each_head_trains_jointly_on_its_own_annotators_rows_only(tiny_model_dir, tmp_path):
    """Head 0 may learn from group 0 only, and no row is in group 0: the joint steps move the
    other heads and the encoder, never head 0 (its gradient is exactly 0)."""
    backbone = load_backbone(tiny_model_dir)
    model = make_heads(backbone, groups=True)
    ens.set_head_mask(model, np.array([[True, False, False]] + [[True, True, True]] * 3))
    base = make_data(24)
    data = jt.PreferenceTexts(base.texts_a, base.texts_b, base.y, row_groups=1 + np.arange(24) % 2)
    before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    result = jt.finetune_backbone(backbone, model, data, tmp_path / "ft", settings(warm_start_heads=False))
    after = result.ensemble.heads.state_dict()
    for name, value in before.items():
        assert torch.equal(after[name][0], value[0]), name
    assert any(not torch.equal(after[k][1:], v[1:]) for k, v in before.items())


def test_lora_leaves_base_weights_untouched_and_saves_only_the_adapter(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    backbone = load_backbone(tiny_model_dir, device="cpu")
    base = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    result = jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "lora",
                                  settings(mode="lora", backbone_lr=1e-2, lora_dropout=0.0))
    trained = dict(result.trained.encoder.named_parameters())
    lora = {k: v for k, v in trained.items() if "lora_" in k}
    assert lora and any(float(v.detach().abs().sum()) > 0 for k, v in lora.items() if "lora_B" in k)
    for name, value in trained.items():
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(value.detach(), base[key]), name
    saved = load_file(str(tmp_path / "lora" / jt.WEIGHTS_FILE))
    assert saved and all("lora_" in k for k in saved)
    # loading merges the adapter: same embeddings as the adapted model, up to rounding
    loaded = load_backbone(tmp_path / "lora")
    texts = make_data(6, seed=3).texts_a
    assert loaded.id == result.backbone_id and "+ft-lora-" in loaded.id
    with torch.no_grad():
        np.testing.assert_allclose(loaded.embed_texts(texts), result.trained.embed_texts(texts), atol=1e-5)


def test_lora_runs_are_seeded_and_resume_bit_identically(tiny_model_dir, tmp_path):
    """The adapters' random initialisation comes from the run's seed, not from whatever the
    process drew before: the same settings give the same adapter, and a stopped run resumes
    to it."""
    data = make_data(32)

    def run(folder, stop=None, seed=0):
        backbone = load_backbone(tiny_model_dir)
        return jt.finetune_backbone(backbone, make_heads(backbone), data, folder,
                                    settings(mode="lora", epochs=2, backbone_lr=1e-2, seed=seed), stop=stop)

    first = run(tmp_path / "first")
    torch.rand(7)  # the caller's generator moves on between runs
    second = run(tmp_path / "second")
    assert second.backbone_id == first.backbone_id
    assert run(tmp_path / "other-seed", seed=1).backbone_id != first.backbone_id
    calls = []
    with pytest.raises(jt.TrainingStopped, match="1 finished epoch"):  # 24 pairs / 8: step 2 of epoch 2
        run(tmp_path / "part", stop=lambda: calls.append(1) or len(calls) == 5)
    resumed = run(tmp_path / "part")
    assert resumed.resumed_from == 1 and resumed.backbone_id == first.backbone_id


def test_save_load_and_resume_give_identical_predictions(tiny_model_dir, tmp_path):
    data = make_data(32, groups=True)
    full = jt.finetune_backbone(load_backbone(tiny_model_dir), make_heads(load_backbone(tiny_model_dir), groups=True),
                                data, tmp_path / "full", settings(epochs=3))
    texts = make_data(6, seed=5).texts_b
    z_trained = ens.predict(full.ensemble, full.trained.embed_texts(texts))

    loaded = load_backbone(tmp_path / "full")
    heads = jt.load_finetuned_heads(tmp_path / "full")
    assert loaded.id == full.backbone_id
    np.testing.assert_array_equal(loaded.embed_texts(texts), full.trained.embed_texts(texts))
    np.testing.assert_array_equal(ens.predict(heads, loaded.embed_texts(texts)), z_trained)

    # stopped during epoch 2: epoch 1's checkpoint is kept, and resuming ends where the full run ended
    calls = []

    def stop_in_epoch_two() -> bool:
        calls.append(1)
        return len(calls) == 5  # 24 training pairs / 8 = 3 steps per epoch: step 2 of epoch 2

    part = tmp_path / "part"
    with pytest.raises(jt.TrainingStopped, match="1 finished epoch"):
        jt.finetune_backbone(load_backbone(tiny_model_dir), make_heads(load_backbone(tiny_model_dir), groups=True),
                             data, part, settings(epochs=3), stop=stop_in_epoch_two)
    state = json.loads((part / jt.CHECKPOINT_DIR / jt.STATE_FILE).read_text())
    assert state["epochs_done"] == 1 and not (part / jt.FINETUNED_MANIFEST).exists()
    resumed = jt.finetune_backbone(load_backbone(tiny_model_dir),
                                   make_heads(load_backbone(tiny_model_dir), groups=True),
                                   data, part, settings(epochs=3))
    assert resumed.resumed_from == 1
    assert resumed.backbone_id.split("+")[1] == full.backbone_id.split("+")[1]
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    np.testing.assert_array_equal(ens.predict(resumed.ensemble, resumed.trained.embed_texts(texts)), z_trained)


def test_an_interrupt_while_a_checkpoint_is_swapped_keeps_the_last_finished_epoch(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    """Ctrl-C or a closing app can land between the two renames that swap a checkpoint folder
    in: the previous epoch's folder is then only under its ``.old`` name, and is resumed from."""
    from pathlib import Path

    data = make_data(24)

    def run(folder):
        backbone = load_backbone(tiny_model_dir)
        return jt.finetune_backbone(backbone, make_heads(backbone), data, folder, settings(epochs=2))

    straight = run(tmp_path / "straight")
    rename = Path.rename

    def rename_then_interrupt(self, target):
        moved = rename(self, target)
        if self.name == jt.CHECKPOINT_DIR and Path(target).name.endswith(".old"):
            raise KeyboardInterrupt  # epoch 1's checkpoint moved aside, epoch 2's not yet in place
        return moved

    part = tmp_path / "part"
    monkeypatch.setattr(Path, "rename", rename_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(part)
    monkeypatch.setattr(Path, "rename", rename)
    assert not (part / jt.CHECKPOINT_DIR).exists() and (part / (jt.CHECKPOINT_DIR + ".old")).is_dir()
    resumed = run(part)
    assert resumed.resumed_from == 1
    assert resumed.backbone_id == straight.backbone_id
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]


def _without_dropout(backbone):
    for module in backbone.encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return backbone


def test_gradient_accumulation_trains_as_one_large_batch_would(tiny_model_dir, tmp_path):
    """8 pairs a step, or 4 (or 2) pairs several times with their gradients added: the same
    model, also through each epoch's last, shorter step (30 training pairs: 8 + 8 + 8 + 6).
    Compared on predictions, not weights: weights with no effect on the output (a key bias)
    get gradients of rounding noise, which Adam scales up to a full step either way."""
    data = make_data(40)  # 10 validate, 30 train; three words a text, so no padding differs
    probe = make_data(20, seed=7)

    def run(batch_pairs, grad_accum):
        backbone = _without_dropout(load_backbone(tiny_model_dir))
        result = jt.finetune_backbone(backbone, make_heads(backbone), data, tmp_path / f"{batch_pairs}x{grad_accum}",
                                      settings(epochs=2, batch_pairs=batch_pairs, grad_accum=grad_accum,
                                               warm_start_heads=False))
        z = ens.predict_pairs(result.ensemble, result.trained.embed_texts(probe.texts_a),
                              result.trained.embed_texts(probe.texts_b))
        return [h["val_loss"] for h in result.history], z

    loss, z = run(8, 1)
    assert np.abs(z).max() > 1  # the heads learnt something to compare
    for batch_pairs, grad_accum in ((4, 2), (2, 4)):
        other_loss, other_z = run(batch_pairs, grad_accum)
        np.testing.assert_allclose(other_loss, loss, rtol=1e-4)
        np.testing.assert_allclose(other_z, z, atol=2e-3)
    _, small = run(4, 1)  # twice the updates: another model
    assert np.abs(small - z).max() > 0.1


def test_best_epoch_is_kept_and_every_epoch_is_scored(tiny_model_dir, tmp_path):
    result = jt.finetune_backbone(load_backbone(tiny_model_dir), make_heads(load_backbone(tiny_model_dir)),
                                  make_data(32), tmp_path / "ft", settings(epochs=3, backbone_lr=5e-2, head_lr=5e-2))
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.best_epoch == best["epoch"]
    manifest = jt.read_manifest(tmp_path / "ft")
    assert manifest["training"]["best_epoch"] == best["epoch"]
    assert manifest["weights_sha256"] and manifest["base"]["id"] == load_backbone(tiny_model_dir).id


def test_the_best_epoch_is_kept_when_it_is_neither_the_first_nor_the_last(tiny_model_dir, tmp_path):
    """With 30% of the labels flipped the validation loss falls, then rises (0.84, 0.71, 0.73):
    the folder holds epoch 2's weights, those of a run stopped after 2 epochs."""
    base = make_data(32)
    flip = np.random.default_rng(0).random(32) < 0.3
    data = jt.PreferenceTexts(base.texts_a, base.texts_b, np.where(flip, 1 - base.y, base.y))

    def run(folder, epochs):
        backbone = load_backbone(tiny_model_dir)
        return jt.finetune_backbone(backbone, make_heads(backbone), data, folder,
                                    settings(epochs=epochs, backbone_lr=1e-3, head_lr=1e-2))

    result = run(tmp_path / "three", 3)
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == 2 and losses[1] < min(losses[0], losses[2]), losses
    two = run(tmp_path / "two", 2)
    assert load_backbone(tmp_path / "three").id == two.backbone_id == result.backbone_id
    np.testing.assert_array_equal(
        ens.predict(jt.load_finetuned_heads(tmp_path / "three"), two.trained.embed_texts(base.texts_a)),
        ens.predict(two.ensemble, two.trained.embed_texts(base.texts_a)))
    last = json.loads((tmp_path / "three" / jt.CHECKPOINT_DIR / jt.STATE_FILE).read_text())
    assert last["epochs_done"] == 3  # the checkpoint to resume from is still the last epoch


def test_progress_reports_eta_per_step_and_validation_per_epoch(tiny_model_dir, tmp_path):
    seen: list[jt.EpochProgress] = []
    result = jt.finetune_backbone(load_backbone(tiny_model_dir), make_heads(load_backbone(tiny_model_dir)),
                                  make_data(32), tmp_path / "ft", settings(epochs=2), progress=seen.append)
    assert {p.epoch for p in seen} == {1, 2}
    assert all(p.eta >= 0 and p.steps == 3 for p in seen)
    ends = [p for p in seen if p.val_loss is not None]
    assert len(ends) == 2 and ends[-1].eta == 0.0 and 0 <= ends[-1].val_accuracy <= 1
    # time is left until the last step: after epoch 1, one more epoch at epoch 1's speed
    assert all(p.eta > 0 for p in seen if p.epoch == 1 or p.step < p.steps)
    assert ends[0].eta == pytest.approx(result.history[0]["seconds"], abs=0.01)
    assert [p.elapsed for p in seen] == sorted(p.elapsed for p in seen)


def test_resuming_with_other_settings_is_refused(tiny_model_dir, tmp_path):
    backbone = load_backbone(tiny_model_dir)
    calls = []
    with pytest.raises(jt.TrainingStopped):  # 18 training pairs / 8: 3 steps, stopped in epoch 2
        jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "ft",
                             settings(epochs=2), stop=lambda: calls.append(1) or len(calls) == 4)
    assert (tmp_path / "ft" / jt.CHECKPOINT_DIR / jt.STATE_FILE).is_file()
    backbone = load_backbone(tiny_model_dir)
    with pytest.raises(ValueError, match="checkpoint of a different run"):
        jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "ft",
                             settings(epochs=2, head_lr=0.5))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone_lr": 0.0}, "backbone_lr must be a finite number > 0"),
        ({"head_lr": -1e-3}, "head_lr must be a finite number > 0"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"grad_accum": 0}, "grad_accum must be a positive integer"),
        ({"mode": "qlora"}, "unknown fine-tuning mode"),
        ({"val_fraction": 1.0}, "val_fraction must be in"),
    ],
)
def test_bad_settings_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


def test_lora_on_a_model_without_the_target_modules_is_a_clear_error(tiny_model_dir, tmp_path):
    backbone = load_backbone(tiny_model_dir)
    with pytest.raises(ValueError, match=r"LoRA target modules \['q_proj'\] are not linear layers"):
        jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "ft",
                             settings(mode="lora", lora_targets=["q_proj"]))
    assert not (tmp_path / "ft" / jt.CHECKPOINT_DIR).exists()


def test_everything_written_is_safetensors_or_json_and_loads_without_pickle(tiny_model_dir, tmp_path, monkeypatch):
    backbone = load_backbone(tiny_model_dir)
    jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "ft", settings(epochs=2))
    written = sorted(p.relative_to(tmp_path / "ft") for p in (tmp_path / "ft").rglob("*") if p.is_file())
    assert {str(p.parent) for p in written} == {".", jt.CHECKPOINT_DIR, jt.BEST_DIR}
    assert all(p.suffix in (".safetensors", ".json") for p in written), written

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load (pickle) was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert "+ft-full-" in load_backbone(tmp_path / "ft").id
    assert jt.load_finetuned_heads(tmp_path / "ft").config.n_heads == 4


def test_a_tampered_weights_file_is_refused(tiny_model_dir, tmp_path):
    backbone = load_backbone(tiny_model_dir)
    jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "ft", settings())
    weights = tmp_path / "ft" / jt.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="does not match its manifest"):
        load_backbone(tmp_path / "ft")


def test_a_new_backbone_id_recomputes_embeddings_for_that_backbone_only(tiny_model_dir, tmp_path):
    from hyre_engine.data import preferences_from_records
    from hyre_engine.pipeline import ensure_embeddings
    from hyre_engine.store import Store

    data = make_data(12)
    records = [{"prompt": "question", "response_a": a, "response_b": b, "label": "a" if y else "b"}
               for a, b, y in zip(data.texts_a, data.texts_b, data.y, strict=True)]
    store = Store(tmp_path / "s.duckdb")
    pool = store.add_pool("tiny", preferences_from_records(records))
    base = load_backbone(tiny_model_dir)
    n_texts = len(store.pool_texts(pool))
    assert ensure_embeddings(store, pool, base) == (n_texts, 0)
    before = store.get_embeddings(base.id, store.pool_texts(pool)["text_hash"].tolist())

    jt.finetune_backbone(load_backbone(tiny_model_dir), make_heads(base), data, tmp_path / "ft",
                         settings(backbone_lr=5e-2))
    tuned = load_backbone(tmp_path / "ft")
    assert tuned.id != base.id
    assert ensure_embeddings(store, pool, tuned) == (n_texts, 0)  # all recomputed under the new id
    assert ensure_embeddings(store, pool, tuned) == (0, n_texts)
    assert ensure_embeddings(store, pool, base) == (0, n_texts)  # the base's cache is untouched
    hashes = store.pool_texts(pool)["text_hash"].tolist()
    np.testing.assert_array_equal(store.get_embeddings(base.id, hashes), before)
    assert not np.allclose(store.get_embeddings(tuned.id, hashes), before)


def test_a_longer_run_continues_a_shorter_one(tiny_model_dir, tmp_path):
    data = make_data(24)

    def run(folder, epochs):
        backbone = load_backbone(tiny_model_dir)
        return jt.finetune_backbone(backbone, make_heads(backbone), data, folder, settings(epochs=epochs))

    run(tmp_path / "grow", 1)
    grown = run(tmp_path / "grow", 2)
    straight = run(tmp_path / "straight", 2)
    assert grown.resumed_from == 1
    assert grown.backbone_id == straight.backbone_id  # same weights, bit for bit
    with pytest.raises(ValueError, match="more than the 1 asked for"):
        run(tmp_path / "grow", 1)


@pytest.mark.slow
def test_the_embedded_minilm_fine_tunes_and_loads_back(tmp_path):
    """The sentence-transformers path (its own pooling and normalisation) on the real model."""
    base = load_backbone(None, max_length=32)
    data = make_data(16)
    result = jt.finetune_backbone(base, make_heads(base), data, tmp_path / "ft",
                                  settings(batch_pairs=4, max_length=32, backbone_lr=1e-4))
    loaded = load_backbone(tmp_path / "ft")
    assert loaded.kind == "sentence-transformers" and loaded.max_length == 32
    assert loaded.id == result.backbone_id != load_backbone(None, max_length=32).id
    texts = data.texts_a[:4]
    np.testing.assert_array_equal(loaded.embed_texts(texts), result.trained.embed_texts(texts))
    assert not np.allclose(loaded.embed_texts(texts), load_backbone(None, max_length=32).embed_texts(texts))


def _tiny_pool(store, n: int = 24):
    from hyre_engine.data import preferences_from_records

    data = make_data(n)
    records = [{"prompt": "question", "response_a": a, "response_b": b, "label": "a" if y else "b",
                "group": f"g{i % 3}"}
               for i, (a, b, y) in enumerate(zip(data.texts_a, data.texts_b, data.y, strict=True))]
    return store.add_pool("tiny", preferences_from_records(records))


def test_build_with_a_finetuned_backbone_caches_under_the_new_id_and_rebuilds_nothing(tiny_model_dir, tmp_path):
    from hyre_engine.pipeline import BuildConfig, build_pool, load_model
    from hyre_engine.store import Store

    store = Store(tmp_path / "s.duckdb")
    pool = _tiny_pool(store)
    config = BuildConfig(backbone=str(tiny_model_dir), n_heads=4, hidden=8, annotator_fraction=0.5,
                         calibrate=False, finetune=settings(epochs=2))
    report = build_pool(store, pool, config)
    base = load_backbone(tiny_model_dir)
    assert report.finetuned and report.trained and report.predicted
    assert report.backbone_id.startswith(base.id + "+ft-full-")
    assert store.get_ensemble(report.ensemble_id).backbone_id == report.backbone_id
    tuned = load_backbone(report.finetune_path)
    assert tuned.id == report.backbone_id
    # Z comes from the jointly trained heads on the fine-tuned embeddings
    pairs = store.pool_pairs(pool)
    xa = tuned.embed(pairs["prompt"].tolist(), pairs["response_a"].tolist())
    xb = tuned.embed(pairs["prompt"].tolist(), pairs["response_b"].tolist())
    heads = jt.load_finetuned_heads(report.finetune_path)
    np.testing.assert_allclose(store.get_head_predictions(report.ensemble_id, pool),
                               ens.predict_pairs(heads, xa, xb), atol=1e-5)
    assert heads.head_mask is not None  # the annotator masks train jointly too
    assert ens.fingerprint(load_model(store, report.ensemble_id)) == ens.fingerprint(heads)

    again = build_pool(store, pool, config)
    assert not (again.finetuned or again.trained or again.predicted) and again.embedded == 0
    assert again.ensemble_id == report.ensemble_id


def test_build_refuses_to_finetune_into_an_in_memory_store(tiny_model_dir):
    from hyre_engine.pipeline import BuildConfig, build_pool
    from hyre_engine.store import Store

    store = Store(":memory:")
    pool = _tiny_pool(store)
    with pytest.raises(ValueError, match="needs a store in a file"):
        build_pool(store, pool, BuildConfig(backbone=str(tiny_model_dir), n_heads=4, hidden=8,
                                            calibrate=False, finetune=settings()))


def _tiny_pool_file(tmp_path, n: int = 24):
    data = make_data(n)
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(
        json.dumps({"prompt": "question", "response_a": a, "response_b": b, "label": "a" if y else "b"}) + "\n"
        for a, b, y in zip(data.texts_a, data.texts_b, data.y, strict=True)))
    return path


def test_cli_build_finetune_backbone(tiny_model_dir, tmp_path, capsys):
    from hyre_engine.cli import main

    argv = ["build", "--pool", str(_tiny_pool_file(tmp_path)), "--db", str(tmp_path / "s.duckdb"),
            "--backbone", str(tiny_model_dir), "--heads", "4", "--hidden", "8", "--no-calibrate",
            "--finetune-backbone", "--epochs", "2", "--batch-pairs", "8", "--backbone-lr", "1e-3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["finetuned"] and "+ft-full-" in report["backbone_id"]
    assert "epoch 2/2: validation loss" in captured.err and "fine-tune epoch 1/2" in captured.err
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not again["finetuned"] and again["ensemble_id"] == report["ensemble_id"]


@pytest.mark.parametrize(("option", "message"), [
    (["--head-lr", "0"], "head_lr must be a finite number > 0"),
    (["--backbone-lr", "-1"], "backbone_lr must be a finite number > 0"),
    (["--finetune-mode", "lora", "--lora-targets", "q_proj"], "LoRA target modules"),
])
def test_cli_bad_finetune_settings_are_one_error_line(tiny_model_dir, tmp_path, capsys, option, message):
    from hyre_engine.cli import main

    argv = ["build", "--pool", str(_tiny_pool_file(tmp_path)), "--db", str(tmp_path / "s.duckdb"),
            "--backbone", str(tiny_model_dir), "--heads", "4", "--no-calibrate", "--finetune-backbone", *option]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def test_cli_build_interrupted_by_ctrl_c_resumes_from_its_last_finished_epoch(tiny_model_dir, tmp_path, capsys,
                                                                             monkeypatch):
    from hyre_engine import cli

    pool = _tiny_pool_file(tmp_path)

    def argv(db):  # each store in its own folder, with its fine-tuned backbones beside it
        (tmp_path / db).mkdir(exist_ok=True)
        return ["build", "--pool", str(pool), "--db", str(tmp_path / db / "s.duckdb"), "--backbone", str(tiny_model_dir),
                "--heads", "4", "--hidden", "8", "--no-calibrate", "--finetune-backbone", "--epochs", "2",
                "--batch-pairs", "8", "--backbone-lr", "1e-3"]

    assert cli.main(argv("straight")) == 0
    straight = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    def ctrl_c_after_epoch_one(p) -> None:
        if p.val_loss is not None:  # epoch 1 is scored and checkpointed
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_print_epoch", ctrl_c_after_epoch_one)
    assert cli.main(argv("stopped")) == 130
    assert "interrupted: the fine-tuning keeps its last finished epoch" in capsys.readouterr().err
    [folder] = (tmp_path / "stopped" / "backbones").iterdir()
    assert json.loads((folder / jt.CHECKPOINT_DIR / jt.STATE_FILE).read_text())["epochs_done"] == 1
    monkeypatch.undo()
    assert cli.main(argv("stopped")) == 0
    captured = capsys.readouterr()
    resumed = json.loads(captured.out.strip().splitlines()[-1])
    assert "fine-tune epoch 2/2" in captured.err and "fine-tune epoch 1/2" not in captured.err
    assert resumed["finetuned"] and resumed["backbone_id"] == straight["backbone_id"]


# -- bf16 autocast and gradient checkpointing (tri-state: None = CUDA only) ---------------------


def _watch_precision(backbone):
    """Record, for every call of the first attention query projection with gradients on, its
    output dtype: a checkpointed layer runs it twice per step (forward, then the recompute in
    the backward pass), an autocast one outputs bf16."""
    seen: list[torch.dtype] = []
    query = backbone.encoder.encoder.layer[0].attention.self.query
    query.register_forward_hook(lambda module, args, out: seen.append(out.dtype) if torch.is_grad_enabled() else None)
    return seen


def _record_first_gradients(backbone, model):
    """The gradient each encoder and head parameter holds at the first optimiser step, by name."""
    grads: dict[str, torch.Tensor] = {}
    named = [(f"encoder.{n}", p) for n, p in backbone.encoder.named_parameters()]
    named += [(f"heads.{n}", p) for n, p in model.named_parameters() if p.requires_grad]

    def keep_first(param, name):
        if name not in grads:
            grads[name] = param.grad.detach().clone()

    for name, param in named:
        param.register_post_accumulate_grad_hook(lambda p, name=name: keep_first(p, name))
    return grads


def test_bf16_and_gradient_checkpointing_on_cpu_train_one_step(tiny_model_dir, tmp_path):
    """True turns both on for a CPU: one step (16 training pairs, 16 a step) runs under bf16
    autocast, through checkpointed layers, with float32 master weights, and moves encoder and
    heads but never the priors."""
    backbone = load_backbone(tiny_model_dir, device="cpu")
    before = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    model = make_heads(backbone)
    priors = {k: v.clone() for k, v in model.prior.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    seen = _watch_precision(backbone)
    checkpointing_during_training = []
    result = jt.finetune_backbone(
        backbone, model, make_data(24), tmp_path / "ft",
        settings(bf16=True, gradient_checkpointing=True, batch_pairs=16, warm_start_heads=False),
        progress=lambda p: checkpointing_during_training.append(backbone.encoder.is_activation_checkpointing))
    assert seen == [torch.bfloat16, torch.bfloat16]  # one step: its forward and its recompute
    assert checkpointing_during_training and all(checkpointing_during_training)
    [epoch] = result.history
    assert np.isfinite(epoch["train_loss"]) and np.isfinite(epoch["val_loss"])
    after = result.trained.encoder.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert all(p.dtype == torch.float32 for p in result.ensemble.parameters())
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert len(changed) > 0.5 * sum(v.is_floating_point() for v in before.values())
    assert any(not torch.equal(heads_before[k], v) for k, v in result.ensemble.heads.state_dict().items())
    for k, v in result.ensemble.prior.state_dict().items():
        assert torch.equal(priors[k], v), k  # bit-identical
    assert jt.read_manifest(tmp_path / "ft")["training"]["config"]["bf16"] is True


def test_auto_precision_on_cpu_is_float32_without_checkpointing_and_equals_off(tiny_model_dir, tmp_path):
    """None (the default) on a CPU is exactly False: float32, every activation kept (one query
    call per step), the same weights bit for bit."""
    data, probe = make_data(24), make_data(6, seed=5).texts_a

    def run(folder, **precision):
        backbone = load_backbone(tiny_model_dir, device="cpu")
        seen = _watch_precision(backbone)
        result = jt.finetune_backbone(backbone, make_heads(backbone), data, tmp_path / folder,
                                      settings(batch_pairs=16, **precision))
        assert not backbone.encoder.is_activation_checkpointing
        return seen, result, ens.predict(result.ensemble, result.trained.embed_texts(probe))

    assert jt.JointTrainingConfig().bf16 is None and jt.JointTrainingConfig().gradient_checkpointing is None
    seen_auto, auto, z_auto = run("auto")
    seen_off, off, z_off = run("off", bf16=False, gradient_checkpointing=False)
    assert seen_auto == seen_off == [torch.float32]
    assert auto.backbone_id.split("+")[1] == off.backbone_id.split("+")[1]  # the weights' hash
    np.testing.assert_array_equal(z_auto, z_off)
    assert not jt.setting_on(None, "cpu") and jt.setting_on(None, "cuda")
    assert jt.setting_on(True, "cpu") and not jt.setting_on(False, "cuda")


def test_a_checkpointed_step_has_the_gradients_of_a_plain_one(tiny_model_dir, tmp_path):
    """In float32, recomputing the layers in the backward pass (dropout drawn again from the
    saved generator state) gives the first step's gradients of a run that keeps them."""

    def first_gradients(checkpointing):
        backbone = load_backbone(tiny_model_dir, device="cpu")
        model = make_heads(backbone)
        grads = _record_first_gradients(backbone, model)
        seen = _watch_precision(backbone)
        jt.finetune_backbone(backbone, model, make_data(24), tmp_path / str(checkpointing),
                             settings(bf16=False, gradient_checkpointing=checkpointing, batch_pairs=16,
                                      warm_start_heads=False))
        assert len(seen) == (2 if checkpointing else 1)
        return grads

    plain, checkpointed = first_gradients(False), first_gradients(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 20
    assert sum(float(g.abs().sum()) > 0 for g in plain.values()) > 0.5 * len(plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-6, atol=1e-8, msg=name)


def test_lora_under_bf16_keeps_a_bf16_base_untouched_and_float32_adapters(tiny_model_dir, tmp_path):
    """A base loaded in bf16 (as a large reward model would be on a GPU) stays bf16 and bit for
    bit; the adapters Adam updates are float32."""
    backbone = load_backbone(tiny_model_dir, device="cpu")
    backbone.set_encoder(backbone.encoder.to(torch.bfloat16))
    base = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    result = jt.finetune_backbone(
        backbone, make_heads(backbone), make_data(24), tmp_path / "lora",
        settings(mode="lora", backbone_lr=1e-2, lora_dropout=0.0, bf16=True, gradient_checkpointing=True,
                 batch_pairs=16))
    assert np.isfinite(result.history[0]["train_loss"])
    trained = dict(result.trained.encoder.named_parameters())
    adapters = {k: v for k, v in trained.items() if "lora_" in k}
    assert adapters and all(v.dtype == torch.float32 for v in adapters.values())
    assert any(float(v.detach().abs().sum()) > 0 for k, v in adapters.items() if "lora_B" in k)
    for name, value in trained.items():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert value.dtype == torch.bfloat16 and torch.equal(value.detach(), base[key]), name


@pytest.mark.parametrize("name", ["bf16", "gradient_checkpointing"])
@pytest.mark.parametrize("value", ["true", 1, 0.0])
def test_precision_settings_of_the_wrong_type_are_clear_errors(name, value):
    with pytest.raises(ValueError, match=f"{name} must be None \\(auto: on for CUDA only\\), True or False"):
        jt.JointTrainingConfig.from_dict({name: value})
    assert getattr(jt.JointTrainingConfig.from_dict(json.loads(json.dumps({name: None}))), name) is None


def test_gradient_checkpointing_asked_of_an_architecture_without_it_is_refused(tiny_model_dir, tmp_path):
    backbone = load_backbone(tiny_model_dir)
    backbone.encoder.supports_gradient_checkpointing = False  # as such architectures declare it
    with pytest.raises(ValueError, match="BertModel does not support activation checkpointing"):
        jt.finetune_backbone(backbone, make_heads(backbone), make_data(), tmp_path / "ft",
                             settings(gradient_checkpointing=True))
    assert not (tmp_path / "ft").exists()  # refused before anything is written


@pytest.mark.parametrize(("flags", "expected"), [
    ([], (None, None)),
    (["--bf16", "--gradient-checkpointing"], (True, True)),
    (["--no-bf16", "--no-gradient-checkpointing"], (False, False)),
    (["--bf16", "--no-gradient-checkpointing"], (True, False)),
])
def test_cli_precision_flags_are_tri_state(flags, expected):
    from hyre_engine.cli import build_parser, finetune_from_args

    args = build_parser(["build"]).parse_args(["build", "--pool", "p.jsonl", "--finetune-backbone", *flags])
    config = finetune_from_args(args)
    assert (config.bf16, config.gradient_checkpointing) == expected
