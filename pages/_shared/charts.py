"""Every plotly figure of the app, and its colours (never imports streamlit).

The figures draw engine objects as they are: the numbers (weights, orderings,
probabilities, shares) come computed from hyre_engine; numpy here only shapes
them for plotly (hover columns, marker sizes, axis padding, band edges).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from hyre_engine.live import LiveSnapshot
from hyre_engine.pca import FunctionPCA, cumulative_variance_ratio
from hyre_engine.profiles import HeadInspection, heaviest_first
from hyre_engine.safe_text import escape_plotly
from pages._shared.labels import MEASURE_SHORT, METHOD_TEXT

# The theme's indigo for heads, a contrasting amber for gainers and departures.
COLOR_HEAD = "#4F46E5"
COLOR_HEAD_LIGHT = "#E0E7FF"
COLOR_GAIN = "#F59E0B"
COLOR_UNIFORM = "#9CA3AF"
COLOR_ORACLE = "#10B981"
COLOR_GRID = "#E5E7EB"
# The person's own model (HyRe + the personal head): the star on the map, its accuracy curve.
COLOR_PERSONAL = "#DB2777"
COLOR_DIAGONAL = "#D1D5DB"
# Rows of the best-of-n table that moved against the uniform ranking.
COLOR_MOVED_ROW = "#FFFBEB"
# Evaluation methods: the Label page's colours where they are shared.
METHOD_COLORS = {
    "hyre": COLOR_HEAD,
    "uniform": COLOR_UNIFORM,
    "single": "#EF4444",
    "finetune": "#0EA5E9",
    "convex": "#A855F7",
    "best_head_oracle": COLOR_ORACLE,
    "personal": COLOR_PERSONAL,
    "residual": "#F472B6",
    "probe": "#78716C",
    "user_ceiling": "#065F46",
}
# Dashed: references rather than competitors (no labels used, or the test labels used).
DASHED = {"uniform": "dash", "best_head_oracle": "dot", "user_ceiling": "dot"}
# Height of the three live charts in pixels: three side by side fit a laptop screen.
CHART_HEIGHT = 270
# The Explore head map is that page's main chart: taller than the live panels.
MAP_HEIGHT = 420
# Height of one accuracy-vs-n chart: two side by side fit a laptop screen.
CURVE_HEIGHT = 330
# Up to this many labels every count gets its own tick; beyond, plotly picks whole steps.
INTEGER_TICKS_UP_TO = 10
# The compact accuracy curve beside the pair: short enough to fit a 720 px screen with it.
STRIP_CHART_HEIGHT = 190
# The presenter view's one headline chart.
HEADLINE_HEIGHT = 520
# Plotly's mode bar only distracts in a live panel.
PLOTLY_CONFIG = {"displayModeBar": False}


# ---------------------------------------------------------------- Label page (live)
#
# The live figures are rebuilt on every label, for every labeller: each is written as one
# plotly spec (a dict) and validated once by go.Figure(spec). Building them call by call
# (add_bar, update_layout, add_hline, ...) cost about 3x the CPU (docs/results.md).


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
    return go.Figure({"data": bars, "layout": layout})


def _weight_marker(w: np.ndarray, *, base: float, span: float) -> dict:
    # dot area grows with the weight; the heaviest head gets base + span pixels
    return {
        "size": base + span * np.sqrt(w / w.max()),
        "color": w,
        "colorscale": [[0, COLOR_HEAD_LIGHT], [1, COLOR_HEAD]],
        "cmin": 0,
        "cmax": float(w.max()),
        "opacity": 0.9,
    }


def pca_figure(snap: LiveSnapshot) -> go.Figure:
    """Heads in the plane of the first two principal components, sized and coloured by weight."""
    w, xy, evr, gained = snap.weights, snap.head_coords, snap.explained_variance_ratio, snap.gained
    marker = _weight_marker(w, base=6, span=24)
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
    return go.Figure({"data": traces, "layout": layout})


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
    return go.Figure({"data": traces, "layout": layout})


# The presenter's headline: past this many labels its x-axis turns logarithmic, so the
# first labels' climb keeps its width on the projector after a minute of playback.
HEADLINE_LOG_AFTER = 30
HEADLINE_FONT = 22
HEADLINE_LINE = 6


def headline_figure(snap: LiveSnapshot) -> go.Figure:
    """The presenter view's one large chart: held-out accuracy vs labels, projector-sized."""
    fig = accuracy_figure(snap, height=HEADLINE_HEIGHT, log_x=snap.n_labels > HEADLINE_LOG_AFTER)
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


