"""What the Explore and Profiles pages share: whose weights there are, the
profile file format, scoring, and the numbers behind the charts.

Most functions here are plain numpy / pandas (no streamlit) so that the tests
check them on constructed inputs; the `st.cache_resource` wrappers hold the
heavy objects (the ensemble model, the backbone) once per server.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from hyre_engine.backbone import DEFAULT_ALIASES, Backbone, load_backbone
from hyre_engine.ensemble import Ensemble, fingerprint, predict
from hyre_engine.reweight import DEFAULT_BETA, Posterior
from pages import common

# A persona's weights come from its labels on the first pairs it judged (pool
# order): 20 labels is past the paper's 1-10, enough for a persona to stand out.
PERSONA_LABELS = 20
# The profile file format; bump when its keys change.
PROFILE_FORMAT = 1
PROFILE_KEYS = ("user", "ensemble_id", "fingerprint", "weights", "labels", "beta", "created_at")
# A profile is a few KB (K floats and a few labels): anything far larger is not one.
MAX_PROFILE_BYTES = 5_000_000
# Meta keys that describe each response of a pair come as "<name>_a" / "<name>_b".
SIDE_SUFFIXES = ("_a", "_b")
UNIFORM_KEY = "uniform"
# Each end of a component is its outer quarter of heads: a group, not one extreme head.
END_SHARE = 0.25
# Weights within this of each other count as the same ranking score (float noise).
SCORE_TOL = 1e-9


# ---------------------------------------------------------------- whose weights


@dataclass(frozen=True)
class WeightSource:
    """Something with a weight vector over the heads: a user's session, a saved profile, a persona."""

    key: str  # "uniform", "session:<id>", "profile:<user>", "persona:<group>"
    name: str  # the person or persona, as shown
    kind: str  # "uniform", "session", "profile" or "persona"
    detail: str  # how the weights were obtained, in words

    @property
    def label(self) -> str:
        return self.name if self.kind == "uniform" else f"{self.name} · {self.detail}"


@dataclass(frozen=True)
class Weights:
    """A source's weights (n_heads,) with the labels and beta they came from."""

    source: WeightSource
    weights: np.ndarray  # (n_heads,), sums to 1
    labels: list[dict[str, Any]]  # [{pair_id, row_index, label}]
    beta: float


