"""Which pair to ask about next: named scorers under the current weights, then ranking.

``SCORERS`` is the one registry of query criteria, of two kinds. A head scorer has the
signature ``scorer(preds, w, *, rng=None) -> (n_items,)`` and scores with the *current*
head weights w (after reweighting, a uniform average would ask about disagreements among
heads the labels have already ruled out). A Gaussian scorer (``GAUSSIAN_SCORERS``, the
personal model's) has the signature ``scorer(mu, s2) -> (n_items,)``: it scores the
predictive of each pair's margin, a logit ~ N(mu, s2). Higher means more worth labelling. ``select`` ranks scores separately; ``PoolScorer`` caches what does not
depend on w so that scoring a whole pool after each label is two matrix-vector products.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable

import numpy as np

from hyre_engine.numerics import (
    as_finite,
    binary_entropy,
    entropy_from_logits,
    finite_logits,
    sigmoid,
)
from hyre_engine.reweight import Posterior, validate_weights

# Cached probabilities, entropies and weights below this are set to 0: a product of two
# such float32 values stays above the subnormal range (~1.2e-38), where the CPU's
# arithmetic is ~10x slower. After a few dozen labels most weights are far below it; a
# change of 1e-18 in a probability or a weight is invisible in any score.
_FLUSH_BELOW = np.float32(1e-18)


def _flush_tiny(x: np.ndarray) -> np.ndarray:
    """Set |x| < _FLUSH_BELOW to 0, in place; returns x."""
    x[np.abs(x) < _FLUSH_BELOW] = 0.0
    return x


def _check_probs_weights(preds, w) -> tuple[np.ndarray, np.ndarray]:
    p = finite_logits(preds, "preds")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("preds must be probabilities in [0, 1] for this scorer")
    return p, validate_weights(w, p.shape[1])


def entropy(preds, w, *, rng=None) -> np.ndarray:
    """Entropy of the weighted prediction H(sum_k w_k p_ik), (n_items,).

    preds: (n_items, n_heads) probabilities that A is preferred; w: (n_heads,).
    """
    p, w = _check_probs_weights(preds, w)
    return binary_entropy(p @ w)


def bald(preds, w, *, rng=None) -> np.ndarray:
    """BALD: H(sum_k w_k p_ik) - sum_k w_k H(p_ik), (n_items,); the heads' disagreement.

    preds: (n_items, n_heads) probabilities that A is preferred; w: (n_heads,).
    """
    p, w = _check_probs_weights(preds, w)
    return binary_entropy(p @ w) - binary_entropy(p) @ w


def variance(preds, w, *, rng=None) -> np.ndarray:
    """Weighted variance of the heads' values sum_k w_k (v_ik - mean_w_i)^2, (n_items,).

    preds: (n_items, n_heads) regression values; w: (n_heads,).
    """
    v = finite_logits(preds, "preds")
    w = validate_weights(w, v.shape[1])
    d = v - (v @ w)[:, None]
    return (d * d) @ w


def _generator(rng) -> np.random.Generator:
    if rng is None:
        raise ValueError("the random scorer needs rng (a np.random.Generator or an int seed)")
    return np.random.default_rng(rng)


def random(preds, w, *, rng=None) -> np.ndarray:
    """Uniform random scores (n_items,): the passive baseline. Needs rng (Generator or seed)."""
    p = np.asarray(preds)
    if p.ndim != 2:
        raise ValueError(f"preds must be 2-D (n_items, n_heads), got shape {p.shape}")
    validate_weights(w, p.shape[1])
    return _generator(rng).random(p.shape[0])


# -- Gaussian scorers: a logit f ~ N(mu, s2), the personal model's predictive ------------

# MacKay's probit approximation: E[sigmoid(f)] ~ sigmoid(mu / sqrt(1 + pi s2 / 8)).
_PROBIT_SCALE = math.pi / 8.0
# Houlsby et al. (2011): E_f[h(Phi(f))] ~ C / sqrt(s2 + C^2) exp(-mu^2 / (2 (s2 + C^2)))
# with h in bits and C = sqrt(pi ln 2 / 2); a logistic link is Phi(kappa f), kappa^2 = pi / 8.
_HOULSBY_C2 = math.pi * math.log(2.0) / 2.0


def probit_probability(mu, s2) -> np.ndarray:
    """MacKay's E[sigmoid(f)] for f ~ N(mu, s2): sigmoid(mu / sqrt(1 + pi s2 / 8))."""
    mu = np.asarray(mu)
    s2 = np.asarray(s2)
    return sigmoid(mu / np.sqrt(1.0 + _PROBIT_SCALE * s2))


