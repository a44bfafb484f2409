"""A small charting library: line, scatter and bar charts as inline SVG, drawn on the server.

No script and no download: a page embeds the ``<svg>`` markup these functions return, so a
chart shows in any browser, in a screenshot, and on a network without internet. Series are
drawn from NumPy arrays; a long series is thinned to at most :data:`MAX_POINTS` points per
line by keeping each bucket's extremes (the shape of a spike survives). Axes get "nice" ticks
(1, 2, 5 x 10^n); time axes are in UTC.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

import numpy as np
from markupsafe import Markup

__all__ = ["PALETTE", "bar_chart", "line_chart", "scatter_chart"]

#: Colours of successive series (colour-blind friendly, Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MAX_POINTS = 600
_PAD = {"left": 56, "right": 16, "top": 22, "bottom": 30}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning ``[low, high]``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 0.5:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float, time: bool, span: float) -> str:
    if time:
        when = datetime.fromtimestamp(value, UTC)
        if span > 3 * 86_400:
            return when.strftime("%m-%d")
        if span > 86_400:
            return when.strftime("%m-%d %H:%M")
        return when.strftime("%H:%M") if span > 600 else when.strftime("%H:%M:%S")
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:g}k"
    if magnitude < 0.01:
        return f"{value:.0e}"
    return f"{value:.3g}"


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most ~:data:`MAX_POINTS` points: per bucket the first, min, max and last."""
    n = len(x)
    if n <= MAX_POINTS:
        return x, y
    buckets = MAX_POINTS // 4
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep: list[int] = []
    for a, b in itertools.pairwise(edges):
        if b <= a:
            continue
        part = y[a:b]
        keep.extend(sorted({a, a + int(np.argmin(part)), a + int(np.argmax(part)), b - 1}))
    index = np.asarray(keep)
    return x[index], y[index]


class _Frame:
    """Maps data to pixels and draws the axes."""

    def __init__(
        self,
        width: int,
        height: int,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        x_time: bool,
        x_log: bool = False,
    ) -> None:
        self.width, self.height = width, height
        self.x_time, self.x_log = x_time, x_log
        x0, x1 = x_range
        if x_log:
            x0, x1 = math.log10(max(x0, 1e-300)), math.log10(max(x1, 1e-300))
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        self.x0, self.x1 = x0, x1
        y0, y1 = y_range
        ticks = nice_ticks(y0, y1)
        self.y_ticks = ticks
        self.y0, self.y1 = min(ticks[0], y0), max(ticks[-1], y1)
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1.0
        self.left, self.right = _PAD["left"], width - _PAD["right"]
        self.top, self.bottom = _PAD["top"], height - _PAD["bottom"]

    def px(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x_log:
            x = np.log10(np.maximum(x, 1e-300))
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def py(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)

    def axes(self, x_label: str, y_label: str) -> list[str]:
        out = [
            f'<line class="axis" x1="{self.left}" y1="{self.bottom}" x2="{self.right}" y2="{self.bottom}"/>',
            f'<line class="axis" x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{self.bottom}"/>',
        ]
        for tick in self.y_ticks:
            y = float(self.py(np.array([tick]))[0])
            out.append(f'<line class="grid" x1="{self.left}" y1="{y:.1f}" x2="{self.right}" y2="{y:.1f}"/>')
            label = _label(tick, False, 0)
            out.append(
                f'<text class="tick" x="{self.left - 4}" y="{y + 3:.1f}" text-anchor="end">{label}</text>'
            )
        if self.x_log:
            decades = range(math.floor(self.x0), math.ceil(self.x1) + 1)
            steps = (1,) if self.x1 - self.x0 > 2 else (1, 2, 5)
            ticks = [m * 10.0**e for e in decades for m in steps]
            ticks = [t for t in ticks if self.x0 - 1e-9 <= math.log10(t) <= self.x1 + 1e-9] or [10**self.x0]
        else:
            ticks = [t for t in nice_ticks(self.x0, self.x1, 6) if self.x0 <= t <= self.x1] or [self.x0]
        span = self.x1 - self.x0
        for tick in ticks:
            x = float(self.px(np.array([tick]))[0])
            label = _label(tick, self.x_time, span)
            out.append(
                f'<line class="axis" x1="{x:.1f}" y1="{self.bottom}" x2="{x:.1f}" y2="{self.bottom + 4}"/>'
            )
            out.append(
                f'<text class="tick" x="{x:.1f}" y="{self.bottom + 15}" text-anchor="middle">{label}</text>'
            )
        if x_label:
            at = f'x="{self.right}" y="{self.height - 2}"'
            out.append(f'<text class="label" {at} text-anchor="end">{escape(x_label)}</text>')
        if y_label:
            out.append(f'<text class="label" x="{self.left}" y="{self.top - 10}">{escape(y_label)}</text>')
        return out


def _svg(width: int, height: int, body: list[str], title: str, legend: Sequence[tuple[str, str]]) -> Markup:
    items = "".join(
        f'<span class="key"><i style="background:{colour}"></i>{escape(name)}</span>'
        for name, colour in legend
    )
    legend_html = f'<div class="legend">{items}</div>' if legend else ""
    svg = (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )
    return Markup(f'<figure class="figure">{svg}{legend_html}</figure>')


def _empty(width: int, height: int, title: str, message: str) -> Markup:
    body = [
        f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">{escape(message)}</text>'
    ]
    return _svg(width, height, body, title, [])


def line_chart(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    x_time: bool = True,
    x_label: str = "",
    y_label: str = "",
    width: int = 960,
    height: int = 240,
    markers: bool = False,
    empty: str = "no data yet",
) -> Markup:
    """One line per series ``name -> (x, y)``; ``x`` in Unix seconds when ``x_time``."""
    present = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in series.items() if len(x)}
    if not present:
        return _empty(width, height, title, empty)
    xs = np.concatenate([x for x, _ in present.values()])
    ys = np.concatenate([y for _, y in present.values()])
    finite = ys[np.isfinite(ys)]
    low = min(0.0, float(finite.min())) if len(finite) else 0.0
    high = float(finite.max()) if len(finite) else 1.0
    frame = _Frame(width, height, (float(xs.min()), float(xs.max())), (low, high), x_time)
    body = frame.axes(x_label, y_label)
    legend = []
    for n, (name, (x, y)) in enumerate(present.items()):
        colour = PALETTE[n % len(PALETTE)]
        legend.append((name, colour))
        ok = np.isfinite(y)
        tx, ty = _thin(x[ok], y[ok])
        px, py = frame.px(tx), frame.py(ty)
        if len(px) == 1:
            body.append(f'<circle cx="{px[0]:.1f}" cy="{py[0]:.1f}" r="3" fill="{colour}"/>')
            continue
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
        body.append(f'<polyline class="line" fill="none" stroke="{colour}" points="{points}"/>')
        if markers:
            body.extend(
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{colour}"/>'
                for a, b in zip(px, py, strict=True)
            )
    return _svg(width, height, body, title, legend)


