"""Function-space PCA: the main directions along which the heads disagree on a pool.

Each head is a function, known through its predictions on the n_items of a pool; the
analysis is on the (n_heads, n_items) matrix F = Z.T centred across heads. A component
has item loadings (which items it is about) and head coordinates (where each head sits).

Besides the estimator: fitting it on a pool (`fit_pool_pca`), the strongest pairs of a
component (`component_pairs`), what the heads at each end of it predict
(`end_probabilities`) and what each end favours in the responses (`axis_profile`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from hyre_engine.numerics import as_finite, sigmoid


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
        z = as_finite("Z", Z, ndim=2).astype(np.float64, copy=False)
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
        z = as_finite("Z_heads", Z_heads, ndim=2)
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


# ---------------------------------------------------------------- on a pool

# The live map shows two components; a few more cost nothing and tell how much of the
# disagreement the plane captures (and give the Explore page a 3-D view).
PCA_COMPONENTS = 5
# Pools larger than this are subsampled (seeded) for the fit: the head coordinates are
# stable long before every item is used, and the fit stays fast.
PCA_MAX_ITEMS = 20_000
# Each end of a component is its outer quarter of heads: a group, not one extreme head.
END_SHARE = 0.25


def fit_pool_pca(logits: np.ndarray, *, seed: int = 0) -> FunctionPCA:
    """The function-space PCA of the heads on a pool Z (n_items, n_heads), subsampling very large pools."""
    z = np.asarray(logits)
    if z.ndim != 2:
        raise ValueError(f"logits must be (n_items, n_heads), got shape {z.shape}")
    n_items, n_heads = z.shape
    rows = None
    if n_items > PCA_MAX_ITEMS:
        rows = np.sort(np.random.default_rng(seed).choice(n_items, PCA_MAX_ITEMS, replace=False))
        z = z[rows]
    n_components = min(PCA_COMPONENTS, n_heads, z.shape[0])
    pca = FunctionPCA(n_components=n_components).fit(z)
    # the pool rows the fit used (None: all of them), so that functions on the whole pool project
    pca.pool_rows_ = rows
    return pca


def project_function(pca: FunctionPCA, margins) -> np.ndarray:
    """Coordinates (n_components,) of one function of the pool, e.g. a person's margins (n_items,).

    The function is placed as a head would be: (m - mean) @ components.T, so a weighted
    average of the heads lands at the same average of their coordinates, and a function
    no head holds (HyRe + the personal head) may land outside their cloud. ``margins`` is
    over the whole pool; a PCA fitted on a subsample (``fit_pool_pca``) reads its rows.
    """
    m = as_finite("margins", margins, ndim=1).astype(np.float64, copy=False)
    rows = getattr(pca, "pool_rows_", None)
    if rows is not None:
        if m.shape[0] <= int(rows.max()):
            raise ValueError(f"margins has {m.shape[0]} items but the PCA was fitted on a pool's rows up to {rows.max()}")
        m = m[rows]
    return pca.transform(m[:, None])[0]


def cumulative_variance_ratio(pca: FunctionPCA) -> np.ndarray:
    """(n_components,) share of the disagreement captured by components 1..p, for each p."""
    pca._check_fitted()
    return np.cumsum(pca.explained_variance_ratio_)


def component_pairs(pca: FunctionPCA, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Item indices of the n most positive and n most negative loadings of each component.

    Returns (top, bottom), each (n_components, min(n, n_items)); `top` descending, `bottom` ascending.
    """
    pca._check_fitted()
    comps = np.asarray(pca.components_)
    n = min(int(n), comps.shape[1])
    order = np.argsort(-comps, axis=1, kind="stable")
    return order[:, :n], order[:, ::-1][:, :n]


def end_probabilities(
    logits: np.ndarray, pca: FunctionPCA, component: int, items, *, share: float = END_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Mean P(A preferred) on items of the heads at the + end and at the - end of a component.

    The ends are the `share` of heads with the largest and the smallest coordinates
    (at least one head each). logits: Z (n_items, n_heads); returns two (len(items),) arrays.
    """
    n_items, n_heads = logits.shape
    coords = pca.head_coords_[:, component]
    if coords.shape != (n_heads,):
        raise ValueError(f"the PCA has {coords.shape[0]} heads but Z has shape {logits.shape}")
    k = max(1, int(round(share * n_heads)))
    order = np.argsort(coords, kind="stable")
    p = sigmoid(np.asarray(logits[np.asarray(items, dtype=np.int64)], dtype=np.float64))
    return p[:, order[-k:]].mean(axis=1), p[:, order[:k]].mean(axis=1)


def side_meta(meta: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{"depth": (depth_a, depth_b), ...} for meta keys present for both responses ("<x>_a", "<x>_b")."""
    out = {}
    for key in meta:
        if key.endswith("_a"):
            base = key[:-2]
            if base and f"{base}_b" in meta:
                out[base] = (meta[key], meta[f"{base}_b"])
    return out


def word_count(text: str) -> int:
    return len(str(text).split())


@dataclass(frozen=True)
class EndContrast:
    """What the responses favoured by the + and - ends of a component have, for one attribute.

    For a meta attribute: (value, count) pairs, most frequent first. For the word count
    (`attribute == WORDS`): one (mean, n) pair per end.
    """

    attribute: str
    plus: tuple[tuple[Any, float], ...]
    minus: tuple[tuple[Any, float], ...]


WORDS = "words"


def axis_profile(pairs, top, bottom) -> list[EndContrast]:
    """What the + end of a component prefers over the - end, from its strongest pairs.

    On a pair with a positive loading the + end likes A more than the - end does; on a
    negative one it likes B more. Counts each side attribute (meta "<x>_a"/"<x>_b") and
    the mean word count of the response each end favours. ``pairs`` is the pool's pairs
    (row_index order, columns response_a, response_b and optionally meta); ``top`` and
    ``bottom`` are item indices (most positive and most negative loadings).
    """
    favoured: dict[str, dict[str, list]] = {"+": {}, "-": {}}
    for items, plus_side in ((top, "a"), (bottom, "b")):
        minus_side = "b" if plus_side == "a" else "a"
        for i in np.asarray(items, dtype=np.int64).tolist():
            row = pairs.iloc[i]
            for end, side in (("+", plus_side), ("-", minus_side)):
                favoured[end].setdefault(WORDS, []).append(word_count(row[f"response_{side}"]))
                for name, values in side_meta(row.get("meta") or {}).items():
                    favoured[end].setdefault(name, []).append(values[0 if side == "a" else 1])
    out = []
    for name, plus in favoured["+"].items():
        minus = favoured["-"].get(name, [])
        if name == WORDS:
            out.append(EndContrast(name, ((float(np.mean(plus)), len(plus)),), ((float(np.mean(minus)), len(minus)),)))
        else:
            out.append(EndContrast(name, _tally(plus), _tally(minus)))
    return out


def _tally(values: list) -> tuple[tuple[str, int], ...]:
    # most frequent first; equal counts keep the order of first appearance
    return tuple(Counter(str(v) for v in values).most_common())
