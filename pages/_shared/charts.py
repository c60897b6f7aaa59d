"""Every plotly figure of the app, and its colours (never imports streamlit).

The figures draw engine objects as they are: the numbers (weights, orderings,
probabilities, shares) come computed from hyre_engine; numpy here only shapes
them for plotly (hover columns, marker sizes, axis padding, band edges).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

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


# ---------------------------------------------------------------- shared


def weight_marker(w: np.ndarray, *, base: float, span: float) -> dict:
    # dot area grows with the weight; the heaviest head gets base + span pixels
    return {
        "size": base + span * np.sqrt(w / w.max()),
        "color": w,
        "colorscale": [[0, COLOR_HEAD_LIGHT], [1, COLOR_HEAD]],
        "cmin": 0,
        "cmax": float(w.max()),
        "opacity": 0.9,
    }


# ---------------------------------------------------------------- Explore page


def pc_name(pca: FunctionPCA, p: int) -> str:
    return f"PC{p + 1} ({pca.explained_variance_ratio_[p]:.0%})"


def _person_trace(person: np.ndarray, name: str, *, three_d: bool) -> go.Scatter | go.Scatter3d:
    """The person's own function: a star that may leave the heads' cloud, which is the point."""
    marker = {"symbol": "star" if not three_d else "diamond", "size": 20 if not three_d else 9,
              "color": COLOR_PERSONAL, "line": {"width": 1.5, "color": "#FFFFFF"}}
    name = escape_plotly(name)
    xyz = {"x": [float(person[0])], "y": [float(person[1])]}
    if three_d:
        return go.Scatter3d(**xyz, z=[float(person[2])], mode="markers", marker=marker, name=name,
                            hovertemplate=f"{name}<extra></extra>")
    return go.Scatter(**xyz, mode="markers", marker=marker, name=name, hovertemplate=f"{name}<extra></extra>")


def head_map_figure(pca: FunctionPCA, w: np.ndarray, *, three_d: bool, who: str,
                    person: np.ndarray | None = None, person_name: str = "") -> go.Figure:
    """Heads at their PCA coordinates, coloured and sized by the weights w (n_heads,); with
    ``person`` (n_components,) the chosen source's own function as a star named ``person_name``."""
    xy = pca.head_coords_
    marker = weight_marker(w, base=6, span=18)
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
    if person is not None:
        fig.add_trace(_person_trace(person, person_name, three_d=three_d))
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
                  std_key: str = "std", title: str = "", height: int = CURVE_HEIGHT,
                  legend: bool = True) -> go.Figure:
    """Accuracy vs n labels: a mean line and a +-1 std band per method (fractions in [0, 1]).

    ``legend=False`` for the small charts of a grid under one chart that has it: with every
    method, a half-width chart's legend wraps to five rows, pushes the plot down and runs
    over the title."""
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
        showlegend=legend,
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
