""" "Try on a sample": a completion (prefilled with a plausible one) graded against a dataset row
(the first of its test split) by the graders being built, before anything is trained: each
grade with its reason, and the total. The graders-try service scores it (the same one the API's
`POST /api/v1/trainings/graders/try` calls)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui
from pydantic import ValidationError

from tuneforge.db.tables import User
from tuneforge.schemas.graders import GraderTrial, GraderTry
from tuneforge.services import graders as service
from tuneforge.ui.backend import call, reported, state
from tuneforge.ui.graders import reference_columns
from tuneforge.ui.train_form import problems

Graders = Callable[[], list[dict[str, Any]]]
TEXT = "text-body2 q-pa-sm rounded-borders bg-grey-2 w-full"
PRE = "white-space: pre-wrap; overflow-wrap: anywhere"
QUOTED = 400  # characters of a row's value shown


def prompt_text(row: dict[str, Any]) -> str:
    """A row's prompt in words: its last user turn's text."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(
                str(part.get("text", "")) for part in content or [] if isinstance(part, dict)
            )
    return ""


def plausible(row: dict[str, Any] | None, graders: list[dict[str, Any]]) -> str:
    """A completion a good answer could be: the row's reference, in the tag a numeric grader
    reads it from."""
    if not row:
        return ""
    asked = prompt_text(row)
    columns = [g["column"] for g in graders if g.get("column") in row]
    columns += [c for c in reference_columns(list(row)) if str(row[c]) != asked]
    reference = str(row[columns[0]]) if columns else ""
    tag = next((g["tag"] for g in graders if g.get("extract") == "tag" and g.get("tag")), None)
    return f"<{tag}>{reference}</{tag}>" if tag else reference


class TryPanel(ui.expansion):
    """The completion, the row, the Try button and the grades."""

    def __init__(self, user: User, graders: Graders, row: dict[str, Any] | None) -> None:
        super().__init__("Try on a sample", icon="science", value=True)
        self.user = user
        self.graders = graders
        self.row = row
        self.edited = False
        self.classes("w-full grader-try").props("dense header-class='text-weight-medium'")
        with self:
            ui.label(
                "See what the graders give an answer before you train: change the answer and "
                "try again."
            ).classes("text-caption text-grey-7")
            self.row_view = ui.column().classes("w-full gap-1 try-row")
            self.completion = (
                ui.textarea("Completion", on_change=self._typed)
                .props("outlined autogrow")
                .classes("w-full try-completion")
            )
            ui.button("Try", icon="play_arrow", on_click=self.run).props("unelevated").classes(
                "try-button"
            )
            self.result = ui.column().classes("w-full gap-2 try-result")
        self.take_row(row)

    def take_row(self, row: dict[str, Any] | None) -> None:
        """Grade against `row` (None: the graders get an empty row)."""
        self.row = row
        self.row_view.clear()
        with self.row_view:
            if not row:
                ui.label("The dataset has no row to try against.").classes("text-body2 text-grey-7")
                return
            ui.label("The row: the first of the test split").classes("text-caption text-grey-7")
            ui.label(prompt_text(row) or "(no prompt)").classes(f"{TEXT} try-prompt").style(PRE)
            with ui.grid(columns="auto 1fr").classes("gap-x-4 gap-y-1 text-body2"):
                for column in reference_columns(list(row)):
                    ui.label(column).classes("text-grey-7 font-mono")
                    ui.label(str(row[column])[:QUOTED]).style(PRE)
        if not self.edited:
            self.completion.set_value(plausible(row, self.graders()))
            self.edited = False

    def _typed(self) -> None:
        self.edited = True

    def follow(self) -> None:
        """The graders changed: an answer nobody typed follows them (the tag they read)."""
        if not self.edited:
            self.completion.set_value(plausible(self.row, self.graders()))
            self.edited = False

    async def run(self) -> None:
        self.result.clear()
        graders = self.graders()
        if not graders:
            ui.notify("Add a grader first.", type="warning")
            return
        try:
            trial = GraderTry.model_validate(
                {
                    "graders": graders,
                    "completion": self.completion.value or "",
                    "row": self.row or {},
                }
            )
        except ValidationError as exc:
            ui.notify(f"Fix the graders first: {problems(exc)}", type="warning", multi_line=True)
            return
        with reported():
            self._show(await call(service.try_graders, self.user, state().settings, trial))

    def _show(self, tried: GraderTrial) -> None:
        with self.result:
            for grade in tried.grades:
                score = grade.score
                colour = (
                    "grey-6"
                    if score is None
                    else "positive"
                    if score >= 1
                    else "negative"
                    if score <= 0
                    else "warning"
                )
                with ui.row().classes("w-full no-wrap items-start gap-3 try-grade"):
                    ui.badge("—" if score is None else f"{score:.2f}", color=colour).classes(
                        "text-body2 q-mt-xs"
                    )
                    with ui.column().classes("gap-0 col min-w-0"):
                        ui.label(f"{grade.name} · weight {grade.weight:g}").classes(
                            "text-body2 text-weight-medium"
                        )
                        ui.label(grade.reason or "").classes("text-body2 text-grey-8 try-reason")
            ui.label(f"Total reward: {tried.total:.2f} of {tried.max_total:g}").classes(
                "text-subtitle1 text-weight-medium try-total"
            )
