"""The numeric primitives every other module shares: one definition each.

Sigmoid, binary entropy, accuracy with its one tie rule, the validators of the
arrays that cross module boundaries, and the label values of a judgement. Pure
numpy: importing this module pulls in nothing else.

Shape conventions: logits ``Z`` are (n_items, n_heads) reward margins
r(a) - r(b); ``y`` is (n_items,) with 1 when A is preferred and 0 when B is.
"""

from __future__ import annotations

import numpy as np

# -- label values ---------------------------------------------------------------

# A judgement names the preferred response; a labelling session may also skip a pair.
LABEL_A = "a"
LABEL_B = "b"
SKIP = "skip"
# Judgements that name no better side. They are kept (stored, exported, shown) but give
# the heads no evidence: neither response is preferred, so no head is right or wrong.
TIE = "tie"
BOTH_BAD = "both_bad"
CANT_JUDGE = "cant_judge"
# What a preference row can hold, and what a session row can hold.
PAIR_LABELS = (LABEL_A, LABEL_B)
NO_PREFERENCE = (SKIP, TIE, BOTH_BAD, CANT_JUDGE)
SESSION_LABELS = PAIR_LABELS + NO_PREFERENCE


def label_targets(labels) -> np.ndarray:
    """Targets (n,) float64 of labels (n,) in PAIR_LABELS: 1 for "a", 0 for "b"."""
    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D (n,), got shape {arr.shape}")
    bad = sorted({str(v) for v in arr.tolist() if v not in PAIR_LABELS})
    if bad:
        raise ValueError(f"labels must be one of {PAIR_LABELS}, got {bad[:5]}")
    return (arr == LABEL_A).astype(np.float64)


# -- validators -----------------------------------------------------------------


def as_finite(name: str, x, *, ndim: int | None = None) -> np.ndarray:
    """``x`` as a numeric array with no NaN or inf (and ``ndim`` dimensions if given)."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf (non-finite values)")
    return arr


def finite_logits(x, name: str = "logits", *, min_heads: int = 0) -> np.ndarray:
    """Finite 2-D logits (n_items, n_heads) as a float array (float32 stays float32)."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[1] < min_heads:
        need = f" and n_heads >= {min_heads}" if min_heads else ""
        raise ValueError(f"{name} must be 2-D with shape (n_items, n_heads){need}, got shape {shape}")
    z = as_finite(name, x)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    return z


def binary_targets(y, n_items: int, name: str = "y") -> np.ndarray:
    """Targets (n_items,) float64 that are each 0 (B preferred) or 1 (A preferred)."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n_items,):
        raise ValueError(f"{name} must have shape ({n_items},) to match the items, got {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold 0 (B preferred) or 1 (A preferred)")
    return y


# -- functions ------------------------------------------------------------------

# Smallest positive float32: log of it is finite, so 0 * log(max(p, tiny)) is exactly 0.
_TINY = np.finfo(np.float32).tiny


def sigmoid(z) -> np.ndarray:
    """1 / (1 + exp(-z)), any shape; float input keeps its dtype, other input becomes float64."""
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    # exp(-|z|) never overflows.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def binary_entropy(q) -> np.ndarray:
    """Binary entropy in nats of probabilities q (any shape), 0 log 0 = 0; keeps q's dtype."""
    q = np.clip(q, 0.0, 1.0)  # a weighted mean can overshoot 1 by a rounding error
    r = 1.0 - q
    return -(q * np.log(np.maximum(q, _TINY)) + r * np.log(np.maximum(r, _TINY)))


def entropy_from_logits(z) -> np.ndarray:
    """Binary entropy in nats of sigmoid(z), accurate in the tails; keeps z's dtype."""
    a = np.abs(z)  # entropy is symmetric in z
    e = np.exp(-a)
    return np.log1p(e) + a * e / (1.0 + e)


# |P(A) - 0.5| at or below this is a tie: a weighted mean of heads that all sit at
# exactly 0.5 can land a rounding error away from it, and it is still a tie.
TIE_TOLERANCE = 1e-9


def correct(prob_a, y) -> np.ndarray:
    """Per-item credit (n,): 1 when the more probable side is preferred, 0 when not, 0.5 on a tie.

    The one tie rule: P(A) = 0.5 (within TIE_TOLERANCE) picks neither side, so it
    earns half, whichever side was preferred.
    """
    p = np.asarray(prob_a, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"prob_a must have shape (n,), got {p.shape}")
    y = binary_targets(y, len(p))
    out = np.where(y == 1, p > 0.5, p < 0.5).astype(np.float64)
    out[np.abs(p - 0.5) <= TIE_TOLERANCE] = 0.5
    return out


def accuracy(prob_a, y) -> float:
    """Mean of ``correct``: prob_a (n,) P(A preferred), y (n,) in {0, 1}. NaN for n = 0."""
    credit = correct(prob_a, y)
    return float(credit.mean()) if len(credit) else float("nan")
