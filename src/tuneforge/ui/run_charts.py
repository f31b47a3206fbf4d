"""A run's curves as ECharts line charts: loss with eval loss, learning rate, tokens per second,
the evaluation metrics and the machine's load; for preference runs (DPO, ORPO, KTO) the chosen
and rejected rewards, their margin and the preference accuracy; for GRPO the reward with its
spread, each grader's reward, KL, completion length and the clipped share. Each redrawn only
when its metrics moved.

A chart is shown from the start (waiting for its first point) for the trainers that report its
metrics, and for any other run once one of its metrics is reported: a run's page shows the
curves it has, and never a chart that stays empty."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nicegui import ui

from tuneforge.ui import BRAND_COLOR

#: step -> value, per metric name
Series = dict[str, dict[int, float]]

MAX_POINTS = 2000  # per line on screen; longer series are thinned evenly (the last point kept)
ORANGE, TEAL, PINK, GREY = "#ea580c", "#0d9488", "#db2777", "#64748b"
#: The colours of a family's lines (one per grader), in turn.
PALETTE = (BRAND_COLOR, ORANGE, TEAL, PINK, "#65a30d", "#0891b2", "#9333ea", GREY)
PREFERENCE = frozenset({"dpo", "orpo", "kto"})
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
class Family:
    """One line per reported metric named `<prefix><member>` (each grader's mean reward), and
    per `<eval_prefix><member>` a dashed one at the evaluations; names ending in `/std` are
    spreads, not lines."""

    prefix: str
    eval_prefix: str

    def members(self, series: Series) -> list[str]:
        found = {
            name.removeprefix(prefix)
            for name in series
            for prefix in (self.prefix, self.eval_prefix)
            if name.startswith(prefix) and not name.endswith("/std")
        }
        return sorted(found)

    def owns(self, name: str) -> bool:
        return name.startswith((self.prefix, self.eval_prefix))


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    lines: tuple[Line, ...]
    axes: tuple[str | None, ...] = (None,)  # a JavaScript formatter per y axis (None: plain)
    waiting: str = "Waiting for the first step…"
    #: The trainers whose runs show it before its first point (None: every trainer's).
    trainers: frozenset[str] | None = None
    family: Family | None = None
    #: (line metric, spread metric): the line's mean ± its spread, drawn thin around it.
    band: tuple[str, str] | None = None

    def shows(self, name: str) -> bool:
        """Whether metric `name` is drawn here."""
        if self.family is not None and self.family.owns(name):
            return True
        return name in {line.metric for line in self.lines} or bool(
            self.band and name == self.band[1]
        )


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
        "reward",
        "Reward",
        (
            Line("reward", "Mean reward", BRAND_COLOR),
            Line("eval_reward", "Eval reward", ORANGE, dashed=True, markers=True),
        ),
        trainers=frozenset({"grpo"}),
        band=("reward", "reward_std"),
    ),
    Chart(
        "graders",
        "Reward per grader",
        (),
        trainers=frozenset({"grpo"}),
        family=Family("reward/", "eval_reward/"),
    ),
    Chart(
        "rewards",
        "Chosen and rejected rewards",
        (
            Line("rewards/chosen", "Chosen", TEAL),
            Line("rewards/rejected", "Rejected", PINK),
            Line("eval_rewards/chosen", "Eval chosen", TEAL, dashed=True, markers=True),
            Line("eval_rewards/rejected", "Eval rejected", PINK, dashed=True, markers=True),
        ),
        trainers=PREFERENCE,
    ),
    Chart(
        "margin",
        "Reward margin",
        (
            Line("rewards/margin", "Margin", BRAND_COLOR),
            Line("eval_rewards/margin", "Eval margin", ORANGE, dashed=True, markers=True),
        ),
        trainers=PREFERENCE,
    ),
    Chart(
        "accuracy",
        "Preference accuracy",
        (
            Line("rewards/accuracy", "Accuracy", BRAND_COLOR),
            Line("eval_rewards/accuracy", "Eval accuracy", ORANGE, dashed=True, markers=True),
        ),
        (PERCENT,),
        trainers=PREFERENCE,
    ),
    Chart(
        "odds",
        "ORPO's two parts",
        (
            Line("nll_loss", "NLL loss", BRAND_COLOR),
            Line("log_odds_ratio", "Log odds ratio", TEAL, axis=1),
        ),
        (None, None),
        trainers=frozenset({"orpo"}),
    ),
    Chart("kl", "KL to the reference", (Line("kl", "KL", PINK),), trainers=frozenset({"kto"})),
    Chart(
        "completion-length",
        "Completion length",
        (Line("completion_length", "Tokens", TEAL),),
        trainers=frozenset({"grpo"}),
    ),
    Chart(
        "clip-ratio",
        "Clipped share",
        (Line("clip_ratio", "Clipped", ORANGE),),
        (PERCENT,),
        trainers=frozenset({"grpo"}),
    ),
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
        trainers=frozenset({"sft"}),
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


def chart_series(chart: Chart, series: Series) -> list[dict[str, Any]]:
    """The ECharts lines of `chart` for the metrics in `series`."""
    lines = [
        line_series(line, sorted(series[line.metric].items()))
        for line in chart.lines
        if series.get(line.metric)
    ]
    if chart.band and series.get(chart.band[0]) and series.get(chart.band[1]):
        lines += _band(series[chart.band[0]], series[chart.band[1]])
    if chart.family:
        for number, member in enumerate(chart.family.members(series)):
            colour = PALETTE[number % len(PALETTE)]
            for prefix, dashed in ((chart.family.prefix, False), (chart.family.eval_prefix, True)):
                points = series.get(prefix + member)
                if points:
                    line = Line(prefix + member, member, colour, dashed=dashed, markers=dashed)
                    name = f"{member} (eval)" if dashed else member
                    lines.append(line_series(line, sorted(points.items()), name))
    return lines


def _band(mean: dict[int, float], spread: dict[int, float]) -> list[dict[str, Any]]:
    """Thin lines at the mean plus and minus its spread (one legend entry for both)."""
    steps = sorted(set(mean) & set(spread))
    edge = Line("", "± spread", BRAND_COLOR, dashed=True)
    drawn = []
    for sign in (1, -1):
        points = [(step, mean[step] + sign * spread[step]) for step in steps]
        line = line_series(edge, points)
        line["lineStyle"].update(width=1, opacity=0.5)
        drawn.append(line)
    return drawn


class RunCharts(ui.column):
    """The charts of a `trainer`'s run; `redraw(series, changed)` redraws those showing a
    `changed` metric, and shows a chart the first time one of its metrics comes."""

    def __init__(self, eval_waiting: str, trainer: str) -> None:
        super().__init__()
        self.classes("w-full gap-6")
        self.charts: dict[str, tuple[Chart, ui.echart]] = {}
        self.cards: dict[str, ui.card] = {}
        with self:
            with ui.card().classes("w-full q-pa-lg gap-2"):
                ui.label(LOSS.title).classes("text-subtitle1 text-weight-medium")
                self._chart(LOSS, "h-80")
            with ui.grid().classes("w-full gap-6 grid-cols-1 md:grid-cols-2"):
                for chart in SMALL:
                    if chart.key == "eval":
                        chart = replace(chart, waiting=eval_waiting)
                    with ui.card().classes("w-full q-pa-lg gap-2 min-w-0") as card:
                        ui.label(chart.title).classes("text-subtitle1 text-weight-medium")
                        self._chart(chart, "h-56")
                        if chart.key == "system":
                            self.system_now = ui.label().classes(
                                "text-caption text-grey-7 system-now"
                            )
                    card.set_visibility(chart.trainers is None or trainer in chart.trainers)
                    self.cards[chart.key] = card

    def _chart(self, chart: Chart, height: str) -> None:
        options = base_options(chart.axes)
        options["title"] = _waiting(chart.waiting)
        widget = ui.echart(options).classes(f"w-full {height} run-chart chart-{chart.key}")
        self.charts[chart.key] = (chart, widget)

    def redraw(self, series: Series, changed: set[str]) -> None:
        for key, (chart, widget) in self.charts.items():
            if not any(chart.shows(name) for name in changed):
                continue
            lines = chart_series(chart, series)
            widget.options["series"] = lines
            widget.options["title"]["show"] = not lines
            widget.update()
            if lines and key in self.cards:
                self.cards[key].set_visibility(True)
        if changed.intersection(SYSTEM_NOW):
            self.system_now.set_text(
                " · ".join(_now(series, name) for name in SYSTEM_NOW if series.get(name))
            )


def _now(series: Series, name: str) -> str:
    points = series[name]
    value = points[max(points)]
    shown = f"{value:.0f}%" if name.endswith("percent") else f"{value / GIB:.2f} GiB"
    return f"{SYSTEM_NOW[name]} {shown}"