def weights_from_labels(logits: np.ndarray, rows, labels, *, beta: float = DEFAULT_BETA) -> np.ndarray:
    """HyRe weights (n_heads,) after the labels ("a"/"b") on pool rows, replayed through a Posterior.

    logits: Z (n_items, n_heads); rows: (n,) row indices; labels: (n,) "a" or "b".
    """
    n_items, n_heads = logits.shape
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=object).reshape(-1)
    if rows.shape != labels.shape:
        raise ValueError(f"rows has shape {rows.shape} but labels has shape {labels.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n_items):
        raise ValueError(f"rows must be in [0, {n_items}) for Z of shape {logits.shape}")
    bad = [x for x in labels.tolist() if x not in ("a", "b")]
    if bad:
        raise ValueError(f"labels must be 'a' or 'b', got {bad[:3]}")
    posterior = Posterior(n_heads, beta=beta)
    if rows.size:
        posterior.add(np.asarray(logits[rows], dtype=np.float64), (labels == "a").astype(np.float64))
    return posterior.weights


def list_sources(ctx: common.Context) -> list[WeightSource]:
    """Uniform, then users' labelling sessions, saved profiles and the pool's personas."""
    db = ctx.store
    out = [WeightSource(UNIFORM_KEY, "Uniform ensemble", "uniform", "every head weighs 1/K")]
    personas = {p.id: p for p in common.pool_personas(ctx.db_path, ctx.pool_id)}
    sessions = db.list_sessions(ctx.pool_id)
    sessions = sessions[(sessions["ensemble_id"] == ctx.ensemble_id) & (sessions["n_labels"] > 0)]
    for row in sessions.itertuples():
        if row.mode == "persona" and row.persona:
            who = personas[row.persona].name if row.persona in personas else str(row.persona)
            detail = f"demo session played by {row.user} ({row.n_labels} rows)"
        else:
            who, detail = str(row.user), f"labelling session ({row.n_labels} rows)"
        out.append(WeightSource(f"session:{row.session_id}", who, "session", detail))
    profiles = db.list_profiles(ctx.ensemble_id)
    for row in profiles.itertuples():
        out.append(
            WeightSource(f"profile:{row.user}", str(row.user), "profile", f"saved profile ({row.n_labels} labels)")
        )
    for p in personas.values():
        out.append(
            WeightSource(f"persona:{p.id}", p.name, "persona", f"persona, first {PERSONA_LABELS} labels")
        )
    return out


def source_weights(ctx: common.Context, source: WeightSource) -> Weights:
    """The weights of one source on the context's ensemble (KeyError when it is gone)."""
    logits = ctx.arrays().logits
    n_heads = logits.shape[1]
    kind, _, ident = source.key.partition(":")
    if kind == UNIFORM_KEY:
        return Weights(source, np.full(n_heads, 1.0 / n_heads), [], DEFAULT_BETA)
    pair_ids = ctx.pairs()["pair_id"].to_numpy(dtype=object)
    if kind == "session":
        beta = float(ctx.store.get_session(ident)["settings"].get("beta", DEFAULT_BETA))
        rows = ctx.store.session_labels(ident)
        rows = rows[rows["label"].isin(["a", "b"])]
        items, labels = rows["row_index"].to_numpy(dtype=np.int64), rows["label"].to_numpy(dtype=object)
    elif kind == "persona":
        beta = DEFAULT_BETA
        truth = common.group_truth(ctx.db_path, ctx.pool_id, ident, ctx.n_pairs)
        items = np.flatnonzero(truth != None)[:PERSONA_LABELS]  # noqa: E711 (elementwise)
        labels = truth[items]
    elif kind == "profile":
        profile = ctx.store.get_profile(ident, ctx.ensemble_id)
        if profile is None:
            raise KeyError(f"no saved profile for {ident!r}")
        w = np.asarray(profile["weights"], dtype=np.float64)
        beta = float(profile["meta"].get("beta", DEFAULT_BETA))
        return Weights(source, w / w.sum(), list(profile["labels"]), beta)
    else:
        raise KeyError(f"unknown weight source {source.key!r}")
    w = weights_from_labels(logits, items, labels, beta=beta)
    records = [
        {"pair_id": str(pair_ids[i]), "row_index": int(i), "label": str(lab)}
        for i, lab in zip(items.tolist(), labels.tolist(), strict=True)
    ]
    return Weights(source, w, records, beta)


def source_picker(ctx: common.Context, label: str, *, key: str, default_user: bool = True, **kwargs) -> Weights:
    """A selectbox over the sources (the current user's first when they have one); returns its weights."""
    sources = list_sources(ctx)
    by_key = {s.key: s for s in sources}
    if st.session_state.get(key) not in by_key:
        mine = [s.key for s in sources if s.kind in ("session", "profile") and s.name == ctx.user]
        st.session_state[key] = mine[0] if (mine and default_user) else sources[0].key
    chosen = st.selectbox(label, list(by_key), format_func=lambda k: by_key[k].label, key=key, **kwargs)
    return source_weights(ctx, by_key[chosen])


# ---------------------------------------------------------------- function-space PCA


@st.cache_resource(show_spinner=False, max_entries=8)
def pairs_with_meta(path: str, pool_id: str, n_pairs: int) -> pd.DataFrame:
    """The pool's pairs with their meta dicts (row_index order); read-only."""
    return common.get_store(path).pool_pairs(pool_id, with_meta=True)


def side_meta(meta: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{"depth": (depth_a, depth_b), ...} for meta keys present for both responses."""
    out = {}
    for key in meta:
        if key.endswith("_a"):
            base = key[:-2]
            if base and f"{base}_b" in meta:
                out[base] = (meta[key], meta[f"{base}_b"])
    return out


def word_count(text: str) -> int:
    return len(str(text).split())


def component_pairs(pca, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Item indices of the n most positive and n most negative loadings of each component.

    Returns (top, bottom), each (n_components, min(n, n_items)); `top` descending, `bottom` ascending.
    """
    comps = np.asarray(pca.components_)
    n = min(int(n), comps.shape[1])
    order = np.argsort(-comps, axis=1, kind="stable")
    return order[:, :n], order[:, ::-1][:, :n]


def end_probabilities(
    logits: np.ndarray, pca, component: int, items: np.ndarray, *, share: float = END_SHARE
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
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits[items], dtype=np.float64)))
    return p[:, order[-k:]].mean(axis=1), p[:, order[:k]].mean(axis=1)