# ---------------------------------------------------------------- Explore page


def pc_name(pca: FunctionPCA, p: int) -> str:
    return f"PC{p + 1} ({pca.explained_variance_ratio_[p]:.0%})"


def head_map_figure(pca: FunctionPCA, w: np.ndarray, *, three_d: bool, who: str) -> go.Figure:
    """Heads at their PCA coordinates, coloured and sized by the weights w (n_heads,)."""
    xy = pca.head_coords_
    marker = _weight_marker(w, base=6, span=18)
    marker["colorbar"] = {"title": {"text": "weight"}, "thickness": 12}
    marker["line"] = {"width": 0.5, "color": "#FFFFFF"}
    custom = np.stack([np.arange(w.size), w], axis=1)
    hover = "head %{customdata[0]}<br>weight %{customdata[1]:.4f}<extra></extra>"
    if three_d:
        fig = go.Figure(go.Scatter3d(
            x=xy[:, 0], y=xy[:, 1], z=xy[:, 2], mode="markers", marker=marker,
            customdata=custom, hovertemplate=hover, name=escape_plotly(who),
        ))
        fig.update_layout(
            scene={"xaxis_title": pc_name(pca, 0), "yaxis_title": pc_name(pca, 1), "zaxis_title": pc_name(pca, 2)},
            uirevision="keep",
        )
    else:
        fig = go.Figure(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, customdata=custom, hovertemplate=hover,
            name=escape_plotly(who),
        ))
        fig.update_xaxes(title=pc_name(pca, 0), zeroline=True, zerolinecolor=COLOR_GRID)
        fig.update_yaxes(title=pc_name(pca, 1), zeroline=True, zerolinecolor=COLOR_GRID)
    fig.update_layout(height=MAP_HEIGHT, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return fig


def variance_figure(pca: FunctionPCA) -> go.Figure:
    """Share of the heads' disagreement each component explains, with the running total."""
    evr = pca.explained_variance_ratio_
    names = [f"PC{p + 1}" for p in range(evr.size)]
    fig = go.Figure()
    fig.add_bar(x=names, y=evr, name="this component", marker_color=COLOR_HEAD,
                hovertemplate="%{x}: %{y:.1%}<extra></extra>")
    fig.add_scatter(x=names, y=cumulative_variance_ratio(pca), name="running total", mode="lines+markers",
                    line={"color": COLOR_UNIFORM, "dash": "dot"},
                    hovertemplate="PC1..%{x}: %{y:.1%}<extra></extra>")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="share of disagreement")
    fig.update_layout(
        height=CHART_HEIGHT, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig


def inspector_figure(inspection: HeadInspection) -> go.Figure:
    """One head's P(A preferred) against the uniform ensemble's, one dot per pair."""
    head_p, uniform_p, agree = inspection.head_p, inspection.uniform_p, inspection.agrees
    fig = go.Figure()
    for mask, name, color in ((agree, "same choice", COLOR_UNIFORM), (~agree, "opposite choice", COLOR_GAIN)):
        fig.add_scatter(
            x=uniform_p[mask], y=head_p[mask], mode="markers", name=name,
            marker={"color": color, "size": 7, "opacity": 0.8}, customdata=np.flatnonzero(mask) + 1,
            hovertemplate="pair %{customdata}<br>uniform %{x:.0%}<br>head %{y:.0%}<extra></extra>",
        )
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": COLOR_DIAGONAL})
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%", title="uniform ensemble: P(A better)")
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%", title=f"head {inspection.head}: P(A better)")
    fig.update_layout(
        height=CHART_HEIGHT + 40, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    )
    return fig


# ---------------------------------------------------------------- Profiles page


def profile_weights_figure(w: np.ndarray) -> go.Figure:
    """All K weights, heaviest first, with the uniform 1/K line."""
    order = heaviest_first(w)
    fig = go.Figure(go.Bar(
        x=np.arange(w.size), y=w[order], marker_color=COLOR_HEAD, customdata=order,
        hovertemplate="head %{customdata}<br>weight %{y:.4f}<extra></extra>",
    ))
    fig.add_hline(y=1.0 / w.size, line_dash="dot", line_color=COLOR_UNIFORM,
                  annotation_text="uniform", annotation_position="top right")
    fig.update_xaxes(showticklabels=False, title=f"{w.size} heads, heaviest first")
    fig.update_yaxes(title="weight", rangemode="tozero")
    fig.update_layout(height=CHART_HEIGHT, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def similarity_figure(names: list[str], matrix: np.ndarray, measure: str) -> go.Figure:
    names = [escape_plotly(n) for n in names]  # names from data are plotly text, never tags
    fig = go.Figure(go.Heatmap(
        z=matrix, x=names, y=names, zmin=0, zmax=1,
        colorscale=[[0, "#FFFFFF"], [1, COLOR_HEAD]],
        text=np.rint(matrix * 100).astype(int), texttemplate="%{text}",
        hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>",
        colorbar={"title": {"text": MEASURE_SHORT.get(measure, measure)}, "thickness": 12},
    ))
    size = max(320, 28 * len(names) + 140)
    fig.update_layout(height=size, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    fig.update_yaxes(autorange="reversed")
    return fig


# ---------------------------------------------------------------- Evaluate page


def curves_figure(n_values: Sequence[int], methods: dict[str, dict[str, list[float]]], *,
                  std_key: str = "std", title: str = "", height: int = CURVE_HEIGHT) -> go.Figure:
    """Accuracy vs n labels: a mean line and a +-1 std band per method (fractions in [0, 1])."""
    x = np.asarray(n_values, dtype=float)
    fig = go.Figure()
    order = [m for m in METHOD_TEXT if m in methods] + [m for m in methods if m not in METHOD_TEXT]
    for method in order:
        stats = methods[method]
        mean = np.asarray(stats["mean"], dtype=float)
        if mean.shape != x.shape:
            raise ValueError(f"method {method}: {mean.shape[0]} means for {x.shape[0]} values of n")
        color = METHOD_COLORS.get(method, "#6B7280")
        name = METHOD_TEXT.get(method, method)
        std = stats.get(std_key)
        if std is not None:
            std = np.asarray(std, dtype=float)
            upper, lower = np.clip(mean + std, 0, 1), np.clip(mean - std, 0, 1)
            fig.add_scatter(
                x=np.concatenate([x, x[::-1]]), y=np.concatenate([upper, lower[::-1]]),
                mode="lines", fill="toself", fillcolor=_rgba(color, 0.12), line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=method, name=f"{name} ± std",
            )
        fig.add_scatter(
            x=x, y=mean, name=name, legendgroup=method, mode="lines+markers",
            line={"color": color, "dash": DASHED.get(method, "solid"), "width": 3 if method == "hyre" else 2},
            marker={"size": 6},
            customdata=std if std is not None else np.zeros_like(mean),
            hovertemplate=f"{name}<br>n=%{{x}}: %{{y:.1%}} ± %{{customdata:.1%}}<extra></extra>",
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40 if title else 30, "b": 10},
        title={"text": escape_plotly(title), "x": 0, "font": {"size": 14}} if title else None,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title="labels given (n)",
        yaxis_title="accuracy on the group's other pairs",
    )
    fig.update_xaxes(tickvals=list(x))
    fig.update_yaxes(tickformat=".0%")
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
