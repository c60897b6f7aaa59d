"""Label page: pick the better answer, watch HyRe and your personal head lock on to you.

The pair to label is chosen by the session's strategy under the current model (HyRe +
the personal head by default, HyRe alone when Advanced says so); every label is written
to the store, then applied to the live session, and only the live fragment reruns. In
persona mode a simulated user labels on its own at a chosen pace (a timed fragment).
Controls and callbacks live in pages/_shared/label_actions.py, panels in live_panels.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import streamlit as st

from hyre_engine import live
from hyre_engine.acquisition import PREFERENCE_STRATEGIES
from hyre_engine.live import DEFAULT_STRATEGY, LiveState
from hyre_engine.profiles import default_persona
from hyre_engine.store import SESSION_MODES, SessionRecord
from pages._shared import label_actions as actions
from pages._shared import presenter, resets
from pages._shared.context import Context, get_context
from pages._shared.guidelines import guidelines_panel
from pages._shared.keyboard import keyboard_help_button
from pages._shared.label_actions import (
    CONFIRM_RESET_KEY,
    HYRE_ONLY_KEY,
    KEYS,
    LAST_STEP_KEY,
    LIVE_KEY,
    MODE_KEY,
    PACE_KEY,
    PERSONA_KEY,
    PLAYING_KEY,
)
from pages._shared.labels import MODE_TEXT, STRATEGY_TEXT
from pages._shared.live_panels import feedback_line, finished, live_charts, live_strip, pair_cards
from pages._shared.widgets import escape_markdown

if TYPE_CHECKING:
    from hyre_engine.profiles import PersonaInfo

# The strategies a preference session may use, in the order the menu shows them.
STRATEGIES = sorted(PREFERENCE_STRATEGIES, key=list(STRATEGY_TEXT).index)
# beta = 1 is the paper's temperature; the slider spans gentle to near-hard elimination.
BETA_RANGE = (0.1, 10.0)  # covers every calibration candidate (up to 8)
# Seconds between two persona labels: slow enough to follow, fast enough to demo.
PACES = (0.5, 1.0, 2.0, 3.0)
DEFAULT_PACE = 1.0
# A session's goal: labels to give before the finished summary (a setting per session).
DEFAULT_GOAL = 30
GOAL_RANGE = (5, 500)


# ---------------------------------------------------------------- state


def _session_settings(ctx: Context, session: SessionRecord) -> tuple[str, float, float, str]:
    """(strategy, beta, lambda, method) of the session, from its record and the ensemble's meta."""
    settings = session.settings
    strategy = settings.get("strategy", DEFAULT_STRATEGY)
    if strategy not in STRATEGIES:
        strategy = DEFAULT_STRATEGY
    # The ensemble's calibrated temperature is the default, the session's own choice in
    # the Advanced panel overrides it: the one rule every page replays a session with.
    meta = ctx.ensemble.meta
    return strategy, live.settings_beta(settings, meta), live.settings_lambda(settings, meta), live.settings_method(settings)


def _session_goal(session: SessionRecord) -> int:
    goal = session.settings.get("goal", DEFAULT_GOAL)
    return int(min(max(int(goal), GOAL_RANGE[0]), GOAL_RANGE[1]))


def _live_state(ctx: Context, session: SessionRecord, persona: str | None) -> LiveState:
    """The session's LiveState, rebuilt from the store when missing, stale or re-configured."""
    strategy, beta, lam, method = _session_settings(ctx, session)
    state = st.session_state.get(LIVE_KEY)
    if isinstance(state, LiveState) and state.matches(session, beta, lam, ctx.prior()):
        state.live.set_strategy(strategy)
        if state.live.has_personal:
            state.live.set_method(method)
        return state
    arrays = ctx.arrays()
    # prompts: never ask about the prompt just asked (measured: no accuracy cost)
    state = live.open_live(
        ctx.store, session.session_id, arrays.logits, ctx.pair_ids(), beta=beta, strategy=strategy,
        truth=None if persona is None else ctx.truth(persona), pca=arrays.pca,
        prompts=ctx.pairs()["prompt"].to_numpy(dtype=object), diffs=ctx.diffs(), lam=lam, method=method,
        prior=ctx.prior(),
    )
    st.session_state[LIVE_KEY] = state
    return state


