"""The personal head: a Bayesian linear correction on the backbone's embedding difference.

Reweighting can only choose among the hypotheses the heads already hold. The personal
head adds what no head holds: for a pool pair i with embedding difference
d_i = phi(a_i) - phi(b_i) (n_pairs x dim, the pool's ``D``),

    m_i = o_i + v . d_i,        o_i = logit(sum_k w_k sigmoid(z_ik)),

where o_i, the offset, is the margin of the reweighted ensemble's own prediction: the
ensemble predicts the mixture probability sum_k w_k sigmoid(z_ik), so with v = 0 (no
label yet) the personal model predicts exactly what HyRe does (the uniform ensemble at
n = 0). The heads' mean margin sum_k w_k z_ik would not: where confident heads disagree
its sign can differ from the mixture's (demo: 0.498 vs 0.502 at n = 0), and its size
overstates how sure the ensemble is, which v then has to undo.

with the prior v ~ N(0, I / lam) and the Bradley-Terry likelihood of the person's A/B
labels (skips carry no label and are simply never added). v is fitted by MAP with
Newton steps and its Laplace covariance Sigma = (lam I + D_L^T S D_L)^-1 gives every
pool pair's margin variance d_i^T Sigma d_i.

Labels are few (n << dim), so everything runs in the n-dimensional dual: at the MAP the
gradient condition D_L^T (p - y) + lam v = 0 puts v in the row span of the labelled
differences D_L, v = D_L^T alpha. One label costs one pass over D (the new column of the
cross matrix C = D D_L^T, O(n_pairs dim)) plus O(n_pairs n^2) for the variances; no
dim x dim matrix is ever formed.

A structured prior v ~ N(0, (I + rho U diag(e / e_max) U^T) / lam), built from how training
annotators deviate from the population (``personal_prior``), is the isotropic head on
D T with v = T u: ``PersonalModel(prior=...)`` fits on D T and reports v on D.

Pure numpy. Shapes follow docs/engine.md: labels y are 1 when A is preferred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

import numpy as np

# The probit predictive and the Gaussian scorers live in acquisition (the one registry);
# re-exported here for the personal model's users.
from hyre_engine.acquisition import (  # noqa: F401
    GAUSSIAN_SCORERS,
    GAUSSIAN_SCREENS,
    SCORERS,
    gaussian_logit_bald,
    gaussian_logit_entropy,
    probit_probability,
    select,
    shared_tables,
)
from hyre_engine.numerics import sigmoid as _sigmoid
from hyre_engine.reweight import DEFAULT_BETA, Posterior, validate_weights

# Prior precision of v. 0.1 on unit-norm MiniLM embeddings: a difference of two unit
# vectors has norm ~1, so a prior sd of ~3 per direction lets a few labels move the
# margin by a few logits, and the reference measurement of this model used 0.1.
DEFAULT_LAMBDA = 0.1
# Candidate precisions for calibration on held-out training annotators, half a decade
# apart from 0.001 to 1. The first grid (0.01-3) had both the demo's and POPQUORN's
# calibrations choose its weakest prior, 0.01 (docs/results.md); on this grid the demo's
# chooses 0.003 and POPQUORN's had chosen 0.001. 3 was never chosen.
DEFAULT_CALIBRATION_LAMBDAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# Newton stops when the gradient norm in v-space is below this (relative to 1 + the
# norm of D_L^T y); the MAP is then exact to ~1e-12, far inside the 1e-8 at which
# sequential and batch fits must agree.
NEWTON_TOL = 1e-12
# Damped Newton on a strictly convex objective converges in ~5-10 steps; 100 only
# guards against a pathological input.
NEWTON_MAX_ITER = 100
# Backtracking halvings per Newton step before giving up on decreasing the objective.
_MAX_HALVINGS = 40
# Capacity of the per-label cross matrix grows by doubling from this.
_INITIAL_CAPACITY = 16
# The personal model's query criteria (registered in acquisition.SCORERS), by name.
PERSONAL_SCORERS = {name: SCORERS[name] for name in SCORERS if name in GAUSSIAN_SCORERS}




class StructuredPrior(Protocol):
    """What the personal model needs of a structured prior (``personal_prior.PersonalPrior``,
    which imports this module, hence a Protocol): v = T u for the isotropic head u on D T."""

    rho: float

    @property
    def isotropic(self) -> bool: ...

    def shared_transform(self, diffs) -> np.ndarray: ...

    def to_v(self, u) -> np.ndarray: ...


# --------------------------------------------------------------------------- checks


def _check_lambda(lam) -> float:
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lambda must be a positive number, got {lam!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"lambda (the prior precision of v) must be finite and > 0, got {lam!r}")
    return value


def check_diffs(diffs, *, name: str = "diffs", dim: int | None = None) -> np.ndarray:
    """Validate embedding differences (n_pairs, dim): numeric, 2-D, finite, non-empty."""
    arr = np.asarray(diffs)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_pairs, dim), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has dim {arr.shape[1]} but the model expects dim {dim}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or inf in {bad} of {arr.shape[0]} rows (embeddings)")
    return arr


def embedding_differences(xa, xb) -> np.ndarray:
    """D = phi(a) - phi(b), float32 (n_pairs, dim), from the two sides' embeddings."""
    a = check_diffs(xa, name="embeddings of A")
    b = check_diffs(xb, name="embeddings of B")
    if a.shape != b.shape:
        raise ValueError(f"embeddings of A {a.shape} and B {b.shape} must have the same shape")
    return (a.astype(np.float32, copy=False) - b.astype(np.float32, copy=False))


