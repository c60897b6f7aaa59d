"""What every page shares: the cached store and arrays, the current pool /
ensemble / user, the sidebar, the first-launch build, and the live labelling
helpers.

Heavy objects are `st.cache_resource` keyed by the database path and ids, so
every browser session shares one copy. Labels live in DuckDB (the source of
truth); a `LiveState` in `st.session_state` is only a fast view of them,
rebuilt by replaying the stored labels whenever it is missing or stale.

The live helpers (`open_live`, `record_label`, `undo_label`, `stored_rows`)
and the figure builders never call streamlit, so bench/bench_live.py times
exactly the code path the Label page runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hyre_engine.demo import CROWD_GROUP, load_personas
from hyre_engine.device import describe_device
from hyre_engine.live import LabelEvent, LiveSession, Panels, function_pca
from hyre_engine.pca import FunctionPCA
from hyre_engine.pipeline import DEMO_POOL_NAME, ensure_demo
from hyre_engine.store import Store, StoreLockedError, default_db_path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
STYLE_FILE = ASSETS_DIR / "style.css"

# The user name travels in the URL (?user=...) so a reload or a bookmark keeps it.
USER_PARAM = "user"
# Everyone who has not typed a name labels as this user.
DEFAULT_USER = "guest"
# Long enough for a full name, short enough for the sidebar.
MAX_USER_CHARS = 40
# st.session_state keys owned by this module.
CONTEXT_KEY = "hyre_context"
POOL_KEY = "hyre_pool_id"
ENSEMBLE_KEY = "hyre_ensemble_id"
USER_INPUT_KEY = "hyre_user_input"

# Share of the first-launch progress bar given to each build stage (embedding
# dominates on a CPU, training second; caching Z is a single forward pass).
STAGE_SPANS = {"embed": (0.0, 0.45), "train": (0.45, 0.95), "predict": (0.95, 1.0)}
STAGE_TEXT = {
    "embed": "Embedding the demo texts",
    "train": "Training the reward heads",
    "predict": "Caching the head predictions",
}

# Chart colours: the theme's indigo for heads, a contrasting amber for gainers.
COLOR_HEAD = "#4F46E5"
COLOR_GAIN = "#F59E0B"
COLOR_UNIFORM = "#9CA3AF"
COLOR_ORACLE = "#10B981"
# Height of the three live charts in pixels: three side by side fit a laptop screen.
CHART_HEIGHT = 270
# Plotly's mode bar only distracts in a live panel.
PLOTLY_CONFIG = {"displayModeBar": False}
# Weight changes below this are float noise, not a gain.
GAIN_TOL = 1e-12


# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> Store:
    """One Store per database file for the whole server (it is thread-safe)."""
    return Store(path)


def store() -> Store:
    """The Store of $HYRE_DB (or the default file)."""
    return get_store(default_db_path())


@st.cache_resource(show_spinner=False)
def _build_lock(path: str) -> threading.Lock:
    # Two tabs opening a fresh install must not build the demo twice at once.
    return threading.Lock()


@st.cache_resource(show_spinner=False)
def device_name() -> str:
    return describe_device()


@dataclass(frozen=True)
class PoolArrays:
    """What the live loop reads for one (ensemble, pool): Z and its PCA."""

    logits: np.ndarray  # (n_items, n_heads) Z, read-only
    pca: FunctionPCA


@st.cache_resource(show_spinner=False, max_entries=8)
def pool_arrays(path: str, ensemble_id: str, pool_id: str, n_pairs: int) -> PoolArrays:
    """Z and its function-space PCA; LookupError when Z is not cached for this pool size.

    ``n_pairs`` is part of the key so that a pool that grew is read again.
    """
    logits = get_store(path).get_head_predictions(ensemble_id, pool_id)
    if logits is None or logits.shape[0] != n_pairs:
        # An exception is not cached: the next call looks again once Z is built.
        raise LookupError(f"no head predictions of ensemble {ensemble_id} for pool {pool_id}")
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    logits.setflags(write=False)
    return PoolArrays(logits=logits, pca=function_pca(logits))


@st.cache_resource(show_spinner=False, max_entries=8)
def pool_pairs(path: str, pool_id: str, n_pairs: int) -> pd.DataFrame:
    """The pool's pairs (row_index order); shared by all sessions, so treat as read-only."""
    return get_store(path).pool_pairs(pool_id, with_meta=False)


