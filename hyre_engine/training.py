"""Fitting ensembles: joint training of every head, and few-shot fine-tuning.

Every head trains on the same batches with the sum over heads of each head's mean
loss; an annotator mask (``ensemble.make_head_mask``) restricts head k to the rows of
its annotators. ``finetune_heads`` is the paper's fine-tuning comparison: a copy of
the ensemble trained a few steps on a target's handful of labels.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from hyre_engine import ensemble as ens
from hyre_engine.device import describe_device, pick_device

# Training defaults, measured on the 2-core CPU: K = 100, hidden = 128, 810 demo pairs
# of 384-d embeddings. 5 epochs (35 steps of 128) give the same held-out persona
# accuracy as the former 15 epochs (105 steps): HyRe 0.482/0.515/0.556/0.588/0.615 vs
# 0.486/0.514/0.550/0.583/0.613 at n = 0/1/5/10/20 (bench/eval_demo.py, 5 seeds), in a
# third of the time; the extra epochs only drove the training loss from 0.05 to 0.005.
# Small data sets get more epochs so that every fit takes at least DEFAULT_MIN_STEPS steps.
DEFAULT_EPOCHS = 5
DEFAULT_MIN_STEPS = 35
DEFAULT_LR = 3e-3
DEFAULT_BATCH_SIZE = 128
# No weight decay: decay would pull the learnable part to zero, i.e. towards the prior,
# fighting the fit; the priors, not shrinkage, are what keeps the heads diverse.
DEFAULT_WEIGHT_DECAY = 0.0
# Floor on a feature's standard deviation so constant features are left unscaled.
MIN_INPUT_STD = 1e-6

# Fine-tuning on a few labels: full-batch Adam; 100 steps at lr 1e-3 fit 1-10 pairs
# without moving the heads far from the trained ensemble.
DEFAULT_FINETUNE_STEPS = 100
DEFAULT_FINETUNE_LR = 1e-3

# progress(step, total_steps, mean loss over heads of the step's batch)
Progress = Callable[[int, int, float], None]


@dataclass
class TrainReport:
    """What a fit did. ``final_loss`` is the last epoch's loss averaged over heads."""

    final_loss: float
    steps: int
    seconds: float
    device: str
    epoch_losses: list[float] = field(default_factory=list)


def _check_training_data(
    model: ens.Ensemble, task: str, inputs, targets, row_groups
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    if task not in ens.TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {list(ens.TASKS)}")
    d = model.config.input_dim
    if task == "preference":
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError("preference inputs must be a pair (xa, xb) of (n, D) arrays")
        xs = [ens.as_matrix("xa", inputs[0], d), ens.as_matrix("xb", inputs[1], d)]
        if xs[0].shape != xs[1].shape:
            raise ValueError(
                f"xa and xb must have the same shape, got {xs[0].shape} and {xs[1].shape}"
            )
    else:
        xs = [ens.as_matrix("inputs", inputs, d)]
    n = xs[0].shape[0]
    y = np.asarray(targets, dtype=np.float32)
    if y.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) to match the inputs, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("targets contain non-finite values")
    if task != "regression" and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{task} targets must be 0 or 1")
    groups = None
    if row_groups is not None:
        if model.head_mask is None:
            raise ValueError(
                "row_groups given but the model has no head_mask (set config.mask_groups)"
            )
        groups = np.asarray(row_groups)
        n_groups = model.head_mask.shape[1]
        if groups.shape != (n,) or not np.issubdtype(groups.dtype, np.integer):
            raise ValueError(
                f"row_groups must be an integer array of shape ({n},), got {groups.shape} {groups.dtype}"
            )
        if n and (groups.min() < 0 or groups.max() >= n_groups):
            raise ValueError(
                f"row_groups must index the {n_groups} mask groups (0..{n_groups - 1})"
            )
    return xs, y, groups