def _check_label(y) -> float:
    if isinstance(y, bool | np.bool_):
        return float(y)
    try:
        value = float(y)
    except (TypeError, ValueError):
        raise ValueError(f"a label must be 0 (B preferred) or 1 (A preferred), got {y!r}") from None
    if value not in (0.0, 1.0):
        raise ValueError(f"a label must be 0 (B preferred) or 1 (A preferred), got {y!r}")
    return value


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)


def mixture_margins(logits, w) -> np.ndarray:
    """The reweighted ensemble's margin logit(sum_k w_k sigmoid(z_ik)) (n,), float64.

    ``logits`` (n, n_heads), ``w`` (n_heads,) on the simplex. Computed in log space,
    log sum_k w_k sigmoid(z) - log sum_k w_k sigmoid(-z), so it is finite and exact however
    large the heads' margins (a plain logit of the mixture saturates at |z| ~ 37).
    """
    Z = np.asarray(logits, dtype=np.float64)  # noqa: N806
    if Z.ndim != 2:
        raise ValueError(f"logits must be 2-D (n, n_heads), got shape {Z.shape}")
    w = validate_weights(w, Z.shape[1])
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    return _logsumexp(log_w - _softplus(-Z), axis=1) - _logsumexp(log_w - _softplus(Z), axis=1)


# --------------------------------------------------------------------------- the personal head


@dataclass(frozen=True)
class _Fit:
    """The personal head after one label: enough to undo back to it exactly."""

    alpha: np.ndarray  # (n,) dual coefficients, v = D_L^T alpha
    offsets: np.ndarray  # (n,) the offsets the fit used
    chol_inv: np.ndarray  # (n, n) L^-1 of lam I + S^1/2 G S^1/2
    sqrt_s: np.ndarray  # (n,) sqrt(p (1 - p)) at the MAP
    iterations: int


