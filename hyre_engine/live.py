"""The live labelling loop: a HyRe posterior over a cached pool, one label at a time.

`LiveSession` holds the cached head predictions Z of a pool and a HyRe posterior;
given the pool's embedding differences D it also holds the personal model (HyRe's
weights w plus the personal head v, `personal.PersonalModel`), and personalises with
it (``method="personal"``, the default) or with the reweighted heads alone
(``method="hyre"``, the paper's method). Both models learn from every label, so the
switch changes which one asks the next pair and speaks for the person, at once.
After each label, `snapshot()` says where the session stands: the weights (and
which heads gained), the heads' place in the function-space PCA and the person's own
function projected onto it, the next pair to ask about, the share of the pool the
personal head flips, and the accuracy curves of HyRe, the personal model and the
uniform ensemble. Everything is numpy on cached arrays, so an update costs a few
matrix-vector products over Z and D.

`LiveState` binds a session to its stored labels: `open_live` replays them,
`record_label` / `undo_label` / `persona_step` write the store first (the source
of truth) and then update the posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from hyre_engine.acquisition import PERSONAL_VARIANT, PoolScorer, get_scorer, select, varied_query
from hyre_engine.candidates import DEFAULT_FULL_POOL_MAX, CandidateSampler
from hyre_engine.numerics import (
    LABEL_A,
    PAIR_LABELS,
    SKIP,
    accuracy,
    correct,
    label_targets,
    sigmoid,
)
from hyre_engine.pca import FunctionPCA, fit_pool_pca, project_function
from hyre_engine.personal import DEFAULT_LAMBDA, PersonalModel
from hyre_engine.personal_prior import PersonalPrior
from hyre_engine.reweight import DEFAULT_BETA, Posterior, weight_entropy

if TYPE_CHECKING:
    from hyre_engine.store import EnsembleMeta, LabelRecord, SessionRecord, Store

# The values a label may take ("a" / "b"), and the stored value of a skipped pair.
LABELS = PAIR_LABELS
# Weight changes below this are float noise, not a gain.
GAIN_TOL = 1e-12
# BALD by default: the paper's active querying is slightly better than random.
DEFAULT_STRATEGY = "bald"
# Who speaks for the person: HyRe + the personal head (issue 11), or HyRe alone (the paper).
METHODS = ("personal", "hyre")
DEFAULT_METHOD = "personal"


@dataclass(frozen=True)
class LabelEvent:
    """One answered pair, scored against what the models predicted just before it.

    The scores are 1.0 when the model's P(label) was above one half, 0.0 when below,
    and 0.5 on a tie (P = 0.5), the accuracy's one tie rule.
    """

    item: int
    label: str  # "a" or "b"
    hyre_correct: float
    uniform_correct: float
    personal_correct: float | None = None  # None without the personal model


@dataclass(frozen=True)
class AccuracyCurves:
    """Accuracy after 0, 1, ... labels (held-out) or over the first 1, 2, ... labels (running).

    ``first_n`` is the number of labels of the first point. A point is None where
    there is nothing left to score (every held-out pair labelled).
    """

    first_n: int
    hyre: list[float | None]
    uniform: list[float | None]
    best_head_oracle: list[float | None] | None = None
    personal: list[float | None] | None = None  # HyRe + the personal head, when the session has it

    @property
    def n_values(self) -> list[int]:
        return list(range(self.first_n, self.first_n + len(self.hyre)))


@dataclass(frozen=True)
class LiveSnapshot:
    """Where a live session stands after its latest label."""

    weights: np.ndarray  # (n_heads,)
    weight_change: np.ndarray  # (n_heads,) weights minus those before the last label
    gained: np.ndarray  # (n_heads,) bool: heads whose weight rose with the last label
    heaviest_first: np.ndarray  # (n_heads,) head indices by decreasing weight (stable)
    effective_heads: float
    entropy: float  # nats
    max_entropy: float  # log K, the entropy of uniform weights
    head_coords: np.ndarray  # (n_heads, 2) PCA plane
    explained_variance_ratio: np.ndarray  # (n_components,)
    next_item: int | None
    n_labels: int
    running: AccuracyCurves  # prequential: predicted before each label was given
    held_out: AccuracyCurves | None = None  # persona sessions: on its pairs not labelled yet
    method: str = "hyre"  # who speaks for the person (METHODS)
    # The person's current function (the method's margins on the pool) in the PCA plane (2,).
    person_coords: np.ndarray | None = None
    # Share of pool pairs whose preferred side the personal head flips; None without it.
    flip_share: float | None = None

    @property
    def n_heads(self) -> int:
        return int(self.weights.size)

    @property
    def personal(self) -> bool:
        """Whether the personal model speaks for the person."""
        return self.method == "personal"


class LiveSession:
    """HyRe over a cached pool, updated one label at a time.

    ``logits`` is Z (n_items, n_heads): head k's reward margin r(a) - r(b) for
    each pair. ``truth`` (optional, (n_items,) of "a"/"b"/None) are a simulated
    persona's labels: with it, each step also reports held-out accuracy on the
    persona's pairs that are not labelled yet. ``prompts`` (optional, (n_items,)) turns
    on the variety rules of ``acquisition.varied_query``: never the prompt just asked
    about, and a first pair drawn by ``start`` (a seed, e.g. ``start_seed(user)``)
    among the most informative ones, on pools scored whole (a pool above ``sample_above``
    draws its candidates at random, which already varies the prompts). ``diffs`` (the
    pool's D, (n_items, dim)) and ``lam`` add the personal model (pools scored whole
    only), with the ensemble's structured ``prior`` when it has one (``pipeline.ensemble_prior``);
    ``method`` chooses who personalises ("personal" needs diffs).
    """

    def __init__(
        self,
        logits: np.ndarray,
        *,
        beta: float = DEFAULT_BETA,
        strategy: str = DEFAULT_STRATEGY,
        seed: int = 0,
        truth: np.ndarray | None = None,
        pca: FunctionPCA | None = None,
        sample_above: int | None = DEFAULT_FULL_POOL_MAX,
        prompts: np.ndarray | None = None,
        start: int | None = None,
        diffs: np.ndarray | None = None,
        lam: float = DEFAULT_LAMBDA,
        method: str | None = None,
        prior: PersonalPrior | None = None,
    ) -> None:
        if logits.ndim != 2:
            raise ValueError(f"logits must be (n_items, n_heads), got shape {logits.shape}")
        self.n_items, self.n_heads = logits.shape
        self._set_pool(logits, sample_above, seed)
        self.set_strategy(strategy)
        self.seed = seed
        self.beta = beta
        self._set_models(diffs, beta, lam, prior)
        self.set_method(method or (DEFAULT_METHOD if self.personal is not None else "hyre"))
        self.pca = pca if pca is not None else fit_pool_pca(self.logits, seed=seed)
        self.events: list[LabelEvent] = []
        self._skipped: set[int] = set()
        # items answered (labels and skips) in order: the variety rule reads the last one
        self._order: list[int] = []
        self._prompts: np.ndarray | None = None
        if prompts is not None:
            self._prompts = np.asarray(prompts, dtype=object)
            if self._prompts.shape != (self.n_items,):
                raise ValueError(f"prompts must have shape ({self.n_items},), got {self._prompts.shape}")
        self.start = start
        # weights after 0, 1, ..., n labels: the last change is highlighted
        self._weight_history: list[np.ndarray] = [self.posterior.weights]
        self._uniform = np.full(self.n_heads, 1.0 / self.n_heads)
        self._truth: np.ndarray | None = None
        if truth is not None:
            self._set_truth(truth)

    def _set_pool(self, logits: np.ndarray, sample_above: int | None, seed: int) -> None:
        """Z and how queries are scored on it: the whole pool, or a fresh sample per query."""
        # Above ``sample_above`` pairs each query scores a random sample (candidates.py),
        # and Z stays as given (a float16 memory map of 10M pairs is not copied).
        self.sampler: CandidateSampler | None = None
        self.scorer: PoolScorer | None = None
        if sample_above is not None and self.n_items > sample_above:
            self.logits = logits
            self.sampler = CandidateSampler(logits, seed=seed)
        else:
            self.logits = np.ascontiguousarray(logits, dtype=np.float32)
            self.scorer = PoolScorer(self.logits)

    def _set_models(self, diffs: np.ndarray | None, beta: float, lam: float, prior: PersonalPrior | None) -> None:
        """HyRe's posterior, owned by the personal model when there are embedding differences."""
        # The personal model owns HyRe's posterior when there is one: one w for both methods.
        self.personal: PersonalModel | None = None
        self.diffs = diffs  # kept as given, so a replay (reopen_live) can rebuild the same session
        self.prior = prior
        if diffs is not None:
            if self.sampler is not None:
                raise ValueError("the personal head needs a pool scored whole, not a sampled one")
            self.personal = PersonalModel(self.logits, diffs, beta=beta, lam=lam, prior=prior)
            self.posterior = self.personal.posterior
        else:
            self.posterior = Posterior(self.n_heads, beta=beta, loss="zero-one")
        self.lam = float(lam) if self.personal is None else self.personal.lam

    def _set_truth(self, truth: np.ndarray) -> None:
        """A persona's labels per item, and the held-out baselines they give before any label."""
        self._truth = _check_truth(truth, self.n_items)
        known = self._truth != None  # noqa: E711 (elementwise)
        y = label_targets(self._truth[known])
        self._uniform_held_out = _accuracy(self._probabilities(self._uniform)[known], y)
        head_right = (self.logits[known] > 0) == (y[:, None] == 1.0)
        self._best_head_held_out = float(head_right.mean(axis=0).max()) if known.any() else None
        self._held_out: list[float | None] = [self._uniform_held_out]
        self._held_out_personal: list[float | None] = [self._uniform_held_out]

    # -- settings --------------------------------------------------------------

    def set_strategy(self, strategy: str) -> None:
        """Choose how the next pair is picked (a query scorer's name); ValueError when unknown."""
        get_scorer(strategy)
        self.strategy = strategy

    def set_method(self, method: str) -> None:
        """Choose who personalises: "personal" (needs diffs) or "hyre"; takes effect at once."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "personal" and self.personal is None:
            raise ValueError("method 'personal' needs the pool's embedding differences (diffs)")
        self.method = method

    @property
    def has_personal(self) -> bool:
        return self.personal is not None

    # -- labelling -------------------------------------------------------------

    @property
    def n_labels(self) -> int:
        """Labels that count as evidence so far (the snapshot's ``n_labels``, without building one)."""
        return len(self.events)

    @property
    def labelled(self) -> np.ndarray:
        return np.fromiter((e.item for e in self.events), dtype=np.int64, count=len(self.events))

    @property
    def weights(self) -> np.ndarray:
        """(n_heads,) the current HyRe weights."""
        return self.posterior.weights

    @property
    def has_truth(self) -> bool:
        return self._truth is not None

    def is_answered(self, item: int) -> bool:
        """Whether ``item`` was labelled or skipped in this session."""
        return item in self._skipped or any(e.item == item for e in self.events)

    def add_label(self, item: int, label: str) -> LabelEvent:
        """Record that the person prefers ``label`` ("a"/"b") on pair ``item``."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        if not 0 <= item < self.n_items:
            raise ValueError(f"item {item} is outside the pool of {self.n_items} pairs")
        y = np.array([1.0 if label == LABEL_A else 0.0])
        z = self.logits[item].astype(np.float64)
        p = sigmoid(z)
        personal_correct = None
        if self.personal is not None:
            personal_correct = float(correct(sigmoid(self.personal.margins()[item : item + 1]), y)[0])
        event = LabelEvent(
            item=item,
            label=label,
            hyre_correct=float(correct(np.array([self.posterior.weights @ p]), y)[0]),
            uniform_correct=float(correct(np.array([p.mean()]), y)[0]),
            personal_correct=personal_correct,
        )
        if self.personal is not None:
            self.personal.add(item, y[0])  # w (the shared posterior) and v
        else:
            self.posterior.add(z[None, :], y)
        self._weight_history.append(self.posterior.weights)
        self.events.append(event)
        self._skipped.discard(item)
        if self.sampler is not None:
            self.sampler.mark_unavailable([item])
        self._order.append(item)
        if self._truth is not None:
            self._held_out.append(self._held_out_accuracy())
            self._held_out_personal.append(self._held_out_accuracy(personal=True))
        return event

    def skip(self, item: int) -> None:
        """Do not ask about ``item`` again in this session (it is not a label)."""
        if item not in self._skipped:
            self._skipped.add(item)
            self._order.append(item)
        if self.sampler is not None:
            self.sampler.mark_unavailable([item])

    def unskip(self, item: int) -> None:
        """Undo a skip: ``item`` may be asked again."""
        if item in self._skipped:
            self._skipped.discard(item)
            _drop_last(self._order, item)
        if self.sampler is not None and not any(e.item == item for e in self.events):
            self.sampler.mark_available([item])

    def undo(self) -> LabelEvent | None:
        """Remove the last label; returns it, or None when there is none."""
        if not self.events:
            return None
        if self.personal is not None:
            self.personal.undo()  # w and v exactly as before the label
        else:
            self.posterior.undo()
        event = self.events.pop()
        _drop_last(self._order, event.item)
        if self.sampler is not None and not self.is_answered(event.item):
            self.sampler.mark_available([event.item])
        if self._truth is not None:
            self._held_out.pop()
            self._held_out_personal.pop()
        self._weight_history.pop()
        return event

    def replay(self, labels: list[tuple[int, str]]) -> None:
        """Re-apply stored labels in order (a reloaded page continues its session)."""
        for item, label in labels:
            if label not in LABELS:  # a skip, tie, both bad or can't judge: no evidence
                self.skip(item)
            else:
                self.add_label(item, label)

    def persona_label(self, item: int) -> str | None:
        """The simulated persona's label ("a"/"b") on ``item``, None where it never judged it."""
        if self._truth is None:
            raise ValueError("this session has no persona labels (truth)")
        return self._truth[item]

    # -- reading ---------------------------------------------------------------

    def _scores(self) -> np.ndarray:
        """(n_items,) query scores of the strategy under the method's posterior."""
        rng = np.random.default_rng(self.seed + len(self.events))
        strategy = PERSONAL_VARIANT.get(self.strategy, self.strategy) if self.personal_speaks else self.strategy
        if strategy == "random" or not self.personal_speaks:
            return self.scorer.score(strategy, self.posterior.weights, rng=rng)
        return self.personal.score(strategy)

    @property
    def personal_speaks(self) -> bool:
        return self.method == "personal" and self.personal is not None

    def margins(self) -> np.ndarray:
        """The person's current margins on the pool (n_items,): the method's function."""
        if self.personal_speaks:
            return self.personal.margins()
        if self.personal is not None:
            return self.personal.head_mean()  # HyRe's point: the weighted average of the heads
        return self.logits.astype(np.float64) @ self.posterior.weights

    def next_item(self) -> int | None:
        """The pair to ask about next under the current model, or None when all are done."""
        exclude = set(self.labelled.tolist()) | self._skipped
        if len(exclude) >= self.n_items:
            return None
        if self.sampler is not None:  # one fresh draw per answered pair: a replay repeats it
            return self.sampler.next_item(self.strategy, self.posterior.weights, len(exclude))
        excluded = np.fromiter(exclude, dtype=np.int64)
        first = self._prompts is not None and not self._order and self.start is not None
        strategy = PERSONAL_VARIANT.get(self.strategy, self.strategy)
        if self.personal_speaks and strategy != "random" and not first:
            # The personal model's own pick rules out most pairs before their Laplace
            # variance; the same row as select / varied_query on the whole pool's scores.
            return self.personal.next_item(strategy, exclude=~self._eligible(excluded), seed=self.seed)
        scores = self._scores()
        if self._prompts is None:
            return int(select(scores, 1, exclude=excluded, seed=self.seed)[0])
        return varied_query(
            scores, self._prompts, exclude=excluded, first=first,
            last_prompt=self._prompts[self._order[-1]] if self._order else None,
            seed=self.start if first else self.seed,
        )

    def _eligible(self, excluded: np.ndarray) -> np.ndarray:
        """Pairs a non-first query may pick (n_items,) bool: varied_query's rule, never the
        prompt just asked about while another is left."""
        eligible = np.ones(self.n_items, dtype=bool)
        eligible[excluded] = False
        if self._prompts is not None and self._order:
            other = eligible & (self._prompts != self._prompts[self._order[-1]])
            if other.any():
                eligible = other
        return eligible

    def snapshot(self) -> LiveSnapshot:
        w = self.posterior.weights
        n = len(self.events)
        change = w - self._weight_history[-2] if n else np.zeros_like(w)
        steps = np.arange(1, n + 1)
        has_personal = self.personal is not None
        running = AccuracyCurves(
            first_n=1,
            hyre=(np.cumsum([e.hyre_correct for e in self.events]) / steps).tolist(),
            uniform=(np.cumsum([e.uniform_correct for e in self.events]) / steps).tolist(),
            personal=(np.cumsum([e.personal_correct for e in self.events]) / steps).tolist()
            if has_personal else None,
        )
        held_out = None
        if self._truth is not None:
            held_out = AccuracyCurves(
                first_n=0,
                hyre=list(self._held_out),
                uniform=[self._uniform_held_out] * (n + 1),
                best_head_oracle=[self._best_head_held_out] * (n + 1),
                personal=list(self._held_out_personal) if has_personal else None,
            )
        return LiveSnapshot(
            weights=w,
            weight_change=change,
            gained=change > GAIN_TOL,
            heaviest_first=np.argsort(-w, kind="stable"),
            effective_heads=self.posterior.effective_heads,
            entropy=weight_entropy(w),
            max_entropy=float(np.log(self.n_heads)),
            head_coords=self.pca.head_coords_[:, :2],
            explained_variance_ratio=self.pca.explained_variance_ratio_,
            next_item=self.next_item(),
            n_labels=n,
            running=running,
            held_out=held_out,
            method=self.method,
            person_coords=project_function(self.pca, self.margins())[:2] if self.sampler is None else None,
            flip_share=self.personal.flip_share() if has_personal else None,
        )

    # -- helpers ---------------------------------------------------------------

    def _held_out_accuracy(self, *, personal: bool = False) -> float | None:
        assert self._truth is not None
        if personal and self.personal is None:
            return None
        known = self._truth != None  # noqa: E711 (elementwise)
        known[self.labelled] = False
        if not known.any():
            return None
        p = sigmoid(self.personal.margins()) if personal else self._probabilities(self.posterior.weights)
        return _accuracy(p[known], label_targets(self._truth[known]))

    @property
    def candidates_per_query(self) -> int | None:
        """Pairs scored per query when queries come from a sample, else None (the whole pool)."""
        return None if self.sampler is None else self.sampler.n_candidates

    def _probabilities(self, w: np.ndarray) -> np.ndarray:
        """Weighted P(A preferred) (n_items,) on the whole pool."""
        if self.scorer is not None:
            return self.scorer.probabilities(w)
        return self.sampler.probabilities(w)


def _drop_last(order: list[int], item: int) -> None:
    """Remove the last occurrence of ``item`` from ``order``, in place."""
    del order[len(order) - 1 - order[::-1].index(item)]


def _accuracy(prob_a: np.ndarray, y: np.ndarray) -> float | None:
    """numerics.accuracy (a tie counts half), None when there is nothing to score."""
    return accuracy(prob_a, y) if len(prob_a) else None


def _check_truth(truth: np.ndarray, n_items: int) -> np.ndarray:
    truth = np.asarray(truth, dtype=object)
    if truth.shape != (n_items,):
        raise ValueError(f"truth must have shape ({n_items},), got {truth.shape}")
    bad = {str(t) for t in truth.tolist() if t is not None and t not in LABELS}
    if bad:
        raise ValueError(f"truth labels must be 'a', 'b' or None, got {sorted(bad)}")
    return truth.copy()


# ---------------------------------------------------------------- bound to the store


def group_truth(store: Store, pool_id: str, group: str, n_pairs: int) -> np.ndarray:
    """(n_pairs,) object array: the group's label "a"/"b" per row_index, None where it has none."""
    labels = store.pool_labels(pool_id, groups=[group])
    truth = np.full(n_pairs, None, dtype=object)
    # the last label of a row wins, as in the order the file listed them
    truth[labels["row_index"].to_numpy(dtype=np.int64)] = labels["label"].to_numpy(dtype=object)
    return truth


@dataclass
class LiveState:
    """A LiveSession bound to a stored session; ``n_rows`` counts its stored rows (labels and skips)."""

    session_id: str
    live: LiveSession
    pair_ids: np.ndarray  # (n_items,) pair_id per row_index, to write labels
    n_rows: int
    beta: float
    lam: float = DEFAULT_LAMBDA
    revision: int = 0  # the store's session_revision when this state last matched it
    prior_key: str | None = None  # the structured prior's key (PersonalPrior.key); None: isotropic
    last_event: LabelEvent | None = None
    last_item: int | None = None
    last_label: str | None = None

    strategy = property(attrgetter("live.strategy"), doc="The live session's query strategy.")
    method = property(attrgetter("live.method"), doc="Who personalises: 'personal' or 'hyre'.")

    def is_current(self, store: Store, session_id: str, beta: float, lam: float | None = None) -> bool:
        """Whether this state still mirrors the stored session (same id, beta, lambda, rows and audit events).

        The revision catches what a row count cannot: an old label edited, or one deleted and
        another added, in this tab or another.
        """
        return self.matches(store.get_session(session_id), beta, lam)

    def matches(self, session: SessionRecord, beta: float, lam: float | None = None,
                prior: PersonalPrior | None | bool = False) -> bool:
        """`is_current` against a session record already read (the Label page reads it once per run);
        ``prior`` (unless False: not compared) must be the one the state's personal head uses,
        when it has one."""
        return (self.session_id == session.session_id and self.beta == beta
                and (lam is None or self.lam == lam)
                and (prior is False or not self.live.has_personal or self.prior_key == prior_key(prior))
                and self.n_rows == session.n_labels and self.revision == session.revision)


def prior_key(prior: PersonalPrior | None) -> str | None:
    """What tells two personal-head priors apart: None for the isotropic head (None or rho 0)."""
    return None if prior is None or prior.isotropic else prior.key


def ensemble_beta(meta: EnsembleMeta | None) -> float:
    """An ensemble's reweighting temperature: the one calibrated at build time, else the paper's."""
    return DEFAULT_BETA if meta is None else meta.beta


def session_beta(store: Store, session_id: str) -> float:
    """The beta a labelling session personalises with, on every page that replays it.

    The session's own choice (set while labelling) wins; otherwise its ensemble's
    calibrated beta. Every page computes a session's weights with this one value, so
    the same person has the same weights wherever they are shown.
    """
    session = store.get_session(session_id)
    return settings_beta(session.settings, None if "beta" in (session.settings or {}) else _meta(store, session))


def settings_beta(settings: dict[str, Any] | None, meta: EnsembleMeta | None) -> float:
    """`session_beta` from a session's settings and its ensemble's meta, both already read."""
    settings = settings or {}
    return float(settings["beta"]) if "beta" in settings else ensemble_beta(meta)


def _meta(store: Store, session: SessionRecord) -> EnsembleMeta:
    return store.get_ensemble(session.ensemble_id, with_weights=False).meta


def ensemble_lambda(meta: EnsembleMeta | None) -> float:
    """An ensemble's personal-head prior precision: the one calibrated with beta, else the default."""
    return DEFAULT_LAMBDA if meta is None else meta.lam_or_default


def session_lambda(store: Store, session_id: str) -> float:
    """The lambda a session's personal head uses on every page: its own setting, else its ensemble's."""
    session = store.get_session(session_id)
    return settings_lambda(session.settings, None if "lambda" in (session.settings or {}) else _meta(store, session))


def settings_lambda(settings: dict[str, Any] | None, meta: EnsembleMeta | None) -> float:
    """`session_lambda` from a session's settings and its ensemble's meta, both already read."""
    settings = settings or {}
    return float(settings["lambda"]) if "lambda" in settings else ensemble_lambda(meta)


def session_prior(store: Store, session_id: str) -> PersonalPrior | None:
    """The structured prior a session's personal head uses on every page: its ensemble's
    (calibrated with lambda), None for the isotropic head."""
    return store.personal_prior(store.get_session(session_id).ensemble_id)


def session_method(store: Store, session_id: str) -> str:
    """Who personalises the session: its setting ("personal" or "hyre"), else DEFAULT_METHOD."""
    return settings_method(store.get_session(session_id).settings)


def settings_method(settings: dict[str, Any] | None) -> str:
    """`session_method` from a session's settings already read."""
    method = (settings or {}).get("method", DEFAULT_METHOD)
    return method if method in METHODS else DEFAULT_METHOD


def stored_rows(store: Store, session_id: str) -> int:
    """How many rows (labels and skips) the store holds for the session."""
    return len(store.session_labels(session_id))


def open_live(
    store: Store,
    session_id: str,
    logits: np.ndarray,
    pair_ids: np.ndarray,
    *,
    beta: float,
    strategy: str,
    **options: Any,
) -> LiveState:
    """A LiveSession with the session's stored labels replayed in order.

    ``options``: the LiveSession's other keywords (``truth``, ``pca``, ``prompts`` and
    ``start`` for variety, ``diffs``, ``lam``, ``prior`` and ``method`` for the personal model);
    without ``diffs`` the session personalises with HyRe whatever ``method`` says; with
    them and no ``prior``, its personal head has its ensemble's (``session_prior``).
    """
    rows = store.session_labels(session_id)
    if options.get("diffs") is None:
        options["method"] = "hyre"
    elif "prior" not in options:
        options["prior"] = session_prior(store, session_id)
    live = LiveSession(logits, beta=beta, strategy=strategy, **options)
    live.replay(list(zip(rows["row_index"].astype(int).tolist(), rows["label"].tolist(), strict=True)))
    state = LiveState(session_id, live, np.asarray(pair_ids, dtype=object), len(rows), beta, live.lam,
                      revision=store.session_revision(session_id),
                      prior_key=prior_key(live.prior))
    if len(rows):
        state.last_item = int(rows["row_index"].iloc[-1])
        state.last_label = str(rows["label"].iloc[-1])
        if state.last_label in LABELS:
            # the replayed event: a reload shows the same feedback line as before it
            state.last_event = live.events[-1]
    return state


def record_label(store: Store, state: LiveState, item: int, label: str) -> LabelEvent | None:
    """Store first (the source of truth), then update the live posterior; None for a judgement
    that prefers neither side (skip, tie, both bad, can't judge), which the heads never see."""
    store.add_session_label(state.session_id, row_index=item, pair_id=str(state.pair_ids[item]), label=label)
    state.n_rows += 1
    state.revision += 1  # one audit event
    state.last_item, state.last_label = item, label
    if label not in LABELS:  # a skip, tie, both bad or can't judge: no evidence
        state.live.skip(item)
        state.last_event = None
        return None
    state.last_event = state.live.add_label(item, label)
    return state.last_event


def undo_label(store: Store, state: LiveState) -> LabelRecord | None:
    """Remove the session's last row (label or skip) from the store and the posterior."""
    row = store.undo_session_label(state.session_id)
    if row is None:
        return None
    state.n_rows -= 1
    state.revision += 1
    if row.label not in LABELS:
        state.live.unskip(row.row_index)
    else:
        state.live.undo()
    state.last_event, state.last_item, state.last_label = None, None, None
    return row


def persona_step(store: Store, state: LiveState) -> bool:
    """The persona answers the pair the strategy picks (a skip where it never judged it).

    False when no pair is left.
    """
    item = state.live.next_item()
    if item is None:
        return False
    label = state.live.persona_label(item)
    record_label(store, state, item, SKIP if label is None else label)
    return True


def reopen_live(store: Store, state: LiveState) -> LiveState:
    """A fresh LiveState of the same session and settings, replayed from the store.

    What an edit or a delete of an old label leads to: the posterior, the accuracy
    curves and the next query are exactly those of the stored labels replayed in order.
    """
    old = state.live
    return open_live(
        store, state.session_id, old.logits, state.pair_ids, beta=state.beta, strategy=old.strategy,
        truth=old._truth, pca=old.pca, prompts=old._prompts, start=old.start,
        diffs=old.diffs, lam=state.lam, method=old.method, prior=old.prior,
    )


def change_label(store: Store, state: LiveState, seq: int, label: str | None) -> LiveState:
    """Change (``label``) or delete (None) the session's stored row ``seq``; returns the replayed state.

    The store keeps the change in its audit trail; the old state is stale afterwards.
    """
    if label is None:
        store.delete_session_label(state.session_id, seq)
    else:
        store.edit_session_label(state.session_id, seq, label=label)
    return reopen_live(store, state)