@st.cache_resource(show_spinner=False, max_entries=32)
def group_truth(path: str, pool_id: str, group: str, n_pairs: int) -> np.ndarray:
    """(n_pairs,) object array: the group's label "a"/"b" per row_index, None where it has none."""
    labels = get_store(path).pool_labels(pool_id, groups=[group])
    truth = np.full(n_pairs, None, dtype=object)
    # the last label of a row wins, as in the order the file listed them
    truth[labels["row_index"].to_numpy(dtype=np.int64)] = labels["label"].to_numpy(dtype=object)
    return truth


@dataclass(frozen=True)
class PersonaInfo:
    id: str
    name: str
    description: str


@st.cache_data(show_spinner=False, ttl=60)
def pool_personas(path: str, pool_id: str) -> list[PersonaInfo]:
    """The simulated users of a pool: its label groups other than the training crowd."""
    groups = get_store(path).pool_groups(pool_id)
    known = {p.id: p for p in load_personas()}
    out = []
    for group in groups["group"].dropna().astype(str):
        if group == CROWD_GROUP:
            continue
        persona = known.get(group)
        if persona is not None:
            out.append(PersonaInfo(group, persona.name, persona.description))
        else:
            out.append(PersonaInfo(group, group, f"The labels of group '{group}' in this pool."))
    return out


# ---------------------------------------------------------------- context


@dataclass(frozen=True)
class Context:
    """The pool, ensemble and user the pages work on in this run."""

    db_path: str
    pool: dict[str, Any]  # Store.get_pool: pool_id, name, n_pairs, n_labels, ...
    ensemble: dict[str, Any]  # a Store.list_ensembles row: ensemble_id, backbone_id, config, meta
    user: str

    @property
    def store(self) -> Store:
        return get_store(self.db_path)

    @property
    def pool_id(self) -> str:
        return self.pool["pool_id"]

    @property
    def ensemble_id(self) -> str:
        return self.ensemble["ensemble_id"]

    @property
    def n_pairs(self) -> int:
        return int(self.pool["n_pairs"])

    @property
    def n_heads(self) -> int:
        return int(self.ensemble["config"].get("n_heads", 0))

    def arrays(self) -> PoolArrays:
        return pool_arrays(self.db_path, self.ensemble_id, self.pool_id, self.n_pairs)

    def pairs(self) -> pd.DataFrame:
        return pool_pairs(self.db_path, self.pool_id, self.n_pairs)


def clean_user(name: str | None) -> str:
    """A user name fit for the store and the URL: trimmed, bounded, never empty."""
    name = " ".join((name or "").split())[:MAX_USER_CHARS]
    return name or DEFAULT_USER


def current_user() -> str:
    """The user of this tab, from ?user= in the URL (kept there so a reload keeps it)."""
    raw = st.query_params.get(USER_PARAM)
    if raw is None:
        # Switching pages clears the query string: this tab's name is still in
        # its session state, so keep labelling as the same person.
        raw = st.session_state.get(USER_INPUT_KEY)
    user = clean_user(raw)
    if st.query_params.get(USER_PARAM) != user:
        st.query_params[USER_PARAM] = user
    return user


def backbone_label(backbone_id: str) -> str:
    """'all-MiniLM-L6-v2@6ad9.../max256/...' -> 'all-MiniLM-L6-v2'."""
    return backbone_id.split("@", 1)[0]


def ensembles_for_pages(db: Store) -> pd.DataFrame:
    """The ensembles the pages can work on: HyRe needs at least two heads.

    An evaluation stores a one-head `single` baseline next to the real ensemble;
    it is a reference model, never something to reweight.
    """
    ensembles = db.list_ensembles()
    if ensembles.empty:
        return ensembles
    heads = ensembles["config"].map(lambda cfg: int((cfg or {}).get("n_heads", 0)))
    return ensembles[heads >= 2]


