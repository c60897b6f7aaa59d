"""The Label page's live figures: weights, function space, accuracy, the presenter's headline.

Rebuilt on every label, for every labeller, so each is one plotly spec (a dict), made a
Figure without plotly's validation (`live_figure`: the tests validate the specs); colours and
heights are the app's, from charts.py.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from hyre_engine.live import LiveSnapshot
from pages._shared.charts import (
    CHART_HEIGHT,
    COLOR_GAIN,
    COLOR_HEAD,
    COLOR_ORACLE,
    COLOR_PERSONAL,
    COLOR_UNIFORM,
    HEADLINE_HEIGHT,
    INTEGER_TICKS_UP_TO,
    weight_marker,
)

# ---------------------------------------------------------------- Label page (live)
#
# The live figures are rebuilt on every label, for every labeller: each is written as one
# plotly spec (a dict). Building them call by call (add_bar, update_layout, add_hline, ...)
# cost about 3x the CPU (docs/results.md).


def live_figure(spec: dict) -> go.Figure:
    """``spec`` as a Figure without plotly's property validation.

    The specs are this module's own code, not user input, and plotly's validators were most
    of a figure's cost on every label (docs/results.md); tests/test_live_figures.py checks
    that validating each spec raises nothing and gives the same JSON, over many snapshots.
    """
    return go.Figure(spec, _validate=False)


def _live_layout(*, xtitle: str, ytitle: str, show_legend: bool = True, **extra) -> dict:
    """The live charts' layout; ``extra`` keys are set, dicts merged into the defaults."""
    # Titles are drawn by the page above each chart; the legend sits on top, clear of the axes.
    layout = {
        "height": CHART_HEIGHT,
        "margin": {"l": 10, "r": 10, "t": 30 if show_legend else 10, "b": 10},
        "xaxis": {"title": {"text": xtitle}},
        "yaxis": {"title": {"text": ytitle}},
        "showlegend": show_legend,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        "uirevision": "keep",  # keep zoom and hover state across live updates
    }
    for key, value in extra.items():
        layout[key] = {**layout[key], **value} if isinstance(value, dict) and key in layout else value
    return layout


def weights_figure(snap: LiveSnapshot) -> go.Figure:
    """Bar chart of all K weights, heaviest first; heads that gained on the last label in amber."""
    return live_figure(weights_spec(snap))


def weights_spec(snap: LiveSnapshot) -> dict:
    """`weights_figure`'s plotly spec."""
    order = snap.heaviest_first
    w, change, gained = snap.weights[order], snap.weight_change[order], snap.gained[order]
    n_heads = snap.n_heads
    bars = []
    for mask, name, color in ((~gained, "head", COLOR_HEAD), (gained, "gained on last label", COLOR_GAIN)):
        if not mask.any() and name != "head":
            continue
        bars.append({
            "type": "bar", "x": np.flatnonzero(mask), "y": w[mask], "name": name, "marker": {"color": color},
            "customdata": np.stack([order[mask], change[mask]], axis=1),
            "hovertemplate": "head %{customdata[0]}<br>weight %{y:.4f}<br>change %{customdata[1]:+.4f}<extra></extra>",
        })
    uniform = 1.0 / n_heads
    layout = _live_layout(
        xtitle=f"{n_heads} heads, heaviest first", ytitle="weight", barmode="overlay", bargap=0.1,
        xaxis={"range": [-0.6, n_heads - 0.4], "showticklabels": False},
        yaxis={"range": [0, max(float(w[0]) * 1.15, 1.5 / n_heads)]},
        shapes=[{"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": uniform, "y1": uniform,
                 "line": {"dash": "dot", "color": COLOR_UNIFORM}}],
        annotations=[{"text": "uniform", "showarrow": False, "xref": "x domain", "x": 1, "xanchor": "right",
                      "yref": "y", "y": uniform, "yanchor": "bottom"}],
    )
    return {"data": bars, "layout": layout}


