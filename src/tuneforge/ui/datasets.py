"""`/datasets`: the user's datasets, newest first, and an upload area to add one.

An upload reaches Python through NiceGUI's upload route (one per widget, posted by Quasar's
uploader with progress). Starlette spools the multipart body to a temporary file past 1 MiB and
NiceGUI hands over a file on disk (`LargeFileUpload`) past 1 MiB, so an upload is never whole in
memory; the body-size middleware lets these routes take `max_upload_bytes` (see `api/app.py`).
"""

from __future__ import annotations

import io
import logging
from typing import Any, BinaryIO

from nicegui import ui
from nicegui.elements.upload_files import FileUpload, LargeFileUpload
from nicegui.events import UploadEventArguments
from sqlalchemy.orm import Session

from tuneforge.data.limits import size_text
from tuneforge.data.readers.sniff import FORMAT_NAMES
from tuneforge.db.tables import Dataset, User
from tuneforge.services import datasets as service
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.dataset_fields import blank
from tuneforge.ui.dataset_table import PagedTable
from tuneforge.ui.formatting import when
from tuneforge.ui.layout import EmptyState, heading, page

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
KIND_COLORS = {"raw": "grey-7", "processed": "primary"}
STATUS_COLORS = {"ready": "positive", "processing": "primary", "failed": "negative"}
COLUMNS = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "kind", "label": "Kind", "field": "kind", "align": "left"},
    {"name": "format", "label": "Format", "field": "format", "align": "left"},
    {"name": "rows", "label": "Rows", "field": "rows", "align": "right"},
    {"name": "splits", "label": "Splits", "field": "splits", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
]
SLOTS = {
    "body-cell-name": """
        <q-td :props="props">
          <a :href="'/datasets/' + props.row.id" @click.stop
             class="text-primary text-weight-medium tf-wrap" style="text-decoration: none">
            {{ props.value }}</a>
          <div class="text-caption text-grey-6 tf-wrap">{{ props.row.origin }}</div>
        </q-td>""",
    "body-cell-kind": """
        <q-td :props="props">
          <q-badge outline :color="props.row.kind_color" :label="props.value" />
        </q-td>""",
    "body-cell-status": """
        <q-td :props="props">
          <q-badge class="dataset-status q-px-sm q-py-xs" rounded
                   :color="props.row.status_color" :label="props.value" />
        </q-td>""",
}
# Quasar's uploader with a drop zone of ours: a big target while idle, a progress bar per file.
UPLOAD_CSS = ".dataset-upload .q-uploader__header { display: none; }"
UPLOAD_LIST = """
    <div v-if="props.files.length === 0"
         class="column items-center q-py-lg q-gutter-sm text-center dataset-drop">
      <q-icon name="cloud_upload" size="48px" color="grey-5" />
      <div class="text-subtitle1 text-grey-9">Drop a file here</div>
      <q-btn unelevated no-caps color="primary" icon="folder_open" label="Choose a file">
        <q-uploader-add-trigger />
      </q-btn>
    </div>
    <div v-for="file in props.files" :key="file.__key"
         class="row items-center no-wrap q-pa-md q-gutter-md upload-file">
      <q-icon name="description" size="md" color="primary" />
      <div class="col">
        <div class="text-body2 text-weight-medium ellipsis">{{ file.name }}</div>
        <q-linear-progress :value="file.__progress" rounded size="8px" track-color="grey-3"
                           :color="file.__status === 'failed' ? 'negative' : 'primary'"
                           class="q-my-xs upload-progress" />
        <div class="text-caption text-grey-7">
          {{ file.__progressLabel }} of {{ file.__sizeLabel }}</div>
      </div>
    </div>"""
NO_DATASETS = (
    "A dataset is the examples a model learns from. Upload a file above: TuneForge recognises "
    "the common formats (chat messages, ShareGPT, Alpaca, question and answer columns…) and "
    "shows you each example as Gemma will see it."
)


def _row(dataset: Dataset) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "origin": dataset.origin_ref
        if dataset.origin == "upload"
        else f"from {dataset.origin_ref}",
        "kind": dataset.kind,
        "kind_color": KIND_COLORS.get(dataset.kind, "grey-7"),
        "format": dataset.format or "—",
        "rows": f"{dataset.rows:,}",
        "splits": " · ".join(f"{name} {count:,}" for name, count in dataset.splits.items()),
        "status": dataset.status,
        "status_color": STATUS_COLORS.get(dataset.status, "grey-6"),
        "created": when(dataset.created_at),
    }