def _ready_ensemble(path: str, pool: dict[str, Any], ensembles: pd.DataFrame, wanted: str | None):
    """The wanted ensemble of the pool if its Z is cached, else the newest that has one."""
    rows = ensembles[ensembles["pool_id"] == pool["pool_id"]].iloc[::-1]
    order = sorted(range(len(rows)), key=lambda i: rows.iloc[i]["ensemble_id"] != wanted)
    for i in order:
        row = rows.iloc[i].to_dict()
        try:
            pool_arrays(path, row["ensemble_id"], pool["pool_id"], int(pool["n_pairs"]))
        except LookupError:
            continue
        return row
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
    ensembles = ensembles_for_pages(db)
    with_ensembles = [p for p in pools["pool_id"] if p in set(ensembles["pool_id"])]
    if not with_ensembles:
        build_demo_with_progress(db, path)
        return None
    wanted_pool = st.session_state.get(POOL_KEY)
    if wanted_pool not in with_ensembles:
        demo = pools[pools["name"] == DEMO_POOL_NAME]["pool_id"].tolist()
        wanted_pool = demo[0] if demo and demo[0] in with_ensembles else with_ensembles[-1]
    pool = db.get_pool(wanted_pool)
    ensemble = _ready_ensemble(path, pool, ensembles, st.session_state.get(ENSEMBLE_KEY))
    if ensemble is None:
        if pool["name"] == DEMO_POOL_NAME:
            # an interrupted first build: finish it (everything done is reused)
            build_demo_with_progress(db, path)
        else:
            st.error(
                f"Pool '{pool['name']}' has an ensemble but no cached head predictions yet. "
                "Build it first: `python -m hyre_engine build --pool FILE`."
            )
        return None
    st.session_state[POOL_KEY] = pool["pool_id"]
    st.session_state[ENSEMBLE_KEY] = ensemble["ensemble_id"]
    return Context(db_path=path, pool=pool, ensemble=ensemble, user=current_user())


def get_context() -> Context | None:
    """The context app.py resolved for this run (pages call this)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx if isinstance(ctx, Context) else resolve_context()


def build_demo_with_progress(db: Store, path: str) -> None:
    """First launch: build the demo pool's ensemble and Z with a visible progress bar, then rerun."""
    st.title("HyRe Studio")
    st.markdown(
        "**Getting the demo ready.** This happens once: the demo answers are embedded, "
        "an ensemble of reward heads is trained on the crowd's labels, and its "
        "predictions are cached. Later launches open in seconds."
    )
    bar = st.progress(0.0, text="Loading the embedding model…")

    def progress(stage: str, done: int, total: int) -> None:
        start, end = STAGE_SPANS.get(stage, (0.0, 1.0))
        frac = done / total if total else 1.0
        bar.progress(
            min(1.0, start + (end - start) * frac),
            text=f"{STAGE_TEXT.get(stage, stage)} ({done}/{total})",
        )

    with _build_lock(path):
        ensembles = ensembles_for_pages(db)
        if len(ensembles) == 0 or _demo_needs_build(path, db, ensembles):
            report = ensure_demo(db, progress=progress)
            bar.progress(1.0, text=f"Ready: ensemble {report.ensemble_id} on {report.n_pairs} pairs")
    st.rerun()


def _demo_needs_build(path: str, db: Store, ensembles: pd.DataFrame) -> bool:
    pools = db.list_pools()
    demo = pools[pools["name"] == DEMO_POOL_NAME]
    if demo.empty:
        return not len(ensembles)
    pool = db.get_pool(demo["pool_id"].iloc[0])
    return _ready_ensemble(path, pool, ensembles, None) is None


# ---------------------------------------------------------------- sidebar


def _on_user_change() -> None:
    st.query_params[USER_PARAM] = clean_user(st.session_state.get(USER_INPUT_KEY))


def render_sidebar(ctx: Context) -> None:
    """The user's name, and what the pages work on: pool, ensemble, backbone, device."""
    db = ctx.store
    with st.sidebar:
        if st.session_state.get(USER_INPUT_KEY) is None:
            st.session_state[USER_INPUT_KEY] = ctx.user
        st.text_input(
            "Your name",
            key=USER_INPUT_KEY,
            on_change=_on_user_change,
            max_chars=MAX_USER_CHARS,
            help="Your labels are saved under this name. It is kept in the address "
            "(?user=...), so a reload or a bookmark brings you back to them.",
        )
        pools = db.list_pools()
        ensembles = ensembles_for_pages(db)
        usable = pools[pools["pool_id"].isin(set(ensembles["pool_id"]))]
        if len(usable) > 1:
            names = dict(zip(usable["pool_id"], usable["name"], strict=True))
            st.selectbox(
                "Pool",
                list(names),
                format_func=lambda pid: names[pid],
                key=POOL_KEY,
                help="The preference pairs to label. Add pools on the Data page.",
            )
        own = ensembles[ensembles["pool_id"] == ctx.pool_id]
        if len(own) > 1:
            labels = {
                row.ensemble_id: f"{row.config.get('kind')} · K={row.config.get('n_heads')} · "
                f"{pd.Timestamp(row.created_at):%Y-%m-%d %H:%M}"
                for row in own.iloc[::-1].itertuples()
            }
            st.selectbox(
                "Ensemble",
                list(labels),
                format_func=lambda eid: labels[eid],
                key=ENSEMBLE_KEY,
            )
        cfg = ctx.ensemble["config"]
        prior = cfg.get("prior_scale")
        st.caption("Working on")
        st.markdown(
            "\n".join(
                [
                    f"- **Pool** {escape_markdown(str(ctx.pool['name']))} · {ctx.n_pairs:,} pairs",
                    f"- **Ensemble** {cfg.get('kind', '?')} · K = {cfg.get('n_heads', '?')} · "
                    f"prior scale {prior if prior is not None else '–'}",
                    f"- **Backbone** {escape_markdown(backbone_label(ctx.ensemble['backbone_id']))}",
                    f"- **Device** {device_name()}",
                    f"- **User** {escape_markdown(ctx.user)}",
                ]
            )
        )


