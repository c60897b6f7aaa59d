"""The Label page's live parts: the pair cards, the metrics, the charts, the feedback line,
the personal readout and the goal summary."""

from __future__ import annotations

import streamlit as st

from hyre_engine import live
from hyre_engine.live import LiveSnapshot, LiveState
from pages._shared import live_svg
from pages._shared.context import Context
from pages._shared.labels import LABEL_TEXT
from pages._shared.widgets import data_text, escape_markdown

# An answer longer than this shows its start and a "Show the rest" in place: the pair,
# the buttons and the live strip fit a 1280 x 720 screen, and nothing is cut silently.
PREVIEW_CHARS = 200
# One sentence per panel, for someone who has never heard of an ensemble.
EXPLAIN = {
    "effective_heads": "How many of the reward models still have a say: it starts at all of them "
    "and falls as your choices rule the others out.",
    "entropy": "How spread out the trust in the models is, in nats (a unit of uncertainty): "
    "high means HyRe has not made up its mind about you yet, 0 means one model has it all.",
    "weights": "Each bar is one reward model; taller means HyRe trusts it more to speak for you.",
    "function_space": "Each dot is one reward model placed by how it judges the pool's pairs: "
    "models that judge alike sit close, so the big dots show which kind of judge you are. "
    "The star is you: your current model, placed the same way.",
    "running": "How often each model guessed your choice before you made it: HyRe alone, HyRe "
    "with your personal head, and the plain average of all models.",
    "held_out": "How often each model picks the persona's choice on pairs it has not seen it answer: "
    "HyRe alone, HyRe with the personal head, the plain average and the single best model.",
    "flips": "The personal head is a small correction learnt from your labels on top of the "
    "reweighted models: this is the share of the pool's pairs where it changes which answer wins.",
}
# What the session's model is called in a sentence.
MODEL_NAME = {"personal": "HyRe + your personal head", "hyre": "HyRe"}


def split_preview(text: str, limit: int = PREVIEW_CHARS) -> tuple[str, str]:
    """(start, rest) of ``text``: the start ends at a word boundary near ``limit``; rest is '' when it fits.

    The start is on one line (lists and paragraphs flattened) so every card's preview is
    about as tall; the whole answer, formatted, is one click away in place.
    """
    if len(text) <= limit and "\n" not in text.strip():
        return text, ""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat, text
    cut = flat.rfind(" ", 0, limit)
    cut = cut if cut > limit // 2 else limit
    return flat[:cut].rstrip(), flat[cut:].lstrip()


def pair_cards(ctx: Context, item: int, *, chosen: str | None = None, who: str = "") -> None:
    pair = ctx.pairs().iloc[item]
    with st.container(border=True, key="prompt-card"):
        # the pair's id, not its row number: "pair 414 of 810" read as progress
        st.caption(f"PROMPT · pair id {escape_markdown(str(pair['pair_id']))}")
        data_text(pair["prompt"], empty="(no prompt)")
    cols = st.columns(2, gap="medium")
    for col, side in zip(cols, ("a", "b"), strict=True):
        picked = chosen == side
        key = f"card-{side}-chosen" if picked else f"card-{side}"
        with col, st.container(border=True, key=key):
            title = f"**Response {side.upper()}**"
            if picked:
                title += f" · :orange[chosen by {escape_markdown(who)}]" if who else " · :orange[your choice]"
            st.markdown(title)
            text = str(pair[f"response_{side}"])
            start, rest = split_preview(text)
            if not rest:
                data_text(text)
                continue
            with st.container(key=f"preview-{side}"):
                # the start on one line, shown literally: Markdown is for the whole answer
                st.markdown(escape_markdown(start) + " …")
            with st.expander(f"Show the whole answer ({len(text.split())} words)", key=f"more-{side}-{item}"):
                data_text(text)


def live_metrics(snap: LiveSnapshot, *, goal: int | None = None) -> None:
    """The strip's numbers: labels and effective heads side by side, the accuracy on a row of its own.

    ``goal``: show labels as "12 / 30". The accuracy and its "+23% vs uniform" have the strip's
    whole width: in half of it (about 120 px at 1280) both were cut to "Held-out accu…" and
    "+23% vs unifo…"; the weight entropy is with the head weights below (``entropy_metric``).
    """
    cols = st.columns(2)
    cols[0].metric(
        "Labels", snap.n_labels if goal is None else f"{snap.n_labels} / {goal}",
        help="Pairs answered in this session (skips, ties and other non-choices excluded)"
        + ("; the session's goal after the slash." if goal is not None else "."),
    )
    cols[1].metric(
        "Effective heads",
        f"{snap.effective_heads:.1f} / {snap.n_heads}",
        help=EXPLAIN["effective_heads"] + " (1 / sum(w²); K when uniform.)",
    )
    _accuracy_metric(snap, st.container(key="accuracy-metric"))


def entropy_metric(snap: LiveSnapshot) -> None:
    st.metric(
        "Weight entropy",
        f"{snap.entropy:.2f} nats",
        help=EXPLAIN["entropy"] + f" log K = {snap.max_entropy:.2f} when uniform.",
    )


