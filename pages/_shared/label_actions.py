"""The Label page's controls: its session-state keys, the button callbacks, the answer row
and the reset confirmation.

Every callback writes the store first (through `hyre_engine.live`), then updates the
live session; the page only renders what the session says.
"""

from __future__ import annotations

import time

import streamlit as st

from hyre_engine import live
from hyre_engine.live import LiveState
from hyre_engine.numerics import BOTH_BAD, CANT_JUDGE, LABEL_A, LABEL_B, SKIP, TIE
from hyre_engine.store import AlreadyLabelledError
from pages._shared import resets
from pages._shared.context import Context
from pages._shared.keyboard import SHORTCUTS
from pages._shared.labels import NO_PREFERENCE_HELP
from pages._shared.notes import note_popover

# Keyboard shortcuts (st.button shortcut=), one definition with the help overlay.
KEYS = SHORTCUTS
# The judgements beyond A / B, in the order the buttons show them, with their labels.
OTHER_JUDGEMENTS = ((TIE, "Tie"), (BOTH_BAD, "Both bad"), (CANT_JUDGE, "Can't judge"), (SKIP, "Skip"))

MODE_KEY = "label_mode"
PERSONA_KEY = "label_persona"
PACE_KEY = "label_pace"
PLAYING_KEY = "label_playing"
LIVE_KEY = "label_live"
LAST_STEP_KEY = "label_last_step"
CONFIRM_RESET_KEY = "label_confirm_reset"
# The Advanced switch "HyRe only (the paper's method)": its widget key.
HYRE_ONLY_KEY = "adv_hyre_only"


def current(session_id: str) -> LiveState | None:
    state = st.session_state.get(LIVE_KEY)
    return state if isinstance(state, LiveState) and state.session_id == session_id else None


# ---------------------------------------------------------------- callbacks


def act(ctx: Context, session_id: str, item: int, label: str) -> None:
    state = current(session_id)
    if state is None or state.live.is_answered(item):
        return  # another session's button, or a double press on a pair already answered
    try:
        live.record_label(ctx.store, state, item, label)
    except AlreadyLabelledError:
        # the same user answered this pair in another tab: say so, rebuild from the store
        resets.tell(resets.ANSWERED_ELSEWHERE)
        st.session_state.pop(LIVE_KEY, None)
    else:
        resets.forget_reset()


def undo(ctx: Context, session_id: str) -> None:
    state = current(session_id)
    if state is not None:
        live.undo_label(ctx.store, state)
        st.session_state[PLAYING_KEY] = False


def persona_step(ctx: Context, state: LiveState) -> bool:
    """The persona answers the pair the strategy picks; False when nothing is left."""
    try:
        if not live.persona_step(ctx.store, state):
            return False
    except AlreadyLabelledError:
        resets.tell(resets.ANSWERED_ELSEWHERE)
        st.session_state.pop(LIVE_KEY, None)
        return True
    st.session_state[LAST_STEP_KEY] = time.monotonic()
    return True


def step(ctx: Context, session_id: str) -> None:
    state = current(session_id)
    if state is not None:
        persona_step(ctx, state)


def toggle_play() -> None:
    st.session_state[PLAYING_KEY] = not st.session_state.get(PLAYING_KEY, False)
    st.session_state[LAST_STEP_KEY] = 0.0


def stop_play() -> None:
    # switching persona or mode stops playback, and the button must say so in the same run
    st.session_state[PLAYING_KEY] = False


def _ask_reset() -> None:
    st.session_state[CONFIRM_RESET_KEY] = True


def _cancel_reset() -> None:
    st.session_state[CONFIRM_RESET_KEY] = False


def _reset(ctx: Context, session_id: str) -> None:
    removed = ctx.store.reset_session(session_id, actor=ctx.user)
    resets.remember_reset(session_id, removed)
    st.session_state.pop(LIVE_KEY, None)
    st.session_state[PLAYING_KEY] = False
    st.session_state[CONFIRM_RESET_KEY] = False


def save_setting(ctx: Context, session_id: str, name: str, widget_key: str) -> None:
    ctx.store.update_session(session_id, **{name: st.session_state[widget_key]})


def save_method(ctx: Context, session_id: str) -> None:
    """The Advanced switch: HyRe only, or HyRe + the personal head; the live session follows at once."""
    method = "hyre" if st.session_state[HYRE_ONLY_KEY] else "personal"
    ctx.store.update_session(session_id, method=method)
    state = current(session_id)
    if state is not None and state.live.has_personal:
        state.live.set_method(method)


# ---------------------------------------------------------------- controls


def answer_buttons(ctx: Context, session_id: str, state: LiveState, item: int | None) -> None:
    """A / B, the judgements beyond them, undo: one row above the pair, so it never moves."""
    buttons = st.container(horizontal=True, key="actions")
    disabled = item is None
    for label, text, key in ((LABEL_A, "A is better", "btn_a"), (LABEL_B, "B is better", "btn_b")):
        buttons.button(
            text, key=key, type="primary", shortcut=KEYS[label], on_click=act,
            args=(ctx, session_id, item, label), disabled=disabled,
            help=f"Key {KEYS[label]} (or {'1' if label == LABEL_A else '2'}).",
        )
    for label, text in OTHER_JUDGEMENTS:
        buttons.button(
            text, key=f"btn_{label}", shortcut=KEYS[label], on_click=act,
            args=(ctx, session_id, item, label), disabled=disabled,
            help=f"{NO_PREFERENCE_HELP[label]} Key {KEYS[label]}.",
        )
    buttons.button(
        "Undo", key="btn_undo", shortcut=KEYS["undo"], on_click=undo, args=(ctx, session_id),
        disabled=state.n_rows == 0, help=f"Take back the last answer. Key {KEYS['undo']}.",
    )
    note_popover(buttons, ctx, session_id, item, None if item is None else state.pair_ids[item])


def persona_buttons(ctx: Context, session_id: str, state: LiveState, next_item: int | None) -> None:
    buttons = st.container(horizontal=True, key="persona-actions")
    buttons.button(
        "One label", key="btn_step", shortcut=KEYS["step"], icon=":material/skip_next:",
        on_click=step, args=(ctx, session_id), disabled=next_item is None,
        help=f"Let the persona answer the next pair. Key {KEYS['step']}.",
    )
    buttons.button(
        "Undo", key="btn_undo_persona", shortcut=KEYS["undo"], on_click=undo,
        args=(ctx, session_id), disabled=state.n_rows == 0,
    )


def reset_control(ctx: Context, session_id: str, where) -> None:
    """Reset asks first, and can be undone until the next label."""
    if not st.session_state.get(CONFIRM_RESET_KEY) and resets.undo_reset_button(ctx, session_id, where, live_key=LIVE_KEY):
        return
    if not st.session_state.get(CONFIRM_RESET_KEY):
        where.button(
            "Reset session", key="btn_reset", icon=":material/restart_alt:", on_click=_ask_reset,
            help="Delete this session's labels and start again from uniform weights (asks first).",
        )
        return
    n = live.stored_rows(ctx.store, session_id)
    with where.container(key="confirm-reset"):
        st.warning(f"Remove all {n} answers of this session? You can undo it until your next label.")
        cols = st.columns(2)
        cols[0].button(
            f"Yes, delete {n}", key="btn_reset_confirm", type="primary", on_click=_reset,
            args=(ctx, session_id),
        )
        cols[1].button("Cancel", key="btn_reset_cancel", on_click=_cancel_reset)