def axis_profile(pairs: pd.DataFrame, top: np.ndarray, bottom: np.ndarray) -> pd.DataFrame:
    """What the + end of a component prefers over the - end, from its strongest pairs.

    On a pair with a positive loading the + end likes A more than the - end does; on a
    negative one it likes B more. Counts each side attribute (meta "<x>_a"/"<x>_b") and
    the mean word count of the response each end favours. DataFrame(attribute, + end, - end).
    """
    favoured: dict[str, dict[str, list]] = {"+": {}, "-": {}}
    for items, plus_side in ((top, "a"), (bottom, "b")):
        for i in np.asarray(items).tolist():
            row = pairs.iloc[i]
            minus_side = "b" if plus_side == "a" else "a"
            for end, side in (("+", plus_side), ("-", minus_side)):
                favoured[end].setdefault("words", []).append(word_count(row[f"response_{side}"]))
                for name, values in side_meta(row.get("meta") or {}).items():
                    favoured[end].setdefault(name, []).append(values[0 if side == "a" else 1])
    rows = []
    for name in favoured["+"]:
        plus, minus = favoured["+"][name], favoured["-"].get(name, [])
        if name == "words":
            rows.append(("words (mean)", f"{np.mean(plus):.0f}", f"{np.mean(minus):.0f}"))
        else:
            rows.append((name, _tally(plus), _tally(minus)))
    return pd.DataFrame(rows, columns=["attribute", "+ end favours", "− end favours"])


def _tally(values: list) -> str:
    counts = pd.Series([str(v) for v in values]).value_counts()
    return ", ".join(f"{k} ×{v}" for k, v in counts.items())


def uniform_probability(logits: np.ndarray) -> np.ndarray:
    """P(A preferred) under the uniform ensemble (n_items,) = mean_k sigmoid(Z[:, k])."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).mean(axis=1)


# ---------------------------------------------------------------- comparing users


def similarity_matrix(weights: np.ndarray) -> np.ndarray:
    """Cosine similarity (n, n) of weight vectors (n, n_heads); 1 on the diagonal."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be (n, n_heads), got shape {w.shape}")
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("every weight vector must have a non-zero entry")
    unit = w / norms
    return np.clip(unit @ unit.T, 0.0, 1.0)


def agreement_matrix(logits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Share of pool pairs (n, n) on which two weighted ensembles prefer the same response."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    picks = (p @ np.asarray(weights, dtype=np.float64).T) > 0.5  # (n_items, n)
    same = picks.T.astype(np.float64) @ picks + (~picks).T.astype(np.float64) @ ~picks
    return same / logits.shape[0]


# ---------------------------------------------------------------- profile files


class ProfileError(ValueError):
    """An uploaded profile that cannot be used, with a message for people."""


@dataclass(frozen=True)
class Profile:
    user: str
    ensemble_id: str
    fingerprint: str
    weights: np.ndarray  # (n_heads,), sums to 1
    labels: list[dict[str, Any]]
    beta: float
    created_at: str


def profile_document(w: Weights, *, user: str, ensemble_id: str, ensemble_fingerprint: str) -> dict[str, Any]:
    """The JSON object a profile is exported as."""
    return {
        "format": PROFILE_FORMAT,
        "user": user,
        "ensemble_id": ensemble_id,
        "fingerprint": ensemble_fingerprint,
        "weights": [float(x) for x in w.weights],
        "labels": list(w.labels),
        "beta": float(w.beta),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_profile(raw: bytes, *, n_heads: int, ensemble_fingerprint: str) -> Profile:
    """Validate an uploaded profile (JSON only) against the current ensemble; ProfileError if unusable."""
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"The file is {len(raw):,} bytes; a profile is at most {MAX_PROFILE_BYTES:,}.")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"The file is not valid JSON ({exc}).") from None
    if not isinstance(doc, dict):
        raise ProfileError("A profile is a JSON object; this file holds something else.")
    missing = [k for k in PROFILE_KEYS if k not in doc]
    if missing:
        raise ProfileError(f"The profile lacks {', '.join(missing)} (needs {', '.join(PROFILE_KEYS)}).")
    for key in ("user", "ensemble_id", "fingerprint", "created_at"):
        if not isinstance(doc[key], str) or not doc[key].strip():
            raise ProfileError(f"'{key}' must be a non-empty string.")
    if doc["fingerprint"] != ensemble_fingerprint:
        raise ProfileError(
            f"This profile was made for the ensemble with fingerprint {doc['fingerprint']}, but the "
            f"current ensemble's fingerprint is {ensemble_fingerprint}. Its weights belong to other "
            "heads, so it cannot be used here: switch to that ensemble, or label again."
        )
    weights = doc["weights"]
    if not isinstance(weights, list) or not all(_finite_number(x) for x in weights):
        raise ProfileError("'weights' must be a list of finite numbers.")
    if len(weights) != n_heads:
        raise ProfileError(f"'weights' has {len(weights)} entries; the ensemble has {n_heads} heads.")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ProfileError("'weights' must be non-negative with a positive sum.")
    if not _finite_number(doc["beta"]) or doc["beta"] < 0:
        raise ProfileError("'beta' must be a finite number >= 0.")
    labels = doc["labels"]
    if not isinstance(labels, list):
        raise ProfileError("'labels' must be a list.")
    for i, lab in enumerate(labels):
        if (
            not isinstance(lab, dict)
            or not isinstance(lab.get("pair_id"), str)
            or lab.get("label") not in ("a", "b")
        ):
            raise ProfileError(f"labels[{i}] must be an object with a 'pair_id' string and 'label' 'a' or 'b'.")
    user = common.clean_user(doc["user"])
    return Profile(
        user, doc["ensemble_id"], doc["fingerprint"], w / w.sum(), labels, float(doc["beta"]), doc["created_at"]
    )


