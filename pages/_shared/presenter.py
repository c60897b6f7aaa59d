"""The Label page's demo controls for persona mode: the presenter view (one large
headline chart for a projector) and "stop after N labels"."""

from __future__ import annotations

import streamlit as st

from hyre_engine.live import LiveSnapshot
from pages._shared import live_svg
from pages._shared.widgets import escape_markdown

PRESENTER_KEY = "label_presenter"
STOP_AT_KEY = "label_stop_at"
# Playback stops here unless the presenter says otherwise: a demo's minute at 2-3 s a label.
DEFAULT_STOP_AT = 20
STOP_AT_RANGE = (1, 500)
PLAIN = ("How often each model picks {who}'s choice on pairs not labelled yet. HyRe learns from "
         "every label; the plain average of all models and the best single model (chosen knowing "
         "every answer) do not learn.")
HELD_OUT_MARK = " · held out"


def persona_label(name: str, held_out: bool) -> str:
    """A persona's name in the picker; personas the training crowd never saw are marked."""
    return name + (HELD_OUT_MARK if held_out else "")


def controls(row) -> None:
    """The presenter toggle and the stop-after number, in ``row`` (a horizontal container)."""
    row.toggle("Presenter view", key=PRESENTER_KEY,
               help="One large chart for a projector: held-out accuracy as the persona labels.")
    row.number_input("Stop after (labels)", *STOP_AT_RANGE, value=DEFAULT_STOP_AT, step=5, key=STOP_AT_KEY,
                     width=130, help="Play stops once the persona has given this many labels.")


def stop_at() -> int:
    return int(st.session_state.get(STOP_AT_KEY, DEFAULT_STOP_AT))


def presenting() -> bool:
    return bool(st.session_state.get(PRESENTER_KEY, False))


def stopped_note(panels: LiveSnapshot, who: str) -> None:
    """Say so when playback has reached the stop (the persona may still label one by one)."""
    if panels.n_labels >= stop_at():
        st.info(f"Stopped after {stop_at()} labels: {escape_markdown(who)} has given {panels.n_labels}. "
                "Raise **Stop after** to play on, or press **One label**.", icon=":material/stop_circle:")


def headline(panels: LiveSnapshot, who: str) -> None:
    """The presenter view: a one-line plain explanation and the large headline chart."""
    with st.container(key="presenter-view"):
        st.markdown(PLAIN.format(who=escape_markdown(who.split(',')[0])))
        with st.container(key="headline-chart"):
            st.markdown(live_svg.as_markdown(live_svg.headline_svg(panels, who.split(',')[0])), unsafe_allow_html=True)
