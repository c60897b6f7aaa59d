"""Joint fine-tuning: train the backbone together with the ensemble's heads.

The frozen-embedding ensemble can only reweight what the backbone's features
already separate. Here the text encoder is trained with the heads on the
training rows, with the loss the heads train on anyway (the sum over heads of
each head's Bradley-Terry loss, each head on its own annotators' rows when the
ensemble has a head x annotator mask). The heads' frozen random priors stay
buffers: they read the (changing) embedding but are never updated.

Two modes:

- ``"full"``: every weight of the encoder trains (small backbones such as MiniLM).
- ``"lora"``: low-rank adapters (``peft``) on the attention projections; the base
  weights stay untouched (large reward-model backbones).

The result is a folder: ``hyre_backbone.json`` (manifest: base model, mode,
adapter settings, training history), ``backbone.safetensors`` (full encoder
weights, or the adapter only), ``heads.safetensors`` / ``heads.json`` (the jointly
trained ensemble). `hyre_engine.backbone.load_backbone` loads such a folder as a
`Backbone` whose id is the base id plus ``+ft-<mode>-<hash of the weights>``, so
embeddings and Z are cached under it and the rest of the app works unchanged.

Training checkpoints after every epoch (atomically); an interrupted run keeps the
last finished epoch and `finetune_backbone` with the same arguments resumes from
it. Every epoch starts from RNG states derived from (seed, epoch), so a resumed
run ends bit-identical to an uninterrupted one on the CPU. A held-out validation
split of the training pairs is scored after every epoch and the best epoch is kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from hyre_engine import ensemble as ens
from hyre_engine import training
from hyre_engine.backbone import (
    FINETUNED_MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    WEIGHTS_FILE,
    Backbone,
    read_manifest,
)
from hyre_engine.backbone import attach_lora as _attach_lora
from hyre_engine.backbone import load_trainable_state as _load_trainable_state
from hyre_engine.settings import DictSettings

HEADS_BASE = "heads"  # heads.safetensors + heads.json (ensemble.save_ensemble)
CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
STATE_FILE = "state.json"

MODES = ("auto", "full", "lora")
# "auto" picks full fine-tuning up to this many encoder parameters: MiniLM-L6 has
# 22 M and BERT-base 110 M, whose full Adam state fits any GPU; billion-parameter
# reward models get LoRA adapters.
FULL_FINETUNE_MAX_PARAMS = 150_000_000
# Backbone learning rate: the usual range for fine-tuning BERT-size encoders (2e-5-5e-5,
# Devlin et al.); heads train from a warm start at a 20x larger rate, as a newly
# attached layer usually does.
DEFAULT_BACKBONE_LR = 2e-5
DEFAULT_HEAD_LR = 1e-3
# LoRA adapters train with a larger rate than full weights (Hu et al. use 1e-4-5e-4).
DEFAULT_LORA_LR = 2e-4
DEFAULT_EPOCHS = 3
# Pairs per micro-batch: 16 pairs = 32 texts of <= 256 tokens fit a CPU step in RAM.
DEFAULT_BATCH_PAIRS = 16
DEFAULT_GRAD_ACCUM = 1
# 10% of the training pairs score each epoch; at least VAL_MIN_PAIRS so that a
# validation loss means something, and never so many that nothing is left to train.
DEFAULT_VAL_FRACTION = 0.1
VAL_MIN_PAIRS = 8
# LoRA rank and scale: the LoRA paper's common setting (r = 8, alpha = 16).
DEFAULT_LORA_R = 8
DEFAULT_LORA_ALPHA = 16
DEFAULT_LORA_DROPOUT = 0.05
# Attention projections to adapt, by architecture family, tried in this order:
# BERT/MiniLM/RoBERTa, Llama/Mistral/Qwen/Gemma, DistilBERT, GPT-2, ModernBERT.
LORA_TARGET_CANDIDATES = (
    ("query", "value"),
    ("q_proj", "v_proj"),
    ("q_lin", "v_lin"),
    ("c_attn",),
    ("Wqkv",),
)
# Warm start of the heads on the frozen embeddings: one pass over the training rows
# aligns them with the data; the frozen fit's full length (>= 100 steps) drives the
# training loss near zero, which would leave no gradient for the backbone.
WARM_START_EPOCHS = 1
# Offset between the shuffling/dropout seed of epoch e and the next one's.
_EPOCH_SEED_STRIDE = 1_000_003
# The validation split is drawn from its own seed so that it does not move with the
# ensemble seed's mask draws.
_VAL_SEED_OFFSET = 104_729
# The LoRA adapters' initialisation, likewise on a seed of its own.
_LORA_SEED_OFFSET = 7_919


@dataclass
class JointTrainingConfig(DictSettings):
    """Settings of a joint fine-tuning run; JSON-safe (stored in the manifest and the checkpoint)."""

    mode: str = "auto"
    backbone_lr: float | None = None  # None: DEFAULT_BACKBONE_LR (full) or DEFAULT_LORA_LR (lora)
    head_lr: float = DEFAULT_HEAD_LR
    epochs: int = DEFAULT_EPOCHS
    max_length: int | None = None  # tokens; None: the backbone's window
    batch_pairs: int = DEFAULT_BATCH_PAIRS
    grad_accum: int = DEFAULT_GRAD_ACCUM
    val_fraction: float = DEFAULT_VAL_FRACTION
    weight_decay: float = 0.0
    lora_r: int = DEFAULT_LORA_R
    lora_alpha: int = DEFAULT_LORA_ALPHA
    lora_dropout: float = DEFAULT_LORA_DROPOUT
    lora_targets: list[str] | None = None  # None: chosen by architecture
    # Fit the heads on the frozen embeddings first (fit_ensemble), then train jointly:
    # random heads would push large, arbitrary gradients into the pretrained encoder
    # in the first steps (linear probing before fine-tuning, Kumar et al. 2022).
    warm_start_heads: bool = True
    # bf16 autocast for the forward passes, and activation checkpointing in the encoder (its
    # layers' activations recomputed in the backward pass instead of kept). None: on for CUDA,
    # off elsewhere, so CPU runs stay in float32 with every activation kept; True: on for any
    # device (CPU autocast runs bf16 too); False: off.
    bf16: bool | None = None
    gradient_checkpointing: bool | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown fine-tuning mode {self.mode!r}; valid modes: {list(MODES)}")
        for name in ("backbone_lr", "head_lr"):
            value = getattr(self, name)
            if value is None and name == "backbone_lr":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
            setattr(self, name, float(value))
        for name in ("epochs", "batch_pairs", "grad_accum", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 8):
            raise ValueError(f"max_length must be None or an integer >= 8 tokens, got {self.max_length!r}")
        if not 0 < float(self.val_fraction) < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        self.val_fraction = float(self.val_fraction)
        if not 0 <= float(self.lora_dropout) < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not math.isfinite(float(self.weight_decay)) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("bf16", "gradient_checkpointing"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(
                    f"{name} must be None (auto: on for CUDA only), True or False, got {value!r}"
                )
        if self.lora_targets is not None:
            targets = [str(t) for t in self.lora_targets]
            if not targets:
                raise ValueError("lora_targets must be None or a non-empty list of module names")
            self.lora_targets = targets
        self.seed = int(self.seed)


@dataclass(frozen=True)
class EpochProgress:
    """What a progress callback receives, after every optimiser step and every epoch."""

    epoch: int  # 1-based, the epoch running
    epochs: int
    step: int  # micro-batches done in this epoch
    steps: int  # micro-batches per epoch
    loss: float  # running mean training loss of this epoch (mean over heads)
    elapsed: float  # seconds since this run (or resume) started
    eta: float  # seconds left for the whole run, from the speed so far
    val_loss: float | None = None  # set once the epoch is scored
    val_accuracy: float | None = None


ProgressCallback = Callable[[EpochProgress], None]


class TrainingStopped(Exception):
    """Raised when a ``stop`` callback asked training to end; the last epoch's checkpoint is kept."""

    def __init__(self, epochs_done: int, path: Path) -> None:
        super().__init__(
            f"fine-tuning stopped after {epochs_done} finished epoch(s); checkpoint kept in {path}: "
            "run again with the same settings to resume"
        )
        self.epochs_done = epochs_done
        self.path = path