def _per_row_loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, K) loss of each head on each row; ``out`` is a margin, logit or value."""
    if task == "regression":
        return (out - y[:, None]) ** 2
    # -log sigmoid(s * out), s = 2y - 1: Bradley-Terry for margins, BCE with logits otherwise.
    return F.softplus(-(2 * y[:, None] - 1) * out)


def head_losses(
    model: ens.Ensemble,
    task: str,
    xs: list[torch.Tensor],
    y: torch.Tensor,
    row_mask: torch.Tensor | None = None,
    priors: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-head mean loss (K,) on one batch; with ``row_mask`` (B, K) each head
    averages over its own rows only (0 and no gradient for a head with none).
    ``priors``: cached prior outputs aligned with ``xs`` (shared-base kind only)."""
    x = torch.cat(xs, dim=0)
    out = model(x) if priors is None else model(x, prior_out=torch.cat(priors, dim=0))
    out = out.float()
    if task == "preference":
        out = out[: len(y)] - out[len(y) :]
    loss = _per_row_loss(task, out, y)
    if row_mask is None:
        return loss.mean(dim=0)
    m = row_mask.to(loss.dtype)
    return (loss * m).sum(dim=0) / m.sum(dim=0).clamp(min=1.0)


def _fit_input_stats(model: ens.Ensemble, xs: list[np.ndarray]) -> None:
    if not model.config.standardize or bool(model.input_fitted.item()):
        return
    stacked = np.concatenate(xs, axis=0).astype(np.float64)
    if len(stacked) == 0:
        return
    std = stacked.std(axis=0)
    std[std < MIN_INPUT_STD] = 1.0
    dev = model.input_mean.device
    model.input_mean.copy_(torch.as_tensor(stacked.mean(axis=0), dtype=torch.float32, device=dev))
    model.input_std.copy_(torch.as_tensor(std, dtype=torch.float32, device=dev))
    model.input_fitted.fill_(1)


def _batched_prior(model: ens.SharedBaseEnsemble, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([model.prior_outputs(x[lo : lo + chunk]) for lo in range(0, len(x), chunk)])


def _resolve_device(device) -> torch.device:
    if device is None:
        return pick_device()
    return pick_device(str(device))


@dataclass
class _Batches:
    """The training rows on the device: inputs, targets, the (N, K) row x head mask, and
    the frozen priors' outputs cached once (they never change during a fit)."""

    xs: list[torch.Tensor]
    y: torch.Tensor
    row_mask: torch.Tensor | None
    priors: list[torch.Tensor] | None

    @classmethod
    def on(cls, model: ens.Ensemble, xs_np, y_np, groups_np, dev: torch.device) -> _Batches:
        xs = [torch.from_numpy(x).to(dev) for x in xs_np]
        row_mask = None
        if groups_np is not None:
            # (N, K): whether row i's group is in head k's mask
            row_mask = model.head_mask[:, torch.from_numpy(groups_np).long().to(dev)].T
        priors = None
        if isinstance(model, ens.SharedBaseEnsemble) and model.config.prior_scale != 0.0:
            priors = [_batched_prior(model, x) for x in xs]
        return cls(xs=xs, y=torch.from_numpy(y_np).to(dev), row_mask=row_mask, priors=priors)

    def loss(self, model: ens.Ensemble, task: str, idx: torch.Tensor) -> torch.Tensor:
        """Per-head mean loss (K,) on the rows ``idx``."""
        return head_losses(
            model, task, [x[idx] for x in self.xs], self.y[idx],
            self.row_mask[idx] if self.row_mask is not None else None,
            priors=[p[idx] for p in self.priors] if self.priors is not None else None,
        )


def _run_steps(model, task: str, batches: _Batches, optimizer, *, total: int, batch_size: int,
               rng: np.random.Generator, dev: torch.device, progress: Progress | None):
    """``total`` minibatch steps over epochs of shuffled rows: (steps run, loss per epoch)."""
    n = len(batches.y)
    use_autocast = dev.type == "cuda"  # bf16 autocast where it is fast and safe: CUDA only
    step = 0
    epoch_losses: list[float] = []
    while step < total:
        order = torch.from_numpy(rng.permutation(n)).to(dev)
        running, count = 0.0, 0
        for lo in range(0, n, batch_size):
            if step >= total:
                break
            idx = order[lo : lo + batch_size]
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_autocast):
                per_head = batches.loss(model, task, idx)
            optimizer.zero_grad(set_to_none=True)
            per_head.sum().backward()
            optimizer.step()
            step += 1
            value = float(per_head.detach().mean())
            running += value * len(idx)
            count += len(idx)
            if progress is not None:
                progress(step, total, value)
        epoch_losses.append(running / max(count, 1))
    return step, epoch_losses