# ---------------------------------------------------------------- text


_MARKDOWN_SPECIAL = str.maketrans({"$": r"\$"})


def escape_markdown(text: str) -> str:
    """Data text for st.markdown: '$' would start LaTeX. (HTML is never enabled for data.)"""
    return text.translate(_MARKDOWN_SPECIAL)


# ---------------------------------------------------------------- live labelling (no streamlit)


@dataclass
class LiveState:
    """A LiveSession bound to a stored session; `n_rows` counts its stored rows (labels + skips)."""

    session_id: str
    live: LiveSession
    pair_ids: np.ndarray  # (n_items,) pair_id per row_index, to write labels
    n_rows: int
    beta: float
    strategy: str
    last_event: LabelEvent | None = None
    last_item: int | None = None
    last_label: str | None = None


def stored_rows(db: Store, session_id: str) -> int:
    """How many rows (labels and skips) the store holds for the session."""
    return len(db.session_labels(session_id))


def open_live(
    db: Store,
    session_id: str,
    arrays: PoolArrays,
    pair_ids: np.ndarray,
    *,
    beta: float,
    strategy: str,
    truth: np.ndarray | None = None,
) -> LiveState:
    """A LiveSession with the session's stored labels replayed in order."""
    rows = db.session_labels(session_id)
    live = LiveSession(arrays.logits, beta=beta, strategy=strategy, truth=truth, pca=arrays.pca)
    live.replay(list(zip(rows["row_index"].astype(int).tolist(), rows["label"].tolist(), strict=True)))
    state = LiveState(session_id, live, pair_ids, len(rows), beta, strategy)
    if len(rows):
        state.last_item = int(rows["row_index"].iloc[-1])
        state.last_label = str(rows["label"].iloc[-1])
    return state


def record_label(db: Store, state: LiveState, item: int, label: str) -> LabelEvent | None:
    """Store first (the source of truth), then update the live posterior; None for a skip."""
    db.add_session_label(
        state.session_id, row_index=item, pair_id=str(state.pair_ids[item]), label=label
    )
    state.n_rows += 1
    state.last_item, state.last_label = item, label
    if label == "skip":
        state.live.skip(item)
        state.last_event = None
        return None
    state.last_event = state.live.add_label(item, label)
    return state.last_event


def undo_label(db: Store, state: LiveState) -> dict[str, Any] | None:
    """Remove the session's last row (label or skip) from the store and the posterior."""
    row = db.undo_session_label(state.session_id)
    if row is None:
        return None
    state.n_rows -= 1
    if row["label"] == "skip":
        state.live.skipped.discard(int(row["row_index"]))
    else:
        state.live.undo()
    state.last_event, state.last_item, state.last_label = None, None, None
    return row


# ---------------------------------------------------------------- figures (no streamlit)


def _layout(fig: go.Figure, *, xtitle: str, ytitle: str, legend: bool = True) -> go.Figure:
    # Titles are drawn by the page above each chart; the legend sits on top, clear of the axes.
    fig.update_layout(
        height=CHART_HEIGHT,
        margin={"l": 10, "r": 10, "t": 30 if legend else 10, "b": 10},
        xaxis_title=xtitle,
        yaxis_title=ytitle,
        showlegend=legend,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        uirevision="keep",  # keep zoom and hover state across live updates
    )
    return fig


def gained_heads(panels: Panels) -> np.ndarray:
    """Boolean (n_heads,): heads whose weight rose with the last label."""
    return panels.weight_change > GAIN_TOL


