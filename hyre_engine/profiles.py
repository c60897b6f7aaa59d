"""People's weight vectors: where they come from, the profile file, comparing them, using them.

- Weight sources: the uniform ensemble, a user's labelling session (its labels replayed
  through HyRe with the beta the Label page used, `live.session_beta`, and through the
  personal head with its lambda, `live.session_lambda`, when the session personalises
  with it), a saved profile, a simulated persona's first labels. `list_sources` names
  them, `source_weights` computes their weights (and v).
- The profile document: the JSON a profile is exported as, and `parse_profile`, which
  validates an uploaded one against the current ensemble.
- Similarity: cosine similarity of weight vectors, and agreement of the personalised
  models on the pool's pairs.
- Best-of-n ranking: candidates ranked by a profile's full reward sum_k w_k r_k(x) + v . phi(x)
  (the personal model's margin on a pair is the difference of it) next to the uniform ensemble's.
- Head inspection: one head against the uniform ensemble on the pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from hyre_engine.live import (
    LABELS,
    ensemble_beta,
    ensemble_lambda,
    group_truth,
    session_beta,
    session_lambda,
    session_method,
    session_prior,
)
from hyre_engine.numerics import accuracy, label_targets, sigmoid
from hyre_engine.pca import FunctionPCA
from hyre_engine.personal import PersonalModel, check_diffs, personal_margins
from hyre_engine.reweight import DEFAULT_BETA, Posterior, effective_heads

if TYPE_CHECKING:
    import pandas as pd

    from hyre_engine.backbone import Backbone
    from hyre_engine.ensemble import Ensemble
    from hyre_engine.store import Store

# A persona's weights come from its labels on the first pairs it judged (pool
# order): 20 labels is past the paper's 1-10, enough for a persona to stand out.
PERSONA_LABELS = 20
# The profile file format; bump when its keys change.
PROFILE_FORMAT = 1
PROFILE_KEYS = ("user", "ensemble_id", "fingerprint", "weights", "labels", "beta", "created_at")
# A profile is a few KB (K floats and a few labels): anything far larger is not one. One
# limit: the Profiles page's uploader refuses the same size (max_upload_size=MAX_PROFILE_MB).
MAX_PROFILE_MB = 1
MAX_PROFILE_BYTES = MAX_PROFILE_MB * 1024 * 1024
# Weights are normalised on import; raw values beyond this are no weight vector (1e308
# would normalise to all zeros), and a beta beyond it is no temperature.
MAX_PROFILE_WEIGHT = 1e6
# Where a weight vector comes from; a source's key is "<kind>:<id>" ("uniform" alone).
SOURCE_KINDS = ("uniform", "session", "profile", "persona")
UNIFORM_KEY = "uniform"
# Weights within this of each other count as the same ranking score (float noise).
SCORE_TOL = 1e-9
# Everyone who has not typed a name labels as this user.
DEFAULT_USER = "guest"
# Long enough for a full name, short enough for a sidebar.
MAX_USER_CHARS = 40


def clean_user(name: str | None) -> str:
    """A user name fit for the store and a URL: whitespace collapsed, bounded, never empty."""
    name = " ".join((name or "").split())[:MAX_USER_CHARS]
    return name or DEFAULT_USER


# ---------------------------------------------------------------- personas


@dataclass(frozen=True)
class PersonaInfo:
    id: str
    name: str
    description: str
    # True for a demo persona kept out of the training crowd (personas.json in_crowd false):
    # the users HyRe has never seen, the honest demo. False for crowd members and unknown groups.
    held_out: bool = False


def pool_personas(store: Store, pool_id: str) -> list[PersonaInfo]:
    """The simulated users of a pool: its label groups other than the training crowd."""
    from hyre_engine.demo import CROWD_GROUP, load_personas

    known = {p.id: p for p in load_personas()}
    out = []
    for group in store.pool_groups(pool_id)["group"].dropna().astype(str):
        if group == CROWD_GROUP:
            continue
        persona = known.get(group)
        if persona is not None:
            out.append(PersonaInfo(group, persona.name, persona.description, held_out=not persona.in_crowd))
        else:
            out.append(PersonaInfo(group, group, f"The labels of group '{group}' in this pool."))
    return out


def default_persona(personas: list[PersonaInfo], preferred: str | None = None) -> PersonaInfo | None:
    """The persona a demo opens on: ``preferred`` (default: the demo's presenter persona) when
    it is there and held out of the training crowd, else the first held out, else the first."""
    from hyre_engine.demo import DEMO_PRESENTER_PERSONA

    preferred = DEMO_PRESENTER_PERSONA if preferred is None else preferred
    held_out = [p for p in personas if p.held_out]
    return next((p for p in held_out if p.id == preferred), held_out[0] if held_out else
                (personas[0] if personas else None))


# ---------------------------------------------------------------- weight sources


@dataclass(frozen=True)
class WeightSource:
    """Something with a weight vector over the heads: a user's session, a saved profile, a persona."""

    key: str  # "uniform", "session:<id>", "profile:<user>", "persona:<group>"
    name: str  # the person or persona
    kind: str  # one of SOURCE_KINDS
    detail: str  # how the weights were obtained, in words

    @property
    def label(self) -> str:
        return self.name if self.kind == UNIFORM_KEY else f"{self.name} · {self.detail}"


@dataclass(frozen=True)
class Weights:
    """A source's weights (n_heads,) with the labels and beta they came from, and its personal
    head v (dim,) with its lambda when it personalises with one (None: HyRe only). v is the
    direction on the backbone's embeddings (v = T u under a structured prior of strength
    ``rho``), so D v scores the pool whatever prior fitted it."""

    source: WeightSource
    weights: np.ndarray  # (n_heads,), sums to 1
    labels: list[dict[str, Any]]  # [{pair_id, row_index, label}]
    beta: float
    v: np.ndarray | None = None
    lam: float | None = None
    rho: float | None = None  # the structured prior v was fitted under; None or 0: isotropic

    @property
    def heaviest(self) -> int:
        """The head with the largest weight (the first of equals)."""
        return int(np.argmax(self.weights))

    @property
    def effective_heads(self) -> float:
        return effective_heads(self.weights)


def heaviest_first(weights) -> np.ndarray:
    """(n_heads,) head indices by decreasing weight; equal weights keep head order."""
    return np.argsort(-np.asarray(weights, dtype=np.float64), kind="stable")


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
    bad = [x for x in labels.tolist() if x not in LABELS]
    if bad:
        raise ValueError(f"labels must be 'a' or 'b', got {bad[:3]}")
    posterior = Posterior(n_heads, beta=beta)
    if rows.size:
        posterior.add(np.asarray(logits[rows], dtype=np.float64), label_targets(labels))
    return posterior.weights


def list_sources(store: Store, *, pool_id: str, ensemble_id: str, personas: list[PersonaInfo]) -> list[WeightSource]:
    """Uniform, then users' labelling sessions, saved profiles and the pool's personas."""
    out = [WeightSource(UNIFORM_KEY, "Uniform ensemble", "uniform", "every head weighs 1/K")]
    by_id = {p.id: p for p in personas}
    sessions = store.list_sessions(pool_id)
    sessions = sessions[(sessions["ensemble_id"] == ensemble_id) & (sessions["n_labels"] > 0)]
    for row in sessions.itertuples():
        if row.mode == "persona" and row.persona:
            who = by_id[row.persona].name if row.persona in by_id else str(row.persona)
            detail = f"demo session played by {row.user} ({row.n_labels} rows)"
        else:
            who, detail = str(row.user), f"labelling session ({row.n_labels} rows)"
        out.append(WeightSource(f"session:{row.session_id}", who, "session", detail))
    for row in store.list_profiles(ensemble_id).itertuples():
        out.append(
            WeightSource(f"profile:{row.user}", str(row.user), "profile", f"saved profile ({row.n_labels} labels)")
        )
    for p in personas:
        out.append(WeightSource(f"persona:{p.id}", p.name, "persona", f"persona, first {PERSONA_LABELS} labels"))
    return out


def source_weights(
    store: Store,
    source: WeightSource,
    *,
    logits: np.ndarray,
    pair_ids: np.ndarray,
    pool_id: str,
    ensemble_id: str,
    truth: Callable[[str], np.ndarray] | None = None,
    diffs: np.ndarray | None = None,
) -> Weights:
    """The weights of one source on an ensemble's pool Z (n_items, n_heads); KeyError when it is gone.

    ``pair_ids`` (n_items,) name the pool's rows; ``truth(group)`` gives a persona's
    labels per row (default: read from the store). With the pool's ``diffs`` D, a session
    that personalises with the personal head (and a persona) also gets its v, fitted with
    the beta, lambda and structured prior the Label page used.
    """
    n_items, n_heads = logits.shape
    kind, _, ident = source.key.partition(":")
    lam: float | None = None
    prior = None
    if kind == UNIFORM_KEY:
        return Weights(source, np.full(n_heads, 1.0 / n_heads), [], DEFAULT_BETA)
    if kind == "session":
        # The beta and lambda the Label page labels with (the session's choice, else the ensemble's).
        beta = session_beta(store, ident)
        if session_method(store, ident) == "personal":
            lam = session_lambda(store, ident)
            prior = session_prior(store, ident)
        rows = store.session_labels(ident)
        rows = rows[rows["label"].isin(list(LABELS))]
        items, labels = rows["row_index"].to_numpy(dtype=np.int64), rows["label"].to_numpy(dtype=object)
    elif kind == "persona":
        # A persona's demo session on the Label page runs at the ensemble's beta and lambda: so does this.
        meta = store.get_ensemble(ensemble_id, with_weights=False).meta
        beta, lam = ensemble_beta(meta), ensemble_lambda(meta)
        prior = store.personal_prior(ensemble_id)
        labels_of = truth(ident) if truth is not None else group_truth(store, pool_id, ident, n_items)
        items = np.flatnonzero(labels_of != None)[:PERSONA_LABELS]  # noqa: E711 (elementwise)
        labels = labels_of[items]
    elif kind == "profile":
        return _saved_profile_weights(store, source, ident, ensemble_id)
    else:
        raise KeyError(f"unknown weight source {source.key!r}")
    w = weights_from_labels(logits, items, labels, beta=beta)
    v = rho = None
    if lam is not None and diffs is not None:
        # with the ensemble's structured prior, as the Label page's personal head has it
        model = PersonalModel.replay(logits, diffs, items, label_targets(labels), beta=beta, lam=lam, prior=prior)
        v, rho = model.v, model.rho
    records = [
        {"pair_id": str(pair_ids[i]), "row_index": int(i), "label": str(lab)}
        for i, lab in zip(items.tolist(), labels.tolist(), strict=True)
    ]
    return Weights(source, w, records, beta, v, lam if v is not None else None, rho)


def _saved_profile_weights(store: Store, source: WeightSource, user: str, ensemble_id: str) -> Weights:
    profile = store.get_profile(user, ensemble_id)
    if profile is None:
        raise KeyError(f"no saved profile for {user!r}")
    w = np.asarray(profile.weights, dtype=np.float64)
    meta = profile.meta
    v = None if meta.v is None else np.asarray(meta.v, dtype=np.float64)
    return Weights(source, w / w.sum(), list(profile.labels), meta.beta, v, meta.lam if v is not None else None,
                   meta.rho if v is not None else None)


def source_coords(pca: FunctionPCA, chosen: Weights, logits: np.ndarray, diffs: np.ndarray | None = None) -> np.ndarray:
    """Where a source's own function sits in the heads' function-space PCA (n_components,).

    The function is the source's margins on the pool, Z w plus D v when it personalises
    with a personal head and the pool's D is given (else HyRe's Z w alone), placed as a head
    would be, so it may leave the heads' cloud (the Label page's marker, for any source).
    Only the rows the PCA was fitted on are read (a big pool's PCA reads a sample).
    """
    rows = getattr(pca, "pool_rows_", None)
    take = slice(None) if rows is None else rows
    if chosen.v is not None and diffs is not None:
        margins = personal_margins(logits[take], diffs[take], chosen.weights, chosen.v)
    else:
        margins = np.asarray(logits[take], dtype=np.float64) @ chosen.weights
    return pca.transform(margins[:, None])[0]


# ---------------------------------------------------------------- comparing people


def similarity_matrix(weights) -> np.ndarray:
    """Cosine similarity (n, n) of weight vectors (n, n_heads); 1 on the diagonal."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be (n, n_heads), got shape {w.shape}")
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("every weight vector must have a non-zero entry")
    unit = w / norms
    return np.clip(unit @ unit.T, 0.0, 1.0)


def agreement_matrix(logits: np.ndarray, weights) -> np.ndarray:
    """Share of pool pairs (n, n) on which two weighted ensembles prefer the same response.

    logits: Z (n_items, n_heads); weights: (n, n_heads).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != logits.shape[1]:
        raise ValueError(f"weights must be (n, {logits.shape[1]}) for Z of shape {logits.shape}, got {w.shape}")
    picks = (sigmoid(np.asarray(logits, dtype=np.float64)) @ w.T) > 0.5  # (n_items, n)
    same = picks.T.astype(np.float64) @ picks + (~picks).T.astype(np.float64) @ ~picks
    return same / logits.shape[0]


# How two people's weights are compared: name -> matrix (n, n) in [0, 1] from weights (n, n_heads).
MEASURES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "cosine": lambda weights, logits: similarity_matrix(weights),
    "agreement": lambda weights, logits: agreement_matrix(logits, weights),
}