def fit_ensemble(
    model: ens.Ensemble,
    *,
    task: str,
    inputs,
    targets,
    row_groups: np.ndarray | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float = DEFAULT_LR,
    batch_size: int = DEFAULT_BATCH_SIZE,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> TrainReport:
    """Train every head jointly (sum over heads of each head's mean loss), in place.

    task "preference": ``inputs = (xa, xb)``, each (N, D); ``targets`` (N,) with 1 when
    A is preferred; loss -log sigmoid(s (r_k(a) - r_k(b))), s = 2y - 1.
    "classification": ``inputs`` (N, D), targets in {0, 1}, BCE with logits.
    "regression": ``inputs`` (N, D), real targets, squared error.
    ``row_groups`` (N,) ints indexing ``model.head_mask``'s columns: head k only learns
    from rows whose group is in its mask. ``steps`` (optional) overrides ``epochs``
    with an exact number of minibatch steps; ``epochs=None`` runs DEFAULT_EPOCHS epochs
    or enough for DEFAULT_MIN_STEPS steps, whichever is more. Adam, minibatches, seeded; bf16 autocast
    on CUDA only. The model stays on ``device`` (default ``pick_device()``).
    """
    xs_np, y_np, groups_np = _check_training_data(model, task, inputs, targets, row_groups)
    n = len(y_np)
    if n == 0:
        raise ValueError("no training rows")
    if batch_size < 1 or (epochs is not None and epochs < 1) or (steps is not None and steps < 1):
        raise ValueError(
            f"batch_size, epochs and steps must be >= 1, got {batch_size}, {epochs}, {steps}"
        )
    dev = _resolve_device(device)
    model.to(dev)
    _fit_input_stats(model, xs_np)
    batches = _Batches.on(model, xs_np, y_np, groups_np, dev)
    if epochs is None:
        epochs = max(DEFAULT_EPOCHS, math.ceil(DEFAULT_MIN_STEPS / math.ceil(n / batch_size)))
    total = steps if steps is not None else epochs * math.ceil(n / batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    model.train()
    start = time.perf_counter()
    step, epoch_losses = _run_steps(model, task, batches, optimizer, total=total, batch_size=batch_size,
                                    rng=np.random.default_rng(seed), dev=dev, progress=progress)
    model.eval()
    return TrainReport(
        final_loss=epoch_losses[-1],
        steps=step,
        seconds=time.perf_counter() - start,
        device=describe_device(dev),
        epoch_losses=epoch_losses,
    )



# --------------------------------------------------------------------------- fine-tuning


def finetune_heads(
    model: ens.Ensemble,
    *,
    task: str,
    inputs,
    targets,
    steps: int = DEFAULT_FINETUNE_STEPS,
    lr: float = DEFAULT_FINETUNE_LR,
    seed: int = 0,
    device=None,
) -> ens.Ensemble:
    """A copy of ``model`` whose learnable parameters are fine-tuned on the adaptation data.

    The paper's comparison: fine-tune all heads (jointly, the ensemble's training loss)
    on the target's few labels; frozen priors stay frozen. ``inputs`` / ``targets`` as
    in ``fit_ensemble`` (for preferences ``(xa, xb)`` each (n, D), y (n,)).
    Full-batch steps. The original model is left untouched.
    """
    tuned = copy.deepcopy(model)
    # Never re-estimate the input statistics from a handful of labels: keep the
    # ensemble's own (identity ones if it never saw data), so the copy starts as the same function.
    tuned.input_fitted.fill_(1)
    n = int(np.asarray(targets).size)  # fit_ensemble checks the shape
    fit_ensemble(
        tuned,
        task=task,
        inputs=inputs,
        targets=targets,
        steps=steps,
        lr=lr,
        batch_size=max(n, 1),
        seed=seed,
        device=device,
    )
    return tuned
