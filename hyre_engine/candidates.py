"""Choosing the next query on a pool too big to score whole after every label.

Scoring every pair after each label costs two matrix-vector products over the
whole pool: at 10M pairs x 100 heads that is 8 GB of float32 read per query,
seconds on a CPU. Above `DEFAULT_FULL_POOL_MAX` pairs a `CandidateSampler`
scores instead a fresh random candidate set of `DEFAULT_CANDIDATES` pairs per
query plus the best candidates of the previous query (so a strong candidate
seen once is not forgotten), and asks about the best of those. Labelled and
skipped pairs are never returned.

How the sample is drawn: at construction the per-head probabilities p and
entropies H (what the entropy and BALD scorers reduce with the weights) are
computed once and stored in a seeded random permutation of the pool, in blocks
of `BLOCK_ROWS` rows. A query draws ``n_candidates / BLOCK_ROWS`` blocks
without replacement, so each pair is a candidate with probability
``n_candidates / n_items`` and the candidates come from all over the pool
whatever its order (files sorted by topic would otherwise give one topic). Reading
contiguous blocks rather than scattered rows keeps a query to memory-bandwidth
cost. The draw of query t is seeded by (seed, t): a session replays exactly.
"""

from __future__ import annotations

import numpy as np

from hyre_engine.acquisition import PREFERENCE_STRATEGIES, _flush_tiny, get_scorer
from hyre_engine.numerics import as_finite, binary_entropy, entropy_from_logits, sigmoid
from hyre_engine.reweight import validate_weights

# Pools up to this size are scored whole after every label (PoolScorer): at 1M x 100
# that is ~0.1 s on one CPU core, the most a live page can spend per label.
DEFAULT_FULL_POOL_MAX = 1_000_000
# Candidates scored per query above that size: 200k x 100 heads is ~20 ms of
# matrix-vector work, and the best of 200k random pairs is within the top 0.01%
# of the pool with probability 1 - (1 - 1e-4)^200000 ~ 1 - 2e-9.
DEFAULT_CANDIDATES = 200_000
# The best candidates of the previous query scored again with the new weights.
DEFAULT_CARRY = 256
# Rows per block of the permuted pool: a 200k sample spans ~200 blocks (of ~10k at 10M
# pairs), and a block of 100 heads (400 KB in float32) is one BLAS call that streams.
BLOCK_ROWS = 1024
# Scorers the sampler supports: the preference ones (they reduce per-head p and H with w).
STRATEGIES = PREFERENCE_STRATEGIES