def scatter_chart(
    x: np.ndarray,
    y: np.ndarray,
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    highlight: int | None = None,
    x_log: bool = False,
    width: int = 340,
    height: int = 220,
) -> Markup:
    """Points ``(x, y)``; the point at index ``highlight`` drawn larger, in another colour."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if x_log else True)
    if not ok.any():
        return _empty(width, height, title, "no complete trial")
    frame = _Frame(
        width,
        height,
        (float(x[ok].min()), float(x[ok].max())),
        (float(y[ok].min()), float(y[ok].max())),
        False,
        x_log,
    )
    body = frame.axes(x_label, y_label)
    px, py = frame.px(x), frame.py(y)
    for i in np.flatnonzero(ok):
        if i != highlight:
            body.append(
                f'<circle class="point" cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="3" fill="{PALETTE[0]}"/>'
            )
    legend = [("trial", PALETTE[0])]
    if highlight is not None and 0 <= highlight < len(x) and ok[highlight]:
        at = f'cx="{px[highlight]:.1f}" cy="{py[highlight]:.1f}"'
        body.append(f'<circle class="chosen" {at} r="6" fill="{PALETTE[3]}"/>')
        legend.append(("chosen", PALETTE[3]))
    return _svg(width, height, body, title, legend)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    unit: str = "",
    colours: Sequence[str] | None = None,
    width: int = 420,
    bar: int = 18,
) -> Markup:
    """Horizontal bars, one per label, with the value written beside each."""
    if not len(labels):
        return _empty(width, 60, title, "nothing to show")
    height = _PAD["top"] + len(labels) * (bar + 6) + 8
    left = 110
    top = max((float(v) for v in values), default=0.0) or 1.0
    body = []
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = _PAD["top"] + n * (bar + 6)
        length = max(1.0, (width - left - 70) * float(value) / top)
        colour = colours[n] if colours is not None else PALETTE[0]
        at = f'x="{left - 6}" y="{y + bar * 0.7:.1f}"'
        body.append(f'<text class="tick" {at} text-anchor="end">{escape(label)}</text>')
        body.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="{colour}"/>'
        )
        body.append(
            f'<text class="tick" x="{left + length + 4:.1f}" y="{y + bar * 0.7:.1f}">{value:.3g}{unit}</text>'
        )
    return _svg(width, height, body, title, [])
