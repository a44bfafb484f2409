"""The SVG charts: marks for data, a message without, thinned long series keep their spikes,
round ticks, and text escaped."""

from __future__ import annotations

import re

import numpy as np

from recforge.serving.dashboard.charts import MAX_POINTS, bar_chart, line_chart, nice_ticks, scatter_chart


def points(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [tuple(map(float, p.split(","))) for p in m.split()] for m in re.findall(r'points="([^"]+)"', svg)
    ]


def test_a_long_series_is_thinned_but_keeps_its_spike():
    x = np.arange(100_000, dtype=float) * 3600
    y = np.ones(100_000)
    y[54_321] = 500.0
    svg = str(line_chart({"views": (x, y)}, title="t"))
    (line,) = points(svg)
    assert len(line) <= MAX_POINTS + 4
    top = min(line, key=lambda p: p[1])  # the highest point drawn is the spike, where it was
    assert abs(top[0] - (56 + 54_321 / 99_999 * (960 - 56 - 16))) < 1.0


def test_empty_charts_say_so_and_text_is_escaped():
    svg = str(line_chart({"a": (np.zeros(0), np.zeros(0))}, title="<b>x</b>", empty="nothing yet"))
    assert "nothing yet" in svg and "<b>" not in svg and "&lt;b&gt;" in svg
    assert "polyline" not in svg
    scatter = str(scatter_chart(np.array([np.nan]), np.array([1.0]), title="s"))
    assert "no complete trial" in scatter


def test_scatter_marks_the_chosen_point_and_bars_scale():
    svg = str(
        scatter_chart(
            np.array([1.0, 10.0, 100.0]), np.array([0.1, 0.3, 0.2]), title="s", highlight=1, x_log=True
        )
    )
    assert svg.count('class="point"') == 2 and svg.count('class="chosen"') == 1
    bars = str(bar_chart(["a", "b"], [1.0, 2.0], title="b"))
    widths = [float(w) for w in re.findall(r'<rect class="bar" x="\d+" y="\d+" width="([\d.]+)"', bars)]
    assert widths[1] == 2 * widths[0]


def test_ticks_are_round_and_span_the_range():
    ticks = nice_ticks(0.0, 0.27)
    assert ticks[0] <= 0.0 and ticks[-1] >= 0.27
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0]) and steps[0] in (0.05, 0.1)
