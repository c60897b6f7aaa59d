"""SVG drawing primitives for the Label page's live charts (pages/_shared/live_svg.py).

A plot area (`Frame`: x as a fraction of the chart's width, y in pixels), round ticks, grid
lines, axis titles, and the escaping every text goes through (`esc`: names come from data).
Never imports streamlit; `as_markdown` wraps a chart for st.markdown(unsafe_allow_html=True).
"""

from __future__ import annotations

import html
import math

from pages._shared.charts import COLOR_GRID


def as_markdown(svg: str) -> str:
    """``svg`` as one raw-HTML block for st.markdown(unsafe_allow_html=True).

    st.html sanitises with DOMPurify's HTML profile only, which drops every SVG element.
    A line starting with <div is a raw HTML block up to the next blank line, passed through
    whole (a chart has no newline), so no Markdown touches the chart's texts.
    """
    if "\n" in svg or not svg.startswith("<svg"):
        raise ValueError("as_markdown takes one of this module's charts: one line starting with <svg")
    return f'<div class="hyre-live-chart">{svg}</div>'


def esc(text: object) -> str:
    """``text`` safe as SVG text or a quoted attribute value."""
    return html.escape(str(text), quote=True)


def pct(fraction: float, decimals: int = 3) -> str:
    """``fraction`` of the chart's width as a percentage; 2 decimals are 0.2 px at 1000 px
    (enough for the 100 bars and dots drawn anew on every label)."""
    return f"{100.0 * fraction:.{decimals}f}%"


class Frame:
    """A plot area: x as a fraction of the chart's width (left..right), y in pixels (top..bottom)."""

    def __init__(self, *, left: float, right: float, top: float, bottom: float,
                 x_range: tuple[float, float], y_range: tuple[float, float]):
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range

    def fx(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (self.right - self.left) * (x - self.x0) / span

    def py(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (self.bottom - self.top) * (y - self.y0) / span


def nice_ticks(lo: float, hi: float, *, count: int = 5) -> tuple[list[float], int]:
    """About ``count`` round ticks (1, 2, 2.5 or 5 times a power of ten) in [lo, hi], and the
    decimals that print them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"nice_ticks needs finite lo < hi, got lo={lo!r}, hi={hi!r}")
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    mantissa = next(m for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * (1 - 1e-9))
    step = mantissa * power
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) + (1 if mantissa == 2.5 else 0)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + 1e-9 * step:
        ticks.append(round(k * step, decimals + 2))
        k += 1
    return ticks, decimals


def open_svg(height: int, label: str, kind: str) -> str:
    return (f'<svg class="hyre-live-chart" data-chart="{kind}" width="100%" height="{height}" role="img" '
            f'aria-label="{esc(label)}" style="display:block;overflow:visible">'
            f"<title>{esc(label)}</title>")


def grid_y(frame: Frame, ticks: list[float], text: list[str], *, font: int) -> list[str]:
    out = []
    for value, shown in zip(ticks, text, strict=True):
        y = frame.py(value)
        out.append(f'<line x1="{pct(frame.left)}" x2="{pct(frame.right)}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{COLOR_GRID}" stroke-width="1"/>')
        out.append(f'<text x="{pct(frame.left)}" dx="-5" y="{y:.1f}" dy="0.35em" text-anchor="end" '
                   f'font-size="{font}" fill="currentColor">{esc(shown)}</text>')
    return out


def grid_x(frame: Frame, positions: list[float], text: list[str], *, font: int) -> list[str]:
    out = []
    for x, shown in zip(positions, text, strict=True):
        out.append(f'<line x1="{pct(frame.fx(x))}" x2="{pct(frame.fx(x))}" y1="{frame.top:.1f}" '
                   f'y2="{frame.bottom:.1f}" stroke="{COLOR_GRID}" stroke-width="1"/>')
        out.append(f'<text x="{pct(frame.fx(x))}" y="{frame.bottom + 4 + font:.1f}" text-anchor="middle" '
                   f'font-size="{font}" fill="currentColor">{esc(shown)}</text>')
    return out


def titles(frame: Frame, height: int, xtitle: str, ytitle: str, *, font: int) -> list[str]:
    """The x title centred under the plot, the y title turned along the left edge."""
    middle = (frame.top + frame.bottom) / 2
    return [
        f'<text x="{pct((frame.left + frame.right) / 2)}" y="{height - 4}" text-anchor="middle" '
        f'font-size="{font}" fill="currentColor">{esc(xtitle)}</text>',
        f'<text transform="translate({font + 1},{middle:.1f}) rotate(-90)" text-anchor="middle" '
        f'font-size="{font}" fill="currentColor">{esc(ytitle)}</text>',
    ]


def axes_box(frame: Frame) -> str:
    return (f'<line x1="{pct(frame.left)}" x2="{pct(frame.right)}" y1="{frame.bottom:.1f}" '
            f'y2="{frame.bottom:.1f}" stroke="#9CA3AF" stroke-width="1"/>')