def _entropy_nats(q: np.ndarray) -> np.ndarray:
    tiny = np.finfo(np.float64).tiny
    q = np.clip(q, 0.0, 1.0)
    r = 1.0 - q
    return -(q * np.log(np.maximum(q, tiny)) + r * np.log(np.maximum(r, tiny)))


def gaussian_logit_entropy(mu, s2) -> np.ndarray:
    """Predictive entropy (nats) of y when the logit is N(mu, s2), probit-approximated."""
    return _entropy_nats(probit_probability(mu, s2).astype(np.float64))


def gaussian_logit_bald(mu, s2) -> np.ndarray:
    """BALD I(y; f) (nats) for a logit f ~ N(mu, s2), after Houlsby et al. (2011).

    A logistic link is written as a probit Phi(kappa f), kappa^2 = pi / 8, and Houlsby's
    Gaussian-shaped entropy h(Phi(x)) ~ exp(-x^2 / (2 C^2)) bits is used for *both*
    terms of H[E p] - E[H(p)], so that the score is exactly 0 when s2 = 0 (with the exact
    entropy in the first term the approximation's own error, up to 0.05 nats at
    |mu| ~ 3, would remain as a spurious score on pairs nobody is unsure about).
    """
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    m2 = _PROBIT_SCALE * mu * mu
    t2 = _PROBIT_SCALE * s2
    predictive = np.exp(-m2 / (2.0 * _HOULSBY_C2 * (1.0 + t2)))
    expected = math.sqrt(_HOULSBY_C2) / np.sqrt(t2 + _HOULSBY_C2) * np.exp(
        -m2 / (2.0 * (t2 + _HOULSBY_C2))
    )
    return np.maximum(math.log(2.0) * (predictive - expected), 0.0)


# The float32 screen below is within this (nats, absolute) of gaussian_logit_bald: its two
# terms are each at most 1 and ~10 float32 operations (6e-8 relative each) make them; the
# tests measure its worst error on a wide grid, far below this.
BALD_SCREEN_TOLERANCE = 1e-5
_F32 = np.float32


def gaussian_logit_bald_screen(mu, s2) -> np.ndarray:
    """``gaussian_logit_bald`` in float32, in place on temporaries: within
    BALD_SCREEN_TOLERANCE of it, at half the bytes and with numpy's SIMD float32 exp.

    For ruling pairs out of a query (personal.PersonalModel.next_item), never as the score.
    """
    mu = np.asarray(mu, dtype=np.float32)
    t2 = np.multiply(np.asarray(s2, dtype=np.float32), _F32(_PROBIT_SCALE))
    m2 = mu * mu
    m2 *= _F32(_PROBIT_SCALE)
    predictive = t2 + _F32(1.0)
    predictive *= _F32(-2.0 * _HOULSBY_C2)
    np.divide(m2, predictive, out=predictive)
    np.exp(predictive, out=predictive)
    t2 += _F32(_HOULSBY_C2)
    expected = np.divide(m2, t2, out=m2)
    expected *= _F32(-0.5)
    np.exp(expected, out=expected)
    np.sqrt(t2, out=t2)
    np.divide(_F32(math.sqrt(_HOULSBY_C2)), t2, out=t2)
    expected *= t2
    predictive -= expected
    predictive *= _F32(math.log(2.0))
    return np.maximum(predictive, _F32(0.0), out=predictive)


