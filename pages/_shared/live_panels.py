"""The Label page's live parts: the pair cards, the metrics, the three charts and the feedback line."""

from __future__ import annotations

import streamlit as st

from hyre_engine import live
from hyre_engine.live import LiveSnapshot, LiveState
from pages._shared import charts
from pages._shared.context import Context
from pages._shared.widgets import escape_markdown

# Card height in pixels: long answers scroll inside, so the buttons never move.
CARD_HEIGHT = 290


def pair_cards(ctx: Context, item: int, *, chosen: str | None = None, who: str = "") -> None:
    pair = ctx.pairs().iloc[item]
    with st.container(border=True, key="prompt-card"):
        st.caption(f"PROMPT · pair {item + 1} of {ctx.n_pairs:,}")
        st.markdown(escape_markdown(str(pair["prompt"])) or "*(no prompt)*")
    cols = st.columns(2, gap="medium")
    for col, side in zip(cols, ("a", "b"), strict=True):
        picked = chosen == side
        key = f"card-{side}-chosen" if picked else f"card-{side}"
        with col, st.container(border=True, height=CARD_HEIGHT, key=key):
            title = f"**Response {side.upper()}**"
            if picked:
                title += f" · :orange[chosen by {who}]" if who else " · :orange[your choice]"
            st.markdown(title)
            st.markdown(escape_markdown(str(pair[f"response_{side}"])))


def live_metrics(snap: LiveSnapshot) -> None:
    cols = st.columns(4)
    cols[0].metric("Labels", snap.n_labels, help="Pairs answered in this session (skips excluded).")
    cols[1].metric(
        "Effective heads",
        f"{snap.effective_heads:.1f} / {snap.n_heads}",
        help="1 / sum(w²): how many heads still carry the weight. Starts at K (uniform).",
    )
    cols[2].metric(
        "Weight entropy",
        f"{snap.entropy:.2f} nats",
        help=f"log K = {snap.max_entropy:.2f} when uniform, 0 when one head has it all.",
    )
    if snap.held_out is not None:
        acc = snap.held_out.hyre[-1]
        base = snap.held_out.uniform[-1]
        cols[3].metric(
            "Held-out accuracy",
            "–" if acc is None else f"{acc:.0%}",
            delta=None if acc is None or base is None else f"{acc - base:+.0%} vs uniform",
            help="HyRe's accuracy on the persona's pairs it has not labelled yet.",
        )
    else:
        pre = snap.running.hyre
        cols[3].metric(
            "Guessed right",
            f"{pre[-1]:.0%}" if pre else "–",
            help="Share of your labels HyRe predicted correctly before you gave them.",
        )


def live_charts(panels: LiveSnapshot, who: str) -> None:
    cols = st.columns(3, gap="medium")
    with cols[0], st.container(key="weights-panel"):
        st.markdown("**Head weights**")
        st.caption("All heads, heaviest first. Amber: heads that gained with the last label.")
        st.plotly_chart(charts.weights_figure(panels), key="weights_chart", config=charts.PLOTLY_CONFIG)
    with cols[1], st.container(key="pca-panel"):
        st.markdown("**Heads in function space**")
        st.caption("PCA of the heads' predictions on the pool. Dot size and colour: weight.")
        st.plotly_chart(charts.pca_figure(panels), key="pca_chart", config=charts.PLOTLY_CONFIG)
    with cols[2], st.container(key="accuracy-panel"):
        if panels.held_out is not None:
            st.markdown(f"**Accuracy on {who}'s other pairs**")
            st.caption("HyRe after n labels vs the uniform ensemble and the best single head.")
        else:
            st.markdown("**Did HyRe guess your choice?**")
            st.caption("Running share of your labels each model predicted before you gave them.")
        st.plotly_chart(charts.accuracy_figure(panels), key="accuracy_chart", config=charts.PLOTLY_CONFIG)


def feedback(state: LiveState, who: str) -> str:
    event = state.last_event
    if event is None:
        if state.last_label == live.SKIP:
            return "Skipped the last pair."
        return ""

    def mark(score: float) -> str:
        # 1: predicted the label, 0: the other, 0.5: exactly undecided (a tie counts half)
        if score == 0.5:
            return ":gray[was undecided]"
        return ":green[predicted it]" if score == 1.0 else ":red[predicted the other]"

    return (
        f"{who} chose **{event.label.upper()}** on the last pair · HyRe {mark(event.hyre_correct)} · "
        f"uniform ensemble {mark(event.uniform_correct)}"
    )
