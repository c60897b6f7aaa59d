"""The paper's synthetic and UCI experiments, reproduced: ``python -m hyre_engine repro NAME``.

- ``finetune``: HyRe vs fine-tuning vs the uniform ensemble as the number of target
  labels grows (5-D, underspecified training data, a linear target boundary).
- ``labelers``: a crowd of conflicting linear labelers; how the prior scale trades
  agreement with the majority against covering individual labelers, and HyRe on
  held-out labelers against a single model.
- ``gp``: 1-D regression on data from a GP prior; the top principal components of the
  ensemble's functions, as an interactive HTML figure; HyRe RMSE vs n.
- ``uci``: Energy, Kin8nm and CCPP with the paper's OOD split; RMSE of the uniform
  ensemble and of HyRe after 32 actively chosen labels, for four ensemble kinds.

Every ``run_*`` returns a JSON-safe dict; experiments without groups put their
methods under ``summary`` as ``{"method": {"mean": [...], "std": [...]}}`` aligned
with ``n`` (DESIGN.md). Standard deviations are over seeds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hyre_engine import baselines
from hyre_engine import ensemble as ens
from hyre_engine.acquisition import PoolScorer, select
from hyre_engine.pca import FunctionPCA
from hyre_engine.reweight import (
    Posterior,
    example_losses,
    weighted_probability,
    weighted_value,
    weights_from_losses,
)

EXPERIMENTS = ("finetune", "labelers", "gp", "uci")
# The brief: mean and std over >= 10 seeds.
DEFAULT_SEEDS = 10
# Classification reweighting: 0-1 loss with beta = 1, as the paper.
CLASSIFICATION_BETA = 1.0
# Regression reweighting: squared error on standardised targets with beta = 1, i.e. a
# Gaussian likelihood with noise variance 1/2 target-variance: loose enough that one
# unlucky label cannot zero a head, tight enough that 32 labels concentrate the weights.
REGRESSION_BETA = 1.0
# <repo>/../shared/data/uci: where the team keeps the UCI files (shared/data/README.md).
DEFAULT_UCI_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"

# torch threads for the repro command. These models are tiny (50-128 units), so a second
# thread gains little, and on a shared, loaded CPU the threads' spin-waits cost 5-10x
# (measured: 1000 MC-dropout steps on CCPP took 3 s on one thread, 21-44 s on two).
REPRO_THREADS = 1

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _stats(rows: list[list[float]] | np.ndarray) -> dict:
    """{"mean": [...], "std": [...]} over the first axis (seeds), rounded for JSON."""
    a = np.asarray(rows, dtype=np.float64)
    return {"mean": _round(a.mean(axis=0)), "std": _round(a.std(axis=0))}


def _round(values) -> list[float]:
    return [round(float(v), 4) for v in np.atleast_1d(values)]


def _check_seeds(seeds: int) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")


def _zero_one_accuracy(prob: np.ndarray, y: np.ndarray) -> float:
    return baselines.accuracy(prob, y)


def _hyre_weights(Z_labelled: np.ndarray, y_labelled: np.ndarray, *, beta: float) -> np.ndarray:
    """HyRe weights (K,) from labelled logits (n, K) under the 0-1 loss; uniform for n = 0."""
    n_heads = Z_labelled.shape[1]
    if Z_labelled.shape[0] == 0:
        return np.full(n_heads, 1.0 / n_heads)
    losses = example_losses(Z_labelled, y_labelled, loss="zero-one").sum(axis=0)
    return weights_from_losses(losses, beta=beta)


# --------------------------------------------------------------------------- finetune


@dataclass(frozen=True)
class FinetuneSizes:
    n_values: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    n_train: int = 1000
    n_test: int = 2000
    n_heads: int = ens.DEFAULT_HEADS
    hidden: int = ens.DEFAULT_HIDDEN
    epochs: int = 20
    # Fine-tuning has to move a boundary, not nudge it: 200 full-batch Adam steps at
    # 3e-3 fit 128 target points, where the library default (100 at 1e-3) underfits.
    finetune_steps: int = 200
    finetune_lr: float = 3e-3


FINETUNE_QUICK = FinetuneSizes(
    n_values=(1, 4, 16, 64), n_train=200, n_test=400, n_heads=20, hidden=32, epochs=5,
    finetune_steps=40,
)
# Input dimension of the finetune task (the paper's 5-D example).
FINETUNE_DIM = 5
# Prior scale of the finetune ensemble: the library default.
FINETUNE_PRIOR_SCALE = ens.DEFAULT_PRIOR_SCALE


def finetune_task(seed: int, *, n_train: int, n_pool: int, n_test: int) -> dict[str, np.ndarray]:
    """Training and target data for the finetune experiment.

    Training: n_train // 2 points uniform on [0, 1]^5 labelled 1, as many on [-1, 0]^5
    labelled 0. Target: uniform on [-1, 1]^5, y = 1[w . x > 0] with w = |g|, g ~ N(0, I):
    a random boundary that is consistent with every training point (so the target is
    one of the hypotheses the training data leaves open). Returns x_train (n_train, 5),
    y_train, x_pool (n_pool, 5), y_pool, x_test (n_test, 5), y_test, w (5,).
    """
    rng = np.random.default_rng([20241, seed])
    half = n_train // 2
    pos = rng.uniform(0.0, 1.0, size=(half, FINETUNE_DIM))
    neg = rng.uniform(-1.0, 0.0, size=(n_train - half, FINETUNE_DIM))
    x_train = np.concatenate([pos, neg]).astype(np.float32)
    y_train = np.concatenate([np.ones(half), np.zeros(n_train - half)]).astype(np.float32)
    w = np.abs(rng.standard_normal(FINETUNE_DIM))
    x_pool = rng.uniform(-1.0, 1.0, size=(n_pool, FINETUNE_DIM)).astype(np.float32)
    x_test = rng.uniform(-1.0, 1.0, size=(n_test, FINETUNE_DIM)).astype(np.float32)
    return {
        "x_train": x_train, "y_train": y_train, "w": w,
        "x_pool": x_pool, "y_pool": (x_pool @ w > 0).astype(np.float32),
        "x_test": x_test, "y_test": (x_test @ w > 0).astype(np.float32),
    }


def run_finetune(*, seeds: int = DEFAULT_SEEDS, quick: bool = False, log: Log = _quiet) -> dict:
    """HyRe vs fine-tuning vs uniform: accuracy on the target vs number of labels n.

    Per seed: train a shared-base ensemble with priors on the training clusters; draw n
    target labels (nested: the first n of one random pool); HyRe reweights with the 0-1
    loss (beta = 1), fine-tuning trains every head on the n labels (``finetune_heads``)
    and averages the tuned heads. Also reports the best head on the test set (an
    oracle bound for reweighting).
    """
    _check_seeds(seeds)
    sz = FINETUNE_QUICK if quick else FinetuneSizes()
    n_values = list(sz.n_values)
    rows: dict[str, list[list[float]]] = {"hyre": [], "finetune": [], "uniform": [], "best_head": []}
    for seed in range(seeds):
        t0 = time.perf_counter()
        d = finetune_task(seed, n_train=sz.n_train, n_pool=max(n_values), n_test=sz.n_test)
        cfg = ens.EnsembleConfig(
            kind="shared", input_dim=FINETUNE_DIM, n_heads=sz.n_heads, hidden=sz.hidden,
            prior_scale=FINETUNE_PRIOR_SCALE, seed=seed,
        )
        model = ens.build_ensemble(cfg)
        ens.fit_ensemble(
            model, task="classification", inputs=d["x_train"], targets=d["y_train"],
            epochs=sz.epochs, seed=seed, device="cpu",
        )
        Z_pool = ens.predict(model, d["x_pool"])
        Z_test = ens.predict(model, d["x_test"])
        y_test = d["y_test"]
        uniform = _zero_one_accuracy(baselines.uniform_probability(Z_test), y_test)
        best = baselines.best_head_oracle(Z_test, y_test)[1]
        hyre, tuned_acc = [], []
        for n in n_values:
            w = _hyre_weights(Z_pool[:n], d["y_pool"][:n], beta=CLASSIFICATION_BETA)
            hyre.append(_zero_one_accuracy(weighted_probability(Z_test, w), y_test))
            tuned = baselines.finetune_heads(
                model, task="classification", inputs=d["x_pool"][:n], targets=d["y_pool"][:n],
                steps=sz.finetune_steps, lr=sz.finetune_lr, seed=seed, device="cpu",
            )
            Z_tuned = ens.predict(tuned, d["x_test"])
            tuned_acc.append(_zero_one_accuracy(baselines.uniform_probability(Z_tuned), y_test))
        rows["hyre"].append(hyre)
        rows["finetune"].append(tuned_acc)
        rows["uniform"].append([uniform] * len(n_values))
        rows["best_head"].append([best] * len(n_values))
        log(f"finetune seed {seed}: {time.perf_counter() - t0:.1f}s")
    return {
        "experiment": "finetune",
        "metric": "accuracy",
        "n": n_values,
        "seeds": seeds,
        "summary": {m: _stats(r) for m, r in rows.items()},
        "notes": "best_head is an oracle (the single head most accurate on the test set).",
    }


# --------------------------------------------------------------------------- labelers


@dataclass(frozen=True)
class LabelerSizes:
    prior_scales: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0, 10.0)
    n_values: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32)
    n_train: int = 2000
    n_test: int = 1000
    n_heldout: int = 20
    n_heads: int = ens.DEFAULT_HEADS
    hidden: int = ens.DEFAULT_HIDDEN
    epochs: int = 20


LABELERS_QUICK = LabelerSizes(
    prior_scales=(0.0, 3.0), n_values=(0, 4, 16), n_train=200, n_test=200, n_heldout=5,
    n_heads=16, hidden=32, epochs=5,
)
# Size of the training crowd. w ~ N(0, I) is symmetric, so over the whole population
# every point is a 50/50 vote; a finite crowd of 9 (odd: no ties) has a real majority.
LABELERS_POPULATION = 9
# Prior scale whose ensemble is reweighted for the "HyRe vs n" curve: the library default.
LABELERS_HYRE_PRIOR_SCALE = ens.DEFAULT_PRIOR_SCALE


def labeler_votes(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Labels (n_points, n_labelers) of linear labelers 1[w1 x1 + w2 x2 > 0]; x (n, 2), w (m, 2)."""
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x (n, d) and w (m, d) must share d, got {x.shape} and {w.shape}")
    return (x @ w.T > 0).astype(np.float32)