class CandidateSampler:
    """Next-query choice over a large pool from a fresh random sample per query.

    ``logits`` is Z (n_items, n_heads), float16 or float32. ``dtype`` is how p and
    H are held: float32 (4 bytes per pair and head, each) or float16 (half the
    memory, plus a conversion per query).
    """

    def __init__(
        self,
        logits,
        *,
        n_candidates: int = DEFAULT_CANDIDATES,
        carry: int = DEFAULT_CARRY,
        seed: int = 0,
        dtype: type = np.float32,
        chunk_rows: int = 262_144,
    ) -> None:
        z = np.asarray(logits)
        if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
            raise ValueError(f"logits must be non-empty (n_items, n_heads), got shape {z.shape}")
        if n_candidates < 1 or carry < 0:
            raise ValueError(f"n_candidates must be >= 1 and carry >= 0, got {n_candidates}, {carry}")
        if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise ValueError(f"dtype must be float32 or float16, got {np.dtype(dtype)}")
        self.n_items, self.n_heads = z.shape
        self.n_candidates = min(int(n_candidates), self.n_items)
        self.carry = int(carry)
        self.seed = int(seed)
        n_blocks = -(-self.n_items // BLOCK_ROWS)
        padded = n_blocks * BLOCK_ROWS
        # position q of the permuted pool holds item perm[q]; padding rows are -1
        perm = np.full(padded, -1, dtype=np.int64)
        perm[: self.n_items] = np.random.default_rng([self.seed, 0x5A3]).permutation(self.n_items)
        self._perm = perm
        self._pos = np.empty(self.n_items, dtype=np.int64)  # item -> permuted position
        self._pos[perm[: self.n_items]] = np.arange(self.n_items)
        self._p = np.zeros((padded, self.n_heads), dtype=dtype)
        self._h = np.zeros((padded, self.n_heads), dtype=dtype)
        for lo in range(0, self.n_items, chunk_rows):
            rows = perm[lo : min(lo + chunk_rows, self.n_items)]
            zc = as_finite("logits", z[rows], ndim=2).astype(np.float32)
            self._p[lo : lo + len(rows)] = _flush_tiny(sigmoid(zc))
            self._h[lo : lo + len(rows)] = _flush_tiny(entropy_from_logits(zc))
        self.n_blocks = n_blocks
        self._unavailable = np.zeros(padded, dtype=bool)  # labelled/skipped, by position
        self._unavailable[self.n_items :] = True
        self._carried = np.empty(0, dtype=np.int64)  # items
        self._block = np.empty((BLOCK_ROWS, self.n_heads), dtype=np.float32)

    # -- state ------------------------------------------------------------------

    def mark_unavailable(self, items) -> None:
        """Never return these items again (labelled or skipped)."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"items outside [0, {self.n_items})")
        self._unavailable[self._pos[items]] = True

    def mark_available(self, items) -> None:
        """Undo `mark_unavailable` (an undone label)."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        self._unavailable[self._pos[items]] = False

    @property
    def n_available(self) -> int:
        return int(self.n_items - self._unavailable[: self.n_items].sum())

    def probabilities(self, w) -> np.ndarray:
        """Weighted P(A preferred) (n_items,) float32 on the whole pool (p @ w, item order)."""
        w32 = validate_weights(w, self.n_heads).astype(np.float32)
        out = np.empty(self.n_items, dtype=np.float32)
        for lo in range(0, self.n_items, 64 * BLOCK_ROWS):
            hi = min(lo + 64 * BLOCK_ROWS, self.n_items)
            out[self._perm[lo:hi]] = self._p[lo:hi].astype(np.float32, copy=False) @ w32
        return out

    # -- querying ---------------------------------------------------------------

    def _draw(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(first positions of the fresh blocks, positions of carried items not in them)."""
        rng = np.random.default_rng([self.seed, int(step)])
        n_draw = min(self.n_blocks, -(-self.n_candidates // BLOCK_ROWS))
        starts = np.sort(rng.choice(self.n_blocks, n_draw, replace=False)) * BLOCK_ROWS
        carried = self._pos[self._carried]
        in_fresh = np.isin(carried // BLOCK_ROWS * BLOCK_ROWS, starts)
        return starts, carried[~in_fresh]

    def candidates(self, step: int) -> np.ndarray:
        """Items (n,) scored by query ``step``: its fresh sample, then the carried items."""
        starts, carried = self._draw(step)
        fresh = (starts[:, None] + np.arange(BLOCK_ROWS)).reshape(-1)
        pos = np.concatenate([fresh, carried])
        return self._perm[pos[~self._unavailable[pos]]]

    def score(self, strategy: str, w, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(items (n,), scores (n,)) of query ``step``'s candidates under weights w (n_heads,).

        Labelled, skipped and padding positions score -inf (padding has item -1).
        """
        get_scorer(strategy)  # unknown names fail with the list of valid ones
        if strategy not in STRATEGIES:
            raise ValueError(
                f"strategy {strategy!r} is not supported on sampled pools; use one of {STRATEGIES}"
            )
        w32 = _flush_tiny(validate_weights(w, self.n_heads).astype(np.float32))
        starts, carried = self._draw(step)
        pos = np.concatenate([(starts[:, None] + np.arange(BLOCK_ROWS)).reshape(-1), carried])
        if strategy == "random":
            scores = np.random.default_rng([self.seed, int(step), 1]).random(len(pos))
        else:
            scores = binary_entropy(self._reduce(self._p, starts, carried, w32))
            if strategy == "bald":
                scores -= self._reduce(self._h, starts, carried, w32)
        scores = np.where(self._unavailable[pos], -np.inf, scores)
        return self._perm[pos], scores

    def next_item(self, strategy: str, w, step: int) -> int | None:
        """The best available candidate of query ``step``, or None when the pool is done."""
        if self.n_available == 0:
            return None
        items, scores = self.score(strategy, w, step)
        finite = np.isfinite(scores)
        if not finite.any():
            # every candidate is taken: the first available item of the permutation
            return int(self._perm[np.flatnonzero(~self._unavailable)[0]])
        keep = min(self.carry + 1, int(finite.sum()))
        top = np.argpartition(np.where(finite, -scores, np.inf), keep - 1)[:keep]
        # best first; equal scores by item index, so the choice does not depend on draw order
        ranked = items[top[np.lexsort((items[top], -scores[top]))]]
        self._carried = ranked[1:]  # the chosen item is about to be labelled or skipped
        return int(ranked[0])

    def _reduce(self, table: np.ndarray, starts: np.ndarray, carried: np.ndarray,
                w32: np.ndarray) -> np.ndarray:
        """table[candidates] @ w (n,): block by block straight from the table, then the carried rows.

        float32 blocks go to BLAS as they lie; float16 blocks are widened through one small
        buffer that stays in cache.
        """
        n_fresh = len(starts) * BLOCK_ROWS
        out = np.empty(n_fresh + len(carried), dtype=np.float32)
        direct = table.dtype == np.float32
        for j, start in enumerate(starts):
            block = table[start : start + BLOCK_ROWS]
            if not direct:
                self._block[...] = block
                block = self._block
            np.dot(block, w32, out=out[j * BLOCK_ROWS : (j + 1) * BLOCK_ROWS])
        if len(carried):
            out[n_fresh:] = table[carried].astype(np.float32) @ w32
        return out
