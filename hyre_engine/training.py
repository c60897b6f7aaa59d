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
from hyre_engine.adam import Adam
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
# The evaluation's time grid for those 100 steps (coarse_adam): 1 runs them one by one.
# The default, 5, runs 20 steps of lr 5e-3 with betas 0.9^5 and 0.999^5. Measured on issue
# 14's file (bench/bench_finetune_stride.py, 6 target groups x 5 seeds, docs/results.md):
# its accuracy is within 0.0005 of the 100 exact steps at every n (the seeds' spread is
# 0.02-0.03), 98.9 % of the predicted signs agree, and fine-tuning costs 5.4x less, which
# brings `evaluate` with every method on that file's 40 groups to ~3 minutes on 2 cores
# (the exact path: ~20-45 minutes). Stride 10 drifted (+0.003 on average); 1 is exact
# (`evaluate --finetune-stride 1`).
DEFAULT_FINETUNE_STRIDE = 5

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
    """(..., B, K) loss of each head on each row; ``out`` is a margin, logit or value."""
    y = y.unsqueeze(-1)  # (B, 1), or (M, B, 1) for a batch of fine-tuned members
    if task == "regression":
        return (out - y) ** 2
    # -log sigmoid(s * out), s = 2y - 1: Bradley-Terry for margins, BCE with logits otherwise.
    return F.softplus(-(2 * y - 1) * out)


def _full_precision(out: torch.Tensor) -> torch.Tensor:
    """bf16 autocast outputs in float32; a float64 model's stay float64."""
    return out.to(torch.promote_types(out.dtype, torch.float32))


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
    out = _full_precision(out)
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
        dtype = model.input_mean.dtype  # float32, or float64 for a model made .double()
        xs = [torch.from_numpy(x).to(dev, dtype) for x in xs_np]
        row_mask = None
        if groups_np is not None:
            # (N, K): whether row i's group is in head k's mask
            row_mask = model.head_mask[:, torch.from_numpy(groups_np).long().to(dev)].T
        priors = None
        if isinstance(model, ens.SharedBaseEnsemble) and model.config.prior_scale != 0.0:
            priors = [_batched_prior(model, x) for x in xs]
        return cls(xs=xs, y=torch.from_numpy(y_np).to(dev, dtype), row_mask=row_mask, priors=priors)

    def loss(self, model: ens.Ensemble, task: str, idx: torch.Tensor) -> torch.Tensor:
        """Per-head mean loss (K,) on the rows ``idx``."""
        if self.row_mask is not None and _per_head_rows(model):
            mask = self.row_mask[idx]
            width = int(mask.sum(dim=0).max())
            if width <= len(idx) * MASKED_GATHER_SHARE:
                return self._masked_loss(model, task, idx, mask, max(width, 1))
        return head_losses(
            model, task, [x[idx] for x in self.xs], self.y[idx],
            self.row_mask[idx] if self.row_mask is not None else None,
            priors=[p[idx] for p in self.priors] if self.priors is not None else None,
        )

    def _masked_loss(self, model, task: str, idx: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
        """``head_losses`` with the row mask, each head computed on its own rows only.

        Head k's rows of the batch are gathered into a (K, width) index (padded with
        other rows of the batch, weighed 0), so a head whose annotators hold a fifth
        of the rows costs a fifth of the dense pass; the sum and count per head are the
        dense path's, up to the order of the additions."""
        # stable sort puts each head's own rows first, in batch order
        order = torch.sort((~mask).to(torch.int8), dim=0, stable=True).indices[:width].T  # (K, width)
        valid = torch.gather(mask.T, 1, order).to(self.y.dtype)  # (K, width)
        rows = idx[order]  # (K, width) training row indices
        heads = torch.arange(mask.shape[1], device=idx.device)[:, None]
        outs = []
        for i, x in enumerate(self.xs):
            out = _full_precision(model.learnable_rows(x[rows]))  # (K, width)
            if self.priors is not None:
                out = out + model.config.prior_scale * self.priors[i][rows, heads]
            outs.append(out)
        out = outs[0] - outs[1] if task == "preference" else outs[0]
        loss = _per_row_loss(task, out.unsqueeze(-1), self.y[rows]).squeeze(-1)  # (K, width)
        return (loss * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)


# The masked fast path runs when the busiest head of a batch has at most this share of
# its rows (a dense pass over every row costs less beyond it: the gather copies inputs).
MASKED_GATHER_SHARE = 0.5


def _per_head_rows(model: ens.Ensemble) -> bool:
    """Whether ``model.learnable_rows`` can run each head on its own rows (no shared trunk)."""
    return isinstance(model, ens.SharedBaseEnsemble | ens.VanillaEnsemble) and model.trunk is None


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
    optimizer = Adam(params, lr=lr, weight_decay=weight_decay)  # torch.optim's, without importing dynamo
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


# --------------------------------------------------------------------------- batched fine-tuning

# Members fine-tuned at once hold their parameters, gradients and Adam's two moments
# (16 bytes per parameter): 2 GiB holds 27 members of the default ensemble (K = 100,
# hidden 128, 384-d inputs: 4.9M parameters each), i.e. all 5 seeds x 4 values of n
# of a group; more members are fine-tuned in several chunks, one after the other.
DEFAULT_FINETUNE_MEMORY = 2 * 2**30
# Floats of hidden activations per chunk of rows when the tuned members predict.
_PREDICT_FLOATS = 2**24


def _check_adapt(adapt, n_rows: int) -> list[np.ndarray]:
    sets = [np.asarray(a) for a in adapt]
    if not sets:
        raise ValueError("adapt must name at least one set of adaptation rows")
    for i, rows in enumerate(sets):
        if rows.ndim != 1 or not len(rows) or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"adapt[{i}] must be a non-empty 1-d integer array, got {rows.shape} {rows.dtype}")
        if rows.min() < 0 or rows.max() >= n_rows:
            raise ValueError(f"adapt[{i}] must index the {n_rows} rows (0..{n_rows - 1})")
    return sets


