"""Label page: pick the better answer, watch HyRe lock on to you.

The pair to label is chosen by the session's strategy under the current head
weights; every label is written to the store, then applied to the live
posterior, and only the live fragment reruns. In persona mode a simulated
user labels on its own at a chosen pace (a timed fragment).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from hyre_engine import live
from hyre_engine.acquisition import PREFERENCE_STRATEGIES
from hyre_engine.live import DEFAULT_STRATEGY, LiveSnapshot, LiveState
from hyre_engine.numerics import BOTH_BAD, CANT_JUDGE, LABEL_A, LABEL_B, SKIP, TIE
from hyre_engine.store import SESSION_MODES
from pages._shared.context import Context, get_context
from pages._shared.guidelines import guidelines_panel
from pages._shared.keyboard import SHORTCUTS, keyboard_help_button
from pages._shared.labels import MODE_TEXT, NO_PREFERENCE_HELP, STRATEGY_TEXT
from pages._shared.live_panels import feedback, live_charts, live_strip, pair_cards
from pages._shared.notes import note_popover

if TYPE_CHECKING:
    from hyre_engine.profiles import PersonaInfo

# The strategies a preference session may use, in the order the menu shows them.
STRATEGIES = sorted(PREFERENCE_STRATEGIES, key=list(STRATEGY_TEXT).index)
# beta = 1 is the paper's temperature; the slider spans gentle to near-hard elimination.
BETA_RANGE = (0.1, 10.0)  # covers every calibration candidate (up to 8)
# Seconds between two persona labels: slow enough to follow, fast enough to demo.
PACES = (0.5, 1.0, 2.0, 3.0)
DEFAULT_PACE = 1.0
# Keyboard shortcuts (st.button shortcut=), one definition with the help overlay.
KEYS = SHORTCUTS
# A session's goal: labels to give before the finished summary (a setting per session).
DEFAULT_GOAL = 30
GOAL_RANGE = (5, 500)
# The judgements beyond A / B, in the order the buttons show them, with their labels.
OTHER_JUDGEMENTS = ((TIE, "Tie"), (BOTH_BAD, "Both bad"), (CANT_JUDGE, "Can't judge"), (SKIP, "Skip"))

MODE_KEY = "label_mode"
PERSONA_KEY = "label_persona"
PACE_KEY = "label_pace"
PLAYING_KEY = "label_playing"
LIVE_KEY = "label_live"
LAST_STEP_KEY = "label_last_step"
CONFIRM_RESET_KEY = "label_confirm_reset"


# ---------------------------------------------------------------- state


def _session_settings(ctx: Context, session_id: str) -> tuple[str, float]:
    settings = ctx.store.get_session(session_id).settings
    strategy = settings.get("strategy", DEFAULT_STRATEGY)
    if strategy not in STRATEGIES:
        strategy = DEFAULT_STRATEGY
    # The ensemble's calibrated temperature is the default, the session's own choice in
    # the Advanced panel overrides it: the one rule every page replays a session with.
    return strategy, live.session_beta(ctx.store, session_id)


def _session_goal(ctx: Context, session_id: str) -> int:
    goal = ctx.store.get_session(session_id).settings.get("goal", DEFAULT_GOAL)
    return int(min(max(int(goal), GOAL_RANGE[0]), GOAL_RANGE[1]))


def _current(session_id: str) -> LiveState | None:
    state = st.session_state.get(LIVE_KEY)
    return state if isinstance(state, LiveState) and state.session_id == session_id else None


def _live_state(ctx: Context, session_id: str, persona: str | None) -> LiveState:
    """The session's LiveState, rebuilt from the store when missing, stale or re-configured."""
    strategy, beta = _session_settings(ctx, session_id)
    state = st.session_state.get(LIVE_KEY)
    if isinstance(state, LiveState) and state.is_current(ctx.store, session_id, beta):
        state.live.set_strategy(strategy)
        return state
    arrays = ctx.arrays()
    # prompts: never ask about the prompt just asked (measured: no accuracy cost)
    state = live.open_live(
        ctx.store, session_id, arrays.logits, ctx.pair_ids(), beta=beta, strategy=strategy,
        truth=None if persona is None else ctx.truth(persona), pca=arrays.pca,
        prompts=ctx.pairs()["prompt"].to_numpy(dtype=object),
    )
    st.session_state[LIVE_KEY] = state
    return state