def _labelers_seed_data(seed: int, sz: LabelerSizes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([20242, seed])
    crowd = rng.standard_normal((LABELERS_POPULATION, 2))
    heldout = rng.standard_normal((sz.n_heldout, 2))
    x_train = rng.uniform(0.0, 1.0, size=(sz.n_train, 2)).astype(np.float32)
    who = rng.integers(LABELERS_POPULATION, size=sz.n_train)
    y_train = labeler_votes(x_train, crowd)[np.arange(sz.n_train), who]
    x_test = rng.uniform(0.0, 1.0, size=(sz.n_test, 2)).astype(np.float32)
    majority = (labeler_votes(x_test, crowd).mean(axis=1) > 0.5).astype(np.float32)
    return {
        "x_train": x_train, "y_train": y_train, "x_test": x_test, "majority": majority,
        "heldout_votes": labeler_votes(x_test, heldout),  # (n_test, n_heldout)
    }


def _heldout_curves(
    Z: np.ndarray, votes: np.ndarray, n_values: list[int], rng: np.random.Generator,
    fixed: dict[str, np.ndarray],
) -> tuple[np.ndarray, dict[str, float]]:
    """HyRe accuracy (len(n_values),) on held-out labelers, averaged over them: n random
    labels from the test points, accuracy on test points never labelled (the same for
    every n). ``fixed`` {name: P (n_test,)} are scored on those same points."""
    n_test, n_heldout = votes.shape
    out = np.empty((n_heldout, len(n_values)))
    fixed_acc = {name: np.empty(n_heldout) for name in fixed}
    for j in range(n_heldout):
        order = rng.permutation(n_test)
        rest = order[max(n_values):]
        y = votes[:, j]
        for i, n in enumerate(n_values):
            w = _hyre_weights(Z[order[:n]], y[order[:n]], beta=CLASSIFICATION_BETA)
            out[j, i] = _zero_one_accuracy(weighted_probability(Z[rest], w), y[rest])
        for name, p in fixed.items():
            fixed_acc[name][j] = _zero_one_accuracy(p[rest], y[rest])
    return out.mean(axis=0), {name: float(a.mean()) for name, a in fixed_acc.items()}


def run_labelers(*, seeds: int = DEFAULT_SEEDS, quick: bool = False, log: Log = _quiet) -> dict:
    """Conflicting labelers: the prior scale sweep and HyRe on held-out labelers.

    Per seed: a crowd of 9 linear labelers w ~ N(0, I) on [0, 1]^2, each training point
    labelled by one random member; 20 held-out labelers drawn the same way. For every
    prior scale: agreement of the ensemble mean with the crowd's majority, and the
    mean over held-out labelers of the best head's agreement with that labeler. Then
    HyRe (prior scale 1) on the held-out labelers vs n, against the uniform ensemble
    and a single model (one vanilla MLP trained on the same data).
    """
    _check_seeds(seeds)
    sz = LABELERS_QUICK if quick else LabelerSizes()
    scales = list(sz.prior_scales)
    if LABELERS_HYRE_PRIOR_SCALE not in scales:
        scales.append(LABELERS_HYRE_PRIOR_SCALE)  # quick sizes still report the HyRe curve
    n_values = list(sz.n_values)
    majority_rows, max_rows = [], []
    curves: dict[float, list[np.ndarray]] = {s: [] for s in scales}
    uniform_rows, single_rows = [], []
    for seed in range(seeds):
        t0 = time.perf_counter()
        d = _labelers_seed_data(seed, sz)
        votes = d["heldout_votes"]
        single = ens.build_ensemble(ens.EnsembleConfig(
            kind="vanilla", input_dim=2, n_heads=1, hidden=sz.hidden, prior_scale=0.0, seed=seed,
        ))
        ens.fit_ensemble(
            single, task="classification", inputs=d["x_train"], targets=d["y_train"],
            epochs=sz.epochs, seed=seed, device="cpu",
        )
        p_single = baselines.uniform_probability(ens.predict(single, d["x_test"]))
        maj_seed, max_seed = [], []
        for scale in scales:
            model = ens.build_ensemble(ens.EnsembleConfig(
                kind="shared", input_dim=2, n_heads=sz.n_heads, hidden=sz.hidden,
                prior_scale=scale, seed=seed,
            ))
            ens.fit_ensemble(
                model, task="classification", inputs=d["x_train"], targets=d["y_train"],
                epochs=sz.epochs, seed=seed, device="cpu",
            )
            Z = ens.predict(model, d["x_test"]).astype(np.float64)
            p_uniform = baselines.uniform_probability(Z)
            maj_seed.append(_zero_one_accuracy(p_uniform, d["majority"]))
            # (n_heldout, K) agreement of every head with every held-out labeler
            agree = ((Z > 0)[:, None, :] == (votes > 0.5)[:, :, None]).mean(axis=0)
            max_seed.append(float(agree.max(axis=1).mean()))
            rng = np.random.default_rng([20243, seed])
            curve, fixed = _heldout_curves(
                Z, votes, n_values, rng, {"uniform": p_uniform, "single": p_single}
            )
            curves[scale].append(curve)
            if scale == LABELERS_HYRE_PRIOR_SCALE:
                uniform_rows.append([fixed["uniform"]] * len(n_values))
                single_rows.append([fixed["single"]] * len(n_values))
        majority_rows.append(maj_seed)
        max_rows.append(max_seed)
        log(f"labelers seed {seed}: {time.perf_counter() - t0:.1f}s")
    keep = [i for i, s in enumerate(scales) if s in sz.prior_scales]
    maj = np.asarray(majority_rows)[:, keep]
    mx = np.asarray(max_rows)[:, keep]
    return {
        "experiment": "labelers",
        "metric": "accuracy",
        "seeds": seeds,
        "prior_scale": [float(s) for s in sz.prior_scales],
        "majority_agreement": _round(maj.mean(axis=0)),
        "majority_agreement_std": _round(maj.std(axis=0)),
        "max_agreement": _round(mx.mean(axis=0)),
        "max_agreement_std": _round(mx.std(axis=0)),
        "n": n_values,
        "hyre_prior_scale": LABELERS_HYRE_PRIOR_SCALE,
        "summary": {
            "hyre": _stats(curves[LABELERS_HYRE_PRIOR_SCALE]),
            "uniform": _stats(uniform_rows),
            "single": _stats(single_rows),
        },
        "hyre_by_prior_scale": {str(s): _stats(curves[s]) for s in sz.prior_scales},
    }


# --------------------------------------------------------------------------- gp


@dataclass(frozen=True)
class GPSizes:
    n_values: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    n_train: int = 20
    n_grid: int = 200
    n_heads: int = ens.DEFAULT_HEADS
    hidden: int = ens.DEFAULT_HIDDEN
    steps: int = 1500


GP_QUICK = GPSizes(n_values=(0, 2, 8), n_train=12, n_grid=60, n_heads=16, hidden=32, steps=100)
# RBF kernel of the GP prior (unit variance); lengthscale 0.5 gives a few bumps on [-1, 1].
GP_LENGTHSCALE = 0.5
# Observation noise of the training targets.
GP_NOISE = 0.05
# Training inputs fill [-1, 1]; the grid extends to [-3, 3], where the heads must disagree.
GP_TRAIN_RANGE = (-1.0, 1.0)
GP_GRID_RANGE = (-3.0, 3.0)
# Components shown and reported (the brief: the top 3).
GP_COMPONENTS = 3
GP_LR = 3e-3


def gp_sample(x: np.ndarray, *, seed: int, lengthscale: float = GP_LENGTHSCALE) -> np.ndarray:
    """One draw (n,) of a zero-mean, unit-variance RBF GP at the points x (n,)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D (n,), got shape {x.shape}")
    k = np.exp(-0.5 * ((x[:, None] - x[None, :]) / lengthscale) ** 2)
    chol = np.linalg.cholesky(k + 1e-6 * np.eye(len(x)))  # jitter: the RBF kernel is near-singular
    return chol @ np.random.default_rng([20244, seed]).standard_normal(len(x))


def run_gp(
    *, seeds: int = DEFAULT_SEEDS, quick: bool = False, html_path: str | Path | None = None,
    log: Log = _quiet,
) -> dict:
    """1-D regression on a GP draw: the ensemble's top principal components and HyRe RMSE.

    Per seed: one GP function on the grid and n_train noisy training points in [-1, 1];
    a 100-head shared ensemble with priors (regression). FunctionPCA of the heads'
    predictions on the grid; HyRe with n noise-free labels at random grid points
    (squared error, beta = 1) vs the uniform mean, RMSE on the other grid points.
    Seed 0's ensemble is drawn to ``html_path`` when given.
    """
    _check_seeds(seeds)
    sz = GP_QUICK if quick else GPSizes()
    n_values = list(sz.n_values)
    grid = np.linspace(*GP_GRID_RANGE, sz.n_grid)
    rows: dict[str, list[list[float]]] = {"hyre": [], "uniform": []}
    ratios, figure_data = [], None
    for seed in range(seeds):
        rng = np.random.default_rng([20245, seed])
        x_train = np.sort(rng.uniform(*GP_TRAIN_RANGE, size=sz.n_train))
        f = gp_sample(np.concatenate([grid, x_train]), seed=seed)
        f_grid, f_train = f[: len(grid)], f[len(grid):]
        y_train = f_train + GP_NOISE * rng.standard_normal(sz.n_train)
        model = ens.build_ensemble(ens.EnsembleConfig(
            kind="shared", input_dim=1, n_heads=sz.n_heads, hidden=sz.hidden, seed=seed,
        ))
        ens.fit_ensemble(
            model, task="regression", inputs=x_train[:, None], targets=y_train,
            steps=sz.steps, lr=GP_LR, batch_size=sz.n_train, seed=seed, device="cpu",
        )
        Z = ens.predict(model, grid[:, None].astype(np.float32)).astype(np.float64)
        pca = FunctionPCA(GP_COMPONENTS).fit(Z)
        ratios.append(pca.explained_variance_ratio_)
        order = rng.permutation(len(grid))
        rest = order[max(n_values):]
        post = Posterior(Z.shape[1], loss="squared", beta=REGRESSION_BETA)
        hyre, labelled = [], 0
        for n in n_values:
            if n > labelled:
                post.add(Z[order[labelled:n]], f_grid[order[labelled:n]])
                labelled = n
            hyre.append(_rmse(weighted_value(Z[rest], post.weights), f_grid[rest]))
        rows["hyre"].append(hyre)
        rows["uniform"].append([_rmse(Z[rest].mean(axis=1), f_grid[rest])] * len(n_values))
        if seed == 0:
            figure_data = (grid, Z, pca, x_train, y_train, f_grid)
        log(f"gp seed {seed} done")
    result = {
        "experiment": "gp",
        "metric": "rmse",
        "n": n_values,
        "seeds": seeds,
        "summary": {m: _stats(r) for m, r in rows.items()},
        "explained_variance_ratio": _stats(ratios),
    }
    if html_path is not None and figure_data is not None:
        write_gp_figure(*figure_data, path=html_path)
        result["html"] = str(html_path)
    return result


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(y)) ** 2)))


def write_gp_figure(
    grid: np.ndarray, Z: np.ndarray, pca: FunctionPCA, x_train: np.ndarray, y_train: np.ndarray,
    f_grid: np.ndarray, *, path: str | Path, n_heads_shown: int = 30,
) -> None:
    """Interactive HTML (plotly, inlined: no CDN): the heads, then mean +- 2 sd along each PC.

    grid (G,), Z (G, K) head predictions, pca fitted on Z, training points (n,), truth (G,).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n_comp = pca.n_components_
    titles = ["ensemble heads, data and the true function"] + [
        f"PC {i + 1} ({100 * pca.explained_variance_ratio_[i]:.1f}% of the variance)"
        for i in range(n_comp)
    ]
    fig = make_subplots(rows=1, cols=n_comp + 1, subplot_titles=titles)
    for k in range(min(n_heads_shown, Z.shape[1])):
        fig.add_trace(go.Scatter(
            x=grid, y=Z[:, k], mode="lines", line={"width": 1, "color": "rgba(90,90,200,0.35)"},
            name=f"head {k}", showlegend=False,
        ), row=1, col=1)
    fig.add_trace(go.Scatter(x=grid, y=f_grid, mode="lines", line={"color": "black", "dash": "dash"},
                             name="true function"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x_train, y=y_train, mode="markers", marker={"color": "red", "size": 6},
                             name="training data"), row=1, col=1)
    for i in range(n_comp):
        sd = math.sqrt(pca.explained_variance_[i])
        for sign, colour in ((2.0, "darkorange"), (-2.0, "seagreen")):
            fig.add_trace(go.Scatter(
                x=grid, y=pca.mean_ + sign * sd * pca.components_[i], mode="lines",
                line={"color": colour}, name=f"mean {'+' if sign > 0 else '-'} 2 sd along PC",
                showlegend=i == 0,
            ), row=1, col=i + 2)
        fig.add_trace(go.Scatter(x=grid, y=pca.mean_, mode="lines", line={"color": "gray"},
                                 name="ensemble mean", showlegend=i == 0), row=1, col=i + 2)
    fig.update_layout(title="GP regression: the ensemble's main directions of disagreement",
                      height=420, width=380 * (n_comp + 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True)


# --------------------------------------------------------------------------- uci


UCI_DATASETS = {"energy": "energy", "kin8nm": "kin8nm", "ccpp": "power-plant"}
UCI_MODELS = ("vanilla", "epinet", "shared", "dropout")
# The paper's OOD split: the top and bottom 5% by mean standardised feature.
UCI_OOD_TAIL = 0.05
# Share of the middle 90% kept for validation (the paper does not say; 20% is common).
UCI_VAL_FRACTION = 0.2
# The paper's UCI networks: two hidden layers of 50 units, 100 members.
UCI_HIDDEN = 50
UCI_HEADS = 100
# 32 labels chosen one at a time by the variance criterion (the paper's Table 4).
UCI_LABELS = 32
UCI_STRATEGY = "variance"
# MC dropout: Gal & Ghahramani's UCI grid tops out at 0.1; the largest rate gives the
# 100 "heads" the most diversity for HyRe to choose from.
DROPOUT_RATE = 0.1
# UCI seeds default: every seed retrains 12 models, so fewer than the toy tasks.
UCI_DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class UCISizes:
    # Measured on the shared 2-core CPU: ~15 ms per step of 256 rows for 100 members, so
    # 1000 steps (~40 epochs of kin8nm, ~460 of energy) keep a model near 15 s.
    steps: int = 1000
    batch_size: int = 256
    lr: float = 3e-3
    n_heads: int = UCI_HEADS
    max_train: int | None = None


UCI_QUICK = UCISizes(steps=30, batch_size=64, n_heads=8, max_train=200)


def load_uci(data_dir: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d), y (n,)) of one UCI set, named as in ``UCI_DATASETS`` (energy, kin8nm, ccpp)."""
    if name not in UCI_DATASETS:
        raise ValueError(f"unknown UCI data set {name!r}; valid: {', '.join(UCI_DATASETS)}")
    folder = Path(data_dir) / UCI_DATASETS[name]
    path = folder / "data.txt.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (pass --data DIR, the folder holding {UCI_DATASETS[name]}/)")
    with gzip.open(path, "rt") as fh:
        data = np.loadtxt(fh)
    feats = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    return data[:, feats].astype(np.float64), data[:, target].astype(np.float64)


def ood_split(
    X, *, tail: float = UCI_OOD_TAIL, val_fraction: float = UCI_VAL_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's OOD split: (train_idx, val_idx, ood_idx), sorted index arrays.

    Rows are ranked by the mean of their standardised features (X (n, d)); the lowest
    and highest ``round(tail * n)`` rows are the OOD set; the middle rows are split at
    random (seeded) into validation (``val_fraction``) and training.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 3:
        raise ValueError(f"X must be (n, d) with n >= 3, got shape {X.shape}")
    if not 0 < tail < 0.5 or not 0 <= val_fraction < 1:
        raise ValueError(f"need 0 < tail < 0.5 and 0 <= val_fraction < 1, got {tail}, {val_fraction}")
    n = X.shape[0]
    std = X.std(axis=0)
    std[std == 0] = 1.0
    score = ((X - X.mean(axis=0)) / std).mean(axis=1)
    order = np.argsort(score, kind="stable")
    n_tail = max(1, int(round(tail * n)))
    ood = np.concatenate([order[:n_tail], order[n - n_tail:]])
    middle = np.random.default_rng(seed).permutation(order[n_tail: n - n_tail])
    n_val = int(round(val_fraction * len(middle)))
    return np.sort(middle[n_val:]), np.sort(middle[:n_val]), np.sort(ood)


class DropoutMLP(nn.Module):
    """An MLP with dropout after every hidden layer (MC dropout).

    ``forward`` (training) draws fresh masks; ``heads`` evaluates K fixed masks drawn
    from the seed, (B, D) -> (B, K), so head k is the same function on every input,
    which reweighting needs.
    """

    def __init__(
        self, input_dim: int, *, hidden: int = UCI_HIDDEN, n_layers: int = 2,
        rate: float = DROPOUT_RATE, n_heads: int = UCI_HEADS, seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        gen = torch.Generator().manual_seed(seed)
        dims = [input_dim] + [hidden] * n_layers
        self.rate = rate
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(n_layers):
            bound = 1.0 / math.sqrt(dims[i])  # torch.nn.Linear's default scale
            self.weights.append(nn.Parameter((torch.rand(dims[i], dims[i + 1], generator=gen) * 2 - 1) * bound))
            self.biases.append(nn.Parameter((torch.rand(dims[i + 1], generator=gen) * 2 - 1) * bound))
        bound = 1.0 / math.sqrt(hidden)
        self.w_out = nn.Parameter((torch.rand(hidden, generator=gen) * 2 - 1) * bound)
        self.b_out = nn.Parameter(torch.zeros(1))
        keep = torch.rand(n_layers, n_heads, hidden, generator=gen) >= rate
        self.register_buffer("masks", keep.float() / (1.0 - rate))
        self._train_gen = torch.Generator().manual_seed(seed + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) with fresh dropout masks (training)."""
        h = x
        for w, b in zip(self.weights, self.biases, strict=True):
            h = torch.relu(h @ w + b)
            keep = torch.rand(h.shape, generator=self._train_gen) >= self.rate
            h = h * keep / (1.0 - self.rate)
        return h @ self.w_out + self.b_out

    @torch.no_grad()
    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, K): one output per fixed dropout mask."""
        h = torch.relu(x @ self.weights[0] + self.biases[0])[:, None, :] * self.masks[0][None]
        for i in range(1, len(self.weights)):
            h = torch.relu(h @ self.weights[i] + self.biases[i]) * self.masks[i][None]
        return h @ self.w_out + self.b_out


def _fit_dropout(model: DropoutMLP, X: np.ndarray, y: np.ndarray, sz: UCISizes, seed: int) -> None:
    xt, yt = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=sz.lr)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(sz.steps):
        idx = torch.from_numpy(rng.integers(len(xt), size=min(sz.batch_size, len(xt))))
        loss = ((model(xt[idx]) - yt[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


def _uci_config(kind: str, input_dim: int, n_heads: int, seed: int) -> ens.EnsembleConfig:
    """The paper's two-layer, 50-unit networks in each ensemble kind."""
    common = dict(kind=kind, input_dim=input_dim, n_heads=n_heads, hidden=UCI_HIDDEN, seed=seed)
    if kind == "shared":
        # one shared learnable layer, then per-head (learnable + prior) layers: two layers in all
        return ens.EnsembleConfig(**common, trunk_layers=1, trunk_hidden=UCI_HIDDEN, n_layers=1)
    if kind == "vanilla":
        return ens.EnsembleConfig(**common, n_layers=2, prior_scale=0.0)
    return ens.EnsembleConfig(**common, n_layers=2)


