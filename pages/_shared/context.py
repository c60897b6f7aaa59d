"""What every page works on: the cached store and arrays, and the current pool, ensemble and user.

Heavy objects are `st.cache_resource` keyed by the database path and ids, so every
browser session shares one copy. The engine computes; this module only caches
what it returns and picks what this browser tab works on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from hyre_engine import jobs, live, profiles
from hyre_engine.candidates import DEFAULT_FULL_POOL_MAX
from hyre_engine.demo import DEMO_POOL_NAME
from hyre_engine.demo import needs_build as demo_needs_build
from hyre_engine.device import describe_device
from hyre_engine.ensemble import Ensemble, fingerprint
from hyre_engine.pca import FunctionPCA, fit_pool_pca
from hyre_engine.safe_text import escape_markdown
from hyre_engine.store import (
    EnsembleRecord,
    PoolRecord,
    Store,
    StoreLockedError,
    default_db_path,
    shared_store,
)
from pages._shared import signin
from pages._shared.first_launch import first_launch_screen
from pages._shared.signin import USER_INPUT_KEY, USER_PARAM  # noqa: F401 (the pages import them here)

if TYPE_CHECKING:
    import numpy as np

    from hyre_engine.personal_prior import PersonalPrior

# st.session_state keys owned by this module.
CONTEXT_KEY = "hyre_context"
POOL_KEY = "hyre_pool_id"
ENSEMBLE_KEY = "hyre_ensemble_id"
# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> Store:
    """One Store per database file for the whole server (it is thread-safe): the one its
    server jobs use too (a first launch opens it before any page runs)."""
    return shared_store(path)


def store() -> Store:
    """The Store of $HYRE_DB (or the default file)."""
    return get_store(default_db_path())


@st.cache_resource(show_spinner=False)
def device_name() -> str:
    return describe_device()


@dataclass(frozen=True)
class PoolArrays:
    """What the pages read for one (ensemble, pool): Z and its function-space PCA."""

    logits: np.ndarray  # (n_items, n_heads) Z, read-only
    pca: FunctionPCA
    distinct_heads: int  # diversity.distinct_heads on the pool: heads correlating > 0.98 count once


@st.cache_resource(show_spinner=False, max_entries=8)
def pool_arrays(path: str, ensemble_id: str, pool_id: str, n_pairs: int) -> PoolArrays:
    """Z and its PCA; LookupError when Z is not cached for this pool size (``n_pairs`` is in the key)."""
    # A big pool's sharded Z is memory-mapped, not copied: the page cache shares it.
    big = n_pairs > DEFAULT_FULL_POOL_MAX
    logits = get_store(path).get_head_predictions(ensemble_id, pool_id, mmap=big)
    if logits is None or logits.shape[0] != n_pairs:
        # An exception is not cached: the next call looks again once Z is built.
        raise LookupError(f"no head predictions of ensemble {ensemble_id} for pool {pool_id}")
    if not big:
        # one read-only float32 copy shared by every session: the live loop's own dtype
        logits = logits.astype("float32", order="C")
        logits.setflags(write=False)
    from hyre_engine.diversity import distinct_heads  # scipy: only once Z is there

    return PoolArrays(logits=logits, pca=fit_pool_pca(logits), distinct_heads=distinct_heads(logits).n_distinct)


@st.cache_resource(show_spinner="Reading the pool's embedding differences…", max_entries=8)
def pool_diffs(path: str, backbone_id: str, pool_id: str, n_pairs: int) -> np.ndarray | None:
    """The pool's D (n_pairs, dim) for the personal head, read-only; None where it cannot be had
    (a pool too big to score whole, or embeddings this store does not hold)."""
    if n_pairs > DEFAULT_FULL_POOL_MAX:
        return None
    from hyre_engine.pipeline import pool_differences

    try:
        diffs = pool_differences(get_store(path), pool_id, backbone_id)
    except (KeyError, ValueError):
        return None
    if diffs is None or diffs.shape[0] != n_pairs:
        return None
    diffs.setflags(write=False)
    return diffs


@st.cache_resource(show_spinner=False, max_entries=8)
def personal_prior(path: str, ensemble_id: str, rho: float | None) -> PersonalPrior | None:
    """The ensemble's structured prior for the personal head (None: isotropic), once per
    (ensemble, rho): the same object every run, so its D T is computed once per pool."""
    return get_store(path).personal_prior(ensemble_id)


@st.cache_resource(show_spinner=False, max_entries=8)
def pool_pairs(path: str, pool_id: str, n_pairs: int) -> pd.DataFrame:
    """The pool's pairs (row_index order); shared by all sessions, so treat as read-only."""
    return get_store(path).pool_pairs(pool_id, with_meta=False)


