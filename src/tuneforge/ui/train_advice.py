"""The recommended settings for the chosen dataset, model and machine, each with its one-line
reason and a button that applies it to the form."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from nicegui import ui

from tuneforge.training.recommend import Recommendation
from tuneforge.ui.run_format import setting
from tuneforge.ui.train_form import VALUE_NAMES, label

Apply = Callable[[dict[str, Any]], None]
Current = Callable[[str], Any]


def same(a: Any, b: Any) -> bool:
    """Whether a form value already is the recommended one (numbers within rounding)."""
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


class Advice(ui.column):
    """The recommendations; `apply(values)` fills them in, `current(field)` reads the form."""

    def __init__(self, apply: Apply, current: Current) -> None:
        super().__init__()
        self.apply = apply
        self.current = current
        self.items: list[Recommendation] = []
        self.applied: frozenset[int] | None = None  # the indices of the items the form follows
        self.classes("w-full gap-2 train-advice")
        with self:
            with ui.row().classes("w-full items-center justify-between"):
                with ui.column().classes("gap-0"):
                    ui.label("Recommended settings").classes("text-subtitle1 text-weight-medium")
                    ui.label("For this dataset and model on this machine.").classes(
                        "text-body2 text-grey-7"
                    )
                self.apply_all = ui.button(
                    "Apply all", icon="done_all", on_click=self._apply_all
                ).props("outline")
            self.body = ui.column().classes("w-full gap-0")

    def problem(self, message: str) -> None:
        self.items = []
        self.applied = None
        self.apply_all.set_visibility(False)
        self.body.clear()
        with self.body:
            ui.label(message).classes("text-body2 text-grey-7 advice-problem")

    def show(self, items: list[Recommendation]) -> None:
        self.items = items
        self.applied = None
        self.update_applied()

    def update_applied(self) -> None:
        """Follow the form: what it already has moves out of the way, into "already set"."""
        applied = frozenset(
            index
            for index, item in enumerate(self.items)
            if same(self.current(item.field), item.value)
        )
        if applied == self.applied:
            return
        self.applied = applied
        pending = [item for index, item in enumerate(self.items) if index not in applied]
        done = [item for index, item in enumerate(self.items) if index in applied]
        self.apply_all.set_visibility(len(pending) > 1)
        self.body.clear()
        with self.body:
            if not pending:
                ui.label("The form follows every recommendation.").classes(
                    "text-body2 text-grey-7 q-py-sm advice-done"
                )
            for item in pending:
                self._row(item, applied=False)
            if done:
                with (
                    ui.expansion(f"Already set ({len(done)})", icon="check")
                    .classes("w-full text-grey-8 advice-applied")
                    .props("dense")
                ):
                    for item in done:
                        self._row(item, applied=True)

    def _row(self, item: Recommendation, *, applied: bool) -> None:
        with (
            ui.row()
            .classes("w-full items-center no-wrap gap-4 q-py-sm advice-item")
            .style("border-bottom: 1px solid #eeeeee")
        ):
            with ui.column().classes("col gap-0"):
                with ui.row().classes("items-baseline gap-2"):
                    ui.label(label(item.field)).classes("text-body2 text-weight-medium")
                    ui.label(VALUE_NAMES.get(str(item.value), setting(item.value))).classes(
                        "text-body2 text-primary text-weight-medium font-mono advice-value"
                    )
                ui.label(item.reason).classes("text-body2 text-grey-8 advice-reason")
            if applied:
                ui.icon("check", color="positive").classes("q-mr-sm")
            else:
                ui.button("Apply", on_click=lambda: self.apply({item.field: item.value})).props(
                    "flat dense color=primary"
                ).classes(f"advice-apply-{item.field}")

    def _apply_all(self) -> None:
        self.apply({item.field: item.value for item in self.items})