@dataclass
class JointTrainingResult:
    """A finished run: the folder, its backbone id, and what each epoch scored."""

    path: Path
    backbone_id: str
    mode: str
    best_epoch: int
    history: list[dict]
    resumed_from: int  # epochs already done when this call started (0: fresh)
    seconds: float
    ensemble: ens.Ensemble = field(repr=False)
    # The in-memory encoder after the best epoch (LoRA adapters not merged): tests read it.
    trained: Backbone = field(repr=False)


@dataclass(frozen=True)
class PreferenceTexts:
    """Training pairs as texts: formatted A and B texts (n,), labels y (n,) (1: A preferred),
    optional row groups (n,) indexing the ensemble's head x group mask columns, and a
    pair key per row so that rows of one pair stay on the same side of the validation split."""

    texts_a: list[str]
    texts_b: list[str]
    y: np.ndarray
    row_groups: np.ndarray | None = None
    pair_keys: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.texts_a)
        if len(self.texts_b) != n:
            raise ValueError(f"texts_a and texts_b differ in length: {n} != {len(self.texts_b)}")
        y = np.asarray(self.y, dtype=np.float32)
        if y.shape != (n,) or not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"y must have shape ({n},) with values 0 or 1, got shape {y.shape}")
        object.__setattr__(self, "y", y)
        if self.row_groups is not None:
            groups = np.asarray(self.row_groups)
            if groups.shape != (n,) or not np.issubdtype(groups.dtype, np.integer):
                raise ValueError(f"row_groups must be an integer array of shape ({n},), got {groups.shape}")
            object.__setattr__(self, "row_groups", groups.astype(np.int64))
        if self.pair_keys is not None and len(self.pair_keys) != n:
            raise ValueError(f"pair_keys must have {n} entries, got {len(self.pair_keys)}")

    def __len__(self) -> int:
        return len(self.texts_a)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for i in range(len(self)):
            group = "" if self.row_groups is None else str(int(self.row_groups[i]))
            digest.update("\x1f".join((self.texts_a[i], self.texts_b[i], str(int(self.y[i])), group)).encode())
            digest.update(b"\x1e")
        return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- encoder plumbing


