"""Accuracy vs n for the personal models on one target group (numpy, no torch).

For each seed the group's rows are labelled in one order (random, or chosen one by one
by the personal model's own scorer under its current posterior), and at every n each
method is scored on the group's rows not yet labelled:

- ``uniform``: the uniform ensemble (no labels used);
- ``hyre``: the reweighted ensemble (the paper's method);
- ``personal``: HyRe plus the personal head (w and v from the same labels);
- ``residual``: the uniform ensemble plus the personal head;
- ``probe``: a logistic regression on the embedding difference from scratch (no heads);
- ``user_ceiling``: an upper bound, not a method: a logistic regression on the
  difference fitted on a random half of the group's rows and scored on the other half
  (the same value at every n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hyre_engine.numerics import accuracy as _accuracy
from hyre_engine.numerics import sigmoid as _sigmoid
from hyre_engine.personal import (
    DEFAULT_CALIBRATION_LAMBDAS,
    DEFAULT_LAMBDA,
    PERSONAL_SCORERS,
    PersonalHead,
    PersonalModel,
    check_diffs,
)
from hyre_engine.reweight import DEFAULT_BETA

PERSONAL_METHODS = ("uniform", "hyre", "personal", "residual", "probe", "user_ceiling")
# Orders a personal evaluation can follow: random, or the personal model's own scorers.
PERSONAL_STRATEGIES = ("random", *PERSONAL_SCORERS)
DEFAULT_N = (0, 1, 5, 10, 20)


@dataclass
class PersonalGroupResult:
    n_examples: int
    methods: dict[str, dict[str, list[float]]]
    # How much is personal: share of the unlabelled rows whose side the personal head flips.
    flip_share: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"n_examples": self.n_examples, "methods": self.methods, "flip_share": self.flip_share}


def personal_order(logits, diffs, y, n_max: int, *, strategy: str, beta: float, lam: float,
                   seed: int) -> np.ndarray:
    """The first ``n_max`` rows a user labels, in order (random, or by the personal scorer)."""
    n_rows = len(y)
    n_max = min(n_max, n_rows - 1)
    rng = np.random.default_rng(seed)
    if strategy == "random" or n_max <= 0:
        return rng.permutation(n_rows)[: max(n_max, 0)]
    if strategy not in PERSONAL_SCORERS:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(PERSONAL_STRATEGIES)}")
    model = PersonalModel(logits, diffs, beta=beta, lam=lam)
    chosen = []
    for step in range(n_max):
        item = model.next_item(strategy, seed=seed + step)
        chosen.append(item)
        model.add(item, y[item])
    return np.array(chosen, dtype=np.int64)


def user_ceiling(diffs, y, *, lam: float = DEFAULT_LAMBDA, seeds: int = 10) -> tuple[float, float]:
    """Half-split per-user fit (mean, std over splits): an upper bound on what v alone can do."""
    D = check_diffs(diffs)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 4:
        return float("nan"), float("nan")
    scores = []
    for seed in range(seeds):
        perm = np.random.default_rng(10_000 + seed).permutation(n)
        fit, test = perm[: n // 2], perm[n // 2:]
        head = PersonalHead.from_labels(D[fit], np.arange(len(fit)), y[fit], np.zeros(len(fit)), lam=lam)
        scores.append(_accuracy(_sigmoid(D[test].astype(np.float64) @ head.v), y[test]))
    return float(np.mean(scores)), float(np.std(scores))


def evaluate_personal_group(
    logits,
    diffs,
    y,
    *,
    n_values: Sequence[int] = DEFAULT_N,
    seeds: int = 10,
    strategy: str = "random",
    beta: float = DEFAULT_BETA,
    lam: float = DEFAULT_LAMBDA,
    loss: str = "zero-one",
    methods: Sequence[str] = PERSONAL_METHODS,
) -> PersonalGroupResult:
    """Accuracy of each method against n on one group.

    logits: (n_rows, n_heads) head margins; diffs: (n_rows, dim) embedding differences of
    the same rows; y: (n_rows,) in {0, 1}. Every method at a given n is scored on the
    same unlabelled rows.
    """
    Z = np.asarray(logits, dtype=np.float64)
    D = check_diffs(diffs)
    y = np.asarray(y, dtype=np.float64)
    if Z.ndim != 2 or D.shape[0] != Z.shape[0] or y.shape != (Z.shape[0],):
        raise ValueError(f"logits (n, K), diffs (n, dim) and y (n,) must match, got "
                         f"{Z.shape}, {D.shape}, {y.shape}")
    unknown = set(methods) - set(PERSONAL_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {', '.join(PERSONAL_METHODS)}")
    n_rows = len(y)
    if n_rows < 2:
        raise ValueError(f"a target group needs at least 2 rows, got {n_rows}")
    n_values = [int(n) for n in n_values]
    if min(n_values) < 0:
        raise ValueError(f"n values must be >= 0, got {n_values}")
    p_heads = _sigmoid(Z)
    acc = {m: np.full((seeds, len(n_values)), np.nan) for m in methods}
    flips = np.full((seeds, len(n_values)), np.nan)
    ceiling = user_ceiling(D, y, lam=lam, seeds=seeds) if "user_ceiling" in methods else None
    for seed in range(seeds):
        order = personal_order(Z, D, y, max(n_values), strategy=strategy, beta=beta, lam=lam, seed=seed)
        personal = PersonalModel(Z, D, beta=beta, lam=lam, loss=loss)
        residual = PersonalModel(Z, D, beta=beta, lam=lam, loss=loss, reweight=False)
        probe = PersonalHead(D, lam=lam)
        done = 0
        for j, n in sorted(enumerate(n_values), key=lambda t: t[1]):
            n = min(n, len(order))
            for item in order[done:n]:
                personal.add(int(item), y[item])
                residual.add(int(item), y[item])
                probe.add(int(item), y[item], np.zeros(probe.n_labels + 1))
            done = max(done, n)
            rest = np.setdiff1d(np.arange(n_rows), order[:n])
            y_rest = y[rest]
            flips[seed, j] = float(np.mean(np.sign(personal.margins()[rest])
                                           != np.sign(personal.offsets()[rest])))
            for m in methods:
                if m == "uniform":
                    prob = p_heads[rest].mean(axis=1)
                elif m == "hyre":
                    prob = p_heads[rest] @ personal.weights
                elif m == "personal":
                    prob = _sigmoid(personal.margins()[rest])
                elif m == "residual":
                    prob = _sigmoid(residual.margins()[rest])
                elif m == "probe":
                    prob = _sigmoid(probe.corrections()[rest])
                else:  # user_ceiling
                    acc[m][seed, j] = ceiling[0]
                    continue
                acc[m][seed, j] = _accuracy(prob, y_rest)
    return PersonalGroupResult(
        n_examples=n_rows,
        methods={m: {"mean": _round(np.nanmean(a, axis=0)), "std": _round(np.nanstd(a, axis=0))}
                 for m, a in acc.items()},
        flip_share={"mean": _round(flips.mean(axis=0)), "std": _round(flips.std(axis=0))},
    )


def calibrate_lambda(groups, *, beta: float, lambdas: Sequence[float] = DEFAULT_CALIBRATION_LAMBDAS,
                     n_values: Sequence[int] = (5, 10), seeds: int = 5) -> dict:
    """Choose lambda by the personal model's accuracy on held-out *training* annotators.

    ``groups``: iterable of (logits (n, K), diffs (n, dim), y (n,)) of each held-out
    annotator, predicted by an ensemble that never trained on them. Returns a JSON-safe
    dict: the chosen ``lam`` (ties: the larger, i.e. the more cautious, lambda) and the
    mean accuracy per candidate.
    """
    lambdas = sorted({float(v) for v in lambdas})
    if not lambdas or min(lambdas) <= 0:
        raise ValueError(f"calibration lambdas must be positive, got {lambdas}")
    groups = list(groups)
    if not groups:
        raise ValueError("lambda calibration needs at least one held-out annotator")
    scores = np.zeros((len(groups), len(lambdas)))
    for i, (Z, D, y) in enumerate(groups):
        for j, lam in enumerate(lambdas):
            r = evaluate_personal_group(Z, D, y, n_values=n_values, seeds=seeds, beta=beta, lam=lam,
                                        methods=["personal"])
            scores[i, j] = float(np.mean(r.methods["personal"]["mean"]))
    mean = scores.mean(axis=0)
    best = int(np.flatnonzero(mean >= mean.max() - 1e-12)[-1])
    return {
        "lam": lambdas[best],
        "lambdas": lambdas,
        "scores": {f"{v:g}": round(float(s), 6) for v, s in zip(lambdas, mean, strict=True)},
        "n": [int(n) for n in n_values],
        "seeds": int(seeds),
        "beta": float(beta),
    }


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]
