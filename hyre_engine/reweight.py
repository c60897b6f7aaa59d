"""The HyRe posterior: head weights from cumulative losses on a person's labels.

w_k = exp(-beta * L_k + log_prior_k) / sum_j exp(-beta * L_j + log_prior_j), with
L_k = sum over the labelled examples of head k's loss. This is generalised Bayesian
inference, so adding examples one at a time gives the same weights as adding them
together. Pure numpy; see docs/engine.md for the shape conventions.
"""

from __future__ import annotations

import numpy as np

from hyre_engine.numerics import as_finite, finite_logits, sigmoid

# pca.py still imports the validator under its old private name; it moves to
# hyre_engine.numerics.as_finite with the pages' half of the redesign.
_as_finite = as_finite

# Temperature of the posterior; the paper uses beta = 1 throughout.
DEFAULT_BETA = 1.0

# Reweighting losses: 0-1 for preferences/classification (the paper's default and its
# best choice), cross-entropy (Bradley-Terry log loss, the paper's ablation), squared
# error for regression.
PREFERENCE_LOSSES = ("zero-one", "cross-entropy")
LOSSES = (*PREFERENCE_LOSSES, "squared")

# Weights must sum to one; float32 weights over ~1e4 heads drift by ~1e-6, so allow more.
WEIGHT_SUM_TOL = 1e-4


def validate_weights(w, n_heads: int | None = None) -> np.ndarray:
    """Check a weight vector (n_heads,): finite, non-negative, sums to 1. Returns it as an array."""
    w = as_finite("w", w, ndim=1)
    if n_heads is not None and w.shape[0] != n_heads:
        raise ValueError(f"w has length {w.shape[0]} but the predictions have {n_heads} heads")
    if w.shape[0] == 0:
        raise ValueError("w is empty: need at least one head")
    if (w < 0).any():
        raise ValueError("w has negative entries")
    total = float(w.sum())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise ValueError(f"w must sum to 1, sums to {total:.6g}")
    return w


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")


def _check_binary_labels(y: np.ndarray) -> None:
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        values = np.unique(y[bad])[:5].tolist()
        raise ValueError(f"labels must be 0 or 1 for a binary loss, got {values}")


def example_losses(preds, y, *, loss: str = "zero-one") -> np.ndarray:
    """Per-example, per-head losses (n_items, n_heads), float64.

    preds: (n_items, n_heads) logits (binary losses) or values (squared).
    y: (n_items,) labels in {0, 1} (1 = A preferred) or real targets (squared).
    zero-one counts an exact tie (logit 0) as half an error.
    """
    _check_loss(loss)
    z = as_finite("preds", preds, ndim=2).astype(np.float64, copy=False)
    y = as_finite("y", y, ndim=1).astype(np.float64, copy=False)
    n_items, _n_heads = z.shape
    if y.shape[0] != n_items:
        raise ValueError(f"y has shape {y.shape} but preds has shape {z.shape}: need ({n_items},)")
    if loss == "squared":
        return (z - y[:, None]) ** 2
    _check_binary_labels(y)
    signed = z * (2.0 * y - 1.0)[:, None]  # > 0 when the head agrees with the label
    if loss == "zero-one":
        return (signed < 0).astype(np.float64) + 0.5 * (signed == 0)
    return np.logaddexp(0.0, -signed)  # -log sigmoid(signed), overflow-free


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    return beta


def _check_log_prior(log_prior, n_heads: int) -> np.ndarray | None:
    if log_prior is None:
        return None
    lp = np.asarray(log_prior, dtype=np.float64)
    if lp.shape != (n_heads,):
        raise ValueError(f"log_prior has shape {lp.shape}, need ({n_heads},)")
    # -inf is allowed: it switches a head off.
    if np.isnan(lp).any() or (lp == np.inf).any():
        raise ValueError("log_prior contains NaN or +inf")
    if not np.isfinite(lp).any():
        raise ValueError("log_prior gives every head zero prior weight")
    return lp


