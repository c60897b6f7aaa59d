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
from hyre_engine.live import DEFAULT_STRATEGY, LiveState
from hyre_engine.store import SESSION_MODES
from pages._shared.context import Context, get_context
from pages._shared.labels import MODE_TEXT, STRATEGY_TEXT
from pages._shared.live_panels import feedback, live_charts, live_metrics, pair_cards

if TYPE_CHECKING:
    from hyre_engine.profiles import PersonaInfo

# The strategies a preference session may use, in the order the menu shows them.
STRATEGIES = sorted(PREFERENCE_STRATEGIES, key=list(STRATEGY_TEXT).index)
# beta = 1 is the paper's temperature; the slider spans gentle to near-hard elimination.
BETA_RANGE = (0.1, 10.0)  # covers every calibration candidate (up to 8)
# Seconds between two persona labels: slow enough to follow, fast enough to demo.
PACES = (0.5, 1.0, 2.0, 3.0)
DEFAULT_PACE = 1.0
# Keyboard shortcuts (st.button shortcut=; "C" and "R" are reserved by Streamlit).
KEYS = {"a": "A", "b": "B", "skip": "S", "undo": "U", "step": "N", "play": "P"}

MODE_KEY = "label_mode"
PERSONA_KEY = "label_persona"
PACE_KEY = "label_pace"
PLAYING_KEY = "label_playing"
LIVE_KEY = "label_live"
LAST_STEP_KEY = "label_last_step"


# ---------------------------------------------------------------- state


def _session_settings(ctx: Context, session_id: str) -> tuple[str, float]:
    settings = ctx.store.get_session(session_id)["settings"]
    strategy = settings.get("strategy", DEFAULT_STRATEGY)
    if strategy not in STRATEGIES:
        strategy = DEFAULT_STRATEGY
    # The ensemble's calibrated temperature (chosen on held-out training annotators)
    # is the default; a session's own choice in the Advanced panel overrides it.
    return strategy, float(settings.get("beta", ctx.beta))


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
    state = live.open_live(
        ctx.store, session_id, arrays.logits, ctx.pair_ids(), beta=beta, strategy=strategy,
        truth=None if persona is None else ctx.truth(persona), pca=arrays.pca,
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


def _reset(ctx: Context, session_id: str) -> None:
    ctx.store.reset_session(session_id)
    st.session_state.pop(LIVE_KEY, None)
    st.session_state[PLAYING_KEY] = False


def _save_setting(ctx: Context, session_id: str, name: str, widget_key: str) -> None:
    ctx.store.update_session(session_id, **{name: st.session_state[widget_key]})


# ---------------------------------------------------------------- rendering


def _human_area(ctx: Context, session_id: str) -> None:
    state = _live_state(ctx, session_id, None)
    panels = state.live.snapshot()
    item = panels.next_item
    if item is None:
        st.success("You have labelled every pair of this pool. Undo to revisit, or reset in Advanced.")
    else:
        pair_cards(ctx, item)
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
    note = feedback(state, "You")
    buttons.markdown(note if note else f"Next pair chosen by **{state.strategy.upper()}**.")
    if state.live.candidates_per_query is not None:
        buttons.caption(f"Large pool: each query is chosen from a fresh random sample of "
                        f"{state.live.candidates_per_query:,} of its {state.live.n_items:,} pairs.")
    live_metrics(panels)
    live_charts(panels, "you")


def _persona_area(ctx: Context, session_id: str, persona: PersonaInfo) -> None:
    state = _live_state(ctx, session_id, persona.id)
    playing = st.session_state.get(PLAYING_KEY, False)
    pace = st.session_state.get(PACE_KEY, DEFAULT_PACE)
    due = time.monotonic() - st.session_state.get(LAST_STEP_KEY, 0.0) >= 0.8 * pace
    if playing and due and not _persona_step(ctx, state):
        st.session_state[PLAYING_KEY] = False
    panels = state.live.snapshot()
    if state.last_item is not None and state.last_label in live.LABELS:
        pair_cards(ctx, state.last_item, chosen=state.last_label, who=persona.name)
    elif panels.next_item is not None:
        pair_cards(ctx, panels.next_item)
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
    note = feedback(state, persona.name)
    buttons.markdown(note if note else "Press **Play** (or **One label**) to start.")
    live_metrics(panels)
    live_charts(panels, persona.name)


def _advanced(ctx: Context, session_id: str) -> None:
    strategy, beta = _session_settings(ctx, session_id)
    with st.expander("Advanced: query strategy, temperature, reset"):
        cols = st.columns([2, 2, 1], vertical_alignment="bottom")
        st.session_state.setdefault("adv_strategy", strategy)
        st.session_state.setdefault("adv_beta", beta)
        cols[0].selectbox(
            "Next pair chosen by", STRATEGIES, format_func=STRATEGY_TEXT.get, key="adv_strategy",
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
    ctx = get_context()
    if ctx is None:
        return
    st.markdown("### Which answer is better?")
    header = st.empty()
    strip = st.container(horizontal=True, vertical_alignment="bottom", key="mode-strip")
    mode = strip.segmented_control(
        "Who labels?", list(SESSION_MODES), format_func=MODE_TEXT.get, default="human", required=True,
        key=MODE_KEY,
    )
    persona = None
    if mode == "persona":
        personas = ctx.personas()
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
