"""A run's curves as ECharts line charts: loss with eval loss, learning rate, tokens per second,
the evaluation metrics and the machine's load; each redrawn only when its metrics moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nicegui import ui

from tuneforge.ui import BRAND_COLOR

#: step -> value, per metric name
Series = dict[str, dict[int, float]]

MAX_POINTS = 2000  # per line on screen; longer series are thinned evenly (the last point kept)
ORANGE, TEAL, PINK, GREY = "#ea580c", "#0d9488", "#db2777", "#64748b"
GIB = 1024**3
BYTES = f"v => (v / {GIB}).toFixed(1) + ' GiB'"
PERCENT = "v => Math.round(v * 100) + '%'"
SCIENTIFIC = "v => v.toExponential(1)"
#: The machine's latest measurements, said in words under its chart.
SYSTEM_NOW = {
    "system/cpu_percent": "CPU",
    "system/ram_used_bytes": "RAM used",
    "system/process_rss_bytes": "trainer process",
    "system/gpu_memory_bytes": "GPU memory",
}


@dataclass(frozen=True)
class Line:
    metric: str
    name: str
    color: str
    axis: int = 0
    dashed: bool = False
    markers: bool = False


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    lines: tuple[Line, ...]
    axes: tuple[str | None, ...] = (None,)  # a JavaScript formatter per y axis (None: plain)
    waiting: str = "Waiting for the first step…"


LOSS = Chart(
    "loss",
    "Loss",
    (
        Line("loss", "Training loss", BRAND_COLOR),
        Line("eval_loss", "Eval loss", ORANGE, dashed=True, markers=True),
    ),
)
SMALL = (
    Chart(
        "learning-rate",
        "Learning rate",
        (Line("learning_rate", "Learning rate", TEAL),),
        (SCIENTIFIC,),
    ),
    Chart("throughput", "Tokens per second", (Line("tokens_per_second", "Tokens/s", PINK),)),
    Chart(
        "eval",
        "Evaluation",
        (
            Line("perplexity", "Perplexity", ORANGE, markers=True),
            Line("token_accuracy", "Token accuracy", TEAL, axis=1, markers=True),
        ),
        (None, PERCENT),
        waiting="Waiting for the first evaluation…",
    ),
    Chart(
        "system",
        "Machine",
        (
            Line("system/cpu_percent", "CPU %", GREY),
            Line("system/ram_used_bytes", "RAM used", TEAL, axis=1),
            Line("system/process_rss_bytes", "Trainer process", BRAND_COLOR, axis=1),
            Line("system/gpu_memory_bytes", "GPU memory", PINK, axis=1),
        ),
        (None, BYTES),
        waiting="Waiting for the first measurement…",
    ),
)


def thinned(points: list[tuple[int, float]]) -> list[list[float]]:
    """At most `MAX_POINTS` of `points`, evenly spread, the last one always kept."""
    if len(points) > MAX_POINTS:
        stride = -(-len(points) // MAX_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return [[step, value] for step, value in points]


def line_series(
    line: Line, points: list[tuple[int, float]], name: str | None = None
) -> dict[str, Any]:
    """One line of `points`, in ECharts' terms."""
    return {
        "type": "line",
        "name": name or line.name,
        "data": thinned(points),
        "yAxisIndex": line.axis,
        "showSymbol": line.markers,
        "symbolSize": 6,
        "smooth": False,
        "connectNulls": True,
        "lineStyle": {
            "width": 2,
            "type": "dashed" if line.dashed else "solid",
            "color": line.color,
        },
        "itemStyle": {"color": line.color},
        "emphasis": {"focus": "series"},
    }


def base_options(axes: tuple[str | None, ...], *, legend: bool = True) -> dict[str, Any]:
    """A line chart over steps, with a y axis per formatter in `axes`."""
    y_axes = []
    for index, formatter in enumerate(axes):
        axis: dict[str, Any] = {
            "type": "value",
            "scale": True,
            "position": "left" if index == 0 else "right",
            "splitLine": {"show": index == 0},
        }
        if formatter:
            axis["axisLabel"] = {":formatter": formatter}
        y_axes.append(axis)
    return {
        "animation": False,
        "grid": {
            "left": 12,
            "right": 16,
            "top": 36 if legend else 16,
            "bottom": 34,
            "containLabel": True,
        },
        "legend": {"show": legend, "top": 0, "type": "scroll"},
        "tooltip": {"trigger": "axis"},
        "xAxis": {
            "type": "value",
            "name": "step",
            "nameLocation": "middle",
            "nameGap": 24,
            "minInterval": 1,
            "scale": True,
        },
        "yAxis": y_axes,
        "series": [],
    }


def _waiting(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "left": "center",
        "top": "middle",
        "textStyle": {"color": "#9e9e9e", "fontSize": 13, "fontWeight": "normal"},
    }


class RunCharts(ui.column):
    """The charts of one run; `redraw(series, changed)` redraws those showing a `changed` metric."""

    def __init__(self, eval_waiting: str) -> None:
        super().__init__()
        self.classes("w-full gap-6")
        self.charts: dict[str, tuple[Chart, ui.echart]] = {}
        with self:
            with ui.card().classes("w-full q-pa-lg gap-2"):
                ui.label(LOSS.title).classes("text-subtitle1 text-weight-medium")
                self._chart(LOSS, "h-80")
            with ui.grid().classes("w-full gap-6 grid-cols-1 md:grid-cols-2"):
                for chart in SMALL:
                    if chart.key == "eval":
                        chart = Chart(chart.key, chart.title, chart.lines, chart.axes, eval_waiting)
                    with ui.card().classes("w-full q-pa-lg gap-2 min-w-0"):
                        ui.label(chart.title).classes("text-subtitle1 text-weight-medium")
                        self._chart(chart, "h-56")
                        if chart.key == "system":
                            self.system_now = ui.label().classes(
                                "text-caption text-grey-7 system-now"
                            )

    def _chart(self, chart: Chart, height: str) -> None:
        options = base_options(chart.axes)
        options["title"] = _waiting(chart.waiting)
        widget = ui.echart(options).classes(f"w-full {height} run-chart chart-{chart.key}")
        self.charts[chart.key] = (chart, widget)

    def redraw(self, series: Series, changed: set[str]) -> None:
        for chart, widget in self.charts.values():
            if not changed.intersection(line.metric for line in chart.lines):
                continue
            lines = [
                line_series(line, sorted(series[line.metric].items()))
                for line in chart.lines
                if series.get(line.metric)
            ]
            widget.options["series"] = lines
            widget.options["title"]["show"] = not lines
            widget.update()
        if changed.intersection(SYSTEM_NOW):
            self.system_now.set_text(
                " · ".join(_now(series, name) for name in SYSTEM_NOW if series.get(name))
            )


def _now(series: Series, name: str) -> str:
    points = series[name]
    value = points[max(points)]
    shown = f"{value:.0f}%" if name.endswith("percent") else f"{value / GIB:.2f} GiB"
    return f"{SYSTEM_NOW[name]} {shown}"