def uci_head_predictions(
    kind: str, x_train: np.ndarray, y_train: np.ndarray, x_eval: list[np.ndarray], *,
    sizes: UCISizes, seed: int,
) -> list[np.ndarray]:
    """Train one model of ``kind`` (UCI_MODELS) on standardised data; head predictions
    (n_i, K) on each array of ``x_eval``."""
    if kind not in UCI_MODELS:
        raise ValueError(f"unknown model {kind!r}; valid: {', '.join(UCI_MODELS)}")
    if kind == "dropout":
        model = DropoutMLP(x_train.shape[1], n_heads=sizes.n_heads, seed=seed)
        _fit_dropout(model, x_train, y_train, sizes, seed)
        return [model.heads(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64) for x in x_eval]
    model = ens.build_ensemble(_uci_config(kind, x_train.shape[1], sizes.n_heads, seed))
    ens.fit_ensemble(
        model, task="regression", inputs=x_train, targets=y_train, steps=sizes.steps,
        lr=sizes.lr, batch_size=sizes.batch_size, seed=seed, device="cpu",
    )
    return [ens.predict(model, x).astype(np.float64) for x in x_eval]


def active_hyre_regression(
    Z, y, *, n_labels: int = UCI_LABELS, beta: float = REGRESSION_BETA,
    strategy: str = UCI_STRATEGY, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Label ``n_labels`` items of a pool one at a time, each the top ``strategy`` score
    under the current weights; squared-error HyRe. Z (n, K) values, y (n,) targets.
    Returns (labelled indices in order (n_labels,), final weights (K,))."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if Z.ndim != 2 or y.shape != (Z.shape[0],):
        raise ValueError(f"need Z (n, K) and y (n,), got {Z.shape} and {y.shape}")
    if not 0 <= n_labels <= Z.shape[0]:
        raise ValueError(f"n_labels must be in [0, {Z.shape[0]}], got {n_labels}")
    scorer = PoolScorer(Z)
    post = Posterior(Z.shape[1], loss="squared", beta=beta)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for _ in range(n_labels):
        scores = scorer.score(strategy, post.weights, rng=rng)
        i = int(select(scores, 1, exclude=np.asarray(chosen, dtype=np.intp), seed=rng)[0])
        chosen.append(i)
        post.add(Z[i], y[i])
    return np.asarray(chosen, dtype=np.intp), post.weights


def run_uci(
    data_dir: str | Path = DEFAULT_UCI_DIR, *, seeds: int = UCI_DEFAULT_SEEDS, quick: bool = False,
    datasets: tuple[str, ...] = tuple(UCI_DATASETS), models: tuple[str, ...] = UCI_MODELS,
    log: Log = _quiet,
) -> dict:
    """RMSE on the OOD rows: uniform ensemble vs HyRe after 32 variance-chosen labels.

    Per data set and seed: the OOD split (``ood_split``), inputs standardised and
    targets standardised with training statistics; each model trained; HyRe labels
    32 OOD rows actively and both methods are scored on the remaining OOD rows, in the
    target's original units. ``rmse[data][model] = {"uniform", "hyre"}`` means over seeds.
    """
    _check_seeds(seeds)
    sz = UCI_QUICK if quick else UCISizes()
    n_labels = 8 if quick else UCI_LABELS
    rmse: dict = {}
    rmse_std: dict = {}
    val_rmse: dict = {}
    rows_used: dict = {}
    for name in datasets:
        X, y = load_uci(data_dir, name)
        per_model = {m: {"uniform": [], "hyre": [], "val": []} for m in models}
        for seed in range(seeds):
            tr, va, ood = ood_split(X, seed=seed)
            if sz.max_train is not None and len(tr) > sz.max_train:
                tr = np.sort(np.random.default_rng(seed).choice(tr, sz.max_train, replace=False))
            mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
            sd[sd == 0] = 1.0
            xs = {k: ((X[idx] - mu) / sd).astype(np.float32) for k, idx in (("tr", tr), ("va", va), ("ood", ood))}
            y_mu, y_sd = float(y[tr].mean()), float(y[tr].std())
            y_tr = (y[tr] - y_mu) / y_sd
            y_ood = (y[ood] - y_mu) / y_sd
            for m in models:
                t0 = time.perf_counter()
                Z_val, Z_ood = uci_head_predictions(
                    m, xs["tr"], y_tr, [xs["va"], xs["ood"]], sizes=sz, seed=seed
                )
                labelled, w = active_hyre_regression(Z_ood, y_ood, n_labels=n_labels, seed=seed)
                rest = np.setdiff1d(np.arange(len(ood)), labelled)
                per_model[m]["uniform"].append(y_sd * _rmse(Z_ood[rest].mean(axis=1), y_ood[rest]))
                per_model[m]["hyre"].append(y_sd * _rmse(Z_ood[rest] @ w, y_ood[rest]))
                per_model[m]["val"].append(y_sd * _rmse(Z_val.mean(axis=1), (y[va] - y_mu) / y_sd))
                log(f"uci {name} seed {seed} {m}: {time.perf_counter() - t0:.1f}s "
                    f"uniform {per_model[m]['uniform'][-1]:.4g} hyre {per_model[m]['hyre'][-1]:.4g}")
        rmse[name] = {m: {k: round(float(np.mean(v[k])), 4) for k in ("uniform", "hyre")} for m, v in per_model.items()}
        rmse_std[name] = {m: {k: round(float(np.std(v[k])), 4) for k in ("uniform", "hyre")} for m, v in per_model.items()}
        val_rmse[name] = {m: round(float(np.mean(v["val"])), 4) for m, v in per_model.items()}
        rows_used[name] = {"train": int(len(tr)), "val": int(len(va)), "ood": int(len(ood))}
    return {
        "experiment": "uci",
        "metric": "rmse (original units, OOD rows not labelled)",
        "seeds": seeds,
        "n_labels": n_labels,
        "strategy": UCI_STRATEGY,
        "beta": REGRESSION_BETA,
        "rmse": rmse,
        "rmse_std": rmse_std,
        "val_rmse_uniform": val_rmse,
        "rows": rows_used,
    }


# --------------------------------------------------------------------------- output


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f}±{std:.3f}"