def compare(measure: str, weights, logits: np.ndarray) -> np.ndarray:
    """The (n, n) matrix of a comparison measure (see MEASURES) between weight vectors (n, n_heads)."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; valid: {', '.join(MEASURES)}")
    return MEASURES[measure](np.asarray(weights, dtype=np.float64), logits)


def most_alike(matrix) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a similarity matrix (n, n): the most similar other row and its score, (n,) each."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"matrix must be square with at least 2 rows, got shape {m.shape}")
    others = m.copy()
    np.fill_diagonal(others, -np.inf)
    nearest = others.argmax(axis=1)
    return nearest, m[np.arange(m.shape[0]), nearest]


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
    v: np.ndarray | None = None  # (dim,) the personal head; None: HyRe only
    lam: float | None = None
    rho: float | None = None  # the structured prior v was fitted under; None: isotropic

    @property
    def effective_heads(self) -> float:
        return effective_heads(self.weights)


def profile_document(w: Weights, *, user: str, ensemble_id: str, ensemble_fingerprint: str,
                     backbone_id: str | None = None) -> dict[str, Any]:
    """The JSON object a profile is exported as."""
    doc = {
        "format": PROFILE_FORMAT,
        "user": user,
        "ensemble_id": ensemble_id,
        "fingerprint": ensemble_fingerprint,
        "weights": [float(x) for x in w.weights],
        "labels": list(w.labels),
        "beta": float(w.beta),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if w.v is not None:
        # the personal head: its direction on the backbone's embedding and its prior precision
        doc["v"] = [float(x) for x in w.v]
        doc["lambda"] = float(w.lam)
        if w.rho:  # v is on the embeddings either way; rho says which prior fitted it
            doc["rho"] = float(w.rho)
    if backbone_id is not None:
        # a fine-tuned backbone is a different feature space even for heads of the same shape
        doc["backbone_id"] = backbone_id
    return doc


def stored_meta(source: Weights | Profile, origin: str, **extra: Any) -> dict[str, Any]:
    """The meta a saved profile keeps beside its weights: beta, where it came from, and the
    personal head (v, lambda) when it has one."""
    meta: dict[str, Any] = {"beta": float(source.beta), "from": origin, **extra}
    if source.v is not None:
        meta["v"] = [float(x) for x in source.v]
        meta["lambda"] = float(source.lam)
        if source.rho:
            meta["rho"] = float(source.rho)
    return meta


def _finite_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_profile(raw: bytes, *, n_heads: int, ensemble_fingerprint: str, backbone_id: str | None = None,
                  dim: int | None = None, pair_ids=None) -> Profile:
    """Validate an uploaded profile (JSON only) against the current ensemble (and, when both
    name one, its backbone; ``dim``: the embedding size its v must have) and, given
    ``pair_ids``, its pool: every label must be on one of those pairs, once. ProfileError if unusable."""
    doc = _profile_json(raw)
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
    made_on = doc.get("backbone_id")
    if backbone_id is not None and made_on is not None and made_on != backbone_id:
        raise ProfileError(
            f"This profile was made on the backbone {made_on}, but the current ensemble uses "
            f"{backbone_id}. Its weights belong to heads on other features, so it cannot be used "
            "here: switch to that ensemble, or label again."
        )
    w = _profile_weights(doc["weights"], n_heads)
    if not _finite_number(doc["beta"]) or not 0 <= doc["beta"] <= MAX_PROFILE_WEIGHT:
        raise ProfileError(f"'beta' must be a finite number from 0 to {MAX_PROFILE_WEIGHT:g}.")
    labels = _profile_labels(doc["labels"], pair_ids)
    v, lam, rho = _parse_personal_head(doc, dim)
    return Profile(
        clean_user(doc["user"]), doc["ensemble_id"], doc["fingerprint"], w, labels,
        float(doc["beta"]), doc["created_at"], v, lam, rho,
    )


def _profile_json(raw: bytes) -> dict:
    from hyre_engine.data import DataError, loads_json

    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"The file is {len(raw):,} bytes; a profile is at most {MAX_PROFILE_BYTES:,} "
                           f"({MAX_PROFILE_MB} MB).")
    try:
        doc = loads_json(raw.decode("utf-8"), name="the profile")
    except UnicodeDecodeError:
        raise ProfileError("The file is not valid JSON (it is not UTF-8 text).") from None
    except DataError as exc:
        raise ProfileError(f"The file is not valid JSON ({exc}).") from None
    if not isinstance(doc, dict):
        raise ProfileError("A profile is a JSON object; this file holds something else.")
    return doc


def _profile_weights(weights: Any, n_heads: int) -> np.ndarray:
    """The weights normalised to sum 1, after checking they are K finite numbers in [0, MAX_PROFILE_WEIGHT]."""
    if not isinstance(weights, list) or not all(_finite_number(x) for x in weights):
        raise ProfileError("'weights' must be a list of finite numbers.")
    if len(weights) != n_heads:
        raise ProfileError(f"'weights' has {len(weights)} entries; the ensemble has {n_heads} heads.")
    w = np.asarray(weights, dtype=np.float64)
    if w.size and w.max() > MAX_PROFILE_WEIGHT:
        raise ProfileError(f"'weights' go up to {w.max():g}; a profile's weights are at most "
                           f"{MAX_PROFILE_WEIGHT:g} (they are normalised to sum 1).")
    if (w < 0).any() or w.sum() <= 0:
        raise ProfileError("'weights' must be non-negative with a positive sum.")
    return w / w.sum()


def _profile_labels(labels: Any, pair_ids) -> list[dict[str, Any]]:
    if not isinstance(labels, list):
        raise ProfileError("'labels' must be a list.")
    for i, lab in enumerate(labels):
        if not isinstance(lab, dict) or not isinstance(lab.get("pair_id"), str) or lab.get("label") not in LABELS:
            raise ProfileError(f"labels[{i}] must be an object with a 'pair_id' string and 'label' 'a' or 'b'.")
    named = [lab["pair_id"] for lab in labels]
    if len(set(named)) != len(named):
        raise ProfileError("'labels' name the same pair more than once.")
    if pair_ids is not None:
        known = set(map(str, pair_ids))
        unknown = [p for p in named if p not in known]
        if unknown:
            raise ProfileError(f"{len(unknown):,} of the {len(named):,} labels are on pairs this pool does not "
                               f"have (the first: {unknown[0][:40]!r}); a profile's labels come from its pool.")
    return labels


def _parse_personal_head(doc: dict, dim: int | None) -> tuple[np.ndarray | None, float | None, float | None]:
    """(v, lambda, rho) of a profile document, (None, None, None) for a HyRe-only one (rho None:
    isotropic); ProfileError if malformed."""
    if doc.get("v") is None:
        return None, None, None
    v = doc["v"]
    if not isinstance(v, list) or not v or not all(_finite_number(x) for x in v):
        raise ProfileError("'v' (the personal head) must be a non-empty list of finite numbers.")
    if dim is not None and len(v) != dim:
        raise ProfileError(f"'v' has {len(v)} entries; the backbone's embeddings have {dim}.")
    lam = doc.get("lambda")
    if not _finite_number(lam) or lam <= 0:
        raise ProfileError("'lambda' (the personal head's prior precision) must be a finite number > 0.")
    rho = doc.get("rho")
    if rho is not None and (not _finite_number(rho) or rho < 0):
        raise ProfileError("'rho' (the personal head's structured prior strength) must be a finite number >= 0.")
    return np.asarray(v, dtype=np.float64), float(lam), None if rho is None else float(rho)


# ---------------------------------------------------------------- best-of-n ranking


def load_scoring_backbone(backbone_id: str, path: str | None = None) -> Backbone:
    """The backbone an ensemble was trained on, for scoring new texts; ValueError when this machine lacks it.

    ``path``: the folder of a fine-tuned backbone (its ensemble's meta names it).
    """
    from hyre_engine.backbone import DEFAULT_ALIASES, backend_of_id, load_backbone

    if path is not None:
        backbone = load_backbone(path)
        if backbone.id != backbone_id:
            raise ValueError(f"The ensemble was trained on backbone {backbone_id}, but {path} holds {backbone.id}.")
        return backbone

    name = backbone_id.split("@", 1)[0]
    if name not in DEFAULT_ALIASES:
        raise ValueError(
            f"Scoring needs the backbone {name}, which was loaded from a local folder when the "
            "ensemble was built; only the embedded all-MiniLM-L6-v2 can be loaded here."
        )
    # The backend that embedded the ensemble's pool (torch, or ONNX Runtime: its id says which).
    backbone = load_backbone(None, backend=backend_of_id(backbone_id))
    if backbone.id != backbone_id:
        raise ValueError(f"The ensemble was trained on backbone {backbone_id}, but this machine has {backbone.id}.")
    return backbone


def head_rewards(model: Ensemble, backbone: Backbone, prompt: str, responses: list[str]) -> np.ndarray:
    """Per-head rewards (n_responses, n_heads) of each response to the prompt."""
    return candidate_rewards(model, backbone, prompt, responses)[0]


def candidate_rewards(model: Ensemble, backbone: Backbone, prompt: str,
                      responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-head rewards (n_responses, n_heads) and the embeddings phi (n_responses, dim) the
    heads read, which the personal head's v scores."""
    from hyre_engine.ensemble import predict

    x = backbone.embed([prompt] * len(responses), responses)
    return predict(model, x), np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class Ranking:
    """Candidates ranked by a personalised and by the uniform reward (each (n_candidates,)).

    Rows are in personalised order (best first, ties by candidate number). Candidate
    numbers and ranks start at 1; ``moved`` is uniform rank minus personalised rank.
    """

    candidate: np.ndarray
    personalised: np.ndarray
    uniform: np.ndarray
    personalised_rank: np.ndarray
    uniform_rank: np.ndarray

    @property
    def moved(self) -> np.ndarray:
        return self.uniform_rank - self.personalised_rank

    @property
    def best_personalised(self) -> int:
        return int(self.candidate[0])

    @property
    def best_uniform(self) -> int:
        """The uniform ensemble's pick: its best rank, the lowest candidate number among equals."""
        order = np.lexsort((self.candidate, self.uniform_rank))
        return int(self.candidate[order[0]])


def rank_candidates(rewards, weights, *, v=None, embeddings=None) -> Ranking:
    """Personalised and uniform (mean_k r_k) reward and rank of each candidate.

    rewards: (n_candidates, n_heads); weights: (n_heads,). The personalised reward is
    sum_k w_k r_k(x), plus v . phi(x) with the personal head v (dim,) and the candidates'
    embeddings phi (n_candidates, dim). A ranking needs one score per candidate: the
    personal model's margin on a pair, logit(sum_k w_k sigmoid(r_k(a) - r_k(b))) + v .
    (phi(a) - phi(b)), is that difference of rewards where the heads agree on the pair and
    is not a difference of any per-candidate scores where they do not.
    """
    r = np.asarray(rewards, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if r.ndim != 2 or w.shape != (r.shape[1],):
        raise ValueError(f"rewards must be (n, n_heads) and weights (n_heads,), got {r.shape} and {w.shape}")
    personal, uniform = r @ w, r.mean(axis=1)
    if v is not None:
        if embeddings is None:
            raise ValueError("ranking with a personal head v needs the candidates' embeddings")
        x = check_diffs(embeddings, name="embeddings", dim=np.asarray(v).shape[0])
        if x.shape[0] != r.shape[0]:
            raise ValueError(f"embeddings have {x.shape[0]} rows for {r.shape[0]} candidates")
        personal = personal + x.astype(np.float64) @ np.asarray(v, dtype=np.float64)
    p_rank, u_rank = _ranks(personal), _ranks(uniform)
    candidate = np.arange(1, r.shape[0] + 1)
    order = np.lexsort((candidate, p_rank))
    return Ranking(candidate[order], personal[order], uniform[order], p_rank[order], u_rank[order])


def _ranks(scores: np.ndarray) -> np.ndarray:
    # Ties share the best rank ("min"): a re-ordering within float noise is not a change of preference.
    rounded = np.round(scores / SCORE_TOL)
    return np.searchsorted(np.sort(-rounded), -rounded, side="left").astype(np.int64) + 1


def example_candidates(pairs: pd.DataFrame, n: int) -> tuple[str, list[str]]:
    """The pool's first prompt and up to n different answers to it (in pool order)."""
    if not len(pairs):
        return "", []
    prompt = str(pairs.iloc[0]["prompt"])
    same = pairs[pairs["prompt"] == prompt]
    answers = dict.fromkeys([*same["response_a"].tolist(), *same["response_b"].tolist()])
    return prompt, [str(a) for a in list(answers)[:n]]


# ---------------------------------------------------------------- one head


@dataclass(frozen=True)
class HeadInspection:
    """One head's P(A preferred) on a pool next to the uniform ensemble's."""

    head: int
    head_p: np.ndarray  # (n_items,)
    uniform_p: np.ndarray  # (n_items,)
    agrees: np.ndarray  # (n_items,) bool: both prefer the same response
    same_choice: float  # share of pairs where both prefer the same response
    departures: np.ndarray  # item indices where the two differ most, largest gap first
    head_accuracy: float | None  # on the given labels (ties count half); None without labels
    uniform_accuracy: float | None
    n_labels: int


def inspect_head(logits: np.ndarray, head: int, *, labels=(), n_departures: int = 5) -> HeadInspection:
    """Compare head ``head`` of Z (n_items, n_heads) with the uniform ensemble.

    ``labels`` are records {row_index, label} (those without a row_index are left out).
    """
    n_items, n_heads = logits.shape
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in [0, {n_heads}), got {head}")
    p = sigmoid(np.asarray(logits, dtype=np.float64))
    head_p, uniform_p = p[:, head], p.mean(axis=1)
    gap = np.abs(head_p - uniform_p)
    agrees = (head_p > 0.5) == (uniform_p > 0.5)
    known = [lab for lab in labels if "row_index" in lab]
    rows = np.array([lab["row_index"] for lab in known], dtype=np.int64)
    y = label_targets([lab["label"] for lab in known])
    return HeadInspection(
        head=head,
        head_p=head_p,
        uniform_p=uniform_p,
        agrees=agrees,
        same_choice=float(agrees.mean()),
        departures=np.argsort(-gap, kind="stable")[:n_departures],
        head_accuracy=_accuracy(head_p[rows], y),
        uniform_accuracy=_accuracy(uniform_p[rows], y),
        n_labels=int(rows.size),
    )


def uniform_probability(logits: np.ndarray) -> np.ndarray:
    """P(A preferred) under the uniform ensemble (n_items,) = mean_k sigmoid(Z[:, k])."""
    return sigmoid(np.asarray(logits, dtype=np.float64)).mean(axis=1)


def _accuracy(prob_a: np.ndarray, y: np.ndarray) -> float | None:
    """numerics.accuracy (a tie counts half), None when there is nothing to score."""
    return accuracy(prob_a, y) if len(prob_a) else None