def pca_figure(snap: LiveSnapshot) -> go.Figure:
    """Heads in the plane of the first two principal components, sized and coloured by weight."""
    return live_figure(pca_spec(snap))


def pca_spec(snap: LiveSnapshot) -> dict:
    """`pca_figure`'s plotly spec."""
    w, xy, evr, gained = snap.weights, snap.head_coords, snap.explained_variance_ratio, snap.gained
    marker = weight_marker(w, base=6, span=24)
    marker["line"] = {"width": np.where(gained, 2, 0.5), "color": np.where(gained, COLOR_GAIN, "#FFFFFF").tolist()}
    traces = [{
        "type": "scatter", "x": xy[:, 0], "y": xy[:, 1], "mode": "markers", "name": "head (size = weight)",
        "marker": marker, "customdata": np.stack([np.arange(w.size), w], axis=1),
        "hovertemplate": "head %{customdata[0]}<br>weight %{customdata[1]:.4f}<extra></extra>",
    }]
    xs, ys = [float(xy[:, 0].min()), float(xy[:, 0].max())], [float(xy[:, 1].min()), float(xy[:, 1].max())]
    if snap.person_coords is not None:
        # the person's own function: it may leave the heads' cloud, which is the point
        who = "you (HyRe + personal head)" if snap.personal else "you (HyRe)"
        traces.append({
            "type": "scatter", "x": [snap.person_coords[0]], "y": [snap.person_coords[1]], "mode": "markers",
            "name": who, "hovertemplate": f"{who}<extra></extra>",
            "marker": {"symbol": "star", "size": 20, "color": COLOR_PERSONAL, "line": {"width": 1.5, "color": "#FFFFFF"}},
        })
        xs.append(float(snap.person_coords[0]))
        ys.append(float(snap.person_coords[1]))
    pad_x = 0.08 * ((max(xs) - min(xs)) or 1.0)
    pad_y = 0.08 * ((max(ys) - min(ys)) or 1.0)
    pc1 = f"PC1 ({evr[0]:.0%} of disagreement)" if evr.size > 0 else "PC1"
    pc2 = f"PC2 ({evr[1]:.0%})" if evr.size > 1 else "PC2"
    layout = _live_layout(
        xtitle=pc1, ytitle=pc2, show_legend=False,
        xaxis={"range": [min(xs) - pad_x, max(xs) + pad_x], "zeroline": False},
        yaxis={"range": [min(ys) - pad_y, max(ys) + pad_y], "zeroline": False},
    )
    return {"data": traces, "layout": layout}


def _line(x, y, name: str, mode: str, **style) -> dict:
    return {"type": "scatter", "x": x, "y": y, "name": name, "mode": mode, **style}


def _accuracy_traces(snap: LiveSnapshot) -> tuple[list[dict], str, list[int]]:
    if snap.held_out is not None:
        held = snap.held_out
        n = held.n_values
        traces = _personal_curve(n, held.personal, snap.personal) + [
            _line(n, held.hyre, _hyre_name(held), "lines+markers", line={"color": COLOR_HEAD}),
            _line(n, held.uniform, "uniform ensemble", "lines", line={"color": COLOR_UNIFORM, "dash": "dash"}),
            _line(n, held.best_head_oracle, "best single head (oracle)", "lines",
                  line={"color": COLOR_ORACLE, "dash": "dot"}),
        ]
        return traces, "held-out accuracy", n
    run = snap.running
    n = run.n_values
    # short names: the legend is one row above a narrow chart
    traces = _personal_curve(n, run.personal, snap.personal, name="personal") + [
        _line(n, run.hyre, _hyre_name(run), "lines+markers", line={"color": COLOR_HEAD}),
        _line(n, run.uniform, "uniform", "lines+markers", line={"color": COLOR_UNIFORM, "dash": "dash"}),
    ]
    return traces, "running accuracy", n