def _member_outputs(base: ens.Ensemble, params: dict, x: torch.Tensor, prior: torch.Tensor | None,
                    batched_x: bool) -> torch.Tensor:
    """(M, B, K): every member's outputs, member m with ``params[...][m]``; ``x`` is (M, B, D)
    with ``batched_x``, else (B, D) shared by all members (``prior`` alike)."""
    from torch.func import functional_call, vmap

    def one(p, xi, pi):
        return functional_call(base, p, (xi,), {} if pi is None else {"prior_out": pi})

    if isinstance(base, ens.SharedBaseEnsemble | ens.VanillaEnsemble) and base.trunk is None:
        # _BatchedMLP broadcasts a leading member axis of its weights by itself; vmap's
        # matmul gradient would zero-fill and add a whole stack per call
        return one(params, x if batched_x else x.unsqueeze(0), None if prior is None else
                   prior if batched_x else prior.unsqueeze(0))
    dim = 0 if batched_x else None
    return vmap(one, in_dims=(0, dim, dim if prior is not None else None))(params, x, prior)


@dataclass
class _Bucket:
    """Members that train on the same number of rows: their stacked parameters (Adam's
    tensors), their rows ``idx`` (S, R), and what a family caches for its steps."""

    stack: dict
    idx: torch.Tensor
    cache: dict = field(default_factory=dict)


class _StackedMembers:
    """Any kind: the model's own learnable parameters stacked with a leading member axis,
    run through ``functional_call`` (``_member_outputs``), gradients by autograd."""

    def __init__(self, base: ens.Ensemble, task: str, rows: _Batches) -> None:
        self.base, self.task, self.rows = base, task, rows
        self.params = {name: p.detach() for name, p in base.named_parameters() if p.requires_grad}

    def stack(self, m: int) -> dict:
        """M copies of the learnable parameters, one stack per parameter, for Adam to train."""
        return {k: p.expand(m, *p.shape).clone().requires_grad_() for k, p in self.params.items()}

    def bucket(self, idx: torch.Tensor) -> _Bucket:
        return _Bucket(stack=self.stack(idx.shape[0]), idx=idx)

    def outputs(self, stack: dict, x: torch.Tensor, prior: torch.Tensor | None, batched_x: bool) -> torch.Tensor:
        return _member_outputs(self.base, stack, x, prior, batched_x)

    def loss_and_grads(self, bucket: _Bucket) -> torch.Tensor:
        """(S, K) per-head mean loss of the bucket's members; leaves its gradient in each
        stack's ``.grad`` for the optimizer."""
        dev = bucket.idx.device
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            per_head = _bucket_loss(self, self.task, self.rows, bucket.stack, bucket.idx)
        for p in bucket.stack.values():
            p.grad = None
        per_head.sum().backward()
        return per_head.detach()


