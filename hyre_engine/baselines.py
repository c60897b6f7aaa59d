"""Static and fitted alternatives to HyRe's reweighting, for comparison.

Inputs: ``Z`` is (n_items, n_heads) logits that A is preferred
(reward margins r(a) - r(b)), ``y`` is (n_items,) with 1 when A is preferred.
Every combiner returns P(A preferred) per item, shape (n_items,).

Static combiners need no labels (``uniform_*``, ``majority_vote``,
``confidence_weighted``, ``entropy_weighted``); ``fit_convex_weights`` learns from
the target's adaptation labels; the two ``*_oracle`` functions are fitted on the
evaluation data itself and are upper bounds, not methods. Numpy and scipy only:
fine-tuning the heads, which needs torch, is ``training.finetune_heads``.
"""

from __future__ import annotations

import numpy as np

from hyre_engine.numerics import (  # accuracy: re-exported for the combiners' users
    TIE_TOLERANCE,
    accuracy,  # noqa: F401
    binary_targets,
    entropy_from_logits,
    finite_logits,
    sigmoid,
)

# Shrinkage of convex weights towards uniform (penalty l2 * ||w - 1/K||^2): with a handful
# of labels many weightings fit equally well; this picks the one closest to uniform and
# stays small next to a log loss of ~0.69 per item.
DEFAULT_CONVEX_L2 = 1e-2
# Steps of the convex weights' solver; it stops earlier at CONVEX_TOL (tens to hundreds
# of steps on 1-20 labels and K = 100).
DEFAULT_CONVEX_MAX_ITER = 10_000
# Probabilities are clipped this far from 0 and 1 before taking logs.
PROB_EPS = 1e-7


def _check_logits(Z, name: str = "Z") -> np.ndarray:
    return finite_logits(Z, name, min_heads=1).astype(np.float64, copy=False)


# --------------------------------------------------------------------------- static combiners


def uniform_probability(Z) -> np.ndarray:
    """Mean over heads of each head's probability: (n, K) -> (n,)."""
    return sigmoid(_check_logits(Z)).mean(axis=1)


def uniform_logit(Z) -> np.ndarray:
    """Sigmoid of the mean logit (mean reward margin): (n, K) -> (n,)."""
    return sigmoid(_check_logits(Z).mean(axis=1))


def majority_vote(Z) -> np.ndarray:
    """Fraction of heads voting A (logit > 0; a logit of exactly 0 is half a vote)."""
    Z = _check_logits(Z)
    return ((Z > 0) + 0.5 * (Z == 0)).mean(axis=1)


def _weighted_mean(P: np.ndarray, W: np.ndarray) -> np.ndarray:
    total = W.sum(axis=1)
    # an item where every head has weight 0 falls back to the plain mean
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, (W * P).sum(axis=1) / safe, P.mean(axis=1))


def confidence_weighted(Z) -> np.ndarray:
    """Per item, heads weighted by their confidence |p_ik - 0.5|: (n, K) -> (n,).

    A head that is unsure about an item (p near 0.5) hardly counts for that item;
    items where every head says exactly 0.5 get 0.5.
    """
    P = sigmoid(_check_logits(Z))
    return _weighted_mean(P, np.abs(P - 0.5))


def entropy_weighted(Z) -> np.ndarray:
    """Per item, heads weighted by exp(-H(p_ik)), H the binary entropy in nats: (n, K) -> (n,).

    exp(-H) rather than 1/H: it stays finite for a fully confident head (H = 0) and
    varies by at most a factor 2 (H <= ln 2), so no single confident head dominates.
    """
    Z = _check_logits(Z)
    return _weighted_mean(sigmoid(Z), np.exp(-entropy_from_logits(Z)))


# --------------------------------------------------------------------------- fitted weights


def _convex_objective(w: np.ndarray, P: np.ndarray, y: np.ndarray, l2: float):
    n, K = P.shape
    p = np.clip(P @ w, PROB_EPS, 1 - PROB_EPS)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    dl_dp = (-(y / p) + (1 - y) / (1 - p)) / n
    diff = w - 1.0 / K
    return loss + l2 * diff @ diff, P.T @ dl_dp + 2 * l2 * diff


def project_simplex(v) -> np.ndarray:
    """The Euclidean projection of ``v`` (K,) onto the probability simplex (sort-based,
    Held et al. 1974; Duchi et al. 2008): the closest w >= 0 with sum w = 1."""
    v = np.asarray(v, dtype=np.float64)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.flatnonzero(u * np.arange(1, len(v) + 1) > css)[-1]
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


