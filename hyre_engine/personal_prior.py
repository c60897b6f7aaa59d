"""The personal head's structured prior: how training annotators deviate from the population.

The isotropic prior v ~ N(0, I / lam) treats every embedding direction alike, but people
do not differ alike in every direction. Fitting one head v_a per training annotator over
the uniform ensemble's margin and taking the second moment (1/A) sum_a v_a v_a^T =
U diag(e) U^T gives the directions U (dim, r) along which annotators actually deviate and
how much (eigenvalues e (r,)). The structured prior is

    v ~ N(0, Sigma_0),   Sigma_0 = (I + rho U diag(e / e_max) U^T) / lam,

an isotropic part plus a low-rank part of strength rho (rho = 0: the isotropic head).
It is implemented without a dim x dim matrix: with T = Sigma_0^1/2 sqrt(lam) =
I + U diag(s - 1) U^T, s = sqrt(1 + rho e / e_max), the isotropic head fitted on D T with
u ~ N(0, I / lam) is exactly the structured head on D, v = T u (D v = (D T) u, and u's
prior is v's). Everything the personal head does (Newton MAP, Laplace variances, queries)
then runs unchanged on D T, computed once per pool.

Pure numpy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hyre_engine.acquisition import shared_tables
from hyre_engine.personal import DEFAULT_LAMBDA, check_diffs, fit_logistic

# Candidate prior strengths calibrated with lambda on held-out training annotators: the
# isotropic head, and the low-rank part weighing 10 and 100 times the isotropic one along
# the main deviation (the demo's held-out personas gained most at 10-100).
DEFAULT_CALIBRATION_RHOS = (0.0, 10.0, 100.0)
# Precision of the per-annotator fits that give U and e: the personal head's default, so
# an annotator's head is the one the app would fit on all of their rows.
PRIOR_FIT_LAMBDA = DEFAULT_LAMBDA
# U's columns must be orthonormal to this (float32 storage rounds them by ~1e-7).
_ORTHONORMAL_TOL = 1e-4


class NoPriorDirection(ValueError):
    """The training annotators' heads do not deviate from the population in any direction
    (e.g. their pairs' embedding differences are all zero): no structured prior exists."""


def check_rho(rho) -> float:
    try:
        value = float(rho)
    except (TypeError, ValueError):
        raise ValueError(f"rho (the structured prior's strength) must be a number >= 0, got {rho!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"rho (the structured prior's strength) must be finite and >= 0, got {rho!r}")
    return value


@dataclass(frozen=True, eq=False)
class PersonalPrior:
    """Sigma_0 = (I + rho U diag(e / e_max) U^T) / lam for the personal head's v.

    ``U`` (dim, r) float32 with orthonormal columns, ``e`` (r,) float32 >= 0 with a positive
    maximum (r >= 1), ``rho`` >= 0. ``transform(D)`` is D T, ``to_v(u)`` is T u and
    ``to_u(v)`` is T^-1 v; rho = 0 leaves everything exactly as the isotropic head has it.
    """

    U: np.ndarray  # noqa: N815 - the basis' conventional name
    e: np.ndarray
    rho: float = 0.0

    def __post_init__(self) -> None:
        U = np.asarray(self.U)  # noqa: N806
        e = np.asarray(self.e)
        for name, arr in (("U", U), ("e", e)):
            if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"the prior's {name} must be numeric, got dtype {arr.dtype}")
            if not np.isfinite(arr).all():
                raise ValueError(f"the prior's {name} contains NaN or inf")
        if U.ndim != 2 or U.shape[1] == 0 or U.shape[1] > U.shape[0]:
            raise ValueError(f"the prior's U must be 2-D (dim, r) with 1 <= r <= dim, got shape {U.shape}")
        if e.shape != (U.shape[1],):
            raise ValueError(f"the prior's e must have shape ({U.shape[1]},) to match U {U.shape}, got {e.shape}")
        if e.min() < 0 or e.max() <= 0:
            raise ValueError("the prior's eigenvalues e must be >= 0 with a positive maximum, "
                             f"got min {e.min():g}, max {e.max():g}")
        U32, e32 = np.array(U, dtype=np.float32), np.array(e, dtype=np.float32)  # noqa: N806 - own copies
        U64 = U32.astype(np.float64)  # noqa: N806
        off = float(np.abs(U64.T @ U64 - np.eye(U.shape[1])).max())
        if off > _ORTHONORMAL_TOL:
            raise ValueError(f"the prior's U must have orthonormal columns (|U^T U - I| = {off:.2g})")
        U32.setflags(write=False)
        e32.setflags(write=False)
        object.__setattr__(self, "U", U32)
        object.__setattr__(self, "e", e32)
        object.__setattr__(self, "rho", check_rho(self.rho))

    def __repr__(self) -> str:
        return f"PersonalPrior(dim={self.dim}, rank={self.rank}, rho={self.rho:g}, key={self.key})"

    @property
    def dim(self) -> int:
        return int(self.U.shape[0])

    @property
    def rank(self) -> int:
        return int(self.U.shape[1])

    @property
    def isotropic(self) -> bool:
        """rho = 0: the prior is I / lam and every transform is the identity."""
        return self.rho == 0.0

    @property
    def key(self) -> str:
        """A fingerprint of (U, e, rho): what a cached D T is keyed on."""
        h = hashlib.sha256(self.U.tobytes() + self.e.tobytes() + repr(self.rho).encode())
        return h.hexdigest()[:16]

    def with_rho(self, rho: float) -> PersonalPrior:
        """The same basis at another strength."""
        return PersonalPrior(self.U, self.e, rho)

    def scales(self) -> np.ndarray:
        """s = sqrt(1 + rho e / e_max) (r,), float64: T's eigenvalues along U."""
        e = self.e.astype(np.float64)
        return np.sqrt(1.0 + self.rho * e / e.max())

    def _check(self, x: np.ndarray, name: str) -> np.ndarray:
        if x.shape[-1] != self.dim:
            raise ValueError(f"{name} has dim {x.shape[-1]} but the prior's basis U has dim {self.dim}")
        return x

    def transform(self, diffs) -> np.ndarray:
        """D T (n_pairs, dim) float32 for D (n_pairs, dim); D itself when rho = 0.

        (D + (D U) diag(s - 1) U^T), in float64 then float32: O(n_pairs dim r), no dim x dim.
        """
        D = self._check(check_diffs(diffs), "diffs")  # noqa: N806
        if self.isotropic:
            return D
        U = self.U.astype(np.float64)  # noqa: N806
        D64 = D.astype(np.float64)  # noqa: N806
        return (D64 + ((D64 @ U) * (self.scales() - 1.0)) @ U.T).astype(np.float32)

    def shared_transform(self, diffs) -> np.ndarray:
        """``transform(diffs)``, computed once and shared while ``diffs`` lives when it is a
        read-only array owning its data (the app's cached D of a pool), else computed."""
        if self.isotropic:
            return check_diffs(diffs)
        return shared_tables(diffs, f"prior D T {self.key}", lambda d: (self.transform(d),))[0]

    def to_v(self, u) -> np.ndarray:
        """v = T u (dim,) or (m, dim) row-wise, float64: the direction on the embeddings."""
        x = self._check(np.asarray(u, dtype=np.float64), "u")
        if self.isotropic:
            return x.copy()
        U = self.U.astype(np.float64)  # noqa: N806
        return x + ((x @ U) * (self.scales() - 1.0)) @ U.T

    def to_u(self, v) -> np.ndarray:
        """u = T^-1 v (dim,) or (m, dim) row-wise, float64: the inverse of ``to_v``.

        By Woodbury on T = I + U S U^T with S = diag(s - 1) (columns with s = 1 add
        nothing): T^-1 = I - U (S^-1 + U^T U)^-1 U^T, exact for the stored float32 U
        whether or not its columns are orthonormal to the last bit.
        """
        x = self._check(np.asarray(v, dtype=np.float64), "v")
        if self.isotropic:
            return x.copy()
        grow = self.scales() - 1.0
        keep = grow > 0
        U = self.U.astype(np.float64)[:, keep]  # noqa: N806
        inner = np.diag(1.0 / grow[keep]) + U.T @ U
        return x - np.linalg.solve(inner, (x @ U).T).T @ U.T

    def covariance(self, lam: float) -> np.ndarray:
        """Sigma_0 (dim, dim) explicitly: for tests and small dims, never in the pool loop."""
        U = self.U.astype(np.float64)  # noqa: N806
        e = self.e.astype(np.float64)
        return (np.eye(self.dim) + self.rho * (U * (e / e.max())) @ U.T) / float(lam)


def transform_or_same(diffs, prior: PersonalPrior | None) -> np.ndarray:
    """D T under ``prior`` (shared per read-only D), D itself without one or at rho = 0."""
    return check_diffs(diffs) if prior is None else prior.shared_transform(diffs)


def annotator_basis(groups: Iterable, *, lam_fit: float = PRIOR_FIT_LAMBDA) -> tuple[np.ndarray, np.ndarray]:
    """How training annotators deviate from the population: (U (dim, r) float32, e (r,) float32).

    ``groups``: (logits Z (n, K), diffs D (n, dim), y (n,)) per training annotator. Each
    annotator's head v_a is fitted on all their rows over the uniform ensemble's mean
    margin (``fit_logistic``, precision ``lam_fit``); U and e are the eigenvectors and
    eigenvalues of the second moment (1/A) sum_a v_a v_a^T, from the SVD of the stacked
    heads (zero eigenvalues dropped, so r <= min(A, dim)).
    """
    heads = []
    for i, group in enumerate(groups):
        try:
            Z, D, y = group  # noqa: N806
        except (TypeError, ValueError):
            raise ValueError(f"annotator group {i} must be (logits, diffs, y)") from None
        Z = np.asarray(Z, dtype=np.float64)  # noqa: N806
        D = check_diffs(D, name=f"annotator {i}'s diffs")  # noqa: N806
        if Z.ndim != 2 or Z.shape[0] != D.shape[0]:
            raise ValueError(f"annotator {i}: logits {Z.shape} and diffs {D.shape} must describe the same rows")
        if not np.isfinite(Z).all():
            raise ValueError(f"annotator {i}'s logits contain NaN or inf")
        heads.append(fit_logistic(D, y, lam=lam_fit, offsets=Z.mean(axis=1)))
    if len(heads) < 2:
        raise ValueError(f"the structured prior needs at least 2 training annotators, got {len(heads)}")
    dims = {h.shape[0] for h in heads}
    if len(dims) != 1:
        raise ValueError(f"annotators' diffs have different dims {sorted(dims)}")
    V = np.stack(heads)  # noqa: N806 - (A, dim)
    _, sv, qt = np.linalg.svd(V, full_matrices=False)
    e = sv**2 / len(V)
    keep = e > e.max() * 1e-12 if e.max() > 0 else np.zeros(e.shape, dtype=bool)
    if not keep.any():
        raise NoPriorDirection("the training annotators' heads are all zero: no direction to build a prior on")
    return qt[keep].T.astype(np.float32), e[keep].astype(np.float32)
