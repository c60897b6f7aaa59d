"""Label page: pick the better answer, watch HyRe lock on to you.

The pair to label is chosen by the session's strategy under the current head
weights; every label is written to the store, then applied to the live
posterior, and only the live fragment reruns. In persona mode a simulated
user labels on its own at a chosen pace (a timed fragment).
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from hyre_engine.reweight import DEFAULT_BETA
from pages import common

# The strategies a session may use to choose the next pair (hyre_engine.acquisition).
STRATEGIES = {
    "bald": "BALD: where the heads disagree most",
    "entropy": "Entropy: where the weighted model is least sure",
    "random": "Random",
}
# BALD by default: the paper's active querying is slightly better than random.
DEFAULT_STRATEGY = "bald"
# beta = 1 is the paper's temperature; the slider spans gentle to near-hard elimination.
BETA_RANGE = (0.1, 10.0)  # covers every calibration candidate (up to 8)
# Seconds between two persona labels: slow enough to follow, fast enough to demo.
PACES = (0.5, 1.0, 2.0, 3.0)
DEFAULT_PACE = 1.0
# Keyboard shortcuts (st.button shortcut=; "C" and "R" are reserved by Streamlit).
KEYS = {"a": "A", "b": "B", "skip": "S", "undo": "U", "step": "N", "play": "P"}
# Card height in pixels: long answers scroll inside, so the buttons never move.
CARD_HEIGHT = 290

MODE_KEY = "label_mode"
PERSONA_KEY = "label_persona"
PACE_KEY = "label_pace"
PLAYING_KEY = "label_playing"
LIVE_KEY = "label_live"
LAST_STEP_KEY = "label_last_step"
MODES = {"human": "I label", "persona": "A simulated persona labels"}


# ---------------------------------------------------------------- state


def _session_settings(ctx: common.Context, session_id: str) -> tuple[str, float]:
    settings = ctx.store.get_session(session_id)["settings"]
    strategy = settings.get("strategy", DEFAULT_STRATEGY)
    if strategy not in STRATEGIES:
        strategy = DEFAULT_STRATEGY
    # The ensemble's calibrated temperature (chosen on held-out training annotators)
    # is the default; a session's own choice in the Advanced panel overrides it.
    meta = ctx.ensemble.get("meta") or {}
    return strategy, float(settings.get("beta", meta.get("beta", DEFAULT_BETA)))


def _live_state(ctx: common.Context, session_id: str, persona: str | None) -> common.LiveState:
    """The session's LiveState, rebuilt from the store when missing, stale or re-configured."""
    strategy, beta = _session_settings(ctx, session_id)
    state = st.session_state.get(LIVE_KEY)
    if (
        isinstance(state, common.LiveState)
        and state.session_id == session_id
        and state.beta == beta
        and state.n_rows == common.stored_rows(ctx.store, session_id)
    ):
        state.strategy = state.live.strategy = strategy
        return state
    truth = None
    if persona is not None:
        truth = common.group_truth(ctx.db_path, ctx.pool_id, persona, ctx.n_pairs)
    state = common.open_live(
        ctx.store,
        session_id,
        ctx.arrays(),
        ctx.pairs()["pair_id"].to_numpy(dtype=object),
        beta=beta,
        strategy=strategy,
        truth=truth,
    )
    st.session_state[LIVE_KEY] = state
    return state


# ---------------------------------------------------------------- actions (button callbacks)


def _act(ctx: common.Context, session_id: str, item: int, label: str) -> None:
    state = st.session_state.get(LIVE_KEY)
    if not isinstance(state, common.LiveState) or state.session_id != session_id:
        return
    if item in state.live.skipped or item in set(state.live.labelled.tolist()):
        return  # a double press on a pair already answered
    try:
        common.record_label(ctx.store, state, item, label)
    except ValueError:
        # the same user answered this pair in another tab: rebuild from the store
        st.session_state.pop(LIVE_KEY, None)


def _undo(ctx: common.Context, session_id: str) -> None:
    state = st.session_state.get(LIVE_KEY)
    if isinstance(state, common.LiveState) and state.session_id == session_id:
        common.undo_label(ctx.store, state)
        st.session_state[PLAYING_KEY] = False