def encoder_parameter_count(backbone: Backbone) -> int:
    return sum(p.numel() for p in backbone.encoder.parameters())


def resolve_mode(backbone: Backbone, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown fine-tuning mode {mode!r}; valid modes: {list(MODES)}")
    if mode != "auto":
        return mode
    return "full" if encoder_parameter_count(backbone) <= FULL_FINETUNE_MAX_PARAMS else "lora"


def _linear_leaf_names(module: torch.nn.Module) -> set[str]:
    names = set()
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Linear) or type(sub).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return names


def lora_targets_for(backbone: Backbone, targets: Sequence[str] | None) -> list[str]:
    """The module names LoRA adapts: ``targets`` checked against the encoder, or the first
    known family of attention projections the encoder has."""
    available = _linear_leaf_names(backbone.encoder)
    if targets is not None:
        missing = sorted(set(targets) - available)
        if missing:
            raise ValueError(
                f"LoRA target modules {missing} are not linear layers of {backbone.name}; "
                f"its linear layers are named {sorted(available)}"
            )
        return list(targets)
    for candidate in LORA_TARGET_CANDIDATES:
        if set(candidate) <= available:
            return list(candidate)
    raise ValueError(
        f"{backbone.name} has none of the known attention projections for LoRA "
        f"({[list(c) for c in LORA_TARGET_CANDIDATES]}); pass lora_targets from its linear layers "
        f"{sorted(available)}"
    )


def _lora_settings(targets: list[str], config: JointTrainingConfig) -> dict:
    return {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
            "targets": list(targets)}