# ---------------------------------------------------------------- actions (button callbacks)


def _act(ctx: Context, session_id: str, item: int, label: str) -> None:
    state = _current(session_id)
    if state is None or state.live.is_answered(item):
        return  # another session's button, or a double press on a pair already answered
    try:
        live.record_label(ctx.store, state, item, label)
    except ValueError:
        # the same user answered this pair in another tab: rebuild from the store
        st.session_state.pop(LIVE_KEY, None)


def _undo(ctx: Context, session_id: str) -> None:
    state = _current(session_id)
    if state is not None:
        live.undo_label(ctx.store, state)
        st.session_state[PLAYING_KEY] = False


def _persona_step(ctx: Context, state: LiveState) -> bool:
    """The persona answers the pair the strategy picks; False when nothing is left."""
    if not live.persona_step(ctx.store, state):
        return False
    st.session_state[LAST_STEP_KEY] = time.monotonic()
    return True


def _step(ctx: Context, session_id: str) -> None:
    state = _current(session_id)
    if state is not None:
        _persona_step(ctx, state)


def _toggle_play() -> None:
    st.session_state[PLAYING_KEY] = not st.session_state.get(PLAYING_KEY, False)
    st.session_state[LAST_STEP_KEY] = 0.0


def _stop_play() -> None:
    # switching persona or mode stops playback, and the button must say so in the same run
    st.session_state[PLAYING_KEY] = False


def _ask_reset() -> None:
    st.session_state[CONFIRM_RESET_KEY] = True


def _cancel_reset() -> None:
    st.session_state[CONFIRM_RESET_KEY] = False


def _reset(ctx: Context, session_id: str) -> None:
    ctx.store.reset_session(session_id)
    st.session_state.pop(LIVE_KEY, None)
    st.session_state[PLAYING_KEY] = False
    st.session_state[CONFIRM_RESET_KEY] = False


def _save_setting(ctx: Context, session_id: str, name: str, widget_key: str) -> None:
    ctx.store.update_session(session_id, **{name: st.session_state[widget_key]})


# ---------------------------------------------------------------- rendering


def _answer_buttons(ctx: Context, session_id: str, state: LiveState, item: int | None) -> None:
    """A / B, the judgements beyond them, undo: one row above the pair, so it never moves."""
    buttons = st.container(horizontal=True, key="actions")
    disabled = item is None
    for label, text, key in ((LABEL_A, "A is better", "btn_a"), (LABEL_B, "B is better", "btn_b")):
        buttons.button(
            text, key=key, type="primary", shortcut=KEYS[label], on_click=_act,
            args=(ctx, session_id, item, label), disabled=disabled,
            help=f"Key {KEYS[label]} (or {'1' if label == LABEL_A else '2'}).",
        )
    for label, text in OTHER_JUDGEMENTS:
        buttons.button(
            text, key=f"btn_{label}", shortcut=KEYS[label], on_click=_act,
            args=(ctx, session_id, item, label), disabled=disabled,
            help=f"{NO_PREFERENCE_HELP[label]} Key {KEYS[label]}.",
        )
    buttons.button(
        "Undo", key="btn_undo", shortcut=KEYS["undo"], on_click=_undo, args=(ctx, session_id),
        disabled=state.n_rows == 0, help=f"Take back the last answer. Key {KEYS['undo']}.",
    )
    note_popover(buttons, ctx, session_id, item, None if item is None else state.pair_ids[item])


