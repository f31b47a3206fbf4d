"""`/runs/compare?ids=a,b,...`: training runs side by side: one of their curves overlaid (loss,
or the reward, reward margin, preference accuracy, KL or completion length that preference and
GRPO runs report), the settings in which they differ, their final metrics and what each one's
before/after check found ("fine-tune vs base: +33.3 pts"); and the dialog that picks them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nicegui import ui
from sqlalchemy.orm import Session

from tuneforge.db.tables import User
from tuneforge.errors import DomainError, NotFound
from tuneforge.jobs.kinds.train import TrainKind
from tuneforge.jobs.status import TERMINAL
from tuneforge.services import jobs as job_service
from tuneforge.services import training as service
from tuneforge.services.model_check import NO_CHECK, run_checks
from tuneforge.ui.backend import read
from tuneforge.ui.formatting import status_color, when
from tuneforge.ui.layout import EmptyState, heading, page
from tuneforge.ui.run_charts import Line, base_options, line_series
from tuneforge.ui.run_format import metric, metric_name, setting
from tuneforge.ui.train_form import label

MAX_RUNS = 8
REFRESH_SECONDS = 5.0  # while a compared run is still going
PALETTE = ("#4f46e5", "#ea580c", "#0d9488", "#db2777", "#65a30d", "#0284c7", "#9333ea", "#ca8a04")
#: The final metrics compared, of those the runs report (SFT, preference runs, GRPO).
FINAL = (
    "loss",
    "eval_loss",
    "perplexity",
    "token_accuracy",
    "eval_rewards/accuracy",
    "eval_rewards/margin",
    "eval_reward",
    "tokens_per_second",
)
LOWER_IS_BETTER = frozenset({"loss", "eval_loss", "perplexity"})


@dataclass(frozen=True)
class Curve:
    """A metric drawn for every run: solid in training, dashed at the evaluations."""

    label: str
    metric: str
    eval_metric: str | None


CURVES = (
    Curve("Loss", "loss", "eval_loss"),
    Curve("Reward", "reward", "eval_reward"),
    Curve("Reward margin", "rewards/margin", "eval_rewards/margin"),
    Curve("Preference accuracy", "rewards/accuracy", "eval_rewards/accuracy"),
    Curve("KL", "kl", None),
    Curve("Completion length", "completion_length", None),
)
CHECKING = ("queued", "running", "cancelling")  # a before/after check still to come


def training_runs(session: Session, user: User) -> list[tuple[str, str]]:
    """The user's newest training runs as (id, label)."""
    jobs, _ = job_service.list_jobs(session, user, kind=TrainKind.name, limit=100)
    return [
        (
            job.id,
            f"{job.spec.get('name') or job.spec.get('base_model')} · {job.status} · "
            f"{when(job.created_at)}",
        )
        for job in jobs
    ]


def compare_dialog(user: User, job_id: str) -> ui.dialog:
    """Pick runs to compare with `job_id`; opens the comparison."""
    with ui.dialog() as dialog, ui.card().classes("w-[32rem] q-pa-lg gap-4"):
        ui.label("Compare with other runs").classes("text-h6")
        ui.label(
            "Their loss curves are drawn over this run's, with the settings that differ."
        ).classes("text-body2 text-grey-8")
        choice = (
            ui.select({}, label="Runs", multiple=True)
            .props("outlined dense use-chips options-dense")
            .classes("w-full compare-runs")
        )
        nothing = ui.label("You have no other training runs yet.").classes("text-body2 text-grey-7")

        def go() -> None:
            picked = [i for i in choice.value or [] if i != job_id][: MAX_RUNS - 1]
            if not picked:
                ui.notify("Pick at least one other run.", type="warning")
                return
            ui.navigate.to(f"/runs/compare?ids={','.join([job_id, *picked])}")

        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Compare", icon="stacked_line_chart", on_click=go).props("unelevated")

    async def fill() -> None:
        runs = [(i, text) for i, text in await read(training_runs, user) if i != job_id]
        choice.set_options(dict(runs))
        choice.set_visibility(bool(runs))
        nothing.set_visibility(not runs)

    dialog.on("show", fill)
    return dialog


