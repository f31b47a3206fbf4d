"""The top of a model's page: its automatic before/after check, live while it is queued or
running, then what it found in plain words ("Learned: 11/12 answers now match, base 0/12."),
with a link to the full evaluation; or why there is none, and what to do instead."""

from __future__ import annotations

from nicegui import ui

from tuneforge.db.tables import Model, User
from tuneforge.services.model_check import ModelCheck, model_check
from tuneforge.ui.backend import read

REFRESH_SECONDS = 2.0
WAITING = ("queued", "running", "cancelling")
ICONS = {"succeeded": "fact_check", "failed": "error_outline", "cancelled": "block"}


def _evaluate_link(model: Model, text: str) -> None:
    ui.link(text, f"/evaluations?model={model.id}").classes("text-body2 model-check-evaluate")


def _why_none(check: ModelCheck, model: Model) -> None:
    if check.state == "off":
        ui.label("No before/after check: this run was set to skip it (check examples 0).")
    elif check.state == "no_test":
        ui.label(
            "No before/after check: the dataset it learned from has no test split, so there "
            "are no held-out questions to check it on. Evaluate it on another dataset, or "
            "process the dataset again with a test split and train once more."
        )
    else:
        ui.label("This model has no before/after check (it may come from an older run).")
    _evaluate_link(model, "Evaluate it against its base")


def _show(check: ModelCheck, model: Model) -> None:
    job = check.job
    if job is None and check.state in WAITING:
        ui.label("The check starts once the run has saved the model.").classes(
            "text-body1 model-check-summary"
        )
        return
    if job is None:
        _why_none(check, model)
        return
    link = f"/evaluations/{job.id}"
    if check.state in WAITING:
        with ui.row().classes("items-center gap-3 no-wrap"):
            ui.spinner(size="sm")
            state = "waiting for its turn" if check.state == "queued" else "answering"
            ui.label(f"Checking what it learned against its base: {state}.").classes(
                "text-body1 model-check-summary"
            )
        ui.linear_progress(value=job.progress, show_value=False).classes("model-check-progress")
        if job.message:
            ui.label(job.message).classes("text-caption text-grey-7")
        ui.link("Follow it", link).classes("text-body2 model-check-open")
        return
    with ui.row().classes("items-center gap-3 no-wrap"):
        ui.icon(ICONS.get(check.state, "info"), size="md", color="primary")
        if check.state == "succeeded":
            ui.label(check.summary or "").classes("text-h6 model-check-summary")
        else:
            reason = f": {job.error}" if job.error else "."
            ui.label(f"The before/after check {check.state}{reason}").classes(
                "text-body1 model-check-summary"
            )
    if check.detail:
        ui.label(check.detail).classes("text-body2 text-grey-8 model-check-detail")
    with ui.row().classes("gap-4"):
        ui.link("See every answer", link).classes("text-body2 model-check-open")
        _evaluate_link(model, "Evaluate on more examples")


async def check_card(user: User, model: Model) -> None:
    """The card, refreshed while the check is still to come."""
    with ui.card().classes("w-full q-pa-lg gap-2 model-check"):
        ui.label("Did it learn? Fine-tune vs base on held-out examples").classes(
            "text-subtitle1 text-weight-medium"
        )
        body = ui.column().classes("w-full gap-2")
    seen: list[tuple[str, float]] = []

    async def refresh() -> None:
        check = await read(model_check, user, model.id)
        key = (check.state, check.job.progress if check.job is not None else 0.0)
        if check.state not in WAITING:
            timer.deactivate()
        if seen and seen[-1] == key:
            return
        seen.append(key)
        body.clear()
        with body:
            _show(check, model)

    timer = ui.timer(REFRESH_SECONDS, refresh)
    await refresh()