def _feedback_line(state: LiveState, who: str, idle: str) -> None:
    # a fixed-height line (style.css): a note that wraps never pushes the panels down
    with st.container(key="feedback-line"):
        note = feedback(state, who)
        st.markdown(note if note else idle)


def _finished(panels: LiveSnapshot, goal: int) -> None:
    """The summary shown once the session's goal is reached (labelling may go on)."""
    guessed = panels.running.hyre[-1] if panels.running.hyre else None
    top = int(panels.heaviest_first[0])
    st.success(
        f"**Goal reached: {panels.n_labels} / {goal} labels.** Your profile now rests on "
        f"{panels.effective_heads:.1f} of {panels.n_heads} reward heads (head {top} carries "
        f"{panels.weights[top]:.0%})"
        + (f", and HyRe guessed {guessed:.0%} of your choices before you made them." if guessed is not None else ".")
        + " See it on the Profiles page, or keep labelling to sharpen it.",
        icon=":material/flag:",
    )


def _human_area(ctx: Context, session_id: str) -> None:
    state = _live_state(ctx, session_id, None)
    panels = state.live.snapshot()
    goal = _session_goal(ctx, session_id)
    item = panels.next_item
    left, right = st.columns([2, 1], gap="medium")
    with left:
        _answer_buttons(ctx, session_id, state, item)
        _feedback_line(state, "You", f"Next pair chosen by **{state.strategy.upper()}**.")
        if state.live.candidates_per_query is not None:
            st.caption(f"Large pool: each query is chosen from a fresh random sample of "
                       f"{state.live.candidates_per_query:,} of its {state.live.n_items:,} pairs.")
        if panels.n_labels >= goal:
            _finished(panels, goal)
        if item is None:
            st.success("You have labelled every pair of this pool. Undo to revisit, or reset in Advanced.")
        else:
            pair_cards(ctx, item)
    with right:
        live_strip(panels, "you", goal=goal)
    live_charts(panels, "you")


def _persona_area(ctx: Context, session_id: str, persona: PersonaInfo) -> None:
    state = _live_state(ctx, session_id, persona.id)
    playing = st.session_state.get(PLAYING_KEY, False)
    pace = st.session_state.get(PACE_KEY, DEFAULT_PACE)
    due = time.monotonic() - st.session_state.get(LAST_STEP_KEY, 0.0) >= 0.8 * pace
    if playing and due and not _persona_step(ctx, state):
        st.session_state[PLAYING_KEY] = False
    panels = state.live.snapshot()
    left, right = st.columns([2, 1], gap="medium")
    with left:
        buttons = st.container(horizontal=True, key="persona-actions")
        buttons.button(
            "One label", key="btn_step", shortcut=KEYS["step"], icon=":material/skip_next:",
            on_click=_step, args=(ctx, session_id), disabled=panels.next_item is None,
            help=f"Let the persona answer the next pair. Key {KEYS['step']}.",
        )
        buttons.button(
            "Undo", key="btn_undo_persona", shortcut=KEYS["undo"], on_click=_undo,
            args=(ctx, session_id), disabled=state.n_rows == 0,
        )
        _feedback_line(state, persona.name, "Press **Play** (or **One label**) to start.")
        if state.last_item is not None and state.last_label in live.LABELS:
            pair_cards(ctx, state.last_item, chosen=state.last_label, who=persona.name)
        elif panels.next_item is not None:
            pair_cards(ctx, panels.next_item)
        if panels.next_item is None:
            st.success(f"{persona.name} has labelled every pair.")
    with right:
        live_strip(panels, persona.name)
    live_charts(panels, persona.name)