@page("/runs/compare", "Compare runs")
async def compare_page(user: User, ids: str = "") -> None:
    job_ids = list(dict.fromkeys(i.strip() for i in ids.split(",") if i.strip()))
    heading("Compare runs", "Curves overlaid, the settings that differ, and the results.")
    try:
        comparison = await read(service.compare, user, job_ids)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            ui.status_code(404)
            title, text = (
                "Run not found",
                "One of these runs is not among yours: it may have been deleted.",
            )
        else:
            title, text = "Nothing to compare", f"{exc.message} Open a run and press Compare."
        with ui.card().classes("w-full"), EmptyState("stacked_line_chart", title, text):
            ui.button("Open Jobs", on_click=lambda: ui.navigate.to("/jobs")).classes("q-mt-md")
        return
    view = CompareView(comparison, await _checks(user, comparison))

    async def refresh() -> None:
        if all(run["status"] in TERMINAL for run in view.runs) and not any(
            check in CHECKING for check in view.checks
        ):
            timer.cancel()
            return
        latest = await read(service.compare, user, job_ids)
        view.show(latest, await _checks(user, latest))

    timer = ui.timer(REFRESH_SECONDS, refresh)


async def _checks(user: User, comparison: dict[str, Any]) -> list[str]:
    """What each run's before/after check found (or its status while it is to come)."""
    return await read(run_checks, user, [run.get("result") for run in comparison["runs"]])


def curves(runs: list[dict[str, Any]]) -> list[Curve]:
    """The curves at least one of the runs reports, in `CURVES` order."""
    reported = {name for run in runs for name, points in run["series"].items() if points}
    return [c for c in CURVES if c.metric in reported or c.eval_metric in reported]


def first_curve(runs: list[dict[str, Any]], shown: list[Curve]) -> Curve | None:
    """The curve a comparison opens on: the reward when every run is a GRPO run (whose loss says
    little), otherwise the loss (every trainer reports one)."""
    if not shown:
        return None
    trainers = {run["spec"].get("trainer", "sft") for run in runs}
    reward = next((c for c in shown if c.metric == "reward"), None)
    return reward if trainers == {"grpo"} and reward else shown[0]


def _names(runs: list[dict[str, Any]]) -> list[str]:
    """Each run's name, its short id added where two runs share one."""
    names = [str(run["name"]) for run in runs]
    return [
        f"{name} ({run['job_id'][:6]})" if names.count(name) > 1 else name
        for name, run in zip(names, runs, strict=True)
    ]


