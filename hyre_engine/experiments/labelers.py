"""A crowd of conflicting linear labelers: how the prior scale trades agreement with the
majority against covering individual labelers, and HyRe on held-out labelers against a
single model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hyre_engine import baselines, training
from hyre_engine import ensemble as ens
from hyre_engine.experiments.common import (
    CLASSIFICATION_BETA,
    DEFAULT_SEEDS,
    Log,
    check_seeds,
    hyre_weights,
    quiet,
    round_list,
    seed_stats,
)
from hyre_engine.numerics import accuracy
from hyre_engine.reweight import weighted_probability


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
            w = hyre_weights(Z[order[:n]], y[order[:n]], beta=CLASSIFICATION_BETA)
            out[j, i] = accuracy(weighted_probability(Z[rest], w), y[rest])
        for name, p in fixed.items():
            fixed_acc[name][j] = accuracy(p[rest], y[rest])
    return out.mean(axis=0), {name: float(a.mean()) for name, a in fixed_acc.items()}


def run_labelers(*, seeds: int = DEFAULT_SEEDS, quick: bool = False, log: Log = quiet) -> dict:
    """Conflicting labelers: the prior scale sweep and HyRe on held-out labelers.

    Per seed: a crowd of 9 linear labelers w ~ N(0, I) on [0, 1]^2, each training point
    labelled by one random member; 20 held-out labelers drawn the same way. For every
    prior scale: agreement of the ensemble mean with the crowd's majority, and the
    mean over held-out labelers of the best head's agreement with that labeler. Then
    HyRe (prior scale 1) on the held-out labelers vs n, against the uniform ensemble
    and a single model (one vanilla MLP trained on the same data).
    """
    check_seeds(seeds)
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
        p_single = _single_model_probability(d, sz, seed)
        maj_seed, max_seed = [], []
        for scale in scales:
            maj, mx, curve, fixed = _labelers_at_scale(d, sz, seed, scale, n_values, p_single)
            maj_seed.append(maj)
            max_seed.append(mx)
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
        "majority_agreement": round_list(maj.mean(axis=0)),
        "majority_agreement_std": round_list(maj.std(axis=0)),
        "max_agreement": round_list(mx.mean(axis=0)),
        "max_agreement_std": round_list(mx.std(axis=0)),
        "n": n_values,
        "hyre_prior_scale": LABELERS_HYRE_PRIOR_SCALE,
        "summary": {
            "hyre": seed_stats(curves[LABELERS_HYRE_PRIOR_SCALE]),
            "uniform": seed_stats(uniform_rows),
            "single": seed_stats(single_rows),
        },
        "hyre_by_prior_scale": {str(s): seed_stats(curves[s]) for s in sz.prior_scales},
    }


def _single_model_probability(d: dict, sz: LabelerSizes, seed: int) -> np.ndarray:
    """P (n_test,) of one vanilla MLP trained on the same data: the 'single' baseline."""
    single = ens.build_ensemble(ens.EnsembleConfig(
        kind="vanilla", input_dim=2, n_heads=1, hidden=sz.hidden, prior_scale=0.0, seed=seed,
    ))
    training.fit_ensemble(
        single, task="classification", inputs=d["x_train"], targets=d["y_train"],
        epochs=sz.epochs, seed=seed, device="cpu",
    )
    return baselines.uniform_probability(ens.predict(single, d["x_test"]))


def _labelers_at_scale(
    d: dict, sz: LabelerSizes, seed: int, scale: float, n_values: list[int], p_single: np.ndarray,
) -> tuple[float, float, np.ndarray, dict[str, float]]:
    """One seed's ensemble at one prior scale: (majority agreement, mean best-head agreement,
    HyRe curve (len(n_values),), fixed baselines' accuracy on the held-out labelers)."""
    votes = d["heldout_votes"]
    model = ens.build_ensemble(ens.EnsembleConfig(
        kind="shared", input_dim=2, n_heads=sz.n_heads, hidden=sz.hidden,
        prior_scale=scale, seed=seed,
    ))
    training.fit_ensemble(
        model, task="classification", inputs=d["x_train"], targets=d["y_train"],
        epochs=sz.epochs, seed=seed, device="cpu",
    )
    Z = ens.predict(model, d["x_test"]).astype(np.float64)
    p_uniform = baselines.uniform_probability(Z)
    # (n_heldout, K) agreement of every head with every held-out labeler
    agree = ((Z > 0)[:, None, :] == (votes > 0.5)[:, :, None]).mean(axis=0)
    rng = np.random.default_rng([20243, seed])
    curve, fixed = _heldout_curves(Z, votes, n_values, rng, {"uniform": p_uniform, "single": p_single})
    return accuracy(p_uniform, d["majority"]), float(agree.max(axis=1).mean()), curve, fixed