def _reset_control(ctx: Context, session_id: str, where) -> None:
    """Reset asks first: it deletes every label of the session."""
    if not st.session_state.get(CONFIRM_RESET_KEY):
        where.button(
            "Reset session", key="btn_reset", icon=":material/restart_alt:", on_click=_ask_reset,
            help="Delete this session's labels and start again from uniform weights (asks first).",
        )
        return
    n = live.stored_rows(ctx.store, session_id)
    with where.container(key="confirm-reset"):
        st.warning(f"Delete all {n} answers of this session? This cannot be undone.")
        cols = st.columns(2)
        cols[0].button(
            f"Yes, delete {n}", key="btn_reset_confirm", type="primary", on_click=_reset,
            args=(ctx, session_id),
        )
        cols[1].button("Cancel", key="btn_reset_cancel", on_click=_cancel_reset)


def _advanced(ctx: Context, session_id: str) -> None:
    strategy, beta = _session_settings(ctx, session_id)
    # a constant label and no `expanded=`: a change of either would rebuild the panel, and
    # it would fold shut between "Reset session" and its confirmation
    with st.expander("Advanced: query strategy, temperature, goal, reset"):
        cols = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
        st.session_state.setdefault("adv_strategy", strategy)
        st.session_state.setdefault("adv_beta", beta)
        st.session_state.setdefault("adv_goal", _session_goal(ctx, session_id))
        cols[0].selectbox(
            "Next pair chosen by", STRATEGIES, format_func=STRATEGY_TEXT.get, key="adv_strategy",
            on_change=_save_setting, args=(ctx, session_id, "strategy", "adv_strategy"),
        )
        cols[1].slider(
            "β (temperature)", *BETA_RANGE, step=0.1, key="adv_beta",
            on_change=_save_setting, args=(ctx, session_id, "beta", "adv_beta"),
            help="w_k ∝ exp(-β · errors_k). β = 1 is the paper's; larger drops wrong heads faster.",
        )
        cols[2].number_input(
            "Goal (labels)", *GOAL_RANGE, step=5, key="adv_goal",
            on_change=_save_setting, args=(ctx, session_id, "goal", "adv_goal"),
            help="How many labels this session aims for: shown as 12 / 30, then a summary.",
        )
        _reset_control(ctx, session_id, cols[3])


def main() -> None:
    ctx = get_context()
    if ctx is None:
        return
    # one row for the title, who labels and the keys: the pair starts high on a 720 px screen
    strip = st.container(horizontal=True, vertical_alignment="center", key="mode-strip")
    strip.markdown("### Which answer is better?")
    mode = strip.segmented_control(
        "Who labels?", list(SESSION_MODES), format_func=MODE_TEXT.get, default="human", required=True,
        key=MODE_KEY, on_change=_stop_play, label_visibility="collapsed",
    )
    keyboard_help_button(strip)
    header = st.empty()
    persona = None
    if mode == "persona":
        personas = ctx.personas()
        if not personas:
            st.info("This pool has no labelled groups besides the training crowd: no persona to play.")
            return
        by_id = {p.id: p for p in personas}
        persona_id = strip.selectbox(
            "Persona", list(by_id), format_func=lambda pid: by_id[pid].name, key=PERSONA_KEY,
            width=200, on_change=_stop_play,
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
            f"Pick the answer you prefer (**A** / **B**, **?** for every key): HyRe reweights its "
            f"{ctx.n_heads} reward heads and asks where they disagree most."
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
        for key in ("adv_strategy", "adv_beta", "adv_goal", CONFIRM_RESET_KEY):
            st.session_state.pop(key, None)
        st.session_state["adv_session"] = session_id
        st.session_state[PLAYING_KEY] = False
    if persona is None:
        # open on a person's first visit (no answer yet in this session), folded once they label
        guidelines_panel(ctx.store, ctx.pool_id, first_visit=live.stored_rows(ctx.store, session_id) == 0)
        st.fragment(_human_area)(ctx, session_id)
    else:
        playing = st.session_state.get(PLAYING_KEY, False)
        pace = st.session_state.get(PACE_KEY, DEFAULT_PACE)
        st.fragment(_persona_area, run_every=pace if playing else None)(ctx, session_id, persona)
    _advanced(ctx, session_id)


main()