class _WideMembers(_StackedMembers):
    """Heads of one hidden layer on the inputs (no trunk: the default ensemble), each
    member's first layer laid out as one (D, K x H) matrix, gradients written by hand.

    A step's first layer is one matrix product per member over all K heads and its weight
    gradient another ((D, R) by (R, K x H)), where the heads' own (K, D, H) layout made K
    small products per member and copied the inputs once per head; the gradients go into
    buffers kept for the whole fine-tuning (autograd allocates the 20 members' 400 MB of
    them anew every step), and the standardised inputs and the frozen priors' outputs are
    computed once. The parameters are the same numbers in another order, the gradients
    autograd's up to the order of float additions, and Adam is elementwise, so every
    member follows the same trajectory (tests/test_training.py checks it against a loop of
    ``finetune_heads`` and against the stacked family, in float64). It runs in the
    model's dtype (no bf16 autocast on CUDA)."""

    def __init__(self, base: ens.Ensemble, task: str, rows: _Batches) -> None:
        self.base, self.task, self.rows = base, task, rows
        self.mlp = base.heads if isinstance(base, ens.SharedBaseEnsemble) else base.members
        self.scale = base.config.prior_scale if isinstance(base, ens.SharedBaseEnsemble) else 0.0
        k, d, h = self.mlp.w0.shape
        self.k, self.h = k, h
        self.params = {"w0": self.mlp.w0.detach().permute(1, 0, 2).reshape(d, k * h),
                       **{n: getattr(self.mlp, n).detach() for n in ("b0", "w_out", "b_out")}}

    @staticmethod
    def applies(base: ens.Ensemble) -> bool:
        return _per_head_rows(base) and base.config.n_layers == 1

    def stack(self, m: int) -> dict:
        stack = {k: p.expand(m, *p.shape).clone() for k, p in self.params.items()}
        for p in stack.values():
            p.grad = torch.zeros_like(p)
        return stack

    def bucket(self, idx: torch.Tensor) -> _Bucket:
        rows = self.rows
        x = torch.cat([xi[idx] for xi in rows.xs], dim=1)  # (S, R, D), or (S, 2R, D): a then b
        z = (x - self.base.input_mean) / self.base.input_std
        prior = None
        if rows.priors is not None and self.scale != 0.0:
            prior = self.scale * torch.cat([p[idx] for p in rows.priors], dim=1)
        return _Bucket(stack=self.stack(idx.shape[0]), idx=idx,
                       cache={"z": z, "zt": z.transpose(1, 2).contiguous(), "prior": prior, "y": rows.y[idx]})

    def _forward(self, stack: dict, z: torch.Tensor, prior: torch.Tensor | None):
        """(hidden (M, B, K, H), outputs (M, B, K)) for standardised ``z`` (M, B, D) or (B, D)."""
        w0 = stack["w0"]  # (M, D, K x H)
        m, b = w0.shape[0], z.shape[-2]
        hidden = torch.relu(torch.matmul(z, w0).view(m, b, self.k, self.h) + stack["b0"].unsqueeze(1))
        out = (hidden * stack["w_out"].unsqueeze(1)).sum(-1) + stack["b_out"].unsqueeze(1)
        return hidden, out if prior is None else out + prior

    def outputs(self, stack: dict, x: torch.Tensor, prior: torch.Tensor | None, batched_x: bool) -> torch.Tensor:
        """(M, B, K) as ``_member_outputs``: ``x`` (M, B, D) with ``batched_x``, else (B, D)."""
        z = (x - self.base.input_mean) / self.base.input_std
        return self._forward(stack, z, None if prior is None or self.scale == 0.0 else self.scale * prior)[1]

    @torch.no_grad()
    def loss_and_grads(self, bucket: _Bucket) -> torch.Tensor:
        """``_StackedMembers.loss_and_grads`` by hand: the loss of ``_bucket_loss`` and its
        gradient through the one hidden layer, into the stacks' kept ``.grad`` buffers."""
        c, stack = bucket.cache, bucket.stack
        hidden, out = self._forward(stack, c["z"], c["prior"])
        r = bucket.idx.shape[1]
        y = c["y"].unsqueeze(-1)  # (S, R, 1)
        if self.task == "preference":
            out = out[:, :r] - out[:, r:]
        if self.task == "regression":
            per_row, slope = (out - y) ** 2, 2 * (out - y)
        else:  # -log sigmoid(s out), s = 2y - 1 (_per_row_loss)
            sign = 2 * y - 1
            per_row, slope = F.softplus(-sign * out), -sign * torch.sigmoid(-sign * out)
        grad_out = slope / r  # d(sum over members and heads of the mean over rows) / d out
        if self.task == "preference":
            grad_out = torch.cat([grad_out, -grad_out], dim=1)  # (S, 2R, K): a then b
        torch.sum(grad_out, dim=1, out=stack["b_out"].grad)
        torch.sum(grad_out.unsqueeze(-1) * hidden, dim=1, out=stack["w_out"].grad)
        grad_pre = (grad_out.unsqueeze(-1) * stack["w_out"].unsqueeze(1)) * (hidden > 0)  # (S, B, K, H)
        torch.sum(grad_pre, dim=1, out=stack["b0"].grad)
        torch.bmm(c["zt"], grad_pre.view(grad_pre.shape[0], grad_pre.shape[1], -1), out=stack["w0"].grad)
        return per_row.mean(dim=1)