# ---------------------------------------------------------------- scoring


@st.cache_resource(show_spinner=False, max_entries=4)
def ensemble_model(path: str, ensemble_id: str) -> Ensemble:
    """The stored ensemble as a torch model (CPU, eval mode), once per server."""
    from hyre_engine.pipeline import load_model

    return load_model(common.get_store(path), ensemble_id)


@st.cache_resource(show_spinner=False, max_entries=4)
def ensemble_fingerprint(path: str, ensemble_id: str) -> str:
    """fingerprint() of the stored ensemble: what a profile must match."""
    return fingerprint(ensemble_model(path, ensemble_id))


@st.cache_resource(show_spinner="Loading the embedding model…", max_entries=2)
def scoring_backbone(backbone_id: str) -> Backbone:
    """The backbone the ensemble was trained on; ValueError when this machine does not have it."""
    name = backbone_id.split("@", 1)[0]
    if name not in DEFAULT_ALIASES:
        raise ValueError(
            f"Scoring needs the backbone {name}, which was loaded from a local folder when the "
            "ensemble was built; only the embedded all-MiniLM-L6-v2 can be loaded here."
        )
    backbone = load_backbone(None)
    if backbone.id != backbone_id:
        raise ValueError(
            f"The ensemble was trained on backbone {backbone_id}, but this machine has {backbone.id}."
        )
    return backbone


def head_rewards(model: Ensemble, backbone: Backbone, prompt: str, responses: list[str]) -> np.ndarray:
    """Per-head rewards (n_responses, n_heads) of each response to the prompt."""
    x = backbone.embed([prompt] * len(responses), responses)
    return predict(model, x)


def rank_candidates(rewards: np.ndarray, weights: np.ndarray) -> pd.DataFrame:
    """Personalised (sum_k w_k r_k) and uniform (mean_k r_k) reward and rank of each candidate.

    rewards: (n_candidates, n_heads); weights: (n_heads,). Ranks start at 1 (best); the
    frame is sorted by personalised rank; `moved` is uniform rank minus personalised rank.
    """
    r = np.asarray(rewards, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if r.ndim != 2 or w.shape != (r.shape[1],):
        raise ValueError(f"rewards must be (n, n_heads) and weights (n_heads,), got {r.shape} and {w.shape}")
    personal, uniform = r @ w, r.mean(axis=1)
    frame = pd.DataFrame(
        {
            "candidate": np.arange(1, r.shape[0] + 1),
            "personalised": personal,
            "uniform": uniform,
            "personalised_rank": _ranks(personal),
            "uniform_rank": _ranks(uniform),
        }
    )
    frame["moved"] = frame["uniform_rank"] - frame["personalised_rank"]
    return frame.sort_values(["personalised_rank", "candidate"], kind="stable").reset_index(drop=True)


def _ranks(scores: np.ndarray) -> np.ndarray:
    # Ties share a rank: a re-ordering within float noise is not a change of preference.
    rounded = np.round(scores / SCORE_TOL) * SCORE_TOL
    return pd.Series(-rounded).rank(method="min").to_numpy(dtype=np.int64)