class CompareView:
    def __init__(self, comparison: dict[str, Any], checks: list[str]) -> None:
        self.runs: list[dict[str, Any]] = comparison["runs"]
        self.checks = checks
        with ui.card().classes("w-full q-pa-lg gap-2"):
            with ui.row().classes("w-full items-center gap-3 compare-legend"):
                self.legend = ui.row().classes("gap-3")
            with ui.row().classes("w-full items-center gap-3"):
                self.title = ui.label().classes("text-subtitle1 text-weight-medium")
                ui.space()
                self.picker = (
                    ui.toggle({}, on_change=lambda: self._draw())
                    .props("dense no-caps unelevated toggle-color=primary")
                    .classes("compare-curves")
                )
            self.chart = ui.echart(base_options((None,), legend=False)).classes(
                "w-full h-96 compare-chart"
            )
        with ui.row().classes("w-full gap-6 items-start"):
            with ui.card().classes("col-12 col-md q-pa-lg gap-3 min-w-0"):
                ui.label("Settings that differ").classes("text-subtitle1 text-weight-medium")
                self.differences = ui.column().classes("w-full")
            with ui.card().classes("col-12 col-md q-pa-lg gap-3 min-w-0"):
                ui.label("Results").classes("text-subtitle1 text-weight-medium")
                self.results = ui.column().classes("w-full")
        self.show(comparison, checks)

    def show(self, comparison: dict[str, Any], checks: list[str]) -> None:
        self.runs, self.checks = comparison["runs"], checks
        names = _names(self.runs)
        shown = curves(self.runs)
        labels = {curve.label: curve.label for curve in shown}
        picked = self.picker.value
        if picked not in labels:  # the first time, or its curve went away
            first = first_curve(self.runs, shown)
            self.picker.set_options(labels, value=first.label if first else None)
        else:
            self.picker.set_options(labels, value=picked)
        self.picker.set_visibility(len(shown) > 1)
        self.legend.clear()
        for index, (run, name) in enumerate(zip(self.runs, names, strict=True)):
            color = PALETTE[index % len(PALETTE)]
            with (
                self.legend,
                ui.link(target=f"/runs/{run['job_id']}").classes(
                    "row items-center gap-1 no-underline text-grey-9"
                ),
            ):
                ui.element("div").style(
                    f"width: 12px; height: 12px; border-radius: 3px; background: {color}"
                )
                ui.label(name).classes("text-body2 text-weight-medium")
                ui.badge(run["status"], color=status_color(run["status"])).props("rounded")
        if self.picker.value == picked:  # a new pick has drawn already, through the picker
            self._draw()
        self._differences(comparison["differences"], names)
        self._results(names)

    def _draw(self) -> None:
        """The picked curve of every run in the run's colour: solid in training, dashed at the
        evaluations."""
        curve = next((c for c in CURVES if c.label == self.picker.value), None)
        series: list[dict[str, Any]] = []
        if curve is None:
            self.title.set_text("No curves yet")
        else:
            key = " (solid: training, dashed: eval)" if curve.eval_metric else ""
            self.title.set_text(curve.label + key)
            names = _names(self.runs)
            for index, (run, name) in enumerate(zip(self.runs, names, strict=True)):
                color = PALETTE[index % len(PALETTE)]
                lines = [(curve.metric, name, False)]
                if curve.eval_metric:
                    lines.append((curve.eval_metric, f"{name} · eval", True))
                for key, title, dashed in lines:
                    if points := run["series"].get(key):
                        line = Line(key, title, color, dashed=dashed, markers=dashed)
                        steps = [(int(step), float(value)) for step, value in points]
                        series.append(line_series(line, steps))
        self.chart.options["series"] = series
        self.chart.update()

    def _differences(self, differences: dict[str, list[Any]], names: list[str]) -> None:
        self.differences.clear()
        with self.differences:
            if not differences:
                ui.label("None: these runs have the same settings.").classes(
                    "text-body2 text-grey-7"
                )
                return
            columns = [{"name": "setting", "label": "Setting", "field": "setting", "align": "left"}]
            columns += [
                {"name": f"r{i}", "label": name, "field": f"r{i}", "align": "left"}
                for i, name in enumerate(names)
            ]
            rows = [
                {"setting": label(key), **{f"r{i}": setting(v) for i, v in enumerate(values)}}
                for key, values in differences.items()
            ]
            ui.table(columns=columns, rows=rows, row_key="setting").props(
                "flat dense bordered wrap-cells"
            ).classes("w-full compare-differences")

    def _results(self, names: list[str]) -> None:
        finals = [_final(run) for run in self.runs]
        columns = [{"name": "metric", "label": "", "field": "metric", "align": "left"}]
        columns += [
            {"name": f"r{i}", "label": name, "field": f"r{i}", "align": "right"}
            for i, name in enumerate(names)
        ]
        rows = []
        for name in FINAL:
            values = [final.get(name) for final in finals]
            known = [v for v in values if v is not None]
            if not known:  # a metric none of these runs' methods reports
                continue
            best = (min(known) if name in LOWER_IS_BETTER else max(known)) if known else None
            row: dict[str, Any] = {"metric": metric_name(name)}
            for i, value in enumerate(values):
                ranked = len(set(known)) > 1
                mark = " ★" if ranked and value is not None and value == best else ""
                row[f"r{i}"] = metric(name, value) + mark
            rows.append(row)
        if any(check not in NO_CHECK.values() for check in self.checks):
            rows.append(
                {
                    "metric": "Before/after check",
                    **{f"r{i}": _check_text(c) for i, c in enumerate(self.checks)},
                }
            )
        self.results.clear()
        with self.results:
            ui.table(columns=columns, rows=rows, row_key="metric").props(
                "flat dense bordered wrap-cells"
            ).classes("w-full compare-results")
            ui.label("★ the best of the runs. Unfinished runs show their latest values.").classes(
                "text-caption text-grey-7"
            )


def _check_text(check: str) -> str:
    return f"{check}…" if check in CHECKING else check


def _final(run: dict[str, Any]) -> dict[str, float]:
    """A run's final metrics, or the latest of each series while it has not finished."""
    result = run.get("result") or {}
    finals = dict(result.get("metrics") or {})
    if result.get("tokens_per_second") is not None:
        finals["tokens_per_second"] = result["tokens_per_second"]
    for name, points in run["series"].items():
        if name not in finals and points:
            finals[name] = max(points, key=lambda point: point[0])[1]
    return finals