def accuracy_figure(snap: LiveSnapshot, *, height: int | None = None, log_x: bool = False) -> go.Figure:
    """Persona: held-out accuracy vs n labels with reference lines; person: running accuracy.

    ``height``: pixels (default CHART_HEIGHT); ``log_x``: a log axis over 1 + labels, so
    the first labels' climb stays readable after hundreds of labels.
    """
    return live_figure(accuracy_spec(snap, height=height, log_x=log_x))


def accuracy_spec(snap: LiveSnapshot, *, height: int | None = None, log_x: bool = False) -> dict:
    """`accuracy_figure`'s plotly spec."""
    traces, ytitle, n = _accuracy_traces(snap)
    # labels are counted: whole-number ticks only (one label must not read 0, 0.5, 1)
    last = max(n) if n else 1
    xaxis = {"rangemode": "tozero", "tickformat": "d"}
    if last <= INTEGER_TICKS_UP_TO:
        xaxis["dtick"] = 1
    if log_x:
        for trace in traces:
            trace["x"] = [v + 1 for v in trace["x"]]
        xaxis = {"type": "log", "tickformat": "d"}
    # accuracies mostly live in the upper half: the legend goes in the lower right corner
    legend = {"orientation": "v", "yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.99,
              "bgcolor": "rgba(255,255,255,0.8)", "font": {"size": 11}}
    top = 10
    layout = _live_layout(
        xtitle="labels given" + (" (log scale, 1 + labels)" if log_x else ""), ytitle=ytitle,
        xaxis=xaxis, yaxis={"range": [0, 1.05], "tickformat": ".0%"}, margin={"t": top}, legend=legend,
    )
    if height is not None:
        layout["height"] = height
    if snap.held_out is None and not n:
        layout["annotations"] = [{"text": "Label a pair to start the curve", "showarrow": False,
                                  "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}]
    return {"data": traces, "layout": layout}


# The presenter's headline: past this many labels its x-axis turns logarithmic, so the
# first labels' climb keeps its width on the projector after a minute of playback.
HEADLINE_LOG_AFTER = 30
HEADLINE_FONT = 22
HEADLINE_LINE = 6


def headline_figure(snap: LiveSnapshot) -> go.Figure:
    """The presenter view's one large chart: held-out accuracy vs labels, projector-sized."""
    # validated: it is restyled through plotly's objects below
    fig = go.Figure(accuracy_spec(snap, height=HEADLINE_HEIGHT, log_x=snap.n_labels > HEADLINE_LOG_AFTER))
    for trace in fig.data:
        dotted = trace.line.dash == "dot" and trace.line.color == COLOR_PERSONAL  # an "off" curve stays thin
        trace.line.width = HEADLINE_LINE // 2 if dotted else HEADLINE_LINE
        if trace.mode and "markers" in trace.mode:
            trace.marker.size = 11
    fig.update_layout(
        font={"size": HEADLINE_FONT}, margin={"l": 20, "r": 20, "t": 60, "b": 20},
        # above the plot, one row: at 40-60 % a legend in the corner would sit on the curves
        legend={"font": {"size": HEADLINE_FONT}, "orientation": "h", "yanchor": "bottom", "y": 1.02,
                "xanchor": "left", "x": 0, "bgcolor": "rgba(0,0,0,0)"},
        xaxis={"title": {"font": {"size": HEADLINE_FONT}}, "tickfont": {"size": HEADLINE_FONT - 2}},
        yaxis={"title": {"font": {"size": HEADLINE_FONT}}, "tickfont": {"size": HEADLINE_FONT - 2}},
    )
    return fig


def _hyre_name(curves) -> str:
    return "HyRe only" if curves.personal is not None else "HyRe"


def _personal_curve(n: list[int], values: list[float | None] | None, speaks: bool,
                    name: str = "HyRe + personal head") -> list[dict]:
    """HyRe + the personal head's curve, solid when it speaks for the person, dotted when off."""
    if values is None:
        return []
    return [_line(n, values, name + ("" if speaks else " (off)"), "lines+markers",
                  line={"color": COLOR_PERSONAL, "width": 3 if speaks else 1.5, "dash": "solid" if speaks else "dot"},
                  marker={"size": 6 if speaks else 4})]