# Float32 screens of the Gaussian scorers that have one, with their absolute tolerance.
GAUSSIAN_SCREENS = {"personal_bald": (gaussian_logit_bald_screen, BALD_SCREEN_TOLERANCE)}

Scorer = Callable[..., np.ndarray]

# The one registry of query criteria by name (the paper compares random, entropy and
# BALD; the personal model asks by the entropy and BALD of its Gaussian predictive).
SCORERS: dict[str, Scorer] = {
    "random": random,
    "entropy": entropy,
    "bald": bald,
    "variance": variance,
    "personal_entropy": gaussian_logit_entropy,
    "personal_bald": gaussian_logit_bald,
}
# Scorers that read the predictions as regression values, not as preference logits.
REGRESSION_ONLY = frozenset({"variance"})
# Scorers of a Gaussian logit's (mean, variance), not of head predictions and weights.
GAUSSIAN_SCORERS = frozenset({"personal_entropy", "personal_bald"})
# The strategies that choose preference pairs from the heads, in the registry's order.
PREFERENCE_STRATEGIES = tuple(
    name for name in SCORERS if name not in REGRESSION_ONLY and name not in GAUSSIAN_SCORERS
)
# The orders the personal model can ask in: random, or its own Gaussian scorers.
PERSONAL_STRATEGIES = ("random", *(name for name in SCORERS if name in GAUSSIAN_SCORERS))
# A head strategy's counterpart under the personal model (what the Label page's menu means
# when the session personalises with the personal head).
PERSONAL_VARIANT = {"random": "random", "entropy": "personal_entropy", "bald": "personal_bald"}


def get_scorer(name: str) -> Scorer:
    """The scorer registered under ``name``; unknown names fail with the valid ones."""
    try:
        return SCORERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown scorer {name!r}; valid scorers: {', '.join(sorted(SCORERS))}"
        ) from None


def _exclude_mask(exclude, n: int) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    ex = np.asarray(exclude)
    if ex.dtype == np.bool_:
        if ex.shape != (n,):
            raise ValueError(f"a boolean exclude must have shape ({n},), got {ex.shape}")
        mask &= ~ex
        return mask
    ex = ex.reshape(-1)
    if ex.size == 0:
        return mask
    if not np.issubdtype(ex.dtype, np.integer):
        raise ValueError(f"exclude must hold integer indices, got dtype {ex.dtype}")
    if ex.min() < 0 or ex.max() >= n:
        raise ValueError(f"exclude has indices outside [0, {n})")
    mask[ex] = False
    return mask


def select(scores, k: int = 1, *, exclude=None, seed=None) -> np.ndarray:
    """Indices (k,) of the k highest scores, best first.

    Ties are broken at random, reproducibly for a given seed (int or Generator). NaN
    counts as -inf: ranked last, yet still chosen when nothing else is left. Indices in
    ``exclude`` (integer indices or a boolean mask over items) are never returned.
    """
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (n_items,), got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == np.bool_):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    s = s.astype(np.float64, copy=False)
    idx = None
    if exclude is not None:
        idx = np.flatnonzero(_exclude_mask(exclude, s.shape[0]))
        s = s[idx]
    n = s.shape[0]
    if k > n:
        raise ValueError(f"asked for k={k} items but only {n} are eligible")
    if k == 0:
        return np.empty(0, dtype=np.intp)
    s = np.where(np.isnan(s), -np.inf, s)
    rng = np.random.default_rng(seed)
    kth = np.partition(s, n - k)[n - k]  # the k-th largest score
    above = np.flatnonzero(s > kth)
    ties = np.flatnonzero(s == kth)
    chosen = np.concatenate([above, rng.choice(ties, k - above.size, replace=False)])
    # Best first; equal scores in random order.
    order = np.lexsort((rng.random(k), -s[chosen]))
    chosen = chosen[order]
    return chosen if idx is None else idx[chosen]


