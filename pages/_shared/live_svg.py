"""The Label page's live charts as small SVG strings: weights, function space, accuracy, the
presenter's headline (never imports streamlit; the panels draw them with st.markdown, `as_markdown`).

They are redrawn on every label, for every labeller. As plotly figures they cost each browser
about 0.35 s of CPU per label (three plotly.js redraws) and the server a fifth of its time
(figure construction and plotly's deep copies): measured with bench/bench_load.py. An SVG
string is built in well under a millisecond and the browser only swaps it in.

Widths are fluid and heights fixed, as plotly's were: x positions are percentages of the
chart's width, y positions pixels, so text and dots keep their size on any screen. Every text
goes through `svg_plot.esc` (names come from data: personas, users); nothing refers outside the SVG
(no links, no scripts, no foreign objects). Hover text is an SVG <title>, shown as a tooltip.
"""

from __future__ import annotations

import math

from hyre_engine.live import AccuracyCurves, LiveSnapshot
from pages._shared.charts import (
    CHART_HEIGHT,
    COLOR_GAIN,
    COLOR_HEAD,
    COLOR_HEAD_LIGHT,
    COLOR_ORACLE,
    COLOR_PERSONAL,
    COLOR_UNIFORM,
    HEADLINE_HEIGHT,
    INTEGER_TICKS_UP_TO,
    STRIP_CHART_HEIGHT,
)
from pages._shared.svg_plot import (  # noqa: F401 (as_markdown and nice_ticks: the panels' and tests' names)
    Frame,
    as_markdown,
    axes_box,
    esc,
    grid_x,
    grid_y,
    nice_ticks,
    open_svg,
    pct,
    titles,
)

# Font sizes in pixels: plotly's defaults for the panels; the headline is read from the back of a room.
FONT, SMALL_FONT = 12, 11
HEADLINE_FONT = 22
# Past this many labels the headline's x-axis turns logarithmic, so the first labels' climb
# keeps its width on the projector after a minute of playback.
HEADLINE_LOG_AFTER = 30
HEADLINE_LINE = 6
# Average glyph width as a share of the font size, to place legend entries side by side.
GLYPH = 0.56
# A person's name on the function-space map is cut here (the full name is in its tooltip).
NAME_CHARS = 24
# Dashes in pixels, plotly's "dash" and "dot" at a 2 px line.
DASH = {"solid": "", "dash": "9,5", "dot": "2,3"}


# ---------------------------------------------------------------- weights