def _persona_step(ctx: common.Context, state: common.LiveState) -> bool:
    """The persona answers the pair the strategy picks; False when nothing is left."""
    live = state.live
    item = live.next_item()
    if item is None:
        return False
    label = None if live.truth_y is None else live.truth_y[item]
    if label is None or np.isnan(label):
        common.record_label(ctx.store, state, item, "skip")  # the persona never judged this pair
    else:
        common.record_label(ctx.store, state, item, "a" if label == 1.0 else "b")
    st.session_state[LAST_STEP_KEY] = time.monotonic()
    return True


def _step(ctx: common.Context, session_id: str) -> None:
    state = st.session_state.get(LIVE_KEY)
    if isinstance(state, common.LiveState) and state.session_id == session_id:
        _persona_step(ctx, state)


def _toggle_play() -> None:
    st.session_state[PLAYING_KEY] = not st.session_state.get(PLAYING_KEY, False)
    st.session_state[LAST_STEP_KEY] = 0.0


def _reset(ctx: common.Context, session_id: str) -> None:
    ctx.store.reset_session(session_id)
    st.session_state.pop(LIVE_KEY, None)
    st.session_state[PLAYING_KEY] = False


def _save_setting(ctx: common.Context, session_id: str, name: str, widget_key: str) -> None:
    ctx.store.update_session(session_id, **{name: st.session_state[widget_key]})


# ---------------------------------------------------------------- rendering


def _pair_cards(ctx: common.Context, item: int, *, chosen: str | None = None, who: str = "") -> None:
    pair = ctx.pairs().iloc[item]
    with st.container(border=True, key="prompt-card"):
        st.caption(f"PROMPT · pair {item + 1} of {ctx.n_pairs:,}")
        st.markdown(common.escape_markdown(str(pair["prompt"])) or "*(no prompt)*")
    cols = st.columns(2, gap="medium")
    for col, side in zip(cols, ("a", "b"), strict=True):
        picked = chosen == side
        key = f"card-{side}-chosen" if picked else f"card-{side}"
        with col, st.container(border=True, height=CARD_HEIGHT, key=key):
            title = f"**Response {side.upper()}**"
            if picked:
                title += f" · :orange[chosen by {who}]" if who else " · :orange[your choice]"
            st.markdown(title)
            st.markdown(common.escape_markdown(str(pair[f"response_{side}"])))


def _metrics(ctx: common.Context, state: common.LiveState, panels) -> None:
    cols = st.columns(4)
    cols[0].metric("Labels", panels.n_labels, help="Pairs answered in this session (skips excluded).")
    cols[1].metric(
        "Effective heads",
        f"{panels.effective_heads:.1f} / {state.live.n_heads}",
        help="1 / sum(w²): how many heads still carry the weight. Starts at K (uniform).",
    )
    cols[2].metric(
        "Weight entropy",
        f"{panels.entropy:.2f} nats",
        help=f"log K = {np.log(state.live.n_heads):.2f} when uniform, 0 when one head has it all.",
    )
    if panels.held_out is not None:
        acc = panels.held_out["hyre"][-1]
        base = panels.held_out["uniform"][-1]
        cols[3].metric(
            "Held-out accuracy",
            "–" if np.isnan(acc) else f"{acc:.0%}",
            delta=None if np.isnan(acc) else f"{acc - base:+.0%} vs uniform",
            help="HyRe's accuracy on the persona's pairs it has not labelled yet.",
        )
    else:
        pre = panels.prequential["hyre"]
        cols[3].metric(
            "Guessed right",
            f"{pre[-1]:.0%}" if pre else "–",
            help="Share of your labels HyRe predicted correctly before you gave them.",
        )