def _spectral_projected_gradient(fun, w: np.ndarray, *, tol: float, max_iter: int) -> np.ndarray:
    """Minimise a smooth convex ``fun`` (value, gradient) over the simplex from ``w``.

    Spectral projected gradient (Birgin, Martinez & Raydan 2000): a step along
    P(w - a g) - w with the Barzilai-Borwein length a and a nonmonotone Armijo search,
    so every iterate stays on the simplex (the mixture's probabilities stay in (0, 1)).
    Stops when the projected gradient P(w - g) - w is under ``tol`` in every coordinate:
    at that point w is the minimiser up to ``tol`` (the KKT conditions of the simplex).
    """
    f, g = fun(w)
    recent = [f]
    step = 1.0
    for _ in range(max_iter):
        if np.abs(project_simplex(w - g) - w).max() <= tol:
            break
        d = project_simplex(w - step * g) - w
        slope = float(g @ d)
        reference = max(recent[-_SPG_MEMORY:])
        lam = 1.0
        while True:
            candidate = w + lam * d
            f_new, g_new = fun(candidate)
            if f_new <= reference + 1e-4 * lam * slope or lam < 1e-12:
                break
            lam *= 0.5
        s, dy = candidate - w, g_new - g
        curvature = float(s @ dy)
        step = float(np.clip(s @ s / curvature, 1e-10, 1e10)) if curvature > 0 else 1e10
        w, f, g = candidate, f_new, g_new
        recent.append(f)
    return w


# The nonmonotone line search compares with the largest of this many last values.
_SPG_MEMORY = 10
# The convex weights are the minimiser to this tolerance of the projected gradient.
CONVEX_TOL = 1e-10


def fit_convex_weights(
    Z_adapt, y_adapt, *, l2: float = DEFAULT_CONVEX_L2, max_iter: int = DEFAULT_CONVEX_MAX_ITER
) -> np.ndarray:
    """Convex weights w (K,) on the simplex minimising the log loss of sum_k w_k p_ik.

    Z_adapt: (n, K) logits on the adaptation items; y_adapt: (n,) labels. The ensemble
    mixes probabilities, as in Shahhosseini et al. (2022)'s optimal ensemble weights;
    the objective is the log loss plus ``l2 * ||w - 1/K||^2`` (strictly convex for
    l2 > 0: one minimiser), minimised from uniform by spectral projected gradient to
    CONVEX_TOL (at most ``max_iter`` steps). SLSQP with K = 100 bounds took 0.1-0.8 s a
    fit and stopped at a tolerance on the objective; this reaches the minimiser in
    milliseconds (tests/test_baselines.py compares the two). No adaptation items:
    uniform weights.
    """
    Z = _check_logits(Z_adapt, "Z_adapt")
    n, K = Z.shape
    y = binary_targets(y_adapt, n, "y_adapt")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    uniform = np.full(K, 1.0 / K)
    if n == 0 or K == 1:
        return uniform
    P = sigmoid(Z)
    w = _spectral_projected_gradient(lambda w: _convex_objective(w, P, y, l2), uniform, tol=CONVEX_TOL,
                                     max_iter=max_iter)
    w = np.clip(w, 0.0, None)
    total = w.sum()
    return w / total if total > 0 else uniform


def best_head_oracle(Z_eval, y_eval) -> tuple[int, float]:
    """(index, accuracy) of the single head most accurate ON THE EVALUATION DATA.

    An UPPER BOUND for picking one head, not a method: it looks at the test labels.
    Ties go to the lowest index.
    """
    Z = _check_logits(Z_eval, "Z_eval")
    y = binary_targets(y_eval, Z.shape[0], "y_eval")
    if Z.shape[0] == 0:
        raise ValueError("best_head_oracle needs at least one evaluation item")
    # numerics.correct for every head at once (one pass instead of K calls): credit 1 when
    # the more probable side is preferred, 0.5 on a tie
    p = sigmoid(Z)
    credit = np.where(y[:, None] == 1, p > 0.5, p < 0.5).astype(np.float64)
    credit[np.abs(p - 0.5) <= TIE_TOLERANCE] = 0.5
    accs = credit.mean(axis=0)
    best = int(np.argmax(accs))
    return best, float(accs[best])


def best_weights_oracle(Z_eval, y_eval, *, l2: float = 0.0) -> np.ndarray:
    """Convex weights (K,) fitted ON THE EVALUATION DATA itself (log loss, no shrinkage).

    An UPPER BOUND on what any fixed convex weighting can reach, not a method.
    """
    return fit_convex_weights(Z_eval, y_eval, l2=l2)
