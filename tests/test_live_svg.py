"""The Label page's live figures are sent unvalidated (live_figures.live_figure): here every
spec is validated by plotly and must give the same JSON, over sessions of every kind."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io
import pytest

from hyre_engine.live import LiveSession
from pages._shared import live_figures

SPECS = {
    "weights": (live_figures.weights_spec, live_figures.weights_figure),
    "pca": (live_figures.pca_spec, live_figures.pca_figure),
    "accuracy": (live_figures.accuracy_spec, live_figures.accuracy_figure),
}


def _json(figure: go.Figure):
    return json.loads(plotly.io.to_json(figure, validate=False))


def _snapshots(*, personal: bool, persona: bool, method: str | None = None):
    """Snapshots of one session after 0, 1, ..., 12 labels (and one skip)."""
    rng = np.random.default_rng(int(personal) + 2 * int(persona))
    z = rng.normal(scale=2.0, size=(40, 12)).astype(np.float32)
    truth = np.array(rng.choice(["a", "b", None], size=40), dtype=object) if persona else None
    diffs = rng.normal(size=(40, 6)).astype(np.float32) if personal else None
    session = LiveSession(z, truth=truth, diffs=diffs, method=method)
    yield session.snapshot()
    session.skip(session.next_item())
    for i in range(12):
        session.add_label(session.next_item(), "ab"[int(rng.random() < 0.3 + 0.4 * (i % 2))])
        yield session.snapshot()


@pytest.mark.parametrize(("personal", "persona", "method"), [
    (False, False, None), (True, False, None), (True, False, "hyre"), (False, True, None), (True, True, None),
])
def test_live_specs_are_valid_plotly_and_sent_as_validated(personal, persona, method):
    for snap in _snapshots(personal=personal, persona=persona, method=method):
        for name, (spec, figure) in SPECS.items():
            for options in ({}, {"height": 190}, {"log_x": True}) if name == "accuracy" else ({},):
                validated = go.Figure(spec(snap, **options))  # raises on any invalid property
                sent = figure(snap, **options)
                # the same JSON, up to the order of keys (plotly's validation sorts some)
                assert _json(sent) == _json(validated), name


def test_an_invalid_spec_is_caught_by_the_check_above():
    snap = next(_snapshots(personal=False, persona=False))
    spec = live_figures.weights_spec(snap)
    spec["data"][0]["marker"]["colour"] = "red"  # a typo plotly's validation refuses
    live_figures.live_figure(spec)  # sent unvalidated, it would pass silently
    with pytest.raises(ValueError, match="colour"):
        go.Figure(spec)