def _accuracy_metric(snap: LiveSnapshot, cell) -> None:
    if snap.held_out is not None:
        acc = _current_curve(snap.held_out, snap)[-1]
        base = snap.held_out.uniform[-1]
        delta = None if acc is None or base is None else acc - base
        # before any label HyRe is the uniform ensemble, and "+0%" is no gain: neither is coloured
        moved = bool(snap.n_labels) and delta is not None and round(abs(delta), 2) > 0
        cell.metric(
            "Held-out accuracy",
            "–" if acc is None else f"{acc:.0%}",
            delta=None if delta is None else f"{delta:+.0%} vs uniform",
            delta_color="normal" if moved else "off",
            delta_arrow="auto" if moved else "off",
            help=f"{MODEL_NAME[snap.method]}: accuracy on the persona's pairs it has not labelled yet; "
            "the change is against the uniform ensemble (every head weighted alike).",
        )
    else:
        pre = _current_curve(snap.running, snap)
        cell.metric(
            "Guessed right",
            f"{pre[-1]:.0%}" if pre else "–",
            help=f"Share of your labels {MODEL_NAME[snap.method]} predicted correctly before you gave them.",
        )


def _current_curve(curves, snap: LiveSnapshot) -> list[float | None]:
    """The curve of the model that speaks for the person (personal, else HyRe)."""
    return curves.personal if snap.personal and curves.personal is not None else curves.hyre


def personal_readout(snap: LiveSnapshot) -> None:
    """How much is personal: one line under the numbers."""
    if snap.flip_share is None:
        return
    if not snap.personal:
        st.caption("HyRe only: personal head off", help=EXPLAIN["flips"] + " Turn it on in Advanced.")
        return
    st.caption(f"**Personal flips {snap.flip_share:.0%} of the pool**", help=EXPLAIN["flips"])


def accuracy_title(panels: LiveSnapshot, who: str) -> tuple[str, str]:
    """(title, one plain sentence) of the accuracy curve."""
    if panels.held_out is not None:
        return f"**Accuracy on {escape_markdown(who)}'s other pairs**", EXPLAIN["held_out"]
    return "**Did it guess your choice?**", EXPLAIN["running"]


def live_strip(panels: LiveSnapshot, who: str, *, goal: int | None = None) -> None:
    """The compact live strip beside the pair: the numbers and the accuracy curve."""
    with st.container(key="live-strip"):
        live_metrics(panels, goal=goal)
        personal_readout(panels)
        title, text = accuracy_title(panels, who)
        st.markdown(title, help=text)
        with st.container(key="accuracy-chart"):
            st.markdown(live_svg.as_markdown(live_svg.accuracy_svg(panels, who)), unsafe_allow_html=True)


def live_charts(panels: LiveSnapshot, who: str) -> None:
    """The full panels below the pair: weights and function space (the accuracy curve is in the strip)."""
    cols = st.columns(2, gap="medium")
    with cols[0], st.container(key="weights-panel"):
        st.markdown("**Head weights**")
        st.caption(EXPLAIN["weights"] + " Amber: models that gained with the last label.")
        entropy_metric(panels)
        with st.container(key="weights-chart"):
            st.markdown(live_svg.as_markdown(live_svg.weights_svg(panels)), unsafe_allow_html=True)
    with cols[1], st.container(key="pca-panel"):
        st.markdown("**Heads in function space**")
        st.caption(EXPLAIN["function_space"] + " (PCA of the heads' predictions; size and colour: weight.)")
        with st.container(key="pca-chart"):
            st.markdown(live_svg.as_markdown(live_svg.pca_svg(panels, who)), unsafe_allow_html=True)


def feedback(state: LiveState, who: str) -> str:
    event = state.last_event
    if event is None:
        if state.last_label == live.SKIP:
            return "Skipped the last pair."
        if state.last_label in LABEL_TEXT:
            return f"Marked the last pair **{LABEL_TEXT[state.last_label]}**: kept, but no evidence for the heads."
        return ""

    def mark(score: float) -> str:
        # 1: predicted the label, 0: the other, 0.5: exactly undecided (a tie counts half)
        if score == 0.5:
            return ":gray[½]"
        return ":green[✓]" if score == 1.0 else ":red[✗]"

    # one short line at 1280 px: who guessed the choice before it was made
    personal = "" if event.personal_correct is None else f"personal {mark(event.personal_correct)} · "
    return (
        f"{escape_markdown(who)} chose **{event.label.upper()}** · guessed by: {personal}HyRe {mark(event.hyre_correct)} · "
        f"uniform {mark(event.uniform_correct)}"
    )


def feedback_line(state: LiveState, who: str, idle: str) -> None:
    # a fixed-height line (style.css): a note that wraps never pushes the panels down
    with st.container(key="feedback-line"):
        note = feedback(state, who)
        st.markdown(note if note else idle)


def finished(panels: LiveSnapshot, goal: int) -> None:
    """The summary shown once the session's goal is reached (labelling may go on)."""
    curve = _current_curve(panels.running, panels)
    guessed = curve[-1] if curve else None
    top = int(panels.heaviest_first[0])
    st.success(
        f"**Goal reached: {panels.n_labels} / {goal} labels.** Your profile now rests on "
        f"{panels.effective_heads:.1f} of {panels.n_heads} reward heads (head {top} carries "
        f"{panels.weights[top]:.0%})"
        + (f", and {MODEL_NAME[panels.method]} guessed {guessed:.0%} of your choices before you made them."
           if guessed is not None else ".")
        + " See it on the Profiles page, or keep labelling to sharpen it.",
        icon=":material/flag:",
    )