def _curve_table(result: dict) -> list[str]:
    methods = list(result["summary"])
    width = max(13, *(len(m) + 2 for m in methods))
    header = f"{'n':>5}" + "".join(f"{m:>{width}}" for m in methods)
    lines = [header, "-" * len(header)]
    for i, n in enumerate(result["n"]):
        cells = []
        for m in methods:
            s = result["summary"][m]
            cells.append(f"{_cell(s['mean'][i], s.get('std', [None] * (i + 1))[i]):>{width}}")
        lines.append(f"{n:>5}" + "".join(cells))
    return lines


def format_table(result: dict) -> str:
    """A readable text table of any ``run_*`` result."""
    lines = [f"repro {result.get('experiment', '?')} ({result.get('seeds', '?')} seeds, "
             f"{result.get('metric', '')})"]
    if "rmse" in result:
        models = list(next(iter(result["rmse"].values())))
        header = f"{'data':<8}" + "".join(f"{m + ' unif':>15}{m + ' hyre':>15}" for m in models)
        lines += [header, "-" * len(header)]
        for name, cells in result["rmse"].items():
            lines.append(f"{name:<8}" + "".join(
                f"{cells[m]['uniform']:>15.4g}{cells[m]['hyre']:>15.4g}" for m in models))
        lines.append(f"(HyRe: {result['n_labels']} labels by {result['strategy']}, beta {result['beta']})")
        return "\n".join(lines)
    if "prior_scale" in result:
        lines += [f"{'prior scale':>12}{'agree w/ majority':>20}{'max agree held-out':>20}",
                  "-" * 52]
        for i, s in enumerate(result["prior_scale"]):
            lines.append(f"{s:>12g}"
                         f"{_cell(result['majority_agreement'][i], result['majority_agreement_std'][i]):>20}"
                         f"{_cell(result['max_agreement'][i], result['max_agreement_std'][i]):>20}")
        lines += ["", f"accuracy on held-out labelers (HyRe at prior scale {result['hyre_prior_scale']:g})"]
    lines += _curve_table(result)
    if "explained_variance_ratio" in result:
        ratios = ", ".join(f"{v:.3f}" for v in result["explained_variance_ratio"]["mean"])
        lines.append(f"explained variance ratio of the top components: {ratios}")
    if "html" in result:
        lines.append(f"figure: {result['html']}")
    return "\n".join(lines)


