"""Explore page: the function-space PCA of the heads, read as axes of disagreement.

The heads sit in the space of the first principal components of their
predictions on the pool, coloured by someone's HyRe weights; each component's
strongest pairs say what it is about; a head inspector puts one head next to
the uniform ensemble.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hyre_engine import pca as fpca
from hyre_engine.profiles import PERSONA_LABELS, UNIFORM_KEY, Weights, inspect_head, source_coords
from pages._shared import charts
from pages._shared.charts import pc_name
from pages._shared.context import Context, PoolArrays, get_context, pairs_with_meta
from pages._shared.widgets import axis_table, data_text, escape_markdown, snippet, source_picker

# Five pairs per end of a component: enough to see a pattern, few enough to read.
TOP_PAIRS = 5
# Pairs listed where the inspected head and the uniform ensemble disagree most.
INSPECT_PAIRS = 5

SOURCE_KEY = "explore_source"
VIEW_KEY = "explore_view"
COMPONENT_KEY = "explore_component"
HEAD_KEY = "explore_head"
VIEWS = {"2d": "2-D", "3d": "3-D"}


# ---------------------------------------------------------------- sections


def _map_section(ctx: Context, arrays: PoolArrays, chosen: Weights) -> None:
    pca = arrays.pca
    three_ok = pca.n_components_ >= 3
    cols = st.columns([3, 2], gap="large")
    with cols[0], st.container(key="explore-map"):
        view = st.segmented_control(
            "View", list(VIEWS), format_func=VIEWS.get, default="2d", required=True, key=VIEW_KEY,
            disabled=not three_ok, label_visibility="collapsed",
        )
        three_d = view == "3d" and three_ok
        person, person_name = _person(ctx, arrays, chosen)
        st.plotly_chart(
            charts.head_map_figure(pca, chosen.weights, three_d=three_d, who=chosen.source.name,
                                   person=person, person_name=person_name),
            key="explore_map_chart", config=charts.PLOTLY_CONFIG,
        )
        name = escape_markdown(chosen.source.name)
        star = "" if person is None else (
            f" The {'diamond' if three_d else 'star'} is **{name}**'s own function on the pool "
            f"({escape_markdown(person_name.removeprefix(chosen.source.name).strip(' ()'))}), placed as a "
            "head would be: "
            + ("with the personal head it can leave the heads' cloud." if chosen.v is not None
               else "HyRe alone is a weighted average of the heads, so it stays inside their cloud.")
        )
        st.caption(
            f"Each dot is one of the {ctx.n_heads} heads, placed by how its predictions on the "
            f"{ctx.n_pairs:,} pool pairs differ from the average head. Size and colour: its weight "
            f"for **{name}**.{star}"
        )
    with cols[1], st.container(key="explore-variance"):
        st.markdown("**How much each component explains**")
        st.plotly_chart(charts.variance_figure(pca), key="explore_variance_chart", config=charts.PLOTLY_CONFIG)
        shown = fpca.cumulative_variance_ratio(pca)[min(3 if three_d else 2, pca.n_components_) - 1]
        # two a row: three in this column cut their labels and values at 1280 px
        m = st.columns(2) + st.columns(2)
        m[0].metric("Shown in this view", f"{shown:.0%}", help="Share of the heads' disagreement the plotted components capture.")
        m[1].metric(
            "Effective heads", f"{chosen.effective_heads:.1f} / {ctx.n_heads}",
            help="1 / sum(w²) for the chosen weights: K when uniform, 1 when one head has it all.",
        )
        m[2].metric(
            "Distinct functions", f"{arrays.distinct_heads} / {ctx.n_heads}",
            help="Clusters of heads whose predictions on the pool correlate above 0.98: heads that "
            "are near copies of each other count once. Few distinct functions leave HyRe little to choose from.",
        )


def _person(ctx: Context, arrays: PoolArrays, chosen: Weights) -> tuple:
    """(coordinates or None, name): the chosen source's own function on the heads' PCA map; none
    for uniform weights."""
    if chosen.source.kind == UNIFORM_KEY:
        return None, ""
    diffs = ctx.diffs() if chosen.v is not None else None
    personal = diffs is not None
    name = f"{chosen.source.name} ({'HyRe + personal head' if personal else 'HyRe'})"
    return source_coords(arrays.pca, chosen, arrays.logits, diffs), name


def _pair_card(
    pairs: pd.DataFrame, item: int, plus: float, minus: float, loading: float, *, expanded: bool
) -> None:
    row = pairs.iloc[item]
    favoured = "A" if plus > minus else "B"
    other = "B" if favoured == "A" else "A"
    # widget labels read Markdown (images included): the prompt shows literally
    with st.expander(f"Pair {item + 1}: {escape_markdown(snippet(row['prompt'])) or '(no prompt)'}",
                     expanded=expanded):
        st.markdown(
            f"**+ end favours {favoured}**, **− end favours {other}**: heads at the + end give A "
            f"{plus:.0%}, heads at the − end {minus:.0%} (loading {loading:+.3f})"
        )
        meta = fpca.side_meta(row.get("meta") or {})
        cols = st.columns(2)
        for col, side in zip(cols, ("a", "b"), strict=True):
            with col, st.container(border=True):
                tags = " · ".join(f"{k}: {v[0 if side == 'a' else 1]}" for k, v in meta.items())
                words = fpca.word_count(row[f"response_{side}"])
                st.caption(f"RESPONSE {side.upper()} · {words} words" + (f" · {escape_markdown(tags)}" if tags else ""))
                data_text(row[f"response_{side}"])


def _component_section(ctx: Context, arrays: PoolArrays) -> None:
    pca = arrays.pca
    pairs = pairs_with_meta(ctx.db_path, ctx.pool_id, ctx.n_pairs)
    st.markdown("#### What is a component about?")
    st.caption(
        "A component is a direction in which the heads disagree. Its strongest pairs show it: "
        "heads at its **+ end** like response A more than heads at its **− end** on pairs with a "
        "positive loading, and B more on pairs with a negative one. Read what each end favours to "
        "name the axis (for example *short vs thorough*). Each end is the outer quarter of the heads."
    )
    options = list(range(pca.n_components_))
    component = st.selectbox(
        "Component", options, format_func=lambda p: f"{pc_name(pca, p)} of the disagreement",
        key=COMPONENT_KEY, width=320,
    )
    top, bottom = fpca.component_pairs(pca, TOP_PAIRS)
    top, bottom = top[component], bottom[component]
    summary = axis_table(fpca.axis_profile(pairs, top, bottom))
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
            plus, minus = fpca.end_probabilities(arrays.logits, pca, component, items)
            for i, item in enumerate(items.tolist()):
                _pair_card(
                    pairs, item, float(plus[i]), float(minus[i]), float(loadings[item]), expanded=i == 0
                )


def _inspector_section(ctx: Context, arrays: PoolArrays, chosen: Weights) -> None:
    st.markdown("#### Head inspector")
    st.caption("One head's predictions on the pool against the uniform ensemble (the mean of all heads).")
    heaviest = chosen.heaviest
    if st.session_state.get(HEAD_KEY) is None or not 0 <= st.session_state[HEAD_KEY] < ctx.n_heads:
        st.session_state[HEAD_KEY] = heaviest
    head = st.number_input(
        "Head", min_value=0, max_value=ctx.n_heads - 1, step=1, key=HEAD_KEY, width=200,
        help=f"0 to {ctx.n_heads - 1}. Starts at the heaviest head for the chosen weights (head {heaviest}).",
    )
    seen = inspect_head(arrays.logits, int(head), labels=chosen.labels, n_departures=INSPECT_PAIRS)
    cols = st.columns([3, 2], gap="large")
    with cols[0]:
        st.plotly_chart(charts.inspector_figure(seen), key="explore_inspect_chart", config=charts.PLOTLY_CONFIG)
    with cols[1], st.container(key="explore-inspect-metrics"):
        m = st.columns(2)
        m[0].metric("Same choice as uniform", f"{seen.same_choice:.0%}", help="Pairs where both prefer the same response.")
        m[1].metric(
            "Its weight", f"{chosen.weights[seen.head]:.3f}",
            help=f"Under the weights of {escape_markdown(chosen.source.name)}; uniform is 1/K = {1 / ctx.n_heads:.3f}.",
        )
        if seen.n_labels:
            m = st.columns(2)
            m[0].metric(
                "Head accuracy", f"{seen.head_accuracy:.0%}",
                help=f"On the {seen.n_labels} labels of {escape_markdown(chosen.source.name)}.",
            )
            m[1].metric("Uniform accuracy", f"{seen.uniform_accuracy:.0%}",
                        help="The uniform ensemble on the same labels.")
    with st.container(key="explore-inspect-table"):
        worst = seen.departures.tolist()
        pairs = ctx.pairs()
        table = pd.DataFrame(
            {
                "pair": [i + 1 for i in worst],
                "prompt": [snippet(pairs.iloc[i]["prompt"]) for i in worst],
                "response A": [snippet(pairs.iloc[i]["response_a"]) for i in worst],
                "response B": [snippet(pairs.iloc[i]["response_b"]) for i in worst],
                "head P(A)": seen.head_p[worst],
                "uniform P(A)": seen.uniform_p[worst],
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
    ctx = get_context()
    if ctx is None:
        return
    arrays = ctx.arrays()
    st.markdown("### Where do the heads disagree?")
    st.caption(
        "Each reward head is a different guess at what people want. Principal components of "
        "their predictions on the pool are the main directions in which those guesses differ; "
        "HyRe's weights show where a person's labels moved the ensemble."
    )
    chosen = source_picker(
        ctx, "Colour heads by the weights of", key=SOURCE_KEY, width=420,
        help="A user's weights come from their labelling session (or a saved profile); a "
        f"persona's from its labels on the first {PERSONA_LABELS} pool pairs it judged.",
    )
    _map_section(ctx, arrays, chosen)
    st.divider()
    _component_section(ctx, arrays)
    st.divider()
    _inspector_section(ctx, arrays, chosen)


main()