# Arrays derived from a read-only Z, by (id of Z, what), while that Z lives: the app caches
# one Z per pool for every browser session, so its sessions share one copy of each table
# (sigmoid(Z) and H(sigmoid(Z)) here, the personal model's centred Z: each 2 x n_items x
# n_heads float32, 80 MB for 100,000 x 100) and compute it once.
_SHARED_TABLES: dict[tuple[int, str], tuple[weakref.ref[np.ndarray], tuple[np.ndarray, ...]]] = {}
_SHARED_LOCK = threading.Lock()


def shared_tables(z: np.ndarray, what: str, build: Callable[[np.ndarray], tuple[np.ndarray, ...]]
                  ) -> tuple[np.ndarray, ...]:
    """``build(z)``, made read-only and shared by every caller with the same ``z`` and ``what``
    while ``z`` lives, when ``z`` is a read-only array owning its data; private otherwise
    (the caller may still change ``z``, or the array it views)."""
    if z.flags.writeable or not z.flags.owndata:
        return build(z)
    key = (id(z), what)
    with _SHARED_LOCK:
        hit = _SHARED_TABLES.get(key)
        if hit is not None and hit[0]() is z:
            return hit[1]
    tables = build(z)
    for table in tables:
        table.setflags(write=False)
    with _SHARED_LOCK:
        _SHARED_TABLES[key] = (weakref.ref(z, lambda _: _SHARED_TABLES.pop(key, None)), tables)
    return tables


def _pool_tables(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, H) of float32 Z; shared (read-only) when Z is a read-only array owning its data."""
    return shared_tables(z, "p, H", lambda z: (_flush_tiny(sigmoid(z)), _flush_tiny(entropy_from_logits(z))))


class PoolScorer:
    """Scores a fixed pool for any weights, fast: what does not depend on w is cached.

    Built once from cached logits Z (n_items, n_heads). For preferences p = sigmoid(Z) and
    the per-head entropies H(p) are kept as float32, so entropy needs p @ w and BALD also
    H @ w. "variance" treats Z as regression values. Scorers of one read-only Z (the
    app's cached array) share p and H.
    """

    def __init__(self, logits) -> None:
        z = as_finite("logits", logits, ndim=2)
        n_items, n_heads = z.shape
        if n_items == 0 or n_heads == 0:
            raise ValueError(f"logits must be non-empty, got shape {z.shape}")
        self._z = np.ascontiguousarray(z, dtype=np.float32)
        self.n_items, self.n_heads = n_items, n_heads
        self._p, self._h = _pool_tables(self._z)
        self._centred: np.ndarray | None = None  # built on the first variance query
        # Reused outputs of the matrix-vector products: no (n_items,) allocations per query.
        self._pw = np.empty(n_items, dtype=np.float32)
        self._hw = np.empty(n_items, dtype=np.float32)

    def _weights(self, w) -> np.ndarray:
        return _flush_tiny(validate_weights(w, self.n_heads).astype(np.float32))

    def probabilities(self, w) -> np.ndarray:
        """Weighted P(A preferred) (n_items,) float32 = sigmoid(Z) @ w."""
        np.dot(self._p, self._weights(w), out=self._pw)
        return self._pw.copy()

    def score(self, strategy: str, w, *, rng=None) -> np.ndarray:
        """Scores (n_items,) float32 of the named strategy under weights w (n_heads,)."""
        get_scorer(strategy)  # unknown names fail with the list of valid ones
        if strategy in GAUSSIAN_SCORERS:
            raise ValueError(f"{strategy!r} scores a personal model's predictive, not head weights: "
                             "use PersonalModel.score")
        w32 = self._weights(w)
        if strategy == "random":
            return _generator(rng).random(self.n_items, dtype=np.float32)
        if strategy == "variance":
            return self._variance(w32)
        np.dot(self._p, w32, out=self._pw)
        out = binary_entropy(self._pw)
        if strategy == "bald":
            np.dot(self._h, w32, out=self._hw)
            out -= self._hw
        return out

    def _variance(self, w32: np.ndarray) -> np.ndarray:
        if self._centred is None:
            # Centring each item on its uniform mean keeps E[v^2] - E[v]^2 from cancelling.
            c = self._z - self._z.mean(axis=1, keepdims=True)
            self._centred = np.stack([c, c * c])  # (2, n_items, n_heads)
        c, c2 = self._centred
        m = c @ w32
        return np.maximum(c2 @ w32 - m * m, 0.0)


# -- the adaptive loop: label, rescore, pick next ------------------------------------


def next_query(
    scorer: PoolScorer, w, *, strategy: str, exclude: Iterable[int] = (), rng=None, seed=None
) -> int | None:
    """The item to ask about next: the top ``strategy`` score under weights w (n_heads,),
    among items not in ``exclude``; None when every item is excluded.

    ``rng`` feeds the random scorer, ``seed`` (int or Generator) breaks ties.
    """
    excluded = np.fromiter(set(int(i) for i in exclude), dtype=np.int64)
    if excluded.size >= scorer.n_items:
        return None
    scores = scorer.score(strategy, w, rng=rng)
    return int(select(scores, 1, exclude=excluded, seed=seed)[0])


def adaptive_order(
    values, y, n_labels: int, *, posterior: Posterior, strategy: str, seed: int = 0,
    scorer: PoolScorer | None = None,
) -> np.ndarray:
    """Label ``n_labels`` items one at a time, each the top ``strategy`` score under the
    weights after the labels before it; returns the labelled indices in order.

    values: (n_items, n_heads) logits (preferences) or values (regression), the
    predictions ``posterior`` learns from; y: (n_items,) the answers the simulated
    user gives. ``posterior`` is updated in place, so its weights after the call are
    the weights after the last label.
    """
    z = finite_logits(values, "values")
    n_items, n_heads = z.shape
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n_items,):
        raise ValueError(f"y must have shape ({n_items},) to match values {z.shape}, got {y.shape}")
    if not 0 <= n_labels <= n_items:
        raise ValueError(f"n_labels must be in [0, {n_items}], got {n_labels}")
    get_scorer(strategy)
    scorer = scorer if scorer is not None else PoolScorer(z)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for _ in range(n_labels):
        item = next_query(scorer, posterior.weights, strategy=strategy, exclude=chosen, rng=rng, seed=rng)
        chosen.append(item)
        posterior.add(z[item], y[item])
    return np.asarray(chosen, dtype=np.int64)


# -- variety: different starts, no prompt twice in a row ---------------------------

# A first pair is drawn from this many of the highest-scoring ones: people start on
# different questions, and each start is still among the most informative.
START_TOP = 10


def start_seed(name: str) -> int:
    """A stable 32-bit seed from a name (the same user gets the same start in every process)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(str(name).encode("utf-8")).digest()[:4], "little")


