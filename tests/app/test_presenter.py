"""AppTest of the Label page's demo controls: presenter view, stop after N, the persona picker."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hyre_engine.demo import load_personas

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 120

pytestmark = pytest.mark.slow


def _persona_app(user: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["user"] = user
    at.run()
    at.segmented_control(key="label_mode").set_value("persona").run()
    assert not at.exception, at.exception
    return at


def _charts(at: AppTest) -> list[tuple[str, int]]:
    """(kind, height in pixels) of each live chart on the page (SVG drawn with st.markdown)."""
    roots = [ET.fromstring(m.value)[0] for m in at.markdown if m.value.startswith('<div class="hyre-live-chart">')]
    return [(r.get("data-chart"), int(r.get("height"))) for r in roots if r.get("data-chart")]


def test_picker_defaults_to_a_held_out_persona_and_marks_them(app_db):
    at = _persona_app("pia")
    personas = load_personas()
    picker = at.selectbox(key="label_persona")
    assert picker.value in {p.id for p in personas if not p.in_crowd}
    # every option is a persona's name, marked exactly when the crowd never saw it
    expected = {p.name + (" · held out" if not p.in_crowd else "") for p in personas}
    assert set(picker.options) <= expected
    assert any(o.endswith("· held out") for o in picker.options)
    assert not all(o.endswith("· held out") for o in picker.options)
    assert "Held out" in at.info[0].value


def test_presenter_view_shows_the_headline_and_hides_the_small_panels(app_db):
    from pages._shared.charts import HEADLINE_HEIGHT

    at = _persona_app("pete")
    at.button(key="btn_step").click().run()
    assert sorted(k for k, _ in _charts(at)) == ["accuracy", "pca", "weights"] and at.metric
    at.toggle(key="label_presenter").set_value(True).run()
    assert not at.exception, at.exception
    assert _charts(at) == [("headline", HEADLINE_HEIGHT)]
    assert not at.metric
    assert any("pairs not labelled yet" in m.value for m in at.markdown)
    at.toggle(key="label_presenter").set_value(False).run()
    assert sorted(k for k, _ in _charts(at)) == ["accuracy", "pca", "weights"]


def test_stop_after_n_stops_playback_at_n(app_db):
    at = _persona_app("stan")
    at.number_input(key="label_stop_at").set_value(2)
    at.select_slider(key="label_pace").set_value(0.5).run()
    at.button(key="btn_play").click().run()
    for _ in range(8):
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    assert at.session_state["label_live"].live.n_labels == 2
    assert at.button(key="btn_play").label == "Play"
    assert any("Stopped after 2 labels" in i.value for i in at.info)