def log_weights_from_losses(losses, *, beta: float = DEFAULT_BETA, log_prior=None) -> np.ndarray:
    """Normalised log weights (n_heads,) = log softmax(-beta * losses + log_prior)."""
    L = as_finite("losses", losses, ndim=1).astype(np.float64, copy=False)
    if L.shape[0] == 0:
        raise ValueError("losses is empty: need at least one head")
    beta = _check_beta(beta)
    lp = _check_log_prior(log_prior, L.shape[0])
    # Shift by the best loss first so that beta * L cannot overflow for the heads that matter.
    with np.errstate(over="ignore", invalid="ignore"):
        a = -beta * (L - L.min())
    if lp is not None:
        a = a + lp
    a[np.isnan(a)] = -np.inf  # 0 * inf from beta = 0 on an overflowed gap: no information
    top = a.max()
    if not np.isfinite(top):
        raise ValueError("every head has zero weight (check log_prior and losses)")
    a -= top
    a -= np.log(np.exp(a).sum())
    return a


def weights_from_losses(losses, *, beta: float = DEFAULT_BETA, log_prior=None) -> np.ndarray:
    """Head weights (n_heads,), non-negative and summing to 1."""
    return np.exp(log_weights_from_losses(losses, beta=beta, log_prior=log_prior))


def effective_heads(w) -> float:
    """Effective number of heads 1 / sum w^2: K for uniform weights, 1 when one head has all."""
    w = validate_weights(w)
    return float(1.0 / np.dot(w, w))


def weight_entropy(w) -> float:
    """Entropy of the weights in nats (0 log 0 = 0): log K for uniform, 0 for one head."""
    w = validate_weights(w).astype(np.float64, copy=False)
    nz = w[w > 0]
    return float(-(nz * np.log(nz)).sum())


def _check_preds_weights(name: str, preds, w) -> tuple[np.ndarray, np.ndarray]:
    z = finite_logits(preds, name)
    w = validate_weights(w, z.shape[1])
    return z, w


def weighted_probability(logits, w) -> np.ndarray:
    """P(A preferred) under the reweighted ensemble, (n_items,) = sum_k w_k sigmoid(logits[:, k])."""
    z, w = _check_preds_weights("logits", logits, w)
    return sigmoid(z) @ w


def weighted_value(values, w) -> np.ndarray:
    """Reweighted regression prediction (n_items,) = sum_k w_k values[:, k]."""
    v, w = _check_preds_weights("values", values, w)
    return v @ w


class Posterior:
    """HyRe posterior over n_heads heads, updated one label (or batch) at a time.

    Keeps the cumulative loss after every add() on a stack, so undo() restores the
    previous losses, and hence weights, bit for bit.
    """

    def __init__(
        self,
        n_heads: int,
        *,
        beta: float = DEFAULT_BETA,
        loss: str = "zero-one",
        log_prior=None,
    ) -> None:
        if isinstance(n_heads, bool) or not isinstance(n_heads, int | np.integer) or n_heads < 1:
            raise ValueError(f"n_heads must be a positive integer, got {n_heads!r}")
        _check_loss(loss)
        self.n_heads = int(n_heads)
        self.beta = _check_beta(beta)
        self.loss = loss
        self.log_prior = _check_log_prior(log_prior, self.n_heads)
        # Stack of (cumulative losses, cumulative example count) after each add().
        self._history: list[tuple[np.ndarray, int]] = []
        self._log_weights: np.ndarray | None = None

    def add(self, preds, y) -> Posterior:
        """Add labelled examples: preds (n_heads,) with scalar y, or (n, n_heads) with y (n,)."""
        p = np.asarray(preds)
        if p.ndim in (1, 2) and p.shape[-1] != self.n_heads:
            raise ValueError(
                f"preds has shape {p.shape} but the posterior has {self.n_heads} heads"
            )
        if p.ndim == 1:
            if np.ndim(y) != 0:
                raise ValueError(
                    f"one example (preds shape {p.shape}) needs a scalar y, got shape {np.shape(y)}"
                )
            p = p[None, :]
            y = np.asarray(y)[None]
        elif p.ndim != 2:
            raise ValueError(f"preds must be (n_heads,) or (n, n_heads), got shape {p.shape}")
        batch = example_losses(p, y, loss=self.loss).sum(axis=0)
        prev_losses, prev_n = self._top()
        self._history.append((prev_losses + batch, prev_n + p.shape[0]))
        self._log_weights = None
        return self

    def undo(self) -> Posterior:
        """Remove the last add() batch."""
        if not self._history:
            raise ValueError("nothing to undo: no examples have been added")
        self._history.pop()
        self._log_weights = None
        return self

    def _top(self) -> tuple[np.ndarray, int]:
        if self._history:
            return self._history[-1]
        return np.zeros(self.n_heads), 0

    @property
    def losses(self) -> np.ndarray:
        """Cumulative loss of each head (n_heads,)."""
        return self._top()[0].copy()

    @property
    def n_examples(self) -> int:
        return self._top()[1]

    @property
    def log_weights(self) -> np.ndarray:
        """Normalised log weights (n_heads,)."""
        if self._log_weights is None:
            self._log_weights = log_weights_from_losses(
                self._top()[0], beta=self.beta, log_prior=self.log_prior
            )
        return self._log_weights.copy()

    @property
    def weights(self) -> np.ndarray:
        """Head weights (n_heads,), summing to 1."""
        return np.exp(self.log_weights)

    @property
    def entropy(self) -> float:
        return weight_entropy(self.weights)

    @property
    def effective_heads(self) -> float:
        return effective_heads(self.weights)