def varied_query(
    scores, prompts, *, last_prompt=None, exclude=None, first: bool = False,
    seed=None, top: int = START_TOP,
) -> int | None:
    """The next item to ask about, by ``scores`` (n_items,), with two variety rules.

    - Never the prompt just asked about: items whose ``prompts`` (n_items,) entry equals
      ``last_prompt`` are passed over while any other item is eligible (a person asked
      the same question over new answers learns nothing new about the task and tires).
    - ``first``: a random one (``seed``, e.g. ``start_seed(user)``) of the ``top``
      highest scores instead of the highest: different people start at different pairs.

    ``exclude``: indices or a boolean mask never returned. None when nothing is eligible.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (n_items,), got shape {s.shape}")
    n_items = s.shape[0]
    prompts = np.asarray(prompts, dtype=object)
    if prompts.shape != (n_items,):
        raise ValueError(f"prompts must have shape ({n_items},) to match scores, got {prompts.shape}")
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    eligible = np.ones(n_items, dtype=bool) if exclude is None else _exclude_mask(exclude, n_items)
    if not eligible.any():
        return None
    if last_prompt is not None:
        other = eligible & (prompts != last_prompt)
        if other.any():
            eligible = other
    rng = np.random.default_rng(seed)
    if first:
        best = select(s, min(top, int(eligible.sum())), exclude=~eligible, seed=rng)
        return int(rng.choice(best))
    return int(select(s, 1, exclude=~eligible, seed=rng)[0])
