"""The validation report of a processed dataset: rows in and out, and every problem found."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from tuneforge.data.validation import Problem, ValidationReport

EXAMPLE_COLUMNS = [
    {"name": "row", "label": "Row", "field": "row", "align": "right"},
    {"name": "detail", "label": "What is wrong", "field": "detail", "align": "left"},
    {"name": "value", "label": "Start of the row", "field": "value", "align": "left"},
]
OUTCOME = {
    "drop": "Rows with a problem were left out.",
    "fail": "Processing refuses data with problems, so nothing was kept.",
}


def figure(title: str, value: str, css: str = "") -> None:
    """A number to take in at a glance, with what it counts."""
    with ui.column().classes(f"gap-0 q-px-md q-py-sm rounded-borders bg-grey-1 {css}"):
        ui.label(value).classes("text-h5 text-weight-medium text-grey-10")
        ui.label(title).classes("text-caption text-grey-7")


def report_view(data: dict[str, Any]) -> None:
    """The report as stored on the dataset."""
    report = ValidationReport.model_validate(data)
    with ui.column().classes("w-full gap-4 validation-report"):
        with ui.row().classes("gap-3"):
            figure("rows in", f"{report.rows_in:,}", "report-rows-in")
            figure("rows kept", f"{report.rows_out:,}", "report-rows-out")
            figure("rows dropped", f"{report.dropped:,}", "report-dropped")
        if report.ok:
            with ui.row().classes("items-center gap-2 text-positive"):
                ui.icon("check_circle")
                ui.label("Every row passed every check.")
            return
        ui.label(OUTCOME[report.policy]).classes("text-body2 text-grey-8")
        with ui.list().props("bordered separator").classes("w-full rounded-borders"):
            for problem in report.problems:
                _problem(problem)


def _problem(problem: Problem) -> None:
    rows = "row" if problem.count == 1 else "rows"
    with ui.expansion().classes("w-full report-problem") as item:
        with item.add_slot("header"), ui.row().classes("w-full items-center no-wrap gap-3"):
            ui.badge(f"{problem.count:,} {rows}", color="negative").props("outline")
            with ui.column().classes("gap-0"):
                ui.label(problem.description).classes("text-body2 text-weight-medium")
                ui.label(problem.code).classes("text-caption text-grey-6 font-mono")
        ui.table(
            columns=EXAMPLE_COLUMNS,
            rows=[
                {**example.model_dump(), "row": example.row + 1, "n": n}
                for n, example in enumerate(problem.examples)
            ],
            row_key="n",
        ).props("flat dense wrap-cells").classes("w-full")
        if problem.count > len(problem.examples):
            ui.label(f"The first {len(problem.examples)} of {problem.count:,} rows.").classes(
                "text-caption text-grey-7 q-px-md q-pb-sm"
            )