# ---------------------------------------------------------------- rendering


def _human_area(ctx: Context, session_id: str) -> None:
    # the session is read once per run: settings, row count and revision in one query
    session = ctx.store.get_session(session_id)
    state = _live_state(ctx, session, None)
    panels = state.live.snapshot()
    goal = _session_goal(session)
    item = panels.next_item
    left, right = st.columns([2, 1], gap="medium")
    with left:
        actions.answer_buttons(ctx, session_id, state, item)
        resets.notice()
        feedback_line(state, "You", f"Next pair chosen by **{state.strategy.upper()}**.")
        if state.live.candidates_per_query is not None:
            st.caption(f"Large pool: each query is chosen from a fresh random sample of "
                       f"{state.live.candidates_per_query:,} of its {state.live.n_items:,} pairs.")
        if panels.n_labels >= goal:
            finished(panels, goal)
        if item is None:
            st.success("You have labelled every pair of this pool. Undo to revisit, or reset in Advanced.")
        else:
            pair_cards(ctx, item)
    with right:
        live_strip(panels, "you", goal=goal)
    live_charts(panels, "you")


def _persona_area(ctx: Context, session_id: str, persona: PersonaInfo) -> None:
    state = _live_state(ctx, ctx.store.get_session(session_id), persona.id)
    playing = st.session_state.get(PLAYING_KEY, False)
    pace = st.session_state.get(PACE_KEY, DEFAULT_PACE)
    due = time.monotonic() - st.session_state.get(LAST_STEP_KEY, 0.0) >= 0.8 * pace
    if playing and state.live.n_labels >= presenter.stop_at():
        actions.stop_play()  # stop after N labels: the next run turns the timer off
        st.rerun()
    if playing and due and not actions.persona_step(ctx, state):
        st.session_state[PLAYING_KEY] = False
    panels = state.live.snapshot()
    if presenter.presenting():
        presenter.stopped_note(panels, persona.name)
        presenter.headline(panels, persona.name)
        return
    left, right = st.columns([2, 1], gap="medium")
    with left:
        actions.persona_buttons(ctx, session_id, state, panels.next_item)
        feedback_line(state, persona.name, "Press **Play** (or **One label**) to start.")
        presenter.stopped_note(panels, persona.name)
        if state.last_item is not None and state.last_label in live.LABELS:
            pair_cards(ctx, state.last_item, chosen=state.last_label, who=persona.name)
        elif panels.next_item is not None:
            pair_cards(ctx, panels.next_item)
        if panels.next_item is None:
            st.success(f"{escape_markdown(persona.name)} has labelled every pair.")
    with right:
        live_strip(panels, persona.name)
    live_charts(panels, persona.name)