def _members(base: ens.Ensemble, task: str, rows: _Batches) -> _StackedMembers:
    """How a chunk's members are stacked and trained: the wide first layer where it applies."""
    return (_WideMembers if _WideMembers.applies(base) else _StackedMembers)(base, task, rows)


def _bucket_loss(family: _StackedMembers, task: str, rows: _Batches, params: dict, idx: torch.Tensor) -> torch.Tensor:
    """(S, K) per-head mean loss of S members that each train on their R rows ``idx`` (S, R),
    computed as ``head_losses`` computes one member's."""
    x = torch.cat([xi[idx] for xi in rows.xs], dim=1)  # (S, R, D), or (S, 2R, D): a then b
    prior = None if rows.priors is None else torch.cat([p[idx] for p in rows.priors], dim=1)
    out = _full_precision(family.outputs(params, x, prior, batched_x=True))
    if task == "preference":
        out = out[:, : idx.shape[1]] - out[:, idx.shape[1] :]
    return _per_row_loss(task, out, rows.y[idx]).mean(dim=1)


def _finetune_chunk(family: _StackedMembers, sets: list[np.ndarray], *, steps: int, lr: float,
                    betas: tuple[float, float], dev: torch.device, progress) -> np.ndarray:
    """Fine-tune one chunk of members together; (M, n_rows, K) outputs on every row.

    Members with the same number of rows form a bucket: one stack of parameters with a
    leading member axis and one call per step (a slice of one stack over all members
    would make autograd write a zero gradient of the whole stack per slice)."""
    buckets = []
    for size in sorted({len(s) for s in sets}):
        members = [i for i, s in enumerate(sets) if len(s) == size]
        idx = torch.from_numpy(np.stack([sets[i] for i in members]).astype(np.int64)).to(dev)
        buckets.append((members, family.bucket(idx)))
    # fused: one pass over the stacks per step (the for-loop Adam makes about ten); the
    # same update up to rounding
    optimizer = torch.optim.Adam([p for _, b in buckets for p in b.stack.values()], lr=lr, betas=betas,
                                 fused=dev.type in ("cpu", "cuda"))
    for step in range(steps):
        per_head = torch.cat([family.loss_and_grads(b) for _, b in buckets])
        optimizer.step()
        if progress is not None:
            progress(step + 1, steps, float(per_head.mean()))
    out = np.empty((len(sets), len(family.rows.y), family.base.n_heads), dtype=np.float32)
    with torch.no_grad():
        for members, b in buckets:
            out[members] = _predict_members(family, family.task, family.rows, b.stack, len(members))
    return out


