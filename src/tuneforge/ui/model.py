"""`/models/{id}`: one fine-tuned model: first whether it learned (its automatic before/after
check against its base), then where it came from (base model, the model it continued, dataset,
run), its final metrics, how it was trained, and its files."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nicegui import ui
from sqlalchemy.orm import Session

from tuneforge.data.limits import size_text
from tuneforge.db.tables import Model, User
from tuneforge.errors import NotFound
from tuneforge.services import datasets as dataset_service
from tuneforge.services import models as service
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.formatting import when
from tuneforge.ui.layout import EmptyState, confirm, heading, page
from tuneforge.ui.model_check import check_card
from tuneforge.ui.model_export import exports_card, open_export_dialog
from tuneforge.ui.models import KINDS
from tuneforge.ui.run_format import metric, metric_name
from tuneforge.ui.run_settings import settings_view, trainer_title

CARD = "w-full q-pa-lg gap-3"
TITLE = "text-subtitle1 text-weight-medium"
#: The metrics shown first, in this order; any others follow.
FIRST = (
    "loss",
    "eval_loss",
    "perplexity",
    "token_accuracy",
    "eval_rewards/accuracy",
    "eval_rewards/margin",
    "eval_reward",
)
#: Per-step diagnostics whose last value says nothing about the model (the schedule ends at a
#: learning rate of 0, so the last step's update is 0 too).
HIDDEN = frozenset({"eta_seconds", "learning_rate", "grad_norm", "update_ratio"})


@dataclass(frozen=True)
class Origin:
    """Where a model came from, by name, while those records are still there."""

    dataset: str | None = None
    started_from: str | None = None  # the name of the model it continued


def model_with_origin(session: Session, user: User, model_id: str) -> tuple[Model, Origin]:
    """The model, and the names of its dataset and of the model it continued."""
    model = service.get_model(session, user, model_id)
    dataset = started_from = None
    if model.dataset_id:
        with contextlib.suppress(NotFound):
            dataset = dataset_service.get_dataset(session, user, model.dataset_id).name
    if model.spec.get("start_from"):
        with contextlib.suppress(NotFound):
            started_from = service.get_model(session, user, model.spec["start_from"]).name
    return model, Origin(dataset, started_from)


@page("/models/{model_id}", "Model")
async def model_page(user: User, model_id: str) -> None:
    try:
        model, origin = await read(model_with_origin, user, model_id)
    except NotFound:
        ui.status_code(404)
        with EmptyState(
            "search_off",
            "Model not found",
            "There is no model with this id among yours. It may have been deleted.",
        ):
            ui.button(
                "Back to models", icon="arrow_back", on_click=lambda: ui.navigate.to("/models")
            ).classes("q-mt-md")
        return
    with ui.link(target="/models").classes("row items-center gap-1 text-grey-7 no-underline -mb-4"):
        ui.icon("arrow_back", size="xs")
        ui.label("All models").classes("text-body2")
    kind = KINDS.get(model.kind, model.kind)
    came = f"fine-tuned from {model.base_model}"
    if model.spec.get("start_from"):
        came = f"continued from {origin.started_from or 'a deleted model'} ({model.base_model})"
    with (
        heading(model.name, f"{kind} · {came}"),
        ui.row().classes("items-center gap-2"),
    ):
        ui.button(
            "Chat",
            icon="forum",
            on_click=lambda: ui.navigate.to(
                f"/playground?model={model.id}&compare={model.base_model}"
            ),
        ).classes("model-chat").tooltip("Chat with it beside the model it started from.")
        ui.button(
            "Evaluate",
            icon="rule",
            on_click=lambda: ui.navigate.to(f"/evaluations?model={model.id}"),
        ).props("outline").classes("model-evaluate").tooltip(
            "Score it against its base on the test split of the data it learned from."
        )
        export_button = (
            ui.button("Export", icon="download")
            .props("outline")
            .classes("model-export")
            .tooltip("Files for Ollama, llama.cpp, transformers or vLLM, checked before use.")
        )
        _delete_button(user, model)
    await check_card(user, model)
    with ui.row().classes("w-full gap-6 items-stretch"):
        with ui.card().classes("col-12 col-md " + CARD):
            ui.label("Summary").classes(TITLE)
            _summary(model, origin)
        with ui.card().classes("col-12 col-md " + CARD):
            ui.label("Final metrics").classes(TITLE)
            _metrics(model)
    reload_exports = exports_card(user, model)
    export_button.on_click(lambda: open_export_dialog(user, model, reload_exports))
    await reload_exports()
    with ui.row().classes("w-full gap-6 items-start"):
        with ui.card().classes("col-12 col-md " + CARD):
            ui.label("How it was trained").classes(TITLE)
            settings_view(model.spec)
        with ui.card().classes("col-12 col-md " + CARD):
            ui.label("Files").classes(TITLE)
            with ui.column().classes("w-full gap-1 model-files"):
                for name in model.files:
                    with ui.row().classes("items-center gap-2 no-wrap"):
                        ui.icon("description", size="xs", color="grey-6")
                        ui.label(name).classes("text-body2 font-mono")
            ui.label(f"{len(model.files)} files, {size_text(model.size_bytes)} in all.").classes(
                "text-caption text-grey-7"
            )


def _summary(model: Model, origin: Origin) -> None:
    dataset = origin.dataset
    with ui.grid(columns="auto 1fr").classes("gap-x-6 gap-y-2 text-body2 model-facts"):
        ui.label("Base model").classes("text-grey-7")
        ui.label(model.base_model)
        if model.spec.get("start_from"):
            ui.label("Continued").classes("text-grey-7")
            if origin.started_from:
                ui.link(origin.started_from, f"/models/{model.spec['start_from']}").classes(
                    "model-started-from"
                )
            else:
                ui.label("(deleted)").classes("text-grey-6")
        ui.label("Trained by").classes("text-grey-7")
        ui.label(trainer_title(model.spec))
        ui.label("Kind").classes("text-grey-7")
        ui.label(KINDS.get(model.kind, model.kind))
        ui.label("Dataset").classes("text-grey-7")
        if dataset and model.dataset_id:
            ui.link(dataset, f"/datasets/{model.dataset_id}")
        else:
            ui.label("(deleted)").classes("text-grey-6")
        ui.label("Training run").classes("text-grey-7")
        if model.job_id:
            ui.link("Open the run", f"/runs/{model.job_id}").classes("model-run")
        else:
            ui.label("(deleted)").classes("text-grey-6")
        ui.label("Size").classes("text-grey-7")
        ui.label(size_text(model.size_bytes))
        ui.label("Created").classes("text-grey-7")
        ui.label(when(model.created_at))


def _metrics(model: Model) -> None:
    names = [n for n in FIRST if n in model.metrics]
    names += sorted(n for n in model.metrics if n not in FIRST and n not in HIDDEN)
    if not names:
        ui.label("The run reported no metrics.").classes("text-body2 text-grey-7")
        return
    with ui.grid(columns="auto 1fr").classes("gap-x-6 gap-y-2 text-body2 model-metrics"):
        for name in names:
            ui.label(metric_name(name)).classes("text-grey-7")
            ui.label(metric(name, model.metrics[name])).classes("text-weight-medium")


def _delete_button(user: User, model: Model) -> None:
    async def delete() -> None:
        if not await confirm(
            f"Delete {model.name!r}?",
            "Its files and exports are deleted; the run that made it stays, with its curves. "
            "This cannot be undone.",
            "Delete model",
        ):
            return
        with reported():
            await call(
                service.delete_model, state().store, user, model.id, state().settings.data_dir
            )
            ui.navigate.to("/models")

    ui.button("Delete", icon="delete", on_click=delete).props("flat color=grey-8")
