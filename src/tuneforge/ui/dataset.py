"""`/datasets/{id}`: one dataset. Raw: its rows, the mapping with a live preview, and processing.
Processed: its validation report, statistics and rows, live while it is being processed."""

from __future__ import annotations

from nicegui import ui
from pydantic import ValidationError

from tuneforge.db.tables import Dataset, Job, User
from tuneforge.errors import NotFound
from tuneforge.services import datasets as service
from tuneforge.services import jobs as job_service
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.dataset_augment import AugmentForm
from tuneforge.ui.dataset_fields import problems
from tuneforge.ui.dataset_mapping import MappingForm
from tuneforge.ui.dataset_preview import LivePreview
from tuneforge.ui.dataset_processing import ProcessingForm
from tuneforge.ui.dataset_report import report_view
from tuneforge.ui.dataset_stats import stats_view
from tuneforge.ui.dataset_summary import card, processed_summary, raw_summary
from tuneforge.ui.dataset_synthesis import SynthesisView  # its page before `/datasets/{id}`
from tuneforge.ui.dataset_table import Page, RowsTable
from tuneforge.ui.datasets import STATUS_COLORS
from tuneforge.ui.layout import EmptyState, confirm, heading, page

REFRESH_SECONDS = 1.0


@page("/datasets/{dataset_id}", "Dataset")
async def dataset_page(user: User, dataset_id: str) -> None:
    try:
        dataset = await read(service.get_dataset, user, dataset_id)
    except NotFound:
        ui.status_code(404)
        with EmptyState(
            "search_off",
            "Dataset not found",
            "There is no dataset with this id among yours. It may have been deleted.",
        ):
            ui.button(
                "Back to datasets", icon="arrow_back", on_click=lambda: ui.navigate.to("/datasets")
            ).classes("q-mt-md")
        return
    with ui.link(target="/datasets").classes(
        "row items-center gap-1 text-grey-7 no-underline -mb-4"
    ):
        ui.icon("arrow_back", size="xs")
        ui.label("All datasets").classes("text-body2")
    await DatasetView(user, dataset.id).show(dataset)


class DatasetView:
    """The page's body, rebuilt when the dataset changes (a processing one, once it is done)."""

    def __init__(self, user: User, dataset_id: str) -> None:
        self.user = user
        self.dataset_id = dataset_id
        self.body = ui.column().classes("w-full gap-6")
        # Outside the body: clearing the body must not delete the timer that is clearing it.
        self.timer = ui.timer(REFRESH_SECONDS, self.refresh, active=False)
        self.progress: JobProgress | None = None

    async def show(self, dataset: Dataset) -> None:
        self.body.clear()
        self.timer.active = dataset.status == "processing"
        with self.body:
            _title(self.user, dataset)
            if dataset.origin == "synthesis":
                await SynthesisView.build(self.user, dataset)
                if dataset.status != "ready":
                    return
            if dataset.kind == "raw":
                await _raw(self.user, dataset)
            elif dataset.status == "processing":
                self.progress = JobProgress(dataset.job_id)
                await self.refresh()
            else:
                await _processed(self.user, dataset)

    async def refresh(self) -> None:
        """Follow a dataset being processed: its job's progress, then the result."""
        try:
            dataset = await read(service.get_dataset, self.user, self.dataset_id)
        except NotFound:
            self.timer.active = False
            if self.progress is not None:
                self.progress.message.set_text("This dataset was deleted.")
            return
        if dataset.status != "processing":
            await self.show(dataset)
        elif dataset.job_id and self.progress is not None:
            self.progress.show(await read(job_service.get_job, self.user, dataset.job_id))


class JobProgress:
    """The progress of the job processing a large dataset."""

    def __init__(self, job_id: str | None) -> None:
        with card("Processing"):
            with ui.row().classes("w-full items-center no-wrap gap-4"):
                self.bar = (
                    ui.linear_progress(value=0, show_value=False, size="10px")
                    .props("rounded track-color=grey-3")
                    .classes("col")
                )
                self.percent = ui.label("0%").classes("text-subtitle1 text-weight-medium w-12")
            self.message = ui.label("Waiting for a free worker.").classes("text-body2 text-grey-8")
            if job_id:
                ui.link("See the job and its log", f"/jobs/{job_id}").classes("text-body2")

    def show(self, job: Job) -> None:
        self.bar.set_value(job.progress)
        self.percent.set_text(f"{job.progress:.0%}")
        self.message.set_text(job.message or f"The job is {job.status}.")


