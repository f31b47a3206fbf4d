"""`/models`: the fine-tuned models, newest first: what each was trained from, how well it
learned, its size; each opens its page or is deleted (after asking)."""

from __future__ import annotations

from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments
from sqlalchemy.orm import Session

from tuneforge.data.limits import size_text
from tuneforge.db.tables import Model, User
from tuneforge.services import models as service
from tuneforge.services.names import DELETED_DATASET, datasets_named
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.dataset_table import PagedTable
from tuneforge.ui.formatting import when
from tuneforge.ui.layout import EmptyState, confirm, heading, page
from tuneforge.ui.run_format import metric

KINDS = {"adapter": "LoRA adapter", "full": "Full weights"}
COLUMNS = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "base", "label": "Base model", "field": "base", "align": "left"},
    {"name": "kind", "label": "Kind", "field": "kind", "align": "left"},
    {"name": "dataset", "label": "Dataset", "field": "dataset", "align": "left"},
    {"name": "loss", "label": "Loss", "field": "loss", "align": "right"},
    {"name": "eval_loss", "label": "Eval loss", "field": "eval_loss", "align": "right"},
    {"name": "size", "label": "Size", "field": "size", "align": "right"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "actions", "label": "", "field": "id", "align": "right"},
]
SLOTS = {
    "body-cell-name": """
        <q-td :props="props">
          <a :href="'/models/' + props.row.id" @click.stop
             class="text-primary text-weight-medium tf-wrap" style="text-decoration: none">
            {{ props.value }}</a>
        </q-td>""",
    "body-cell-kind": """
        <q-td :props="props">
          <q-badge outline color="primary" :label="props.value" />
        </q-td>""",
    "body-cell-dataset": """
        <q-td :props="props">
          <a v-if="props.row.dataset_id && props.row.dataset !== '(deleted dataset)'"
             :href="'/datasets/' + props.row.dataset_id" @click.stop
             class="text-grey-9" style="text-decoration: none">{{ props.value }}</a>
          <span v-else class="text-grey-6">{{ props.value }}</span>
        </q-td>""",
    "body-cell-actions": """
        <q-td :props="props">
          <q-btn flat round dense icon="delete" color="grey-7" class="model-delete"
                 @click.stop="() => $parent.$emit('delete', props.row)">
            <q-tooltip>Delete</q-tooltip>
          </q-btn>
        </q-td>""",
}
NO_MODELS = (
    "Every training run that finishes leaves a model here: a LoRA adapter or full weights, with "
    "its curves and settings, ready to try and to take home."
)


def model_rows(
    session: Session, user: User, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    models, total = service.list_models(session, user, offset=offset, limit=limit)
    names = datasets_named(session, user, [m.dataset_id for m in models if m.dataset_id])
    return [_row(model, names) for model in models], total


def _row(model: Model, datasets: dict[str, str]) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "base": model.base_model,
        "kind": KINDS.get(model.kind, model.kind),
        "dataset_id": model.dataset_id,
        "dataset": datasets.get(model.dataset_id, DELETED_DATASET) if model.dataset_id else "—",
        "loss": metric("loss", model.metrics.get("loss")),
        "eval_loss": metric("eval_loss", model.metrics.get("eval_loss")),
        "size": size_text(model.size_bytes),
        "created": when(model.created_at),
    }


@page("/models", "Models")
async def models_page(user: User) -> None:
    with heading("Models", "What your training runs made. Open one to see how it was trained."):
        ui.button("Train a model", icon="model_training", on_click=lambda: ui.navigate.to("/train"))

    async def fetch(offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return await read(model_rows, user, offset, limit)

    with ui.card().classes("w-full q-pa-none gap-0"):
        table = PagedTable(COLUMNS, fetch, row_key="id", noun="model")
        table.table.classes("models-table")
        for name, template in SLOTS.items():
            table.table.add_slot(name, template)
        table.table.on("rowClick", lambda e: ui.navigate.to(f"/models/{e.args[1]['id']}"))
        nothing = EmptyState("inventory_2", "No models yet", NO_MODELS)
        with nothing:
            ui.button(
                "Train a model", icon="model_training", on_click=lambda: ui.navigate.to("/train")
            ).props("unelevated").classes("q-mt-md")

    async def refresh() -> None:
        total = await table.load()
        table.set_visibility(total > 0)
        nothing.set_visibility(total == 0)

    async def delete(event: GenericEventArguments) -> None:
        row = event.args
        if not await confirm(
            f"Delete {row['name']!r}?",
            "Its files are deleted; the run that made it stays, with its curves. "
            "This cannot be undone.",
            "Delete model",
        ):
            return
        with reported():
            await call(
                service.delete_model, state().store, user, row["id"], state().settings.data_dir
            )
            ui.notify("Model deleted.")
        await refresh()

    table.table.on("delete", delete)
    await refresh()