def weights_svg(snap: LiveSnapshot, *, height: int = CHART_HEIGHT) -> str:
    """Bar chart of all K weights, heaviest first; heads that gained on the last label in amber,
    a dotted line at the uniform weight 1/K. Each bar carries its head and exact weight
    (data-head, data-weight) and a tooltip."""
    order = snap.heaviest_first.tolist()
    weights, change, gained = snap.weights.tolist(), snap.weight_change.tolist(), snap.gained.tolist()
    n_heads = len(weights)
    top_weight = weights[order[0]]
    y_max = max(top_weight * 1.15, 1.5 / n_heads)
    frame = Frame(left=0.13, right=0.98, top=26, bottom=height - 34,
                   x_range=(-0.6, n_heads - 0.4), y_range=(0.0, y_max))
    ticks, decimals = nice_ticks(0.0, y_max, count=4)
    parts = [open_svg(height, f"Head weights: {n_heads} heads, heaviest first", "weights")]
    parts += grid_y(frame, ticks, [f"{t:.{decimals}f}" for t in ticks], font=SMALL_FONT)
    slot = (frame.right - frame.left) / (n_heads + 0.2)
    base = frame.py(0.0)
    bar = pct(0.9 * slot, 2)
    for rank, head in enumerate(order):
        w = weights[head]
        y = frame.py(w)
        color = COLOR_GAIN if gained[head] else COLOR_HEAD
        parts.append(
            f'<rect x="{pct(frame.fx(rank) - 0.45 * slot, 2)}" y="{y:.1f}" width="{bar}" '
            f'height="{max(base - y, 0.0):.1f}" fill="{color}" data-head="{head}" data-weight="{w!r}">'
            f"<title>head {head}&#10;weight {w:.4f}&#10;change {change[head]:+.4f}</title></rect>")
    uniform = frame.py(1.0 / n_heads)
    parts.append(f'<line x1="{pct(frame.left)}" x2="{pct(frame.right)}" y1="{uniform:.1f}" y2="{uniform:.1f}" '
                 f'stroke="{COLOR_UNIFORM}" stroke-width="2" stroke-dasharray="{DASH["dot"]}">'
                 f"<title>uniform weight 1/{n_heads} = {1.0 / n_heads:.4f}</title></line>")
    parts.append(f'<text x="{pct(frame.right)}" y="{uniform - 4:.1f}" text-anchor="end" font-size="{SMALL_FONT}" '
                 f'fill="currentColor">uniform</text>')
    parts.append(axes_box(frame))
    legend = [("head", COLOR_HEAD)] + ([("gained on last label", COLOR_GAIN)] if any(gained) else [])
    x = 4.0
    for name, color in legend:
        parts.append(f'<rect x="{x:.0f}" y="6" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 17:.0f}" y="16" font-size="{FONT}" fill="currentColor">{esc(name)}</text>')
        x += 17 + GLYPH * FONT * len(name) + 16
    parts += titles(frame, height, f"{n_heads} heads, heaviest first", "weight", font=FONT)
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- function space


