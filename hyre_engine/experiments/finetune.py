"""The paper's fine-tuning comparison: HyRe vs fine-tuning vs the uniform ensemble as the
number of target labels grows (5-D, underspecified training data, a linear target boundary)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hyre_engine import baselines, training
from hyre_engine import ensemble as ens
from hyre_engine.experiments import common
from hyre_engine.numerics import accuracy
from hyre_engine.reweight import weighted_probability


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


def run_finetune(*, seeds: int = common.DEFAULT_SEEDS, quick: bool = False, log: common.Log = common.quiet) -> dict:
    """HyRe vs fine-tuning vs uniform: accuracy on the target vs number of labels n.

    Per seed: train a shared-base ensemble with priors on the training clusters; draw n
    target labels (nested: the first n of one random pool); HyRe reweights with the 0-1
    loss (beta = 1), fine-tuning trains every head on the n labels (``finetune_heads``)
    and averages the tuned heads. Also reports the best head on the test set (an
    oracle bound for reweighting).
    """
    common.check_seeds(seeds)
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
        training.fit_ensemble(
            model, task="classification", inputs=d["x_train"], targets=d["y_train"],
            epochs=sz.epochs, seed=seed, device="cpu",
        )
        Z_pool = ens.predict(model, d["x_pool"])
        Z_test = ens.predict(model, d["x_test"])
        y_test = d["y_test"]
        uniform = accuracy(baselines.uniform_probability(Z_test), y_test)
        best = baselines.best_head_oracle(Z_test, y_test)[1]
        hyre, tuned_acc = [], []
        for n in n_values:
            w = common.hyre_weights(Z_pool[:n], d["y_pool"][:n], beta=common.CLASSIFICATION_BETA)
            hyre.append(accuracy(weighted_probability(Z_test, w), y_test))
            tuned = training.finetune_heads(
                model, task="classification", inputs=d["x_pool"][:n], targets=d["y_pool"][:n],
                steps=sz.finetune_steps, lr=sz.finetune_lr, seed=seed, device="cpu",
            )
            Z_tuned = ens.predict(tuned, d["x_test"])
            tuned_acc.append(accuracy(baselines.uniform_probability(Z_tuned), y_test))
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
        "summary": {m: common.seed_stats(r) for m, r in rows.items()},
        "notes": "best_head is an oracle (the single head most accurate on the test set).",
    }