def _title(user: User, dataset: Dataset) -> None:
    rows = "being processed" if dataset.status == "processing" else f"{dataset.rows:,} rows"
    subtitle = f"{dataset.kind.capitalize()} dataset · {rows}"
    with heading(dataset.name, subtitle), ui.row().classes("items-center gap-3"):
        ui.badge(dataset.status, color=STATUS_COLORS.get(dataset.status, "grey-6")).classes(
            "dataset-status text-body2 q-px-md q-py-xs"
        ).props("rounded")

        async def delete() -> None:
            if not await confirm(
                f"Delete {dataset.name!r}?",
                "Its rows and files are deleted; datasets processed from it are kept. "
                "This cannot be undone.",
                "Delete dataset",
            ):
                return
            with reported():
                await call(service.delete_dataset, state().store, user, dataset.id)
                ui.navigate.to("/datasets")

        if dataset.kind == "processed" and dataset.status == "ready":
            for label, icon, target in (
                ("Train on it", "model_training", f"/train?dataset={dataset.id}"),
                ("Evaluate on it", "rule", f"/evaluations?dataset={dataset.id}"),
            ):
                ui.button(label, icon=icon, on_click=lambda t=target: ui.navigate.to(t)).props(
                    "outline"
                ).classes("dataset-" + icon.replace("_", "-"))
        if dataset.status != "processing":
            ui.button("Delete", icon="delete", on_click=delete).props("flat color=grey-8")


async def _raw(user: User, dataset: Dataset) -> None:
    columns = [column["name"] for column in dataset.columns]
    raw_summary(dataset)
    await _rows(user, dataset)

    async def changed() -> None:
        try:
            spec = form.spec()
        except ValidationError as exc:
            preview.problem(problems(exc))
            return
        await preview.show(spec)

    with card("Mapping"):
        ui.label(
            f"Filled in for the recognised {dataset.format} format."
            if dataset.format
            else "The format was not recognised: this is a best guess, check it."
        ).classes("text-body2 text-grey-7 -mt-3")
        with ui.row().classes("w-full gap-6 items-start"):
            with ui.column().classes("col-12 col-md-5"):
                form = MappingForm(columns, dataset.mapping, changed)
            with ui.column().classes("col-12 col-md"):
                preview = LivePreview(
                    lambda spec: read(
                        service.preview, state().store, state().settings, user, dataset.id, spec
                    )
                )
    await changed()
    with card("Processing"):
        ProcessingForm(user, dataset, form.spec)


async def _rows(user: User, dataset: Dataset) -> None:
    splits = list(dataset.splits)
    with ui.card().classes("w-full gap-0"):
        with ui.row().classes("w-full items-center justify-between q-pb-sm"):
            ui.label("Rows").classes("text-subtitle1 text-weight-medium")
            split = ui.toggle(splits, value=splits[0]).props(
                "dense no-caps unelevated toggle-color=primary"
            )
            split.set_visibility(len(splits) > 1)

        async def fetch(offset: int, limit: int) -> Page:
            _, rows, total = await read(
                service.dataset_rows,
                state().store,
                user,
                dataset.id,
                split=split.value,
                offset=offset,
                limit=limit,
                thumbnails=True,
                settings=state().settings,
            )
            return rows, total

        table = RowsTable([column["name"] for column in dataset.columns], fetch)

    split.on_value_change(table.first_page)
    await table.load()


async def _processed(user: User, dataset: Dataset) -> None:
    processed_summary(dataset)
    if dataset.report:
        with card("Validation report"):
            report_view(dataset.report)
    if dataset.stats:
        with card("Statistics"):
            stats_view(dataset.stats)
    if dataset.status == "ready":
        await _rows(user, dataset)
        if "train" in dataset.splits:
            with card("Augmentation"):
                AugmentForm(user, dataset)