@st.cache_resource(show_spinner=False, max_entries=8)
def pairs_with_meta(path: str, pool_id: str, n_pairs: int) -> pd.DataFrame:
    """The pool's pairs with their meta dicts (row_index order); read-only."""
    return get_store(path).pool_pairs(pool_id, with_meta=True)


@st.cache_resource(show_spinner=False, max_entries=32)
def group_truth(path: str, pool_id: str, group: str, n_pairs: int) -> np.ndarray:
    """(n_pairs,) the group's label "a"/"b" per row_index, None where it has none."""
    return live.group_truth(get_store(path), pool_id, group, n_pairs)


@st.cache_data(show_spinner=False, ttl=60)
def pool_personas(path: str, pool_id: str) -> list[profiles.PersonaInfo]:
    return profiles.pool_personas(get_store(path), pool_id)


@st.cache_resource(show_spinner=False, max_entries=4)
def ensemble_model(path: str, ensemble_id: str) -> Ensemble:
    """The stored ensemble as a torch model (CPU, eval mode), once per server."""
    from hyre_engine.pipeline import load_model

    return load_model(get_store(path), ensemble_id)


@st.cache_resource(show_spinner=False, max_entries=4)
def ensemble_fingerprint(path: str, ensemble_id: str) -> str:
    """fingerprint() of the stored ensemble: what a profile must match."""
    return fingerprint(ensemble_model(path, ensemble_id))


@st.cache_resource(show_spinner="Loading the embedding model…", max_entries=2)
def scoring_backbone(backbone_id: str, path: str | None = None):
    """The backbone the ensemble was trained on (``path``: a fine-tuned one's folder);
    ValueError when this machine does not have it."""
    return profiles.load_scoring_backbone(backbone_id, path)


# ---------------------------------------------------------------- context


def backbone_label(backbone_id: str) -> str:
    """'all-MiniLM-L6-v2@6ad9.../max256/...' -> 'all-MiniLM-L6-v2'."""
    return backbone_id.split("@", 1)[0]


@dataclass(frozen=True)
class Context:
    """The pool, ensemble and user the pages work on in this run."""

    db_path: str
    pool: PoolRecord
    ensemble: EnsembleRecord  # read without its weights
    user: str

    @property
    def store(self) -> Store:
        return get_store(self.db_path)

    @property
    def pool_id(self) -> str:
        return self.pool.pool_id

    @property
    def pool_name(self) -> str:
        return self.pool.name

    @property
    def ensemble_id(self) -> str:
        return self.ensemble.ensemble_id

    @property
    def backbone_id(self) -> str:
        return self.ensemble.backbone_id

    @property
    def config(self) -> dict[str, Any]:
        return self.ensemble.config or {}

    @property
    def beta(self) -> float:
        """The ensemble's reweighting temperature (calibrated at build time, else the paper's)."""
        return live.ensemble_beta(self.ensemble.meta)

    @property
    def lam(self) -> float:
        """The personal head's prior precision (calibrated with beta at build time, else the default)."""
        return live.ensemble_lambda(self.ensemble.meta)

    def prior(self) -> PersonalPrior | None:
        """The personal head's structured prior (calibrated with lambda; None: isotropic)."""
        return personal_prior(self.db_path, self.ensemble_id, self.ensemble.meta.rho)

    @property
    def distinct_heads(self) -> int:
        """Distinct head functions on the pool (clusters of heads correlating above 0.98)."""
        return self.arrays().distinct_heads

    @property
    def train_groups(self) -> list[str] | None:
        groups = self.ensemble.meta.train_groups
        return None if groups is None else list(groups)

    @property
    def n_pairs(self) -> int:
        return self.pool.n_pairs

    @property
    def n_heads(self) -> int:
        return self.ensemble.n_heads

    def arrays(self) -> PoolArrays:
        return pool_arrays(self.db_path, self.ensemble_id, self.pool_id, self.n_pairs)

    def pairs(self) -> pd.DataFrame:
        return pool_pairs(self.db_path, self.pool_id, self.n_pairs)

    @property
    def dim(self) -> int | None:
        """The backbone's embedding size (what a personal head's v has), None when unknown."""
        model_config = self.ensemble.meta.model_config or {}
        return model_config.get("input_dim")

    def diffs(self) -> np.ndarray | None:
        """The pool's embedding differences D, or None (then every page personalises with HyRe only)."""
        return pool_diffs(self.db_path, self.backbone_id, self.pool_id, self.n_pairs)

    def pair_ids(self) -> np.ndarray:
        return self.pairs()["pair_id"].to_numpy(dtype=object)

    def truth(self, group: str) -> np.ndarray:
        return group_truth(self.db_path, self.pool_id, group, self.n_pairs)

    def personas(self) -> list[profiles.PersonaInfo]:
        return pool_personas(self.db_path, self.pool_id)

    def sources(self) -> list[profiles.WeightSource]:
        return profiles.list_sources(
            self.store, pool_id=self.pool_id, ensemble_id=self.ensemble_id, personas=self.personas()
        )

    def weights_of(self, source: profiles.WeightSource) -> profiles.Weights:
        return profiles.source_weights(
            self.store, source, logits=self.arrays().logits, pair_ids=self.pair_ids(),
            pool_id=self.pool_id, ensemble_id=self.ensemble_id, truth=self.truth, diffs=self.diffs(),
        )


