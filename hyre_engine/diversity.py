"""How many different functions an ensemble's heads hold on a pool.

Heads kept apart only by their random priors can collapse onto a few functions when
every head sees the same people: 100 heads may then be 7 hypotheses. A *distinct head
function* is a cluster of heads whose predictions on the pool all correlate above a
threshold (complete linkage on 1 - correlation, so every pair inside a cluster is that
close, not just a chain of neighbours). Pure numpy and scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Two heads whose margins on the pool correlate above 0.98 rank the pairs almost the
# same way (they agree on > 90% of pairwise orderings): one hypothesis, not two.
DEFAULT_DISTINCT_THRESHOLD = 0.98
# The clustering is quadratic in heads; past this many pool rows a seeded subsample
# estimates the correlations to ~1e-3, far inside the threshold's margin.
MAX_ROWS = 20_000


@dataclass(frozen=True)
class DistinctHeads:
    """``n_distinct`` clusters; ``labels`` (n_heads,) gives each head's cluster, 0-based,
    numbered by first appearance; ``sizes`` (n_distinct,) the heads per cluster."""

    n_distinct: int
    n_heads: int
    labels: np.ndarray
    sizes: np.ndarray
    threshold: float

    def summary(self) -> str:
        return (f"{self.n_distinct} distinct head functions of {self.n_heads} heads "
                f"(correlation > {self.threshold:g} on the pool counts as one)")


def head_correlations(logits, *, max_rows: int = MAX_ROWS, seed: int = 0) -> np.ndarray:
    """Correlation between every pair of heads' predictions (n_heads, n_heads).

    A head constant on the pool correlates 1 with every other constant head and 0 with the rest.
    """
    Z = np.asarray(logits, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] < 2 or Z.shape[1] < 1:
        raise ValueError(f"logits must be (n_items >= 2, n_heads >= 1), got shape {Z.shape}")
    if not np.isfinite(Z).all():
        raise ValueError("logits contain NaN or inf")
    if Z.shape[0] > max_rows:
        Z = Z[np.random.default_rng(seed).choice(Z.shape[0], size=max_rows, replace=False)]
    c = Z - Z.mean(axis=0)
    norms = np.sqrt((c * c).sum(axis=0))
    scale = np.abs(Z).max(axis=0) + 1.0
    constant = norms <= 1e-12 * scale * np.sqrt(Z.shape[0])
    safe = np.where(constant, 1.0, norms)
    corr = (c.T @ c) / np.outer(safe, safe)
    corr[constant, :] = 0.0
    corr[:, constant] = 0.0
    corr[np.ix_(constant, constant)] = 1.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def distinct_heads(logits, *, threshold: float = DEFAULT_DISTINCT_THRESHOLD,
                   max_rows: int = MAX_ROWS, seed: int = 0) -> DistinctHeads:
    """Cluster heads (complete linkage) so that every pair in a cluster correlates > threshold.

    logits: (n_items, n_heads) head predictions on the pool.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    corr = head_correlations(logits, max_rows=max_rows, seed=seed)
    n_heads = corr.shape[0]
    if n_heads == 1:
        labels = np.zeros(1, dtype=np.int64)
    else:
        dist = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        tree = linkage(squareform(dist, checks=False), method="complete")
        # Strictly below 1 - threshold: a cluster's largest distance must be < that.
        raw = fcluster(tree, t=np.nextafter(1.0 - threshold, 0.0), criterion="distance")
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))  # number clusters by first appearance
        labels = rank[inverse].astype(np.int64)
    sizes = np.bincount(labels)
    return DistinctHeads(n_distinct=int(len(sizes)), n_heads=n_heads, labels=labels, sizes=sizes,
                         threshold=float(threshold))