def _charts(panels, who: str) -> None:
    cols = st.columns(3, gap="medium")
    with cols[0], st.container(key="weights-panel"):
        st.markdown("**Head weights**")
        st.caption("All heads, heaviest first. Amber: heads that gained with the last label.")
        st.plotly_chart(common.weights_figure(panels), key="weights_chart", config=common.PLOTLY_CONFIG)
    with cols[1], st.container(key="pca-panel"):
        st.markdown("**Heads in function space**")
        st.caption("PCA of the heads' predictions on the pool. Dot size and colour: weight.")
        st.plotly_chart(common.pca_figure(panels), key="pca_chart", config=common.PLOTLY_CONFIG)
    with cols[2], st.container(key="accuracy-panel"):
        if panels.held_out is not None:
            st.markdown(f"**Accuracy on {who}'s other pairs**")
            st.caption("HyRe after n labels vs the uniform ensemble and the best single head.")
        else:
            st.markdown("**Did HyRe guess your choice?**")
            st.caption("Running share of your labels each model predicted before you gave them.")
        st.plotly_chart(common.accuracy_figure(panels), key="accuracy_chart", config=common.PLOTLY_CONFIG)


def _feedback(state: common.LiveState, who: str) -> str:
    event = state.last_event
    if event is None:
        if state.last_label == "skip":
            return "Skipped the last pair."
        return ""
    def mark(right: bool) -> str:
        return ":green[predicted it]" if right else ":red[predicted the other]"

    return (
        f"{who} chose **{event.label.upper()}** on the last pair · HyRe {mark(event.hyre_correct)} · "
        f"uniform ensemble {mark(event.uniform_correct)}"
    )


def _human_area(ctx: common.Context, session_id: str) -> None:
    state = _live_state(ctx, session_id, None)
    panels = state.live.panels()
    item = panels.next_item
    if item is None:
        st.success("You have labelled every pair of this pool. Undo to revisit, or reset in Advanced.")
    else:
        _pair_cards(ctx, item)
    buttons = st.container(horizontal=True, key="actions")
    disabled = item is None
    buttons.button(
        "A is better", key="btn_a", type="primary", shortcut=KEYS["a"],
        on_click=_act, args=(ctx, session_id, item, "a"), disabled=disabled,
    )
    buttons.button(
        "B is better", key="btn_b", type="primary", shortcut=KEYS["b"],
        on_click=_act, args=(ctx, session_id, item, "b"), disabled=disabled,
    )
    buttons.button(
        "Skip", key="btn_skip", shortcut=KEYS["skip"], on_click=_act,
        args=(ctx, session_id, item, "skip"), disabled=disabled,
        help="Not sure? Skip: the pair is not asked again and does not count as a label.",
    )
    buttons.button(
        "Undo", key="btn_undo", shortcut=KEYS["undo"], on_click=_undo, args=(ctx, session_id),
        disabled=state.n_rows == 0,
    )
    note = _feedback(state, "You")
    buttons.markdown(note if note else f"Next pair chosen by **{state.strategy.upper()}**.")
    _metrics(ctx, state, panels)
    _charts(panels, "you")


def _persona_area(ctx: common.Context, session_id: str, persona: common.PersonaInfo) -> None:
    state = _live_state(ctx, session_id, persona.id)
    playing = st.session_state.get(PLAYING_KEY, False)
    pace = st.session_state.get(PACE_KEY, DEFAULT_PACE)
    due = time.monotonic() - st.session_state.get(LAST_STEP_KEY, 0.0) >= 0.8 * pace
    if playing and due and not _persona_step(ctx, state):
        st.session_state[PLAYING_KEY] = False
    panels = state.live.panels()
    if state.last_item is not None and state.last_label in ("a", "b"):
        _pair_cards(ctx, state.last_item, chosen=state.last_label, who=persona.name)
    elif panels.next_item is not None:
        _pair_cards(ctx, panels.next_item)
    if panels.next_item is None:
        st.success(f"{persona.name} has labelled every pair.")
    buttons = st.container(horizontal=True, key="persona-actions")
    buttons.button(
        "One label", key="btn_step", shortcut=KEYS["step"], icon=":material/skip_next:",
        on_click=_step, args=(ctx, session_id), disabled=panels.next_item is None,
        help="Let the persona answer the next pair.",
    )
    buttons.button(
        "Undo", key="btn_undo_persona", shortcut=KEYS["undo"], on_click=_undo,
        args=(ctx, session_id), disabled=state.n_rows == 0,
    )
    note = _feedback(state, persona.name)
    buttons.markdown(note if note else "Press **Play** (or **One label**) to start.")
    _metrics(ctx, state, panels)
    _charts(panels, persona.name)


