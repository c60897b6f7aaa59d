"""Explore page: the function-space PCA of the heads, read as axes of disagreement.

The heads sit in the space of the first principal components of their
predictions on the pool, coloured by someone's HyRe weights; each component's
strongest pairs say what it is about; a head inspector puts one head next to
the uniform ensemble.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from hyre_engine.reweight import effective_heads
from pages import _explore_helpers as hx
from pages import common

# Five pairs per end of a component: enough to see a pattern, few enough to read.
TOP_PAIRS = 5
# Pairs listed where the inspected head and the uniform ensemble disagree most.
INSPECT_PAIRS = 5
# The head map is the page's main chart: taller than the Label page's live panels.
MAP_HEIGHT = 420
# Prompt and answers are cut to this many characters in tables (full text in the cards).
SNIPPET_CHARS = 90

SOURCE_KEY = "explore_source"
VIEW_KEY = "explore_view"
COMPONENT_KEY = "explore_component"
HEAD_KEY = "explore_head"
VIEWS = {"2d": "2-D", "3d": "3-D"}


def _snippet(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def _pc_name(pca, p: int) -> str:
    return f"PC{p + 1} ({pca.explained_variance_ratio_[p]:.0%})"


# ---------------------------------------------------------------- figures (no streamlit)


def head_map_figure(pca, w: np.ndarray, *, three_d: bool, who: str) -> go.Figure:
    """Heads at their PCA coordinates, coloured and sized by the weights w (n_heads,)."""
    xy = pca.head_coords_
    n_heads = w.size
    marker = {
        "size": 6 + 18 * np.sqrt(w / w.max()),
        "color": w,
        "colorscale": [[0, "#E0E7FF"], [1, common.COLOR_HEAD]],
        "cmin": 0,
        "cmax": float(w.max()),
        "colorbar": {"title": {"text": "weight"}, "thickness": 12},
        "line": {"width": 0.5, "color": "#FFFFFF"},
        "opacity": 0.9,
    }
    custom = np.stack([np.arange(n_heads), w], axis=1)
    hover = "head %{customdata[0]}<br>weight %{customdata[1]:.4f}<extra></extra>"
    if three_d:
        trace = go.Scatter3d(
            x=xy[:, 0], y=xy[:, 1], z=xy[:, 2], mode="markers", marker=marker,
            customdata=custom, hovertemplate=hover, name=who,
        )
        fig = go.Figure(trace)
        fig.update_layout(
            scene={
                "xaxis_title": _pc_name(pca, 0),
                "yaxis_title": _pc_name(pca, 1),
                "zaxis_title": _pc_name(pca, 2),
            },
            uirevision="keep",
        )
    else:
        fig = go.Figure(
            go.Scatter(
                x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker,
                customdata=custom, hovertemplate=hover, name=who,
            )
        )
        fig.update_xaxes(title=_pc_name(pca, 0), zeroline=True, zerolinecolor="#E5E7EB")
        fig.update_yaxes(title=_pc_name(pca, 1), zeroline=True, zerolinecolor="#E5E7EB")
    fig.update_layout(height=MAP_HEIGHT, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return fig


def variance_figure(pca) -> go.Figure:
    """Share of the heads' disagreement each component explains, with the running total."""
    evr = pca.explained_variance_ratio_
    names = [f"PC{p + 1}" for p in range(evr.size)]
    fig = go.Figure()
    fig.add_bar(x=names, y=evr, name="this component", marker_color=common.COLOR_HEAD,
                hovertemplate="%{x}: %{y:.1%}<extra></extra>")
    fig.add_scatter(x=names, y=np.cumsum(evr), name="running total", mode="lines+markers",
                    line={"color": common.COLOR_UNIFORM, "dash": "dot"},
                    hovertemplate="PC1..%{x}: %{y:.1%}<extra></extra>")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="share of disagreement")
    fig.update_layout(
        height=common.CHART_HEIGHT, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig


def inspector_figure(head_p: np.ndarray, uniform_p: np.ndarray, head: int) -> go.Figure:
    """One head's P(A preferred) against the uniform ensemble's, one dot per pair."""
    agree = (head_p > 0.5) == (uniform_p > 0.5)
    fig = go.Figure()
    for mask, name, color in ((agree, "same choice", common.COLOR_UNIFORM),
                              (~agree, "opposite choice", common.COLOR_GAIN)):
        idx = np.flatnonzero(mask)
        fig.add_scatter(
            x=uniform_p[mask], y=head_p[mask], mode="markers", name=name,
            marker={"color": color, "size": 7, "opacity": 0.8}, customdata=idx + 1,
            hovertemplate="pair %{customdata}<br>uniform %{x:.0%}<br>head %{y:.0%}<extra></extra>",
        )
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": "#D1D5DB"})
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%", title="uniform ensemble: P(A better)")
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%", title=f"head {head}: P(A better)")
    fig.update_layout(
        height=common.CHART_HEIGHT + 40, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig


# ---------------------------------------------------------------- sections


def _map_section(ctx: common.Context, arrays: common.PoolArrays, chosen: hx.Weights) -> None:
    pca = arrays.pca
    three_ok = pca.n_components_ >= 3
    cols = st.columns([3, 2], gap="large")
    with cols[0], st.container(key="explore-map"):
        view = st.segmented_control(
            "View", list(VIEWS), format_func=VIEWS.get, default="2d", required=True, key=VIEW_KEY,
            disabled=not three_ok, label_visibility="collapsed",
        )
        three_d = view == "3d" and three_ok
        st.plotly_chart(
            head_map_figure(pca, chosen.weights, three_d=three_d, who=chosen.source.name),
            key="explore_map_chart", config=common.PLOTLY_CONFIG,
        )
        st.caption(
            f"Each dot is one of the {ctx.n_heads} heads, placed by how its predictions on the "
            f"{ctx.n_pairs:,} pool pairs differ from the average head. Size and colour: its weight "
            f"for **{common.escape_markdown(chosen.source.name)}**."
        )
    with cols[1], st.container(key="explore-variance"):
        st.markdown("**How much each component explains**")
        st.plotly_chart(variance_figure(pca), key="explore_variance_chart", config=common.PLOTLY_CONFIG)
        shown = pca.explained_variance_ratio_[: 3 if three_d else 2].sum()
        m = st.columns(2)
        m[0].metric("Shown in this view", f"{shown:.0%}", help="Share of the heads' disagreement the plotted components capture.")
        m[1].metric(
            "Effective heads", f"{effective_heads(chosen.weights):.1f} / {ctx.n_heads}",
            help="1 / sum(w²) for the chosen weights: K when uniform, 1 when one head has it all.",
        )


def _pair_card(
    pairs: pd.DataFrame, item: int, plus: float, minus: float, loading: float, *, expanded: bool
) -> None:
    row = pairs.iloc[item]
    favoured = "A" if plus > minus else "B"
    other = "B" if favoured == "A" else "A"
    with st.expander(f"Pair {item + 1}: {_snippet(row['prompt']) or '(no prompt)'}", expanded=expanded):
        st.markdown(
            f"**+ end favours {favoured}**, **− end favours {other}**: heads at the + end give A "
            f"{plus:.0%}, heads at the − end {minus:.0%} (loading {loading:+.3f})"
        )
        meta = hx.side_meta(row.get("meta") or {})
        cols = st.columns(2)
        for col, side in zip(cols, ("a", "b"), strict=True):
            with col, st.container(border=True):
                tags = " · ".join(f"{k}: {v[0 if side == 'a' else 1]}" for k, v in meta.items())
                words = hx.word_count(row[f"response_{side}"])
                st.caption(f"RESPONSE {side.upper()} · {words} words" + (f" · {tags}" if tags else ""))
                st.markdown(common.escape_markdown(str(row[f"response_{side}"])))


def _component_section(ctx: common.Context, arrays: common.PoolArrays) -> None:
    pca = arrays.pca
    pairs = hx.pairs_with_meta(ctx.db_path, ctx.pool_id, ctx.n_pairs)
    st.markdown("#### What is a component about?")
    st.caption(
        "A component is a direction in which the heads disagree. Its strongest pairs show it: "
        "heads at its **+ end** like response A more than heads at its **− end** on pairs with a "
        "positive loading, and B more on pairs with a negative one. Read what each end favours to "
        "name the axis (for example *short vs thorough*). Each end is the outer quarter of the heads."
    )
    options = list(range(pca.n_components_))
    component = st.selectbox(
        "Component", options, format_func=lambda p: f"{_pc_name(pca, p)} of the disagreement",
        key=COMPONENT_KEY, width=320,
    )
    top, bottom = hx.component_pairs(pca, TOP_PAIRS)
    top, bottom = top[component], bottom[component]
    summary = hx.axis_profile(pairs, top, bottom)
    with st.container(key="explore-axis"):
        st.markdown(f"**What each end of PC{component + 1} favours** (its {2 * top.size} strongest pairs)")
        st.dataframe(summary, hide_index=True, key="explore_axis_table")
    cols = st.columns(2, gap="medium")
    loadings = pca.components_[component]
    for col, items, title in (
        (cols[0], top, "Most positive loadings"),
        (cols[1], bottom, "Most negative loadings"),
    ):
        with col:
            st.markdown(f"**{title}**")
            plus, minus = hx.end_probabilities(arrays.logits, pca, component, items)
            for i, item in enumerate(items.tolist()):
                _pair_card(
                    pairs, item, float(plus[i]), float(minus[i]), float(loadings[item]), expanded=i == 0
                )


def _inspector_section(ctx: common.Context, arrays: common.PoolArrays, chosen: hx.Weights) -> None:
    z = arrays.logits
    st.markdown("#### Head inspector")
    st.caption("One head's predictions on the pool against the uniform ensemble (the mean of all heads).")
    heaviest = int(np.argmax(chosen.weights))
    if st.session_state.get(HEAD_KEY) is None or not 0 <= st.session_state[HEAD_KEY] < ctx.n_heads:
        st.session_state[HEAD_KEY] = heaviest
    head = st.number_input(
        "Head", min_value=0, max_value=ctx.n_heads - 1, step=1, key=HEAD_KEY, width=200,
        help=f"0 to {ctx.n_heads - 1}. Starts at the heaviest head for the chosen weights (head {heaviest}).",
    )
    head = int(head)
    head_p = 1.0 / (1.0 + np.exp(-z[:, head].astype(np.float64)))
    uniform_p = hx.uniform_probability(z)
    agree = float(((head_p > 0.5) == (uniform_p > 0.5)).mean())
    cols = st.columns([3, 2], gap="large")
    with cols[0]:
        st.plotly_chart(inspector_figure(head_p, uniform_p, head), key="explore_inspect_chart",
                        config=common.PLOTLY_CONFIG)
    with cols[1], st.container(key="explore-inspect-metrics"):
        m = st.columns(2)
        m[0].metric("Same choice as uniform", f"{agree:.0%}", help="Pairs where both prefer the same response.")
        m[1].metric(
            "Its weight", f"{chosen.weights[head]:.3f}",
            help=f"Under the weights of {chosen.source.name}; uniform is 1/K = {1 / ctx.n_heads:.3f}.",
        )
        if chosen.labels:
            rows = np.array([lab["row_index"] for lab in chosen.labels if "row_index" in lab], dtype=np.int64)
            ya = np.array([lab["label"] == "a" for lab in chosen.labels if "row_index" in lab])
            if rows.size:
                m = st.columns(2)
                m[0].metric(
                    "Head accuracy", f"{((head_p[rows] > 0.5) == ya).mean():.0%}",
                    help=f"On the {rows.size} labels of {chosen.source.name}.",
                )
                m[1].metric("Uniform accuracy", f"{((uniform_p[rows] > 0.5) == ya).mean():.0%}",
                            help="The uniform ensemble on the same labels.")
    with st.container(key="explore-inspect-table"):
        gap = np.abs(head_p - uniform_p)
        worst = np.argsort(-gap, kind="stable")[:INSPECT_PAIRS]
        pairs = ctx.pairs()
        table = pd.DataFrame(
            {
                "pair": worst + 1,
                "prompt": [_snippet(pairs.iloc[i]["prompt"]) for i in worst],
                "response A": [_snippet(pairs.iloc[i]["response_a"]) for i in worst],
                "response B": [_snippet(pairs.iloc[i]["response_b"]) for i in worst],
                "head P(A)": head_p[worst],
                "uniform P(A)": uniform_p[worst],
            }
        )
        st.markdown("**Where it departs most from the uniform ensemble**")
        st.dataframe(
            table, hide_index=True, key="explore_inspect_table",
            column_config={
                "head P(A)": st.column_config.NumberColumn(format="percent"),
                "uniform P(A)": st.column_config.NumberColumn(format="percent"),
            },
        )


def main() -> None:
    ctx = common.get_context()
    if ctx is None:
        return
    arrays = ctx.arrays()
    st.markdown("### Where do the heads disagree?")
    st.caption(
        "Each reward head is a different guess at what people want. Principal components of "
        "their predictions on the pool are the main directions in which those guesses differ; "
        "HyRe's weights show where a person's labels moved the ensemble."
    )
    chosen = hx.source_picker(
        ctx, "Colour heads by the weights of", key=SOURCE_KEY, width=420,
        help="A user's weights come from their labelling session (or a saved profile); a "
        f"persona's from its labels on the first {hx.PERSONA_LABELS} pool pairs it judged.",
    )
    _map_section(ctx, arrays, chosen)
    st.divider()
    _component_section(ctx, arrays)
    st.divider()
    _inspector_section(ctx, arrays, chosen)


main()