# -- calibrating beta on held-out training annotators -------------------------------

# Hold out this fraction of the training annotators (at least CALIBRATION_MIN_HOLDOUT),
# train a calibration ensemble on the others with the same settings, and pick the beta
# whose HyRe accuracy after CALIBRATION_N labels is best on the held-out annotators'
# other rows: a beta chosen without ever seeing a target user's labels.
DEFAULT_CALIBRATE = True
# Temperatures tried: 0.5-8 spans "one error barely moves a head" to "one error
# all but removes it" (exp(-8) = 3e-4) for the 0-1 loss.
DEFAULT_CALIBRATION_BETAS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
# The few-label regime HyRe is for, up to the n = 10 the app aims to personalise by.
DEFAULT_CALIBRATION_N = (5, 10)
DEFAULT_CALIBRATION_HOLDOUT = 0.15
CALIBRATION_MIN_HOLDOUT = 2
# Fewer annotators than this: too few to both hold some out and train on the rest.
CALIBRATION_MIN_ANNOTATORS = 5
# Adaptation draws per held-out annotator: the per-beta scores average over
# annotators x draws x n, which is plenty for choosing on a coarse grid.
DEFAULT_CALIBRATION_SEEDS = 5
# Offset of the holdout draw from the ensemble seed, so the held-out annotators
# are not tied to the head x annotator mask drawn from the same seed.
_HOLDOUT_SEED_OFFSET = 7919
# Scores within this of the best count as tied (the smaller beta wins a tie).
_SCORE_TIE = 1e-12


def holdout_annotators(names, *, fraction: float, seed: int) -> list[str]:
    """The training annotators held out for calibration: a seeded subset, sorted.

    At least CALIBRATION_MIN_HOLDOUT, and at least two annotators are left to train on.
    """
    names = sorted(set(map(str, names)))
    if not 0 < fraction < 1:
        raise ValueError(f"calibration holdout must be in (0, 1), got {fraction}")
    if len(names) < CALIBRATION_MIN_ANNOTATORS:
        raise ValueError(
            f"calibration needs at least {CALIBRATION_MIN_ANNOTATORS} annotators, got {len(names)}"
        )
    count = min(max(CALIBRATION_MIN_HOLDOUT, round(fraction * len(names))), len(names) - 2)
    rng = np.random.default_rng(seed + _HOLDOUT_SEED_OFFSET)
    return sorted(names[i] for i in rng.choice(len(names), size=count, replace=False))


def check_betas(betas) -> list[float]:
    """Candidate betas, sorted and deduplicated; each must be positive."""
    out = sorted({float(b) for b in betas})
    if not out or min(out) <= 0:
        raise ValueError(f"calibration betas must be positive, got {tuple(betas)}")
    return out


def choose_beta(betas, scores) -> int:
    """Index of the best beta: scores (n_groups, n_betas) averaged over groups; the
    first (smallest, for sorted betas) of the tied best wins."""
    scores = as_finite("scores", scores, ndim=2)
    if scores.shape[1] != len(betas):
        raise ValueError(f"scores has shape {scores.shape} but there are {len(betas)} betas")
    mean = scores.mean(axis=0)
    return int(np.flatnonzero(mean >= mean.max() - _SCORE_TIE)[0])