def _trainable_state(backbone: Backbone, peft_model) -> dict[str, torch.Tensor]:
    """The trained encoder tensors: the adapter (LoRA) or the whole encoder state (full)."""
    if peft_model is not None:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(peft_model)
    else:
        state = backbone.encoder.state_dict()
    # clone: tied weights (shared storage) must be separate tensors for safetensors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def embed_with_grad(backbone: Backbone, texts: list[str]) -> torch.Tensor:
    """Embeddings (len(texts), dim) of formatted texts through the backbone's own pipeline,
    differentiable (truncation at the backbone's window, as `Backbone.embed`)."""
    from hyre_engine.backbone import pooled_hidden

    if backbone.kind == "sentence-transformers":
        features = backbone.model.preprocess(texts)
        features = {k: (v.to(backbone.device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
        return backbone.model(features)["sentence_embedding"]
    enc = backbone.tokenizer(texts, padding=True, truncation=True, max_length=backbone.max_length,
                             return_tensors="pt")
    enc = {k: v.to(backbone.device) for k, v in enc.items()}
    return pooled_hidden(backbone.model, enc, pooling=backbone.pooling, position_ids=backbone._position_ids)


def setting_on(setting: bool | None, device: torch.device | str) -> bool:
    """Whether a tri-state setting (``bf16``, ``gradient_checkpointing``) is on for ``device``:
    None means on for CUDA only."""
    return torch.device(device).type == "cuda" if setting is None else setting


def _supports_gradient_checkpointing(encoder) -> bool:
    return bool(getattr(encoder, "supports_gradient_checkpointing", False))


def _enable_gradient_checkpointing(encoder) -> None:
    """Activation checkpointing in a Hugging Face encoder (skipped where the architecture has none)."""
    if not _supports_gradient_checkpointing(encoder):
        return
    # Non-reentrant checkpointing also works when only adapters (not the inputs) need gradients.
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):  # newer transformers: the old name is its deprecated alias
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _set_train_mode(backbone: Backbone, training: bool) -> None:
    backbone.model.train(training)


# --------------------------------------------------------------------------- checkpoints


def _write_dir_atomically(target: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``target`` so that a reader sees the old folder or the new one, never half."""
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _recover_interrupted_swap(target: Path) -> None:
    """Put back the folder an interrupted `_write_dir_atomically` had moved aside.

    Between its two renames only ``<name>.old`` holds the previous (complete) folder; a
    Ctrl-C or a closing app there would otherwise make a resumed run start from scratch.
    """
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.is_dir():
        old.rename(target)


def _optimizer_files(optimizer: torch.optim.Optimizer) -> dict[str, bytes]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return {"optimizer.safetensors": st_save(tensors) if tensors else st_save({"_empty": torch.zeros(1)}),
            "optimizer.json": json.dumps(scalars).encode()}


def _load_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    tensors = st_load((folder / "optimizer.safetensors").read_bytes())
    scalars = json.loads((folder / "optimizer.json").read_text())
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name == "_empty":
            continue
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    # Hyperparameters come from the optimiser just built; only the moments are restored.
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def _weights_files(backbone: Backbone, peft_model, model: ens.Ensemble) -> dict[str, bytes]:
    heads, heads_json = ens.ensemble_to_bytes(model)
    return {WEIGHTS_FILE: st_save(_trainable_state(backbone, peft_model)),
            "heads.safetensors": heads, "heads.json": heads_json.encode()}


def _restore_weights(backbone: Backbone, peft_model, model: ens.Ensemble, folder: Path) -> None:
    _load_trainable_state(backbone, peft_model, st_load((folder / WEIGHTS_FILE).read_bytes()))
    dev = ens._model_device(model)
    model.load_state_dict(st_load((folder / "heads.safetensors").read_bytes()), strict=True)
    model.to(dev)


# --------------------------------------------------------------------------- training


def split_validation(data: PreferenceTexts, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation): a seeded ``fraction`` of the pairs, whole pairs on one side."""
    keys = data.pair_keys or [f"{a}\x1f{b}" for a, b in zip(data.texts_a, data.texts_b, strict=True)]
    unique = sorted(set(keys))
    n_val = max(VAL_MIN_PAIRS, round(fraction * len(unique)))
    if n_val >= len(unique):
        raise ValueError(
            f"{len(unique)} training pairs are too few to hold out {n_val} for validation "
            f"(need more than {VAL_MIN_PAIRS} pairs)"
        )
    rng = np.random.default_rng(seed + _VAL_SEED_OFFSET)
    held = {unique[i] for i in rng.choice(len(unique), size=n_val, replace=False)}
    is_val = np.array([k in held for k in keys])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _micro_batches(rows: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rows[rng.permutation(len(rows))]
    return [order[lo : lo + size] for lo in range(0, len(order), size)]


def _batch_loss(backbone, model, data: PreferenceTexts, idx: np.ndarray, row_mask_all, dev, autocast: bool):
    texts = [data.texts_a[i] for i in idx] + [data.texts_b[i] for i in idx]
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
        emb = embed_with_grad(backbone, texts).float()
        y = torch.from_numpy(data.y[idx]).to(dev)
        mask = row_mask_all[torch.from_numpy(idx).to(dev)] if row_mask_all is not None else None
        per_head = training.head_losses(model, "preference", [emb[: len(idx)], emb[len(idx) :]], y, mask)
    return per_head


@torch.no_grad()
def _evaluate(backbone, model, data: PreferenceTexts, rows: np.ndarray, batch: int, dev, autocast: bool):
    """(mean over heads and rows of the Bradley-Terry loss, accuracy of the heads' mean probability)."""
    from hyre_engine.numerics import accuracy

    _set_train_mode(backbone, False)
    model.eval()
    losses, probs = [], []
    for lo in range(0, len(rows), batch):
        idx = rows[lo : lo + batch]
        texts = [data.texts_a[i] for i in idx] + [data.texts_b[i] for i in idx]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(embed_with_grad(backbone, texts).float()).float()
        margins = out[: len(idx)] - out[len(idx) :]
        y = torch.from_numpy(data.y[idx]).to(dev)
        losses.append(float(training._per_row_loss("preference", margins, y).mean()) * len(idx))
        probs.append(torch.sigmoid(margins.double()).mean(dim=1).cpu().numpy())
    return sum(losses) / len(rows), accuracy(np.concatenate(probs), data.y[rows])


def _initial_embeddings(backbone: Backbone, data: PreferenceTexts, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xa = backbone.embed_texts([data.texts_a[i] for i in rows])
    xb = backbone.embed_texts([data.texts_b[i] for i in rows])
    return xa, xb


def _run_key(backbone: Backbone, model: ens.Ensemble, data: PreferenceTexts, config: JointTrainingConfig,
             mode: str) -> str:
    """What a checkpoint belongs to: resuming with anything else would mix two runs."""
    initial = ens.fingerprint(model)
    # Not the number of epochs: epoch e's shuffling and dropout depend on (seed, e) only
    # and nothing is scheduled over the run, so a longer run continues a shorter one.
    settings = json.dumps({**config.to_dict(), "epochs": None, "mode": mode}, sort_keys=True)
    digest = hashlib.sha256(f"{backbone.id}\0{initial}\0{data.fingerprint()}\0{settings}".encode())
    return digest.hexdigest()[:16]


@dataclass
class _Run:
    """What the steps of one fine-tuning run share: its inputs, where it writes, and the
    state that moves from epoch to epoch (optimiser, history, epochs done)."""

    backbone: Backbone
    model: ens.SharedBaseEnsemble
    data: PreferenceTexts
    config: JointTrainingConfig
    out: Path
    key: str  # `_run_key`: what a checkpoint in ``out`` must belong to
    base_id: str  # the backbone's id before training (the manifest's base)
    mode: str  # "full" or "lora"
    lora: dict | None  # the adapter settings in LoRA mode
    train_rows: np.ndarray
    val_rows: np.ndarray
    peft_model: object | None = None
    row_mask_all: torch.Tensor | None = None  # (N, K): which heads train on each row
    optimizer: torch.optim.Optimizer | None = None
    history: list[dict] = field(default_factory=list)
    done: int = 0  # epochs finished (and checkpointed)
    started: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def dev(self) -> torch.device:
        return self.backbone.device

    @property
    def autocast(self) -> bool:
        return setting_on(self.config.bf16, self.dev)

    def eta(self, epoch: int, steps_left: int, per_step: float, n_steps: int) -> float:
        """Seconds left for the run: this epoch's remaining steps, then the epochs to come."""
        per_epoch = np.mean(self.epoch_seconds) if self.epoch_seconds else per_step * n_steps
        return float(steps_left * per_step + (self.config.epochs - epoch) * per_epoch)


def finetune_backbone(
    backbone: Backbone,
    model: ens.Ensemble,
    data: PreferenceTexts,
    out_dir: str | Path,
    config: JointTrainingConfig | None = None,
    *,
    initial_embeddings: tuple[np.ndarray, np.ndarray] | None = None,
    progress: ProgressCallback | None = None,
    show_progress_bar: bool = False,
    stop: Callable[[], bool] | None = None,
) -> JointTrainingResult:
    """Train ``backbone``'s encoder and ``model``'s heads jointly on ``data``; write ``out_dir``.

    ``backbone`` is modified in place (it becomes the trained encoder; load the saved
    folder with `load_backbone` for a clean copy). ``model`` is a freshly built
    ensemble (`ensemble.build_ensemble`, with its head mask when ``data.row_groups``
    is given); its learnable heads and input statistics are trained, its priors never.
    ``initial_embeddings``: the frozen backbone's embeddings (xa, xb) of all rows of
    ``data`` when already cached (they set the input statistics and warm-start the
    heads); computed otherwise. A checkpoint of an earlier, interrupted run with the
    same inputs in ``out_dir`` is resumed. ``stop()`` returning True ends training
    after the current step with `TrainingStopped`; KeyboardInterrupt also keeps
    the last finished epoch's checkpoint.
    """
    config = config or JointTrainingConfig()
    _check_inputs(backbone, model, data, config)
    run = _start_run(backbone, model, data, Path(out_dir), config)
    state = _read_checkpoint_state(run)
    if state is None:
        _warm_start(run, initial_embeddings)
    priors_before = {k: v.detach().clone() for k, v in model.prior.state_dict().items()}
    run.optimizer = _optimizer(run)
    if state is not None:
        _resume(run, state)
    resumed_from = run.done
    run.started = time.perf_counter()
    # Dropout draws from torch's global generator: fork it so the caller's stream is left alone.
    with torch.random.fork_rng(devices=[run.dev] if run.dev.type == "cuda" else []):
        for epoch in range(run.done + 1, config.epochs + 1):
            _train_epoch(run, epoch, progress=progress, stop=stop, show_progress_bar=show_progress_bar)
    for name, value in model.prior.state_dict().items():
        if not torch.equal(value, priors_before[name]):  # the frozen priors must never move
            raise RuntimeError(f"prior tensor {name} changed during fine-tuning")
    best = _write_result(run)
    return JointTrainingResult(
        path=run.out, backbone_id=backbone.id, mode=run.mode, best_epoch=best["epoch"], history=run.history,
        resumed_from=resumed_from, seconds=time.perf_counter() - run.started, ensemble=model,
        trained=backbone,
    )


def _check_inputs(backbone: Backbone, model: ens.Ensemble, data: PreferenceTexts,
                  config: JointTrainingConfig) -> None:
    """ValueError naming what does not fit: the ensemble's kind, mask or width, the data, the window."""
    if not isinstance(model, ens.SharedBaseEnsemble):
        raise ValueError(f"joint fine-tuning trains shared-base ensembles, got {type(model).__name__}")
    if len(data) == 0:
        raise ValueError("no training pairs")
    if data.row_groups is not None and model.head_mask is None:
        raise ValueError("data has row_groups but the ensemble has no head mask (set config.mask_groups)")
    if model.config.input_dim != backbone.dim:
        raise ValueError(f"ensemble input_dim {model.config.input_dim} != backbone dim {backbone.dim}")
    if config.gradient_checkpointing is True and not _supports_gradient_checkpointing(backbone.encoder):
        raise ValueError(
            f"gradient_checkpointing=True, but {type(backbone.encoder).__name__} does not support "
            "activation checkpointing; set it to None (auto) or False"
        )
    if config.max_length is not None and config.max_length != backbone.max_length:
        raise ValueError(
            f"the backbone was loaded with a {backbone.max_length}-token window but max_length is "
            f"{config.max_length}: load it with load_backbone(..., max_length={config.max_length})"
        )


def _start_run(backbone: Backbone, model: ens.SharedBaseEnsemble, data: PreferenceTexts, out: Path,
               config: JointTrainingConfig) -> _Run:
    """The run's mode, key and validation split; the encoder made trainable (and adapted in LoRA mode)."""
    mode = resolve_mode(backbone, config.mode)
    lora = _lora_settings(lora_targets_for(backbone, config.lora_targets), config) if mode == "lora" else None
    out.mkdir(parents=True, exist_ok=True)
    key = _run_key(backbone, model, data, config, mode)
    train_rows, val_rows = split_validation(data, config.val_fraction, config.seed)
    run = _Run(backbone=backbone, model=model, data=data, config=config, out=out, key=key,
               base_id=backbone.id, mode=mode, lora=lora, train_rows=train_rows, val_rows=val_rows)
    # Master weights in float32 for full fine-tuning (Adam on bf16 weights loses small
    # updates); a LoRA base stays in its loaded dtype, the adapters are float32.
    if mode == "full":
        backbone.set_encoder(backbone.encoder.float())
        backbone.encoder.requires_grad_(True)
    if lora is not None:
        # The adapters' random init draws from torch's global generator: seed it from the run
        # (forked, so the caller's stream is left alone), or two runs with the same settings in
        # one process would start from different adapters.
        with torch.random.fork_rng(devices=[run.dev] if run.dev.type == "cuda" else []):
            torch.manual_seed(config.seed + _LORA_SEED_OFFSET)
            run.peft_model = _attach_lora(backbone, lora)
        # peft casts adapters on a half-precision base to float32 by default; state it here so
        # that another peft version cannot leave Adam updating bf16 adapters.
        for param in backbone.encoder.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
    if setting_on(config.gradient_checkpointing, run.dev):
        _enable_gradient_checkpointing(backbone.encoder)
    return run


def _read_checkpoint_state(run: _Run) -> dict | None:
    """The state of an earlier run's checkpoint in the folder (None: a fresh run); the model
    moves to the device and each row's head mask is set."""
    for name in (CHECKPOINT_DIR, BEST_DIR):
        _recover_interrupted_swap(run.out / name)
    state_path = run.out / CHECKPOINT_DIR / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state is not None and state.get("run_key") != run.key:
        raise ValueError(
            f"{run.out} holds a checkpoint of a different run (other data, settings or base model); "
            "choose another folder or delete it"
        )
    run.model.to(run.dev)
    if run.data.row_groups is not None:
        run.row_mask_all = run.model.head_mask[:, torch.from_numpy(run.data.row_groups).to(run.dev)].T
    return state


def _warm_start(run: _Run, initial_embeddings: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Input statistics from the frozen embeddings of the training rows, then the heads' warm start."""
    backbone, data, config, tr = run.backbone, run.data, run.config, run.train_rows
    xa, xb = initial_embeddings if initial_embeddings is not None else _initial_embeddings(
        backbone, data, np.arange(len(data)))
    xa = np.asarray(xa, dtype=np.float32)
    xb = np.asarray(xb, dtype=np.float32)
    if xa.shape != (len(data), backbone.dim) or xb.shape != xa.shape:
        raise ValueError(
            f"initial_embeddings must be two ({len(data)}, {backbone.dim}) arrays, got {xa.shape}, {xb.shape}"
        )
    training._fit_input_stats(run.model, [xa[tr], xb[tr]])
    if config.warm_start_heads:
        training.fit_ensemble(
            run.model, task="preference", inputs=(xa[tr], xb[tr]), targets=data.y[tr],
            row_groups=None if data.row_groups is None else data.row_groups[tr],
            epochs=WARM_START_EPOCHS, seed=config.seed, device=run.dev,
        )


def _optimizer(run: _Run) -> torch.optim.Optimizer:
    """AdamW over the encoder's trainable weights (the adapters in LoRA mode) and the heads."""
    config = run.config
    backbone_lr = config.backbone_lr or (DEFAULT_LORA_LR if run.mode == "lora" else DEFAULT_BACKBONE_LR)
    head_params = [p for p in run.model.parameters() if p.requires_grad]
    encoder_params = [p for p in run.backbone.encoder.parameters() if p.requires_grad]
    if run.mode == "lora":
        encoder_params = [p for n, p in run.backbone.encoder.named_parameters()
                          if p.requires_grad and "lora_" in n]
    return torch.optim.AdamW(
        [{"params": encoder_params, "lr": backbone_lr}, {"params": head_params, "lr": config.head_lr}],
        weight_decay=config.weight_decay,
    )


def _resume(run: _Run, state: dict) -> None:
    """Weights, optimiser moments and history of the checkpoint's last finished epoch."""
    _restore_weights(run.backbone, run.peft_model, run.model, run.out / CHECKPOINT_DIR)
    _load_optimizer(run.optimizer, run.out / CHECKPOINT_DIR)
    run.history = state["history"]
    run.done = int(state["epochs_done"])
    if run.done > run.config.epochs:
        raise ValueError(
            f"{run.out} holds a checkpoint after {run.done} epochs, more than the {run.config.epochs} "
            f"asked for; ask for at least {run.done} epochs or choose another folder"
        )


def _train_epoch(run: _Run, epoch: int, *, progress: ProgressCallback | None,
                 stop: Callable[[], bool] | None, show_progress_bar: bool) -> None:
    """One epoch: shuffled micro-batches from (seed, epoch), then validation and a checkpoint."""
    config = run.config
    epoch_start = time.perf_counter()
    epoch_seed = config.seed + _EPOCH_SEED_STRIDE * epoch
    rng = np.random.default_rng(epoch_seed)
    torch.manual_seed(epoch_seed)  # dropout masks of this epoch
    batches = _micro_batches(run.train_rows, config.batch_pairs, rng)
    _set_train_mode(run.backbone, True)
    run.model.train()
    bar = None
    if show_progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(batches), desc=f"fine-tune epoch {epoch}/{config.epochs}", unit="batch",
                   file=sys.stderr)
    try:
        loss = _train_steps(run, epoch, batches, epoch_start, bar=bar, progress=progress, stop=stop)
        val_loss, val_acc = _end_epoch(run, epoch, loss, epoch_start)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", val_loss=f"{val_loss:.4f}", val_acc=f"{val_acc:.3f}")
    finally:
        if bar is not None:
            bar.close()
    if progress is not None:
        progress(EpochProgress(epoch, config.epochs, len(batches), len(batches), loss,
                               time.perf_counter() - run.started,
                               float((config.epochs - epoch) * np.mean(run.epoch_seconds)),
                               val_loss=val_loss, val_accuracy=val_acc))


def _train_steps(run: _Run, epoch: int, batches: list[np.ndarray], epoch_start: float, *, bar,
                 progress: ProgressCallback | None, stop: Callable[[], bool] | None) -> float:
    """The optimiser steps of one epoch (gradients accumulated over ``grad_accum`` micro-batches);
    the epoch's mean training loss."""
    config, optimizer = run.config, run.optimizer
    running, count = 0.0, 0
    update_rows = 0
    optimizer.zero_grad(set_to_none=True)
    for i, idx in enumerate(batches):
        if i % config.grad_accum == 0:  # the micro-batches whose gradients add up to the next update
            update_rows = sum(len(b) for b in batches[i : i + config.grad_accum])
        per_head = _batch_loss(run.backbone, run.model, run.data, idx, run.row_mask_all, run.dev, run.autocast)
        # Weighted by rows, not 1 / grad_accum: an update is then the mean over its rows, as one
        # large batch would give, also for an epoch's last, shorter or smaller group.
        (per_head.sum() * (len(idx) / update_rows)).backward()
        if (i + 1) % config.grad_accum == 0 or i + 1 == len(batches):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        running += float(per_head.detach().mean()) * len(idx)
        count += len(idx)
        if bar is not None:
            bar.set_postfix(loss=f"{running / count:.4f}")
            bar.update(1)
        if progress is not None:
            per_step = (time.perf_counter() - epoch_start) / (i + 1)
            progress(EpochProgress(epoch, config.epochs, i + 1, len(batches), running / count,
                                   time.perf_counter() - run.started,
                                   run.eta(epoch, len(batches) - i - 1, per_step, len(batches))))
        if stop is not None and stop():
            raise TrainingStopped(run.done, run.out / CHECKPOINT_DIR)
    return running / max(count, 1)


def _end_epoch(run: _Run, epoch: int, train_loss: float, epoch_start: float) -> tuple[float, float]:
    """Score the validation rows, record the epoch, keep it as best if it is, checkpoint atomically."""
    val_loss, val_acc = _evaluate(run.backbone, run.model, run.data, run.val_rows, run.config.batch_pairs,
                                  run.dev, run.autocast)
    run.epoch_seconds.append(time.perf_counter() - epoch_start)
    run.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "val_accuracy": val_acc, "seconds": round(run.epoch_seconds[-1], 2)})
    best_so_far = min(run.history, key=lambda h: (h["val_loss"], h["epoch"]))
    files = _weights_files(run.backbone, run.peft_model, run.model)
    if best_so_far["epoch"] == epoch:
        _write_dir_atomically(run.out / BEST_DIR, files)
    files.update(_optimizer_files(run.optimizer))
    files[STATE_FILE] = json.dumps({"run_key": run.key, "epochs_done": epoch, "history": run.history,
                                    "mode": run.mode}, indent=1).encode()
    _write_dir_atomically(run.out / CHECKPOINT_DIR, files)
    run.done = epoch
    return val_loss, val_acc


def _write_result(run: _Run) -> dict:
    """Load the best epoch, write the finished folder (the manifest last); the best epoch's history row."""
    backbone, out = run.backbone, run.out
    best = min(run.history, key=lambda h: (h["val_loss"], h["epoch"]))
    _restore_weights(backbone, run.peft_model, run.model, out / BEST_DIR)
    _set_train_mode(backbone, False)
    run.model.eval()
    weights = (out / BEST_DIR / WEIGHTS_FILE).read_bytes()
    variant = f"ft-{run.mode}-{hashlib.sha256(weights).hexdigest()[:12]}"
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "variant": variant,
        "mode": run.mode,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "base": {
            "name": backbone.name,
            # the embedded default is found through its package on any machine
            "path": backbone.name if backbone.name in _default_aliases() else str(backbone.path),
            "revision": backbone.revision,
            "id": run.base_id,
            "max_length": backbone.max_length,
            "pooling": backbone.pooling,
        },
        "lora": run.lora,
        "training": {"config": run.config.to_dict(), "best_epoch": best["epoch"], "history": run.history,
                     "n_pairs": len(run.data), "n_validation_rows": len(run.val_rows), "run_key": run.key},
    }
    for name in (WEIGHTS_FILE, "heads.safetensors", "heads.json"):
        (out / name).write_bytes((out / BEST_DIR / name).read_bytes())
    # The manifest last: a folder without one is not a finished backbone.
    (out / FINETUNED_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    backbone.variant = variant
    return best


def _default_aliases() -> frozenset[str]:
    from hyre_engine.backbone import DEFAULT_ALIASES

    return DEFAULT_ALIASES


# --------------------------------------------------------------------------- loading


def load_finetuned_heads(path: str | Path, *, device: str | torch.device | None = None) -> ens.Ensemble:
    """The ensemble trained jointly with the backbone in ``path``."""
    read_manifest(path)
    return ens.load_ensemble(Path(path) / HEADS_BASE, device=device)


def preference_texts(backbone: Backbone, pairs, labels, *, row_groups: np.ndarray | None = None) -> PreferenceTexts:
    """Training rows of a pool as texts the backbone sees.

    ``pairs``: the pool's pairs (pair_id, prompt, response_a, response_b), ``labels``:
    the training rows (pair_id, label "a"/"b"), in the order the ensemble trains on.
    Texts are templated and fitted to the window exactly as `Backbone.embed` does.
    """
    by_id = pairs.set_index("pair_id")
    rows = by_id.loc[labels["pair_id"].tolist()]
    prompts = rows["prompt"].tolist()
    texts_a = backbone.format(prompts, rows["response_a"].tolist())
    texts_b = backbone.format(prompts, rows["response_b"].tolist())
    y = (labels["label"] == "a").to_numpy().astype(np.float32)
    return PreferenceTexts(texts_a, texts_b, y, row_groups=row_groups, pair_keys=labels["pair_id"].astype(str).tolist())
