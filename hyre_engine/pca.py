"""Function-space PCA: the main directions along which the heads disagree on a pool.

Each head is a function, known through its predictions on the n_items of a pool; the
analysis is on the (n_heads, n_items) matrix F = Z.T centred across heads. A component
has item loadings (which items it is about) and head coordinates (where each head sits).
"""

from __future__ import annotations

import numpy as np

from hyre_engine.reweight import _as_finite


def _svd_flip(u: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # scikit-learn's svd_flip(u_based_decision=False): the largest-|.| item loading of each
    # component is positive, so plots do not flip between refits.
    rows = np.arange(vt.shape[0])
    signs = np.sign(vt[rows, np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    return u * signs, vt * signs[:, None]


class FunctionPCA:
    """PCA of head predictions Z (n_items, n_heads) across heads (scikit-learn estimator style).

    Learned attributes: mean_ (n_items,), components_ (n_components, n_items) unit-norm
    item loadings, head_coords_ (n_heads, n_components), singular_values_,
    explained_variance_ (over heads, ddof 1) and explained_variance_ratio_ (of the total).
    """

    def __init__(self, n_components: int | None = None) -> None:
        self.n_components = n_components

    def fit(self, Z) -> FunctionPCA:
        z = _as_finite("Z", Z, ndim=2).astype(np.float64, copy=False)
        n_items, n_heads = z.shape
        if n_heads < 2 or n_items < 1:
            raise ValueError(f"Z must have at least 1 item and 2 heads, got shape {z.shape}")
        rank = min(n_heads, n_items)
        n_comp = rank if self.n_components is None else self.n_components
        if (
            isinstance(n_comp, bool)
            or not isinstance(n_comp, int | np.integer)
            or not (1 <= n_comp <= rank)
        ):
            raise ValueError(
                f"n_components must be an integer in [1, {rank}] for Z of shape {z.shape}, "
                f"got {self.n_components!r}"
            )
        f = z.T
        mean = f.mean(axis=0)
        u, s, vt = np.linalg.svd(f - mean, full_matrices=False)
        u, vt = _svd_flip(u, vt)
        var = s**2 / (n_heads - 1)
        total = var.sum()
        self.n_components_ = int(n_comp)
        self.n_items_, self.n_heads_ = n_items, n_heads
        self.mean_ = mean
        self.components_ = vt[:n_comp]
        self.singular_values_ = s[:n_comp]
        self.explained_variance_ = var[:n_comp]
        self.explained_variance_ratio_ = var[:n_comp] / total if total > 0 else np.zeros(n_comp)
        self.head_coords_ = u[:, :n_comp] * s[:n_comp]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise ValueError("FunctionPCA is not fitted yet: call fit(Z) first")

    def transform(self, Z_heads) -> np.ndarray:
        """Coordinates (m_heads, n_components) of other heads' predictions (n_items, m_heads)."""
        self._check_fitted()
        z = _as_finite("Z_heads", Z_heads, ndim=2)
        if z.shape[0] != self.n_items_:
            raise ValueError(
                f"Z_heads has shape {z.shape} but the PCA was fitted on {self.n_items_} items"
            )
        return (z.T - self.mean_) @ self.components_.T

    def reconstruct(self, n_components: int | None = None) -> np.ndarray:
        """The fitted heads rebuilt from P components (n_items, n_heads) (paper Eq. 9).

        f_k = mean + sum_{p <= P} c_kp u_p; exact when every component was kept.
        """
        self._check_fitted()
        p = self.n_components_ if n_components is None else n_components
        if (
            isinstance(p, bool)
            or not isinstance(p, int | np.integer)
            or not (0 <= p <= self.n_components_)
        ):
            raise ValueError(f"n_components must be in [0, {self.n_components_}], got {p!r}")
        f = self.mean_ + self.head_coords_[:, :p] @ self.components_[:p]
        return f.T

    def sample(self, n: int, *, seed=None) -> np.ndarray:
        """n new functions (n_items, n) = mean + sum_p sqrt(explained_variance_p) z_p u_p, z ~ N(0, I)."""
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        z = np.random.default_rng(seed).standard_normal((self.n_components_, n))
        scaled = np.sqrt(self.explained_variance_)[:, None] * z
        return self.mean_[:, None] + self.components_.T @ scaled