def _blend(share: float) -> str:
    """COLOR_HEAD_LIGHT at 0 .. COLOR_HEAD at 1, as plotly's two-colour scale."""
    lo = [int(COLOR_HEAD_LIGHT[i:i + 2], 16) for i in (1, 3, 5)]
    hi = [int(COLOR_HEAD[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(a + (b - a) * share):02X}" for a, b in zip(lo, hi, strict=True))


def _star(outer: float) -> str:
    """A five-pointed star's points around (0, 0)."""
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else outer * 0.42
        angle = math.pi / 2 + k * math.pi / 5
        points.append(f"{radius * math.cos(angle):.2f},{-radius * math.sin(angle):.2f}")
    return " ".join(points)


def person_name(snap: LiveSnapshot, who: str) -> str:
    """Who the star is, with the model that speaks for them."""
    return f"{who} (HyRe + personal head)" if snap.personal else f"{who} (HyRe)"


def pca_svg(snap: LiveSnapshot, who: str = "you", *, height: int = CHART_HEIGHT) -> str:
    """The heads in the plane of the first two principal components, sized and coloured by
    weight, amber rings on those that gained on the last label; the person's own function
    (``snap.person_coords``) a star named after ``who``, which may leave the heads' cloud."""
    weights, gained = snap.weights.tolist(), snap.gained.tolist()
    coords = snap.head_coords[:, :2].tolist()
    evr = snap.explained_variance_ratio.tolist()
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    person = None if snap.person_coords is None else (float(snap.person_coords[0]), float(snap.person_coords[1]))
    if person is not None:
        xs, ys = xs + [person[0]], ys + [person[1]]
    pad_x = 0.08 * ((max(xs) - min(xs)) or 1.0)
    pad_y = 0.08 * ((max(ys) - min(ys)) or 1.0)
    frame = Frame(left=0.12, right=0.98, top=12, bottom=height - 34,
                   x_range=(min(xs) - pad_x, max(xs) + pad_x), y_range=(min(ys) - pad_y, max(ys) + pad_y))
    pc1 = f"PC1 ({evr[0]:.0%} of disagreement)" if evr else "PC1"
    pc2 = f"PC2 ({evr[1]:.0%})" if len(evr) > 1 else "PC2"
    parts = [open_svg(height, f"Heads in function space: {len(weights)} heads; the star is {who}", "pca")]
    yt, yd = nice_ticks(frame.y0, frame.y1, count=4)
    parts += grid_y(frame, yt, [f"{t:.{yd}f}" for t in yt], font=SMALL_FONT)
    xt, xd = nice_ticks(frame.x0, frame.x1, count=5)
    parts += grid_x(frame, xt, [f"{t:.{xd}f}" for t in xt], font=SMALL_FONT)
    w_max = max(weights) or 1.0
    # light dots first: the heavy heads, the ones that matter, are drawn on top
    for head in sorted(range(len(weights)), key=weights.__getitem__):
        w = weights[head]
        share = w / w_max
        ring = (f'stroke="{COLOR_GAIN}" stroke-width="2"' if gained[head]
                else 'stroke="#FFFFFF" stroke-width="0.5"')
        parts.append(
            f'<circle cx="{pct(frame.fx(coords[head][0]), 2)}" cy="{frame.py(coords[head][1]):.1f}" '
            f'r="{(6 + 24 * math.sqrt(share)) / 2:.1f}" fill="{_blend(share)}" fill-opacity="0.9" {ring} '
            f'data-head="{head}"><title>head {head}&#10;weight {w:.4f}</title></circle>')
    if person is not None:
        name = person_name(snap, who)
        short = who.split(",")[0][:NAME_CHARS]
        x, y = frame.fx(person[0]), frame.py(person[1])
        # a nested SVG puts the star's own pixel coordinates at a percentage of the width
        anchor = "end" if x > 0.8 else "start"
        parts.append(
            f'<svg class="person" x="{pct(x)}" y="{y:.2f}" overflow="visible" '
            f'data-x="{person[0]!r}" data-y="{person[1]!r}">'
            f'<polygon points="{_star(11)}" fill="{COLOR_PERSONAL}" stroke="#FFFFFF" stroke-width="1.5">'
            f"<title>{esc(name)}</title></polygon>"
            f'<text x="{-14 if anchor == "end" else 14}" y="4" text-anchor="{anchor}" font-size="{FONT}" '
            f'font-weight="600" fill="{COLOR_PERSONAL}" stroke="#FFFFFF" stroke-width="3" paint-order="stroke">'
            f"{esc(short)}</text></svg>")
    parts += titles(frame, height, pc1, pc2, font=FONT)
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- accuracy


class _Curve:
    """One accuracy curve: its legend name, values (None: nothing to score), line width and
    dash, marker radius (0: a line only); ``off``: a model that does not speak for the person."""

    def __init__(self, name: str, values: list[float | None], color: str, *, width: float = 2.0,
                 dash: str = "solid", markers: float = 0.0, off: bool = False):
        self.name, self.values, self.color = name, values, color
        self.width, self.dash, self.markers, self.off = width, dash, markers, off


def _hyre_name(curves: AccuracyCurves) -> str:
    return "HyRe only" if curves.personal is not None else "HyRe"


def _curves(snap: LiveSnapshot) -> tuple[list[_Curve], list[int], str]:
    """The curves (personal first, drawn on top), their x (labels given) and the y title."""
    held = snap.held_out is not None
    curves_of = snap.held_out if held else snap.running
    out = []
    if curves_of.personal is not None:
        speaks = snap.personal
        # short names beside the narrow running chart
        name = ("HyRe + personal head" if held else "personal") + ("" if speaks else " (off)")
        out.append(_Curve(name, curves_of.personal, COLOR_PERSONAL, width=3.0 if speaks else 1.5,
                          dash="solid" if speaks else "dot", markers=3.0 if speaks else 2.0, off=not speaks))
    out.append(_Curve(_hyre_name(curves_of), curves_of.hyre, COLOR_HEAD, markers=3.0))
    out.append(_Curve("uniform ensemble" if held else "uniform", curves_of.uniform, COLOR_UNIFORM,
                      dash="dash", markers=0.0 if held else 3.0))
    if held and curves_of.best_head_oracle is not None:
        out.append(_Curve("best single head (oracle)", curves_of.best_head_oracle, COLOR_ORACLE, dash="dot"))
    return out, curves_of.n_values, "held-out accuracy" if held else "running accuracy"


def _x_axis(n: list[int], log_x: bool) -> tuple[tuple[float, float], list[float], list[str]]:
    """(range, tick positions, tick text) of the labels axis; on a log axis positions are log10(1 + n)."""
    last = max(n) if n else 1
    if log_x:
        top = math.log10(last + 1) if last > 0 else 1.0
        ticks = [m * 10 ** p for p in range(0, 6) for m in (1, 2, 5) if m * 10 ** p <= last + 1]
        return (0.0, max(top, 0.3) * 1.02), [math.log10(t) for t in ticks], [str(t) for t in ticks]
    last = max(last, 1)
    if last <= INTEGER_TICKS_UP_TO:
        ticks = list(range(0, last + 1))
    else:
        values, _ = nice_ticks(0.0, float(last), count=6)
        ticks = [int(v) for v in values if float(v).is_integer()]
    pad = 0.03 * last
    return (-pad, last + pad), [float(t) for t in ticks], [str(t) for t in ticks]


def _polylines(frame: Frame, curve: _Curve, xs: list[float]) -> list[str]:
    """The curve's line, broken where a value is None; points in the plot's own 0..1000 x units."""
    runs, run = [], []
    for x, v in zip(xs, curve.values, strict=True):
        if v is None:
            if run:
                runs.append(run)
            run = []
            continue
        run.append(f"{1000.0 * (frame.fx(x) - frame.left) / (frame.right - frame.left):.1f},"
                   f"{frame.py(v) - frame.top:.1f}")
    if run:
        runs.append(run)
    dash = DASH[curve.dash]
    if dash:
        # dashes grow with the line, as plotly's do
        dash = ",".join(f"{float(d) * max(curve.width / 2, 1.0):.0f}" for d in dash.split(","))
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return [f'<polyline points="{" ".join(r)}" fill="none" stroke="{curve.color}" '
            f'stroke-width="{curve.width:.1f}" stroke-linejoin="round" vector-effect="non-scaling-stroke"'
            f"{style}><title>{esc(curve.name)}</title></polyline>" for r in runs if len(r) > 1]


def _markers(frame: Frame, curve: _Curve, xs: list[float], n: list[int]) -> list[str]:
    scored = [v for v in curve.values if v is not None]
    if not curve.markers:
        if len(scored) != 1:
            return []
        # a line-only curve with one point (a persona before its first label) is no line at all:
        # it is drawn as a dot, so the references show from the start
        curve = _Curve(curve.name, curve.values, curve.color, markers=max(curve.width, 2.5))
    # more dots than the width can show would only blur the line: at most about 60
    every = max(1, math.ceil(len(xs) / 60))
    out = []
    for i, (x, v) in enumerate(zip(xs, curve.values, strict=True)):
        if v is None or (i % every and i != len(xs) - 1):
            continue
        out.append(f'<circle cx="{pct(frame.fx(x), 2)}" cy="{frame.py(v):.1f}" r="{curve.markers:.1f}" '
                   f'fill="{curve.color}"><title>{esc(curve.name)}: {v:.0%} after {n[i]} labels</title></circle>')
    return out


def _legend_line(curve: _Curve, x: float, y: float, length: float) -> str:
    dash = DASH[curve.dash]
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line x1="{x:.0f}" x2="{x + length:.0f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{curve.color}" '
            f'stroke-width="{curve.width:.1f}"{style}/>')


def _legend_rows(curves: list[_Curve], *, font: int, line: float, gap: int) -> list[str]:
    """The legend above the plot, two entries a row, clear of the curves."""
    out = []
    row = font + gap
    for i, curve in enumerate(curves):
        column, at = i % 2, i // 2
        y = 6 + row * at + row / 2
        out.append(f'<svg x="{pct(0.04 + 0.5 * column)}" y="0" overflow="visible" class="legend">'
                   + _legend_line(curve, 0, y, line)
                   + f'<text x="{line + 8:.0f}" y="{y:.1f}" dy="0.35em" font-size="{font}" fill="currentColor">'
                   f"{esc(curve.name)}</text></svg>")
    return out


def accuracy_svg(snap: LiveSnapshot, who: str = "you", *, height: int = STRIP_CHART_HEIGHT,
                 log_x: bool = False, headline: bool = False) -> str:
    """Persona: held-out accuracy vs labels, with the uniform ensemble and the best single head
    (oracle) as references; person: running accuracy (guessed before each label). The curve
    of HyRe + the personal head is solid when it speaks for ``who``, dotted when off.

    ``log_x``: a log axis over 1 + labels, so the first labels' climb stays readable after
    hundreds; ``headline``: the presenter's projector sizes, the legend above the plot.
    """
    curves, n, ytitle = _curves(snap)
    font, tick_font = (HEADLINE_FONT, HEADLINE_FONT - 2) if headline else (SMALL_FONT, SMALL_FONT)
    if headline:  # projector-sized: thick lines (an "off" curve stays thinner), large dots
        for curve in curves:
            curve.width = HEADLINE_LINE // 2 if curve.off else HEADLINE_LINE
            curve.markers = 5.5 if curve.markers else 0.0
    x_range, tick_x, tick_text = _x_axis(n, log_x)
    xs = [math.log10(v + 1) for v in n] if log_x else [float(v) for v in n]
    # the legend above the plot (a box inside it covered the curves' latest labels)
    line, gap = (44, 10) if headline else (20, 6)
    top = 10 + (font + gap) * math.ceil(len(curves) / 2)
    frame = Frame(left=0.1 if headline else 0.15, right=0.98, top=top, bottom=height - (2.6 * font + 8),
                   x_range=x_range, y_range=(0.0, 1.05))
    whose = "your" if who == "you" else f"{who}'s"
    title = (f"Accuracy on {whose} other pairs" if snap.held_out is not None
             else f"Did it guess {whose} choice? Running accuracy")
    parts = [open_svg(height, f"{title}, {max(n) if n else 0} labels", "headline" if headline else "accuracy")]
    y_ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    parts += grid_y(frame, y_ticks, [f"{t:.0%}" for t in y_ticks], font=tick_font)
    parts += grid_x(frame, tick_x, tick_text, font=tick_font)
    parts.append(axes_box(frame))
    if len(n) == 0 and snap.held_out is None:
        parts.append(f'<text x="{pct((frame.left + frame.right) / 2)}" y="{(frame.top + frame.bottom) / 2:.1f}" '
                     f'text-anchor="middle" font-size="{font + 1}" fill="#6B7280">Label a pair to start the curve</text>')
    else:
        # the lines in the plot's own units, stretched to its width (the strokes keep their pixels)
        parts.append(f'<svg x="{pct(frame.left)}" y="{frame.top:.1f}" width="{pct(frame.right - frame.left)}" '
                     f'height="{frame.bottom - frame.top:.1f}" viewBox="0 0 1000 {frame.bottom - frame.top:.1f}" '
                     f'preserveAspectRatio="none" overflow="visible">')
        for curve in reversed(curves):  # references first, the person's curve on top
            parts += _polylines(frame, curve, xs)
        parts.append("</svg>")
        for curve in reversed(curves):
            parts += _markers(frame, curve, xs, n)
    xtitle = "labels given" + (" (log scale, 1 + labels)" if log_x else "")
    parts += titles(frame, height, xtitle, ytitle, font=font)
    parts += _legend_rows(curves, font=font, line=line, gap=gap)
    parts.append("</svg>")
    return "".join(parts)


def headline_svg(snap: LiveSnapshot, who: str) -> str:
    """The presenter view's one large chart: held-out accuracy vs labels, projector-sized."""
    return accuracy_svg(snap, who, height=HEADLINE_HEIGHT, log_x=snap.n_labels > HEADLINE_LOG_AFTER, headline=True)