def _advanced(ctx: common.Context, session_id: str) -> None:
    strategy, beta = _session_settings(ctx, session_id)
    with st.expander("Advanced: query strategy, temperature, reset"):
        cols = st.columns([2, 2, 1], vertical_alignment="bottom")
        st.session_state.setdefault("adv_strategy", strategy)
        st.session_state.setdefault("adv_beta", beta)
        cols[0].selectbox(
            "Next pair chosen by", list(STRATEGIES), format_func=STRATEGIES.get, key="adv_strategy",
            on_change=_save_setting, args=(ctx, session_id, "strategy", "adv_strategy"),
        )
        cols[1].slider(
            "β (temperature)", *BETA_RANGE, step=0.1, key="adv_beta",
            on_change=_save_setting, args=(ctx, session_id, "beta", "adv_beta"),
            help="w_k ∝ exp(-β · errors_k). β = 1 is the paper's; larger drops wrong heads faster.",
        )
        cols[2].button(
            "Reset session", key="btn_reset", icon=":material/restart_alt:",
            on_click=_reset, args=(ctx, session_id),
            help="Delete this session's labels and start again from uniform weights.",
        )


def main() -> None:
    ctx = common.get_context()
    if ctx is None:
        return
    st.markdown("### Which answer is better?")
    header = st.empty()
    strip = st.container(horizontal=True, vertical_alignment="bottom", key="mode-strip")
    mode = strip.segmented_control(
        "Who labels?", list(MODES), format_func=MODES.get, default="human", required=True,
        key=MODE_KEY,
    )
    persona = None
    if mode == "persona":
        personas = common.pool_personas(ctx.db_path, ctx.pool_id)
        if not personas:
            st.info("This pool has no labelled groups besides the training crowd: no persona to play.")
            return
        by_id = {p.id: p for p in personas}
        persona_id = strip.selectbox(
            "Persona", list(by_id), format_func=lambda pid: by_id[pid].name, key=PERSONA_KEY,
            width=200,
        )
        persona = by_id[persona_id]
        strip.select_slider(
            "Seconds per label", PACES, value=DEFAULT_PACE, key=PACE_KEY, width=180,
        )
        playing = st.session_state.get(PLAYING_KEY, False)
        strip.button(
            "Pause" if playing else "Play", key="btn_play", type="primary", shortcut=KEYS["play"],
            icon=":material/pause:" if playing else ":material/play_arrow:", on_click=_toggle_play,
        )
        st.info(f"**{persona.name}** — {persona.description}", icon=":material/person:")
    if persona is None:
        header.caption(
            "Pick the response you prefer: keys **A** / **B**, **S** to skip, **U** to undo. "
            f"After each choice HyRe reweights its {ctx.n_heads} reward heads and asks about the "
            "pair they disagree on most; the panels below follow it live."
        )
    else:
        header.caption(
            "Watch a simulated user label: **Play** / **Pause** (key **P**), **N** for one label. "
            f"Its choices reweight the {ctx.n_heads} reward heads exactly as yours would."
        )
    session_id = ctx.store.get_or_create_session(
        user=ctx.user, pool_id=ctx.pool_id, ensemble_id=ctx.ensemble_id,
        mode=mode, persona=persona.id if persona else None,
    )
    if st.session_state.get("adv_session") != session_id:
        # another session: its own stored settings fill the Advanced widgets
        for key in ("adv_strategy", "adv_beta"):
            st.session_state.pop(key, None)
        st.session_state["adv_session"] = session_id
        st.session_state[PLAYING_KEY] = False
    if persona is None:
        st.fragment(_human_area)(ctx, session_id)
    else:
        playing = st.session_state.get(PLAYING_KEY, False)
        pace = st.session_state.get(PACE_KEY, DEFAULT_PACE)
        st.fragment(_persona_area, run_every=pace if playing else None)(ctx, session_id, persona)
    _advanced(ctx, session_id)


main()