def _predict_members(family: _StackedMembers, task: str, rows: _Batches, stack: dict, m: int) -> np.ndarray:
    """(M, n_rows, K) outputs of M stacked members on every row, in chunks of rows."""
    base = family.base
    n_rows, out = len(rows.y), []
    chunk = max(1, _PREDICT_FLOATS // (m * base.n_heads * max(base.config.hidden, 1)))
    for lo in range(0, n_rows, chunk):
        parts = [family.outputs(stack, x[lo: lo + chunk],
                                None if rows.priors is None else rows.priors[i][lo: lo + chunk],
                                batched_x=False) for i, x in enumerate(rows.xs)]
        out.append(parts[0] - parts[1] if task == "preference" else parts[0])
    return torch.cat(out, dim=1).float().cpu().numpy()


def coarse_adam(steps: int, lr: float, stride: int) -> tuple[int, float, tuple[float, float]]:
    """(steps, lr, betas) of Adam on a time grid ``stride`` times coarser than ``steps``
    steps of Adam(lr, betas 0.9 / 0.999): each coarse step moves as far as ``stride``
    fine ones (lr x stride) and the moments forget as much per coarse step as over
    ``stride`` fine ones (beta^stride), so the bias corrections 1 - beta^t agree at
    every coarse step. Where the gradient changes little over ``stride`` steps the two
    trajectories agree; stride 1 is the original."""
    if stride == 1:
        return steps, lr, (0.9, 0.999)
    return math.ceil(steps / stride), lr * stride, (0.9**stride, 0.999**stride)


def finetune_heads_batched(
    model: ens.Ensemble,
    *,
    task: str,
    inputs,
    targets,
    adapt,
    steps: int = DEFAULT_FINETUNE_STEPS,
    lr: float = DEFAULT_FINETUNE_LR,
    device=None,
    max_bytes: int = DEFAULT_FINETUNE_MEMORY,
    progress: Progress | None = None,
    stride: int = 1,
) -> np.ndarray:
    """Many few-shot fine-tunings of ``model`` in one batched model; (M, n_rows, K) outputs.

    ``inputs`` / ``targets``: every row, as in ``fit_ensemble``; ``adapt``: M non-empty
    integer arrays of row indices. Member m is what ``finetune_heads`` makes of rows
    ``adapt[m]`` (full-batch Adam, ``steps`` at ``lr``, frozen priors and input
    statistics kept), and row m of the result its outputs on every row (margins for
    preferences). The members train together: each learnable parameter is stacked
    with a leading member axis, members with the same number of rows go through one
    ``torch.func.vmap`` of ``functional_call``, and one Adam steps the stack (Adam is
    elementwise and each member's loss reads only its own slice, so every member
    follows its own trajectory). Members beyond ``max_bytes`` of parameter state run
    in further chunks. ``progress(step, total, mean loss)`` counts steps over chunks.
    The original model is left untouched.

    ``stride`` > 1 runs the same Adam on a coarser time grid (``coarse_adam``):
    ceil(steps / stride) steps of lr x stride with betas (0.9^stride, 0.999^stride),
    each step standing for ``stride`` of the original's (see DEFAULT_FINETUNE_STRIDE).
    """
    xs_np, y_np, _ = _check_training_data(model, task, inputs, targets, None)
    sets = _check_adapt(adapt, len(y_np))
    if steps < 1 or stride < 1:
        raise ValueError(f"steps and stride must be >= 1, got {steps} and {stride}")
    steps, lr, betas = coarse_adam(steps, lr, stride)
    dev = _resolve_device(device)
    base = copy.deepcopy(model).to(dev).eval()
    base.input_fitted.fill_(1)  # as finetune_heads: never re-estimate the input statistics
    rows = _Batches.on(base, xs_np, y_np, None, dev)
    per_member = 16 * sum(p.numel() for p in base.parameters() if p.requires_grad)
    size = max(1, int(max_bytes) // max(per_member, 1))
    order = sorted(range(len(sets)), key=lambda i: len(sets[i]))
    chunks = [order[lo: lo + size] for lo in range(0, len(order), size)]
    out = np.empty((len(sets), len(y_np), model.n_heads), dtype=np.float32)
    family = _members(base, task, rows)
    for c, members in enumerate(chunks):
        report = None if progress is None else (
            lambda step, total, loss, c=c: progress(c * steps + step, len(chunks) * steps, loss))
        out[members] = _finetune_chunk(family, [sets[i] for i in members], steps=steps,
                                       lr=lr, betas=betas, dev=dev, progress=report)
    return out