def run_experiment(name: str, *, seeds: int | None = None, quick: bool = False,
                   data_dir: str | Path = DEFAULT_UCI_DIR, html_path: str | Path | None = None,
                   log: Log = _quiet) -> dict:
    """Run one experiment by name (``EXPERIMENTS``)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    if name == "uci":
        return run_uci(data_dir, seeds=seeds or UCI_DEFAULT_SEEDS, quick=quick, log=log)
    seeds = seeds or DEFAULT_SEEDS
    if name == "finetune":
        return run_finetune(seeds=seeds, quick=quick, log=log)
    if name == "labelers":
        return run_labelers(seeds=seeds, quick=quick, log=log)
    return run_gp(seeds=seeds, quick=quick, html_path=html_path, log=log)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "repro",
        help="reproduce the paper's synthetic and UCI experiments",
        description="Reproduce one of the paper's experiments and print its table.",
    )
    parser.add_argument("name", choices=EXPERIMENTS)
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"number of seeds (default {DEFAULT_SEEDS}; uci {UCI_DEFAULT_SEEDS})")
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    parser.add_argument("--html", type=Path,
                        help="gp: the figure's path (default: next to --json, .html)")
    parser.add_argument("--data", type=Path, default=DEFAULT_UCI_DIR,
                        help="uci: folder with energy/, kin8nm/, power-plant/")
    parser.add_argument("--quick", action="store_true", help="small sizes (tests, smoke runs)")
    parser.add_argument("--verbose", action="store_true", help="progress lines on stderr")
    parser.add_argument("--threads", type=int, default=REPRO_THREADS,
                        help=f"torch CPU threads (default {REPRO_THREADS}; 0 leaves torch's choice)")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    html = args.html
    if html is None and args.name == "gp" and args.json is not None:
        html = args.json.with_suffix(".html")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else _quiet
    t0 = time.perf_counter()
    result = run_experiment(args.name, seeds=args.seeds, quick=args.quick, data_dir=args.data,
                            html_path=html, log=log)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
