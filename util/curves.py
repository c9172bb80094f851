"""Curves as pictures for the HTML pages: losses and metrics over steps, drawn as inline SVG through dominate.

Both pages use it through util.html's add_curves: the training page (checkpoints/NAME/web/index.html: losses
from loss_log.txt, metrics from metrics_log.txt) and the test page (each image's loss curve, and the training
curves of the checkpoint). One small chart per curve, each with its own value range, so losses of different
scales stay readable; the first, last, smallest and largest values are written on it.
"""

import math
import re
from pathlib import Path

from dominate import svg, tags

from util.html import format_value

LOG_LINE = re.compile(r"^\(step: (\d+)[^)]*\) (.*)$")
VALUE_PAIR = re.compile(r"(\S+): (\S+)")
CHART_WIDTH, CHART_HEIGHT = 260, 150
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 10, 22, 24
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")  # the first: a single curve


def read_log_curves(path):
    """{name: [(step, value)]} from a loss or metrics log ('(step: N, ...) name: value ...' lines).

    A step logged twice (a resumed run repeats the steps after its checkpoint) keeps its last values.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    by_step = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        values = {}
        for name, text in VALUE_PAIR.findall(match.group(2)):
            try:
                values[name] = float(text)
            except ValueError:
                continue
        by_step[int(match.group(1))] = values
    curves = {}
    for step in sorted(by_step):
        for name, value in by_step[step].items():
            curves.setdefault(name, []).append((step, value))
    return curves


def point_curves(points, x_key="step", skip=("seconds",)):
    """{name: [(x, value)]} of a list of {x_key: x, name: value, ...} points (e.g. a Gatys image's loss curve)."""
    curves = {}
    for point in points:
        for name, value in point.items():
            if name != x_key and name not in skip and isinstance(value, (int, float)):
                curves.setdefault(name, []).append((point[x_key], float(value)))
    return curves


def finite_points(points):
    """The (x, y) points whose values are finite numbers."""
    return [(float(x), float(y)) for x, y in points if math.isfinite(float(x)) and math.isfinite(float(y))]


def axis_value(value):
    """A number short enough for an axis label: whole numbers (steps) as they are, others to 4 significant digits."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e7 else f"{value:.4g}"


def line_chart(title, points, x_label="step"):
    """An SVG line chart of (x, y) points with its title, axis ranges and value labels (a dominate element)."""
    return series_chart(title, {"": points}, x_label)


def series_chart(title, series, x_label="step", last_value=True):
    """An SVG chart of one line per named series ({label: [(x, y)]}) on shared axes, e.g. generated against real;
    several series get a colour legend; `last_value` writes the last y of a single series under the plot."""
    series = {label: finite_points(points) for label, points in series.items()}
    chart = svg.svg(width=CHART_WIDTH, height=CHART_HEIGHT, viewBox=f"0 0 {CHART_WIDTH} {CHART_HEIGHT}",
                    role="img", aria_label=f"{title} over {x_label}")
    plot_width = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    points = [point for values in series.values() for point in values]
    with chart:
        svg.rect(x=0, y=0, width=CHART_WIDTH, height=CHART_HEIGHT, fill="white", stroke="#cccccc")
        svg.text(title, x=CHART_WIDTH / 2, y=14, font_size=12, text_anchor="middle", font_family="sans-serif")
        svg.rect(x=MARGIN_LEFT, y=MARGIN_TOP, width=plot_width, height=plot_height, fill="none", stroke="#888888")
        if not points:
            svg.text("no finite values", x=CHART_WIDTH / 2, y=CHART_HEIGHT / 2, font_size=11, text_anchor="middle",
                     font_family="sans-serif")
            return chart
        xs, ys = [x for x, _ in points], [y for _, y in points]
        x_low, x_high = min(xs), max(xs)
        y_low, y_high = min(ys), max(ys)
        x_span = (x_high - x_low) or 1.0
        y_span = (y_high - y_low) or (abs(y_high) or 1.0)

        def position(x, y):
            """Chart coordinates of a data point."""
            return (MARGIN_LEFT + (x - x_low) / x_span * plot_width,
                    MARGIN_TOP + plot_height - (y - y_low) / y_span * plot_height)

        label = {"font_size": 10, "font_family": "sans-serif"}
        for index, (name, values) in enumerate(series.items()):
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            coordinates = [position(x, y) for x, y in values]
            if len(coordinates) == 1:
                svg.circle(cx=f"{coordinates[0][0]:.1f}", cy=f"{coordinates[0][1]:.1f}", r=3, fill=colour)
            elif coordinates:
                svg.polyline(points=" ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates), fill="none",
                             stroke=colour, stroke_width=1.5)
            if len(series) > 1:
                svg.text(name, x=CHART_WIDTH - MARGIN_RIGHT - 4, y=MARGIN_TOP + 12 + 12 * index, text_anchor="end",
                         fill=colour, **label)
        svg.text(axis_value(y_high), x=MARGIN_LEFT - 3, y=MARGIN_TOP + 8, text_anchor="end", **label)
        svg.text(axis_value(y_low), x=MARGIN_LEFT - 3, y=MARGIN_TOP + plot_height, text_anchor="end", **label)
        svg.text(axis_value(x_low), x=MARGIN_LEFT, y=CHART_HEIGHT - 8, text_anchor="start", **label)
        svg.text(axis_value(x_high), x=CHART_WIDTH - MARGIN_RIGHT, y=CHART_HEIGHT - 8, text_anchor="end", **label)
        caption = f"{x_label}; last {format_value(ys[-1])}" if last_value and len(series) == 1 else x_label
        svg.text(caption, x=MARGIN_LEFT + plot_width / 2, y=CHART_HEIGHT - 8, text_anchor="middle", **label)
    return chart


def chart_row(curves, x_label="step"):
    """A wrapping row (a dominate div) of one line chart per named curve ({name: [(x, y)]})."""
    return charts_row([line_chart(name, points, x_label) for name, points in curves.items()])


def charts_row(charts):
    """A wrapping row (a dominate div) of charts."""
    row = tags.div(style="display:flex; flex-wrap:wrap; gap:6px;")
    for chart in charts:
        row.add(chart)
    return row