def weights_figure(panels: Panels) -> go.Figure:
    """Bar chart of all K weights, sorted; heads that gained on the last label in amber."""
    w = panels.weights
    n_heads = w.size
    order = np.argsort(-w, kind="stable")
    gained = gained_heads(panels)[order]
    fig = go.Figure()
    for mask, name, color in ((~gained, "head", COLOR_HEAD), (gained, "gained on last label", COLOR_GAIN)):
        if not mask.any() and name != "head":
            continue
        ranks = np.flatnonzero(mask)
        fig.add_bar(
            x=ranks,
            y=w[order][mask],
            name=name,
            marker_color=color,
            customdata=np.stack([order[mask], panels.weight_change[order][mask]], axis=1),
            hovertemplate="head %{customdata[0]}<br>weight %{y:.4f}<br>change %{customdata[1]:+.4f}<extra></extra>",
        )
    fig.add_hline(
        y=1.0 / n_heads, line_dash="dot", line_color=COLOR_UNIFORM,
        annotation_text="uniform", annotation_position="top right",
    )
    fig.update_layout(barmode="overlay", bargap=0.1)
    fig.update_xaxes(range=[-0.6, n_heads - 0.4], showticklabels=False)
    fig.update_yaxes(range=[0, max(float(w.max()) * 1.15, 1.5 / n_heads)])
    return _layout(fig, xtitle=f"{n_heads} heads, heaviest first", ytitle="weight")


def pca_figure(panels: Panels) -> go.Figure:
    """Heads in the plane of the first two principal components, sized and coloured by weight."""
    w = panels.weights
    xy = panels.head_coords
    evr = panels.explained_variance_ratio
    size = 6 + 24 * np.sqrt(w / w.max())
    gained = gained_heads(panels)
    fig = go.Figure(
        go.Scatter(
            x=xy[:, 0],
            y=xy[:, 1],
            mode="markers",
            name="head (size = weight)",
            marker={
                "size": size,
                "color": w,
                "colorscale": [[0, "#E0E7FF"], [1, COLOR_HEAD]],
                "cmin": 0,
                "cmax": float(w.max()),
                "line": {"width": np.where(gained, 2, 0.5), "color": np.where(gained, COLOR_GAIN, "#FFFFFF").tolist()},
                "opacity": 0.9,
            },
            customdata=np.stack([np.arange(w.size), w], axis=1),
            hovertemplate="head %{customdata[0]}<br>weight %{customdata[1]:.4f}<extra></extra>",
        )
    )
    pad_x = 0.08 * float(np.ptp(xy[:, 0]) or 1.0)
    pad_y = 0.08 * float(np.ptp(xy[:, 1]) or 1.0)
    fig.update_xaxes(range=[xy[:, 0].min() - pad_x, xy[:, 0].max() + pad_x], zeroline=False)
    fig.update_yaxes(range=[xy[:, 1].min() - pad_y, xy[:, 1].max() + pad_y], zeroline=False)
    pc1 = f"PC1 ({evr[0]:.0%} of disagreement)" if evr.size > 0 else "PC1"
    pc2 = f"PC2 ({evr[1]:.0%})" if evr.size > 1 else "PC2"
    return _layout(fig, xtitle=pc1, ytitle=pc2, legend=False)


def accuracy_figure(panels: Panels) -> go.Figure:
    """Persona: held-out accuracy vs n labels with reference lines; person: running accuracy."""
    fig = go.Figure()
    if panels.held_out is not None:
        held = panels.held_out
        n = np.arange(len(held["hyre"]))
        fig.add_scatter(x=n, y=held["hyre"], name="HyRe", mode="lines+markers", line_color=COLOR_HEAD)
        fig.add_scatter(x=n, y=held["uniform"], name="uniform ensemble", mode="lines",
                        line={"color": COLOR_UNIFORM, "dash": "dash"})
        fig.add_scatter(x=n, y=held["best_head_oracle"], name="best single head (oracle)",
                        mode="lines", line={"color": COLOR_ORACLE, "dash": "dot"})
        ytitle = "held-out accuracy"
    else:
        pre = panels.prequential
        n = np.arange(1, len(pre["hyre"]) + 1)
        fig.add_scatter(x=n, y=pre["hyre"], name="HyRe", mode="lines+markers", line_color=COLOR_HEAD)
        fig.add_scatter(x=n, y=pre["uniform"], name="uniform ensemble", mode="lines+markers",
                        line={"color": COLOR_UNIFORM, "dash": "dash"})
        ytitle = "running accuracy"
        if not len(n):
            fig.add_annotation(text="Label a pair to start the curve", showarrow=False,
                               x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_xaxes(rangemode="tozero", dtick=None)
    _layout(fig, xtitle="labels given", ytitle=ytitle)
    # accuracies live in the upper half: the legend goes in the empty lower right corner
    fig.update_layout(
        margin={"t": 10},
        legend={"orientation": "v", "yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.99,
                "bgcolor": "rgba(255,255,255,0.8)"},
    )
    return fig