class PersonalHead:
    """MAP and Laplace posterior of v over a fixed pool of embedding differences.

    ``diffs`` (n_pairs, dim) is the pool's D. Labels are added by pool row with the
    offsets o (the reweighted ensemble's margins) of *every* labelled row, because the
    offsets move whenever the head weights move. Each ``add`` refits to convergence,
    warm-started from the previous v; ``undo`` restores the previous fit bit for bit.
    """

    def __init__(self, diffs, *, lam: float = DEFAULT_LAMBDA, tol: float = NEWTON_TOL,
                 max_iter: int = NEWTON_MAX_ITER) -> None:
        D = check_diffs(diffs)
        self.lam = _check_lambda(lam)
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.n_pairs, self.dim = D.shape
        self._D = np.ascontiguousarray(D, dtype=np.float32)
        self._sq_norms = np.einsum("ij,ij->i", self._D, self._D, dtype=np.float64)
        # The prior's margin variances ||d_i||^2 / lam: the Laplace ones never exceed them.
        self._prior_var = self._sq_norms / self.lam
        self._prior_var.setflags(write=False)
        self._prior_var32 = self._prior_var.astype(np.float32)  # for float32 screens of the scores
        self._rows: list[int] = []
        self._y: list[float] = []
        self._DL = np.zeros((0, self.dim))  # float64 labelled differences, in label order
        self._G = np.zeros((0, 0))  # Gram D_L D_L^T, float64
        self._C = np.zeros((_INITIAL_CAPACITY, self.n_pairs), dtype=np.float32)  # rows of D_L D^T
        # Reused outputs of the pool pass, grown with _C: v . d in float32 and the
        # variances' L^-1 S^1/2 C (n, n_pairs); per label only the float64 results are new.
        self._pool32 = np.empty(self.n_pairs, dtype=np.float32)
        self._work = np.empty((_INITIAL_CAPACITY, self.n_pairs), dtype=np.float32)
        self._fits: list[_Fit] = []

    # ---- labels

    @property
    def n_labels(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> np.ndarray:
        """Pool rows labelled so far (n,), in label order."""
        return np.array(self._rows, dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        """Labels (n,) in label order, 1 = A preferred."""
        return np.array(self._y, dtype=np.float64)

    def _check_offsets(self, offsets, n: int) -> np.ndarray:
        o = np.asarray(offsets, dtype=np.float64)
        if o.shape != (n,):
            raise ValueError(f"offsets must have shape ({n},), one per labelled row, got {o.shape}")
        if not np.isfinite(o).all():
            raise ValueError("offsets contain NaN or inf")
        return o

    def add(self, row: int, y, offsets) -> PersonalHead:
        """Label pool row ``row`` with y (1 = A) and refit; ``offsets`` (n_labels + 1,) in label order."""
        if isinstance(row, bool) or not isinstance(row, int | np.integer):
            raise ValueError(f"row must be an integer pool index, got {row!r}")
        row = int(row)
        if not 0 <= row < self.n_pairs:
            raise ValueError(f"row {row} is outside the pool of {self.n_pairs} pairs")
        label = _check_label(y)
        n = self.n_labels
        o = self._check_offsets(offsets, n + 1)
        d_new = self._D[row].astype(np.float64)
        # Grow the append-only structures; undo truncates them again.
        cross = self._DL @ d_new
        G = np.empty((n + 1, n + 1))
        G[:n, :n] = self._G
        G[n, :n] = G[:n, n] = cross
        G[n, n] = d_new @ d_new
        if n == self._C.shape[0]:
            grown = np.zeros((2 * n, self.n_pairs), dtype=np.float32)
            grown[:n] = self._C
            self._C = grown
            self._work = np.empty((2 * n, self.n_pairs), dtype=np.float32)
        np.dot(self._D, self._D[row], out=self._C[n])
        self._rows.append(row)
        self._y.append(label)
        self._DL = np.vstack([self._DL, d_new[None, :]])
        self._G = G
        warm = np.zeros(n + 1)
        if self._fits:
            warm[:n] = self._fits[-1].alpha
        self._fits.append(self._solve(o, warm))
        return self

    def refit(self, offsets) -> PersonalHead:
        """Refit the same labels with new offsets (n_labels,), e.g. after the weights moved.

        Replaces the current fit (undo then goes back past the last add, not to the old offsets).
        """
        n = self.n_labels
        if n == 0:
            self._check_offsets(offsets, 0)
            return self
        o = self._check_offsets(offsets, n)
        self._fits[-1] = self._solve(o, self._fits[-1].alpha)
        return self

    def undo(self) -> PersonalHead:
        """Remove the last label; the previous fit comes back exactly."""
        if not self._rows:
            raise ValueError("nothing to undo: the personal head has no labels")
        n = self.n_labels - 1
        self._rows.pop()
        self._y.pop()
        self._fits.pop()
        self._DL = self._DL[:n].copy()
        self._G = self._G[:n, :n].copy()
        self._C[n] = 0.0
        return self

    # ---- Newton in the dual

    def _objective(self, alpha: np.ndarray, o: np.ndarray, y: np.ndarray) -> float:
        m = o + self._G @ alpha
        s = 2.0 * y - 1.0
        return float(_softplus(-s * m).sum() + 0.5 * self.lam * alpha @ self._G @ alpha)

    def _solve(self, o: np.ndarray, alpha: np.ndarray) -> _Fit:
        """Damped Newton from ``alpha`` to the MAP for offsets ``o``.

        The offsets of *all* labelled rows move with the head weights, so the previous
        v is a starting point, not a fit: iterate until the gradient vanishes.
        """
        y = np.array(self._y)
        G, lam = self._G, self.lam
        n = len(y)
        scale = 1.0 + math.sqrt(max(float(y @ G @ y), 0.0))
        f = self._objective(alpha, o, y)
        iterations = 0
        for iterations in range(1, self.max_iter + 1):  # noqa: B007 - reported in the fit
            p = _sigmoid(o + G @ alpha)
            r = p - y + lam * alpha  # gradient in v-space is D_L^T r
            grad_norm = math.sqrt(max(float(r @ G @ r), 0.0))
            if grad_norm <= self.tol * scale:
                break
            S = p * (1.0 - p)
            # (lam I + S G) delta = -r  gives  H D_L^T delta = -grad  in v-space.
            delta = np.linalg.solve(lam * np.eye(n) + S[:, None] * G, -r)
            step = 1.0
            for _ in range(_MAX_HALVINGS):
                candidate = alpha + step * delta
                f_new = self._objective(candidate, o, y)
                if f_new <= f + 1e-4 * step * float(r @ G @ delta):
                    break
                step *= 0.5
            if f_new > f:
                break  # at rounding level: no step decreases the objective
            alpha, f = candidate, f_new
        p = _sigmoid(o + G @ alpha)
        sqrt_s = np.sqrt(p * (1.0 - p))
        M = lam * np.eye(n) + sqrt_s[:, None] * G * sqrt_s[None, :]
        chol_inv = np.linalg.inv(np.linalg.cholesky(M))
        return _Fit(alpha=alpha.copy(), offsets=o.copy(), chol_inv=chol_inv, sqrt_s=sqrt_s,
                    iterations=iterations)

    # ---- what the fit says

    @property
    def alpha(self) -> np.ndarray:
        """Dual coefficients (n_labels,): v = D_L^T alpha."""
        return self._fits[-1].alpha.copy() if self._fits else np.zeros(0)

    @property
    def v(self) -> np.ndarray:
        """MAP of v (dim,), float64; exactly zero before any label."""
        if not self._fits:
            return np.zeros(self.dim)
        return self._fits[-1].alpha @ self._DL

    @property
    def iterations(self) -> int:
        """Newton steps the last fit took (0 before any label)."""
        return self._fits[-1].iterations if self._fits else 0

    def corrections(self) -> np.ndarray:
        """v . d_i = alpha . g_i for every pool pair (n_pairs,), float64, g_i = D_L d_i the
        cross matrix's column: one float32 pass over C, O(n_pairs n)."""
        if not self._fits:
            return np.zeros(self.n_pairs)
        n = self.n_labels
        np.dot(self._fits[-1].alpha.astype(np.float32), self._C[:n], out=self._pool32)
        return self._pool32.astype(np.float64)

    def variances(self) -> np.ndarray:
        """Laplace variance of each pool pair's margin d_i^T Sigma d_i (n_pairs,), float64.

        With A = S^1/2 D_L, Woodbury gives Sigma = (I - A^T M^-1 A) / lam, M = lam I + A A^T
        = L L^T, so d_i^T Sigma d_i = (||d_i||^2 - ||L^-1 S^1/2 g_i||^2) / lam, with ||d_i||^2
        computed once per pool: one float32 (n, n) x (n, n_pairs) product over C into a
        reused workspace, O(n_pairs n^2); no dim x dim matrix and no pass over D.
        """
        if not self._fits:
            return self._prior_var.copy()
        fit, n = self._fits[-1], self.n_labels
        X = self._work[:n]  # noqa: N806
        np.matmul((fit.chol_inv * fit.sqrt_s[None, :]).astype(np.float32), self._C[:n], out=X)
        var = self._sq_norms - np.einsum("ij,ij->j", X, X)  # float32 sums of n squares, then float64
        np.maximum(var, 0.0, out=var)
        var /= self.lam
        return var

    def prior_variances(self) -> np.ndarray:
        """||d_i||^2 / lam (n_pairs,), read-only: each pair's margin variance before any label,
        and an upper bound of ``variances()`` after any (Woodbury subtracts a square)."""
        return self._prior_var

    def variances_at(self, rows) -> np.ndarray:
        """``variances()[rows]`` (m,), computed for those pool rows only: O(m n^2), not O(n_pairs n^2)."""
        idx = np.asarray(rows, dtype=np.intp).reshape(-1)
        if not self._fits:
            return self._prior_var[idx]
        fit, n = self._fits[-1], self.n_labels
        X = (fit.chol_inv * fit.sqrt_s[None, :]).astype(np.float32) @ self._C[:n, idx]  # noqa: N806
        var = self._sq_norms[idx] - np.einsum("ij,ij->j", X, X)
        np.maximum(var, 0.0, out=var)
        var /= self.lam
        return var

    def covariance_apply(self, x) -> np.ndarray:
        """Sigma @ x for x (dim,) or (dim, m), without forming Sigma (dim x dim)."""
        X = np.asarray(x, dtype=np.float64)
        if X.shape[0] != self.dim or X.ndim not in (1, 2):
            raise ValueError(f"x must have shape ({self.dim},) or ({self.dim}, m), got {X.shape}")
        if not self._fits:
            return X / self.lam
        fit = self._fits[-1]
        A = fit.sqrt_s[:, None] * self._DL  # (n, dim)
        inner = fit.chol_inv.T @ (fit.chol_inv @ (A @ X))
        return (X - A.T @ inner) / self.lam

    def covariance(self) -> np.ndarray:
        """The full Laplace covariance (dim, dim); for export and tests, not for the pool loop."""
        return self.covariance_apply(np.eye(self.dim))

    def margin_variance(self, diffs) -> np.ndarray:
        """d^T Sigma d (m,) for new differences (m, dim), e.g. pairs outside the pool."""
        X = check_diffs(diffs, dim=self.dim).astype(np.float64)
        return np.einsum("ij,ji->i", X, self.covariance_apply(X.T))

    @classmethod
    def from_labels(cls, diffs, rows, y, offsets, *, lam: float = DEFAULT_LAMBDA) -> PersonalHead:
        """All labels at once: the same MAP as adding them one by one (to Newton's tolerance)."""
        head = cls(diffs, lam=lam)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        o = np.asarray(offsets, dtype=np.float64).reshape(-1)
        if not (rows.shape == y.shape == o.shape):
            raise ValueError(f"rows {rows.shape}, y {y.shape} and offsets {o.shape} must match")
        if rows.size == 0:
            return head
        # Build the labelled structures without intermediate fits, then solve once.
        for r, label in zip(rows, y, strict=True):
            if not 0 <= r < head.n_pairs:
                raise ValueError(f"row {r} is outside the pool of {head.n_pairs} pairs")
            head._y.append(_check_label(label))
            head._rows.append(int(r))
        n = rows.size
        head._DL = head._D[rows].astype(np.float64)
        head._G = head._DL @ head._DL.T
        head._C = np.zeros((max(_INITIAL_CAPACITY, n), head.n_pairs), dtype=np.float32)
        head._C[:n] = head._D[rows] @ head._D.T
        head._work = np.empty_like(head._C)
        head._fits.append(head._solve(head._check_offsets(o, n), np.zeros(n)))
        return head


def fit_logistic(diffs, y, *, lam: float = DEFAULT_LAMBDA, offsets=None) -> np.ndarray:
    """MAP v (dim,) of L2 logistic regression on ``diffs`` (n, dim), no intercept.

    Minimises sum_i softplus(-s_i (o_i + v . d_i)) + lam / 2 ||v||^2 (s = 2y - 1): with
    zero offsets this is scikit-learn's LogisticRegression(fit_intercept=False, C=1/lam).
    """
    X = check_diffs(diffs)
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    o = np.zeros(X.shape[0]) if offsets is None else offsets
    return PersonalHead.from_labels(X, np.arange(X.shape[0]), y, o, lam=lam).v


# --------------------------------------------------------------------------- HyRe + personal head

# A pair is ruled out of the next query when its score's upper bound is below the reached
# exact score by more than this relative slack: far above the float64 rounding of the
# scorers (~1e-15), so rounding never rules out a pair that could win.
_BOUND_SLACK = 1e-9
# The bounded query gives up (scores the whole pool) when more than 1 / this of it is left.
_BOUND_MAX_SHARE = 8


def _personal_scorer(strategy: str):
    try:
        return PERSONAL_SCORERS[strategy]
    except (KeyError, TypeError):
        raise ValueError(f"unknown personal strategy {strategy!r}; valid: "
                         f"{', '.join(sorted(PERSONAL_SCORERS))}") from None



def _centred_tables(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row means (n_pairs,) float64, Z centred on them, its square) of float32 Z.

    The two tables are column-major (each head's column contiguous): their product with w
    then runs OpenBLAS's streaming matrix-vector kernel instead of one dot product per row of
    K floats (5.0 vs 7.3 ms for 100,000 x 100, interleaved medians at load 3.4).
    """
    row_mean = Z.mean(axis=1, dtype=np.float64)
    centred = np.asfortranarray(Z - row_mean[:, None].astype(np.float32))
    return row_mean, centred, np.asfortranarray(centred * centred)


def _mixture_tables(Z: np.ndarray) -> tuple[np.ndarray, ...]:
    """What the pool's offsets logit(sum_k w_k sigmoid(z_ik)) need, from float32 Z.

    (row means of sigmoid(z) and sigmoid(-z) (n_pairs,) float64, their row-wise log lower
    bounds min_k log sigmoid(+-z) (n_pairs,) float64, sigmoid(z) centred on its row mean
    (n_pairs, n_heads) float32, column-major). One float32 product with w per label gives
    the centred part c; p = mean + c and 1 - p = mean(sigmoid(-z)) - c are then accurate
    to ~1e-8 absolute (and exact where the heads agree, c = 0), so the offset is the
    mixture's logit without the cancellation of 1 - p near 1; the bounds hold p and 1 - p
    where no mixture of these heads can leave.
    """
    Z64 = Z.astype(np.float64)  # noqa: N806
    p = _sigmoid(Z64)
    p_mean = p.mean(axis=1)
    q_mean = _sigmoid(-Z64).mean(axis=1)
    log_p_min = -_softplus(-Z64.min(axis=1))
    log_q_min = -_softplus(Z64.max(axis=1))
    centred = np.asfortranarray((p - p_mean[:, None]).astype(np.float32))
    return p_mean, q_mean, log_p_min, log_q_min, centred


class PersonalModel:
    """One person's model on a pool: HyRe weights w plus the personal head v.

    ``logits`` Z (n_pairs, n_heads) and ``diffs`` D (n_pairs, dim) of the same pool.
    ``add(row, y)`` updates w (HyRe's posterior), then refits v with the new offsets
    o = logit(sigmoid(Z_L) w) of every labelled row (``mixture_margins``): with v = 0 the
    model is the reweighted ensemble's prediction exactly. ``predictive()`` is the margin's
    mean and variance (heads' disagreement under w plus the Laplace variance of v . d). With
    ``reweight=False`` w stays uniform (the ``residual`` model: uniform ensemble + v).
    """

    def __init__(self, logits, diffs, *, beta: float = DEFAULT_BETA, lam: float = DEFAULT_LAMBDA,
                 loss: str = "zero-one", reweight: bool = True, prior: StructuredPrior | None = None) -> None:
        Z = np.asarray(logits)
        if Z.ndim != 2:
            raise ValueError(f"logits must be 2-D (n_pairs, n_heads), got shape {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError("logits contain NaN or inf")
        D = check_diffs(diffs)
        if D.shape[0] != Z.shape[0]:
            raise ValueError(f"logits have {Z.shape[0]} pairs but diffs have {D.shape[0]}: "
                             "they must describe the same pool")
        self.n_pairs, self.n_heads = Z.shape
        self.reweight = bool(reweight)
        self._Z = np.ascontiguousarray(Z, dtype=np.float32)
        # Centred copies make the weighted variance E_w[z^2] - E_w[z]^2 cancellation-free;
        # every session of one read-only Z (the app's cached one) shares them.
        self._row_mean, self._centred, self._centred_sq = shared_tables(self._Z, "centred", _centred_tables)
        self._mixture = shared_tables(self._Z, "mixture", _mixture_tables)
        # Reused outputs of the three matrix-vector products over Z per label.
        self._mean32 = np.empty(self.n_pairs, dtype=np.float32)
        self._var32 = np.empty(self.n_pairs, dtype=np.float32)
        self._mix32 = np.empty(self.n_pairs, dtype=np.float32)
        self.posterior = Posterior(self.n_heads, beta=beta, loss=loss)
        # A structured prior: the isotropic head runs on D T (once per read-only D), v = T u.
        self.prior = None if prior is None or prior.isotropic else prior
        self.head = PersonalHead(D if self.prior is None else self.prior.shared_transform(D), lam=lam)
        self._cache: dict[str, np.ndarray] = {}

    # Read through to the two models the personal model is made of.
    lam = property(attrgetter("head.lam"), doc="The personal head's prior precision.")
    beta = property(attrgetter("posterior.beta"), doc="HyRe's reweighting temperature.")
    dim = property(attrgetter("head.dim"), doc="The embedding differences' dimension.")
    n_labels = property(attrgetter("head.n_labels"), doc="Labels added so far.")

    @property
    def weights(self) -> np.ndarray:
        """Head weights w (n_heads,); uniform for the residual model."""
        if not self.reweight:
            return np.full(self.n_heads, 1.0 / self.n_heads)
        return self.posterior.weights

    @property
    def v(self) -> np.ndarray:
        """The personal direction on the embeddings (dim,), zero before any label: v = T u
        under a structured prior (u is the head's own MAP on D T), the head's MAP otherwise."""
        return self.head.v if self.prior is None else self.prior.to_v(self.head.v)

    @property
    def rho(self) -> float:
        """The structured prior's strength; 0 for the isotropic head."""
        return 0.0 if self.prior is None else self.prior.rho

    def add(self, row: int, y) -> PersonalModel:
        """Label pool row ``row`` (1 = A preferred, 0 = B); skips are never added."""
        label = _check_label(y)
        if isinstance(row, bool) or not isinstance(row, int | np.integer) or not 0 <= row < self.n_pairs:
            raise ValueError(f"row must be a pool index in [0, {self.n_pairs}), got {row!r}")
        self.posterior.add(self._Z[row].astype(np.float64), label)
        rows = np.append(self.head.rows, int(row))
        self.head.add(int(row), label, mixture_margins(self._Z[rows], self.weights))
        self._cache.clear()
        return self

    def undo(self) -> PersonalModel:
        """Remove the last label: w and v return exactly to what they were."""
        if self.n_labels == 0:
            raise ValueError("nothing to undo: no labels have been added")
        if len(self.head._fits) != self.n_labels:
            raise ValueError("a model made by PersonalModel.fit has no undo history: replay its labels instead")
        self.posterior.undo()
        self.head.undo()
        self._cache.clear()
        return self

    def _head_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of z_ik under w (n_pairs,) each, one pass over Z per label."""
        if "mean" not in self._cache:
            w = self.weights.astype(np.float32)
            centred_mean, var = self._mean32, self._var32
            np.dot(self._centred, w, out=centred_mean)
            np.dot(self._centred_sq, w, out=var)
            var -= centred_mean * centred_mean
            np.maximum(var, 0.0, out=var)
            self._cache["mean"] = self._row_mean + centred_mean
            self._cache["var"] = var.copy()
        return self._cache["mean"], self._cache["var"]

    def head_mean(self) -> np.ndarray:
        """The heads' mean margin under w, sum_k w_k z_ik (n_pairs,): HyRe's point in the
        heads' function space (a weighted average of heads), not its prediction."""
        return self._head_moments()[0]

    def offsets(self) -> np.ndarray:
        """The reweighted ensemble's margin logit(sum_k w_k sigmoid(z_ik)) (n_pairs,), float64:
        sigmoid of it is HyRe's P(A preferred); one float32 pass over Z per label."""
        if "offsets" not in self._cache:
            p_mean, q_mean, log_p_min, log_q_min, centred = self._mixture
            np.dot(centred, self.weights.astype(np.float32), out=self._mix32)
            c = self._mix32.astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                log_p = np.log(p_mean + c)
                log_q = np.log(q_mean - c)
            # NaN (a rounding below 0) and -inf fall back on the bounds no mixture can pass.
            log_p = np.fmax(log_p, log_p_min)
            log_q = np.fmax(log_q, log_q_min)
            self._cache["offsets"] = log_p - log_q
        return self._cache["offsets"]

    def corrections(self) -> np.ndarray:
        """The personal head's part v . d_i (n_pairs,), once per label."""
        if "corrections" not in self._cache:
            self._cache["corrections"] = self.head.corrections()
        return self._cache["corrections"]

    def _head_variances(self) -> np.ndarray:
        """d_i^T Sigma d_i (n_pairs,), once per label."""
        if "variances" not in self._cache:
            self._cache["variances"] = self.head.variances()
        return self._cache["variances"]

    def margins(self) -> np.ndarray:
        """The personal model's margin m_i = o_i + v . d_i (n_pairs,)."""
        return self.offsets() + self.corrections()

    def probabilities(self) -> np.ndarray:
        """P(A preferred) under the MAP: sigmoid(m) (n_pairs,)."""
        return _sigmoid(self.margins())

    def head_variance(self) -> np.ndarray:
        """The heads' disagreement: variance of z_ik under w (n_pairs,)."""
        return self._head_moments()[1].astype(np.float64)

    def predictive(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of each pair's margin (n_pairs,) each.

        Variance = the heads' variance under w + d_i^T Sigma d_i: which head is right and
        what v is are independent sources of uncertainty about the same logit.
        """
        if "predictive" not in self._cache:
            mean, var = self.margins(), self._head_moments()[1] + self._head_variances()
            mean.setflags(write=False)  # cached until the next label: shared, so read-only
            var.setflags(write=False)
            self._cache["predictive"] = (mean, var)
        return self._cache["predictive"]

    def score(self, strategy: str) -> np.ndarray:
        """Scores (n_pairs,) of ``personal_entropy`` or ``personal_bald``; higher = ask sooner."""
        return _personal_scorer(strategy)(*self.predictive())

    def next_item(self, strategy: str = "personal_bald", *, exclude=None, seed=None) -> int:
        """The pool row to ask about next (labelled rows are always excluded).

        The same row as ``select(score, 1, exclude=..., seed=seed)``. Unless the whole
        pool's predictive is already computed, the pairs that cannot win are ruled out
        first (``_bounded_best``), so most pairs never need their Laplace variance; a
        unique best score is found in one pass, and only a tie goes through ``select``'s
        seeded tie-break.
        """
        scorer = _personal_scorer(strategy)
        mask = np.zeros(self.n_pairs, dtype=bool)
        mask[self.head.rows] = True
        if exclude is not None:
            ex = np.asarray(exclude)
            if ex.dtype == np.bool_:
                mask |= ex
            elif ex.size:
                mask[ex.astype(np.int64)] = True
        if "predictive" not in self._cache:
            best = self._bounded_best(strategy, mask)
            if best is not None:
                return best
        scores = scorer(*self.predictive())
        masked = np.where(mask, -np.inf, scores)
        best = int(np.argmax(masked))
        top = masked[best]
        if np.isfinite(top) and np.count_nonzero(masked == top) == 1:
            return best
        return int(select(scores, 1, exclude=mask, seed=seed)[0])

    def _bounded_best(self, strategy: str, mask: np.ndarray) -> int | None:
        """The unmasked row with the unique best score, scoring exactly only the pairs that could win.

        Both scorers grow with the variance at a fixed mean (checked on a grid of means and
        variances in the tests), and the Laplace variance is at most the prior's ||d||^2 / lam,
        so scoring every pair with that variance bounds its score from above, with no
        O(n_pairs n^2) product; BALD's bound is screened in float32 (within its tolerance,
        which widens the cut). Any pair whose bound is below the exact score of the pair with
        the best bound cannot win; the rest (a few, once the labels are far fewer than the
        dimension) get their exact variance. None when that would not save the pool product
        (over an eighth of the pool left), or on a tie: the caller then scores the whole pool.
        """
        scorer = _personal_scorer(strategy)
        mean, head_var = self.margins(), self._head_moments()[1]
        if strategy in GAUSSIAN_SCREENS:
            screen, tolerance = GAUSSIAN_SCREENS[strategy]
            bound = screen(mean, head_var + self.head._prior_var32)
        else:
            bound, tolerance = scorer(mean, head_var + self.head.prior_variances()), 0.0
        bound[mask] = -np.inf
        first = int(np.argmax(bound))
        if not np.isfinite(bound[first]):
            return None
        reached = scorer(mean[first:first + 1], head_var[first:first + 1] + self.head.variances_at([first]))[0]
        candidates = np.flatnonzero(bound >= reached * (1.0 - _BOUND_SLACK) - tolerance)
        if candidates.size > self.n_pairs // _BOUND_MAX_SHARE:
            return None
        exact = scorer(mean[candidates], head_var[candidates] + self.head.variances_at(candidates))
        best = int(np.argmax(exact))
        if not np.isfinite(exact[best]) or np.count_nonzero(exact == exact[best]) != 1:
            return None
        return int(candidates[best])

    def flip_share(self) -> float:
        """How much is personal: the share of pool pairs whose preferred side the personal
        head flips relative to the reweighted ensemble alone."""
        o = self.offsets()
        return float(np.mean(np.sign(o + self.corrections()) != np.sign(o)))

    @classmethod
    def replay(cls, logits, diffs, rows, y, *, beta: float = DEFAULT_BETA, lam: float = DEFAULT_LAMBDA,
               loss: str = "zero-one", reweight: bool = True, prior: StructuredPrior | None = None) -> PersonalModel:
        """Rebuild a model from its labels (rows, y) in order, e.g. from a stored session."""
        model = cls(logits, diffs, beta=beta, lam=lam, loss=loss, reweight=reweight, prior=prior)
        for r, label in zip(np.asarray(rows).reshape(-1), np.asarray(y).reshape(-1), strict=True):
            model.add(int(r), label)
        return model


    @classmethod
    def fit(cls, logits, diffs, rows, y, *, beta: float = DEFAULT_BETA, lam: float = DEFAULT_LAMBDA,
            loss: str = "zero-one", reweight: bool = True, prior: StructuredPrior | None = None) -> PersonalModel:
        """The model ``replay`` rebuilds, with one Newton solve instead of one per label.

        The posterior takes every label, then v is fitted once at the final offsets:
        replay's last refit solves that same strictly convex problem to convergence, so
        the two agree to Newton's tolerance. For scoring a fold (protocol); it keeps no
        undo history (``undo`` refuses).
        """
        model = cls(logits, diffs, beta=beta, lam=lam, loss=loss, reweight=reweight, prior=prior)
        rows = np.asarray(rows).reshape(-1)
        y = np.asarray(y).reshape(-1)
        if rows.shape != y.shape:
            raise ValueError(f"rows {rows.shape} and y {y.shape} must match")
        if rows.size and (not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= model.n_pairs):
            raise ValueError(f"rows must be pool indices in [0, {model.n_pairs}), got {rows.tolist()}")
        labels = np.array([_check_label(v) for v in y], dtype=np.float64)
        rows = rows.astype(np.int64)
        for r, label in zip(rows, labels, strict=True):
            model.posterior.add(model._Z[r].astype(np.float64), label)
        offsets = mixture_margins(model._Z[rows], model.weights) if rows.size else np.zeros(0)
        model.head = PersonalHead.from_labels(model.head._D, rows, labels, offsets, lam=model.lam)
        return model


def personal_margins(logits, diffs, w, v) -> np.ndarray:
    """m = logit(sigmoid(Z) w) + D v (n_pairs,) for stored weights (n_heads,) and v (dim,),
    e.g. a profile: the personal model's margins (``PersonalModel.margins``)."""
    Z = np.asarray(logits, dtype=np.float64)
    D = check_diffs(diffs)
    if Z.ndim != 2 or Z.shape[0] != D.shape[0]:
        raise ValueError(f"logits {Z.shape} and diffs {D.shape} must describe the same pairs")
    w = validate_weights(w, Z.shape[1])
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (D.shape[1],):
        raise ValueError(f"v has shape {v.shape} but the embeddings have dim {D.shape[1]}")
    if not np.isfinite(v).all():
        raise ValueError("v contains NaN or inf")
    return mixture_margins(Z, w) + D.astype(np.float64) @ v