def _advanced(ctx: Context, session_id: str) -> None:
    session = ctx.store.get_session(session_id)
    strategy, beta, _, method = _session_settings(ctx, session)
    # a constant label and no `expanded=`: a change of either would rebuild the panel, and
    # it would fold shut between "Reset session" and its confirmation
    with st.expander("Advanced: query strategy, temperature, goal, model, reset"):
        cols = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
        st.session_state.setdefault("adv_strategy", strategy)
        st.session_state.setdefault("adv_beta", beta)
        st.session_state.setdefault("adv_goal", _session_goal(session))
        st.session_state.setdefault(HYRE_ONLY_KEY, method == "hyre")
        save = actions.save_setting
        cols[0].selectbox(
            "Next pair chosen by", STRATEGIES, format_func=STRATEGY_TEXT.get, key="adv_strategy",
            on_change=save, args=(ctx, session_id, "strategy", "adv_strategy"),
        )
        cols[1].slider(
            "β (temperature)", *BETA_RANGE, step=0.1, key="adv_beta",
            on_change=save, args=(ctx, session_id, "beta", "adv_beta"),
            help="w_k ∝ exp(-β · errors_k). β = 1 is the paper's; larger drops wrong heads faster.",
        )
        cols[2].number_input(
            "Goal (labels)", *GOAL_RANGE, step=5, key="adv_goal",
            on_change=save, args=(ctx, session_id, "goal", "adv_goal"),
            help="How many labels this session aims for: shown as 12 / 30, then a summary.",
        )
        actions.reset_control(ctx, session_id, cols[3])
        no_diffs = ctx.diffs() is None
        st.toggle(
            "HyRe only (the paper's method)", key=HYRE_ONLY_KEY, disabled=no_diffs,
            on_change=actions.save_method, args=(ctx, session_id),
            help="Off (the default): HyRe's reweighted heads plus a personal head, a small linear "
            f"correction on the text embeddings (prior precision λ = {ctx.lam:g}"
            + (f"; a prior shaped by how the training annotators differ, ρ = {ctx.ensemble.meta.rho:g}"
               if ctx.ensemble.meta.rho else "")
            + ") that learns what no head holds. On: the heads' weights alone, as in the HyRe paper. Both learn from every "
            "label, so switching is instant."
            + (" This pool has no stored embedding differences, so only HyRe is available." if no_diffs else ""),
        )


def main() -> None:
    ctx = get_context()
    if ctx is None:
        return
    # one row for the title, who labels and the keys: the pair starts high on a 720 px screen
    strip = st.container(horizontal=True, vertical_alignment="center", key="mode-strip")
    strip.markdown("### Which answer is better?")
    mode = strip.segmented_control(
        "Who labels?", list(SESSION_MODES), format_func=MODE_TEXT.get, default="human", required=True,
        key=MODE_KEY, on_change=actions.stop_play, label_visibility="collapsed",
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
        # the default is a persona the training crowd never saw: the honest demo
        st.session_state.setdefault(PERSONA_KEY, default_persona(personas).id)
        persona_id = strip.selectbox(
            "Persona", list(by_id), format_func=lambda pid: presenter.persona_label(by_id[pid].name, by_id[pid].held_out),
            key=PERSONA_KEY, width=200, on_change=actions.stop_play,
            help="“held out”: a persona kept out of the crowd the heads were trained on.",
        )
        persona = by_id[persona_id]
        strip.select_slider(
            "Seconds per label", PACES, value=DEFAULT_PACE, key=PACE_KEY, width=150,
        )
        playing = st.session_state.get(PLAYING_KEY, False)
        strip.button(
            "Pause" if playing else "Play", key="btn_play", type="primary", shortcut=KEYS["play"],
            icon=":material/pause:" if playing else ":material/play_arrow:", on_click=actions.toggle_play,
        )
        # in the same row as the persona and Play: at 1280 x 720 the pair and the strip stay on screen
        presenter.controls(strip)
        # one box for who the persona is and how to drive it (a caption above it pushed the pair
        # below a 720 px screen)
        st.info(f"**{escape_markdown(persona.name)}** — {escape_markdown(persona.description)}"
                + (" *Held out: the heads never saw this persona's labels.*" if persona.held_out else "")
                + f" **Play** / **Pause** (**P**), **N**: one label; it reweights the {ctx.n_heads} heads as yours would.",
                icon=":material/person:")
    else:
        header.caption(
            f"Pick the answer you prefer (**A** / **B**, **?** for every key): HyRe reweights its "
            f"{ctx.n_heads} reward heads and asks where they disagree most."
        )
    session_id = ctx.store.get_or_create_session(
        user=ctx.user, pool_id=ctx.pool_id, ensemble_id=ctx.ensemble_id,
        mode=mode, persona=persona.id if persona else None,
    )
    if st.session_state.get("adv_session") != session_id:
        # another session: its own stored settings fill the Advanced widgets
        for key in ("adv_strategy", "adv_beta", "adv_goal", HYRE_ONLY_KEY, CONFIRM_RESET_KEY,
                    resets.UNDO_RESET_KEY):
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