@page("/datasets", "Datasets")
async def datasets_page(user: User) -> None:
    heading(
        "Datasets",
        "Bring your examples as a file, check how each row becomes a conversation, and "
        "process it into training data.",
    )
    _upload_card(user)

    async def fetch(offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        datasets, total = await read(service.list_datasets, user, offset=offset, limit=limit)
        return [_row(dataset) for dataset in datasets], total

    with ui.card().classes("w-full q-pa-none gap-0"):
        table = PagedTable(COLUMNS, fetch, row_key="id", noun="dataset")
        table.table.classes("datasets-table")
        for name, template in SLOTS.items():
            table.table.add_slot(name, template)
        table.table.on("rowClick", lambda e: ui.navigate.to(f"/datasets/{e.args[1]['id']}"))
        nothing = EmptyState("table_chart", "No datasets yet", NO_DATASETS)

    async def refresh() -> None:
        total = await table.load()
        table.set_visibility(total > 0)
        nothing.set_visibility(total == 0)

    await refresh()
    ui.timer(REFRESH_SECONDS, refresh)


def _upload_card(user: User) -> None:
    limit = state().settings.max_upload_bytes
    with ui.card().classes("w-full q-pa-lg gap-3"):
        with ui.row().classes("w-full items-end justify-between gap-4"):
            with ui.column().classes("gap-1"):
                ui.label("Add a dataset").classes("text-subtitle1 text-weight-medium")
                ui.label(f"{', '.join(FORMAT_NAMES.values())}; up to {size_text(limit)}.").classes(
                    "text-body2 text-grey-7"
                )
            with ui.row().classes("items-end gap-3"):
                ui.button(
                    "From documents",
                    icon="auto_awesome",
                    on_click=lambda: ui.navigate.to("/datasets/synthesize"),
                ).props("outline").classes("dataset-from-documents")
                name = (
                    ui.input("Name (optional)", placeholder="the file's name")
                    .props("outlined dense maxlength=200")
                    .classes("w-72 dataset-name")
                )
        ui.add_css(UPLOAD_CSS)
        uploader = (
            ui.upload(auto_upload=True, max_file_size=limit)
            .props("flat bordered")
            .classes("w-full dataset-upload")
        )
        uploader.add_slot("header", "<div></div>")  # hidden: the drop zone below has the button
        uploader.add_slot("list", UPLOAD_LIST)
        with ui.row().classes("items-center gap-3") as reading:
            ui.spinner(size="sm")
            reading_label = ui.label().classes("text-body2 text-grey-8")
        reading.set_visibility(False)

    async def received(event: UploadEventArguments) -> None:
        reading_label.set_text(f"Reading {event.file.name}…")
        reading.set_visibility(True)
        try:
            with reported(), await _opened(event.file) as stream:
                dataset = await call(_store, user, event.file.name, stream, blank(name.value))
                ui.navigate.to(f"/datasets/{dataset.id}")
        except Exception:
            log.exception("reading the upload %r failed", event.file.name)
            ui.notify(
                "Reading the file failed unexpectedly; the details are in the server's log.",
                type="negative",
            )
        finally:
            reading.set_visibility(False)
            uploader.reset()

    uploader.on_upload(received)
    uploader.on_rejected(
        lambda: ui.notify(f"Files can be at most {size_text(limit)}.", type="warning")
    )

    def failed() -> None:
        ui.notify(
            f"The upload did not go through. Files can be at most {size_text(limit)}.",
            type="negative",
        )
        uploader.reset()

    uploader.on("failed", failed, args=[])


async def _opened(file: FileUpload) -> BinaryIO:
    """The upload as a file: NiceGUI's own temporary file when large, its bytes when small."""
    if isinstance(file, LargeFileUpload):
        return file._path.open("rb")
    return io.BytesIO(await file.read())


def _store(
    session: Session, user: User, filename: str, stream: BinaryIO, name: str | None
) -> Dataset:
    return service.upload(
        session, state().store, state().settings, user, filename=filename, stream=stream, name=name
    )
