"""The live labelling loop: what the Label page computes after every label.

One `LiveSession` holds the cached head predictions Z of a pool and a HyRe
posterior. After each label it yields everything the page draws: the weights
(and which heads gained), the heads' place in the function-space PCA, the next
pair to ask about, and the accuracy curves. Everything here is numpy on cached
arrays, so an update costs a few matrix-vector products over Z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyre_engine.acquisition import PoolScorer, select
from hyre_engine.pca import FunctionPCA
from hyre_engine.reweight import DEFAULT_BETA, Posterior, weight_entropy

# The PCA map shows two components; computing a few more costs nothing and
# lets the page report how much of the disagreement the plane captures.
PCA_COMPONENTS = 5
# Pools larger than this are subsampled (seeded) for the PCA fit: the head
# coordinates are stable long before every item is used, and the fit stays fast.
PCA_MAX_ITEMS = 20_000

LABELS = ("a", "b")


@dataclass(frozen=True)
class LabelEvent:
    """One answered pair, with what the models predicted just before it."""

    item: int
    label: str  # "a" or "b"
    hyre_correct: bool
    uniform_correct: bool


@dataclass
class Panels:
    """The data of the three live panels after the latest label."""

    weights: np.ndarray  # (n_heads,)
    weight_change: np.ndarray  # (n_heads,) weights minus those before the last label
    effective_heads: float
    entropy: float
    head_coords: np.ndarray  # (n_heads, 2) PCA plane
    explained_variance_ratio: np.ndarray  # (n_components,)
    next_item: int | None
    n_labels: int
    prequential: dict[str, list[float]] = field(default_factory=dict)
    held_out: dict[str, list[float]] | None = None


def function_pca(logits: np.ndarray, *, seed: int = 0) -> FunctionPCA:
    """Fit the function-space PCA of the heads on a pool, subsampling very large pools."""
    n_items, n_heads = logits.shape
    if n_items > PCA_MAX_ITEMS:
        rows = np.sort(np.random.default_rng(seed).choice(n_items, PCA_MAX_ITEMS, replace=False))
        logits = logits[rows]
    n_components = min(PCA_COMPONENTS, n_heads, logits.shape[0])
    return FunctionPCA(n_components=n_components).fit(logits)


class LiveSession:
    """HyRe over a cached pool, updated one label at a time.

    ``logits`` is Z (n_items, n_heads): head k's reward margin r(a) - r(b) for
    each pair. ``truth`` (optional, (n_items,) of "a"/"b"/None) are a simulated
    persona's labels: with it, each step also reports held-out accuracy on the
    persona's pairs that are not labelled yet.
    """

    def __init__(
        self,
        logits: np.ndarray,
        *,
        beta: float = DEFAULT_BETA,
        strategy: str = "bald",
        seed: int = 0,
        truth: np.ndarray | None = None,
        pca: FunctionPCA | None = None,
    ) -> None:
        if logits.ndim != 2:
            raise ValueError(f"logits must be (n_items, n_heads), got shape {logits.shape}")
        self.n_items, self.n_heads = logits.shape
        self.logits = np.ascontiguousarray(logits, dtype=np.float32)
        self.scorer = PoolScorer(self.logits)
        self.strategy = strategy
        self.seed = seed
        self.beta = beta
        self.posterior = Posterior(self.n_heads, beta=beta, loss="zero-one")
        self.pca = pca if pca is not None else function_pca(self.logits, seed=seed)
        self.events: list[LabelEvent] = []
        self.skipped: set[int] = set()
        # weights after 0, 1, ..., n labels: the page highlights the last change
        self._weight_history: list[np.ndarray] = [self.posterior.weights]
        self._uniform = np.full(self.n_heads, 1.0 / self.n_heads)
        self.truth_y: np.ndarray | None = None
        if truth is not None:
            self.truth_y = _truth_to_float(truth, self.n_items)
            uniform_p = self.scorer.probabilities(self._uniform)
            known = ~np.isnan(self.truth_y)
            self._uniform_held_out = _accuracy(uniform_p[known], self.truth_y[known])
            head_right = (self.logits[known] > 0) == (self.truth_y[known][:, None] == 1)
            self._best_head_held_out = float(head_right.mean(axis=0).max())
            self._held_out: list[float] = [self._uniform_held_out]

    # -- labelling -------------------------------------------------------------

    @property
    def labelled(self) -> np.ndarray:
        return np.fromiter((e.item for e in self.events), dtype=np.int64, count=len(self.events))

    def add_label(self, item: int, label: str) -> LabelEvent:
        """Record that the person prefers ``label`` ("a"/"b") on pair ``item``."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        if not 0 <= item < self.n_items:
            raise ValueError(f"item {item} is outside the pool of {self.n_items} pairs")
        y = 1.0 if label == "a" else 0.0
        z = self.logits[item].astype(np.float64)
        w = self.posterior.weights
        hyre_p = float(w @ _sigmoid(z))
        uniform_p = float(_sigmoid(z).mean())
        event = LabelEvent(
            item=item,
            label=label,
            hyre_correct=(hyre_p > 0.5) == (y == 1.0),
            uniform_correct=(uniform_p > 0.5) == (y == 1.0),
        )
        self.posterior.add(z[None, :], np.array([y]))
        self._weight_history.append(self.posterior.weights)
        self.events.append(event)
        self.skipped.discard(item)
        if self.truth_y is not None:
            self._held_out.append(self._held_out_accuracy())
        return event

    def skip(self, item: int) -> None:
        """Do not ask about ``item`` again in this session (it is not a label)."""
        self.skipped.add(item)

    def undo(self) -> LabelEvent | None:
        """Remove the last label; returns it, or None when there is none."""
        if not self.events:
            return None
        self.posterior.undo()
        event = self.events.pop()
        if self.truth_y is not None:
            self._held_out.pop()
        self._weight_history.pop()
        return event

    def replay(self, labels: list[tuple[int, str]]) -> None:
        """Re-apply stored labels in order (a reloaded page continues its session)."""
        for item, label in labels:
            if label == "skip":
                self.skip(item)
            else:
                self.add_label(item, label)

    # -- reading ---------------------------------------------------------------

    def next_item(self) -> int | None:
        """The pair to ask about next under the current weights, or None when all are done."""
        exclude = set(self.labelled.tolist()) | self.skipped
        if len(exclude) >= self.n_items:
            return None
        rng = np.random.default_rng(self.seed + len(self.events))
        scores = self.scorer.score(self.strategy, self.posterior.weights, rng=rng)
        return int(select(scores, 1, exclude=np.fromiter(exclude, dtype=np.int64), seed=self.seed)[0])

    def panels(self) -> Panels:
        w = self.posterior.weights
        n = len(self.events)
        hyre_hits = np.cumsum([e.hyre_correct for e in self.events]) / np.arange(1, n + 1)
        uniform_hits = np.cumsum([e.uniform_correct for e in self.events]) / np.arange(1, n + 1)
        held_out = None
        if self.truth_y is not None:
            held_out = {
                "hyre": list(self._held_out),
                "uniform": [self._uniform_held_out] * (n + 1),
                "best_head_oracle": [self._best_head_held_out] * (n + 1),
            }
        return Panels(
            weights=w,
            weight_change=w - self._weight_history[-2] if n else np.zeros_like(w),
            effective_heads=self.posterior.effective_heads,
            entropy=weight_entropy(w),
            head_coords=self.pca.head_coords_[:, :2],
            explained_variance_ratio=self.pca.explained_variance_ratio_,
            next_item=self.next_item(),
            n_labels=n,
            prequential={"hyre": hyre_hits.tolist(), "uniform": uniform_hits.tolist()},
            held_out=held_out,
        )

    def predicted_probability(self, item: int) -> tuple[float, float]:
        """(HyRe, uniform) probability that A is preferred on ``item``."""
        p = _sigmoid(self.logits[item].astype(np.float64))
        return float(self.posterior.weights @ p), float(p.mean())

    # -- helpers ---------------------------------------------------------------

    def _held_out_accuracy(self) -> float:
        assert self.truth_y is not None
        known = ~np.isnan(self.truth_y)
        known[self.labelled] = False
        if not known.any():
            return float("nan")
        p = self.scorer.probabilities(self.posterior.weights)
        return _accuracy(p[known], self.truth_y[known])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _accuracy(prob_a: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of P(A) against y in {0, 1}; a prediction of exactly 0.5 counts half."""
    if prob_a.size == 0:
        return float("nan")
    correct = np.where(np.abs(prob_a - 0.5) <= 1e-9, 0.5, ((prob_a > 0.5) == (y == 1.0)).astype(float))
    return float(correct.mean())


def _truth_to_float(truth: np.ndarray, n_items: int) -> np.ndarray:
    truth = np.asarray(truth, dtype=object)
    if truth.shape != (n_items,):
        raise ValueError(f"truth must have shape ({n_items},), got {truth.shape}")
    out = np.full(n_items, np.nan)
    for value, mark in (("a", 1.0), ("b", 0.0)):
        out[truth == value] = mark
    bad = set(truth[(truth != "a") & (truth != "b") & (truth != None)].tolist())  # noqa: E711
    if bad:
        raise ValueError(f"truth labels must be 'a', 'b' or None, got {sorted(map(str, bad))}")
    return out
