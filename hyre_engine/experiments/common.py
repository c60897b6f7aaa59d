"""What the paper's experiments share: their names, defaults and small helpers (no torch)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hyre_engine.reweight import example_losses, weights_from_losses

EXPERIMENTS = ("finetune", "labelers", "gp", "uci")
# Mean and std over at least 10 seeds: enough for the curves' differences to stand
# out from seed noise at the paper's sizes.
DEFAULT_SEEDS = 10
# UCI trains four models per data set and seed on up to ~9,000 rows: 3 seeds keep a run
# to minutes on a CPU.
UCI_DEFAULT_SEEDS = 3
# Classification reweighting: 0-1 loss with beta = 1, as the paper.
CLASSIFICATION_BETA = 1.0
# Regression reweighting: squared error on standardised targets with beta = 1, i.e. a
# Gaussian likelihood with noise variance 1/2 target-variance: loose enough that one
# unlucky label cannot zero a head, tight enough that 32 labels concentrate the weights.
REGRESSION_BETA = 1.0
# Where the UCI files are, when --data is not given: the data are public but not part
# of this repository, so their folder is the user's to name.
UCI_DIR_ENV_VAR = "HYRE_UCI_DIR"

# torch threads for the repro command. These models are tiny (50-128 units), so a second
# thread gains little, and on a shared, loaded CPU the threads' spin-waits cost 5-10x
# (measured: 1000 MC-dropout steps on CCPP took 3 s on one thread, 21-44 s on two).
REPRO_THREADS = 1

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A log that drops every message."""


def uci_dir(data_dir: str | Path | None) -> Path:
    """The UCI data folder: ``data_dir``, else $HYRE_UCI_DIR; a clear error when neither is set."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(UCI_DIR_ENV_VAR)
    if not env:
        raise ValueError(
            f"no UCI data folder: pass --data DIR (data_dir=) or set ${UCI_DIR_ENV_VAR} to a folder "
            "with energy/, kin8nm/ and power-plant/"
        )
    return Path(env)


def seed_stats(rows: list[list[float]] | np.ndarray) -> dict:
    """{"mean": [...], "std": [...]} over the first axis (seeds), rounded for JSON."""
    a = np.asarray(rows, dtype=np.float64)
    return {"mean": round_list(a.mean(axis=0)), "std": round_list(a.std(axis=0))}


def round_list(values) -> list[float]:
    """Values as a list of floats rounded to 4 decimals (JSON)."""
    return [round(float(v), 4) for v in np.atleast_1d(values)]


def check_seeds(seeds: int) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")


def hyre_weights(Z_labelled: np.ndarray, y_labelled: np.ndarray, *, beta: float) -> np.ndarray:  # noqa: N803
    """HyRe weights (K,) from labelled logits (n, K) under the 0-1 loss; uniform for n = 0."""
    n_heads = Z_labelled.shape[1]
    if Z_labelled.shape[0] == 0:
        return np.full(n_heads, 1.0 / n_heads)
    losses = example_losses(Z_labelled, y_labelled, loss="zero-one").sum(axis=0)
    return weights_from_losses(losses, beta=beta)


def rmse(pred, y) -> float:
    """Root mean squared error of predictions against targets, both (n,)."""
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(y)) ** 2)))