def current_user() -> str:
    """The name this tab labels as: the signed-in user, else the name in ?user= or this tab's anonymous one."""
    user = signin.identity()
    return user.name if user is not None else signin.local_name(st.query_params.get(USER_PARAM))


def _ready_ensemble(path: str, pool: PoolRecord, ensembles: pd.DataFrame,
                    wanted: str | None) -> EnsembleRecord | None:
    """The wanted ensemble of the pool if its Z is cached, else the newest that has one."""
    ids = ensembles.loc[ensembles["pool_id"] == pool.pool_id, "ensemble_id"].tolist()[::-1]
    for ensemble_id in sorted(ids, key=lambda e: e != wanted):
        try:
            pool_arrays(path, ensemble_id, pool.pool_id, pool.n_pairs)
        except LookupError:
            continue
        return get_store(path).get_ensemble(ensemble_id, with_weights=False)
    return None


def resolve_context() -> Context | None:
    """Pick the pool and ensemble of this session (building the demo on a fresh install).

    Returns None when the page shows a build in progress or a problem instead.
    """
    path = default_db_path()
    try:
        db = get_store(path)
    except StoreLockedError as exc:
        st.error(f"HyRe Studio cannot open its store: {exc}.", icon=":material/lock:")
        return None
    pools = db.list_pools()
    ensembles = db.reweightable_ensembles()
    with_ensembles = [p for p in pools["pool_id"] if p in set(ensembles["pool_id"])]
    if not with_ensembles:
        first_launch_screen(path, needs_build=lambda: demo_needs_build(db))
        return None
    wanted_pool = st.session_state.get(POOL_KEY)
    if wanted_pool not in with_ensembles:
        demo = pools[pools["name"] == DEMO_POOL_NAME]["pool_id"].tolist()
        wanted_pool = demo[0] if demo and demo[0] in with_ensembles else with_ensembles[-1]
    pool = db.get_pool(wanted_pool)
    ensemble = _ready_ensemble(path, pool, ensembles, st.session_state.get(ENSEMBLE_KEY))
    if ensemble is None:
        if pool.name == DEMO_POOL_NAME:
            # an interrupted first build: finish it (everything done is reused)
            first_launch_screen(path, needs_build=lambda: demo_needs_build(db))
        elif jobs.REGISTRY.running(path, pool.pool_id) is not None:
            st.info(f"Pool '{escape_markdown(pool.name)}' is being built on the server: it is ready when "
                    "the build ends (the Data page shows its progress).", icon=":material/hourglass_top:")
        else:
            st.error(
                f"Pool '{escape_markdown(pool.name)}' has an ensemble but no cached head predictions yet. "
                "Build it first: `python -m hyre_engine build --pool FILE`."
            )
        return None
    st.session_state[POOL_KEY] = pool.pool_id
    st.session_state[ENSEMBLE_KEY] = ensemble.ensemble_id
    return Context(db_path=path, pool=pool, ensemble=ensemble, user=current_user())


def get_context() -> Context | None:
    """The context app.py resolved for this run (pages call this)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx if isinstance(ctx, Context) else resolve_context()


def forget_context() -> None:
    """Resolve the context again on the next run (after a switch or a deletion)."""
    st.session_state.pop(CONTEXT_KEY, None)
