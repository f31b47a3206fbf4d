"""`/datasets/synthesize`: make a raw dataset from documents. Upload PDFs, Word or PowerPoint
files, web pages, Markdown or text (or a ZIP of them); pick the model that writes (a TuneForge
model, or any OpenAI-compatible endpoint with its key in a secret), the task, the prompt
template, pairs per chunk and the curation thresholds; start the `dataset_synthesis` job.

`SynthesisView` is the live card on the dataset's page while the job runs (and after it ends):
chunks done, pairs kept, drops by reason, tokens, the last pairs kept with their sources, and
Cancel / Resume."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, get_args

from nicegui import ui
from nicegui.elements.upload_files import FileUpload, LargeFileUpload
from nicegui.events import UploadEventArguments
from pydantic import BaseModel, ValidationError

from tuneforge.data.documents import ChunkSettings
from tuneforge.data.limits import size_text
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.data.synthesis.templates import SHAPES, TASKS
from tuneforge.db.tables import Dataset, User
from tuneforge.errors import NotFound
from tuneforge.schemas.synthesis import SynthesisProgress
from tuneforge.services import jobs as job_service
from tuneforge.services import secrets as secret_service
from tuneforge.services import synthesis as service
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.dataset_fields import blank, checkbox, default, number, problems, select
from tuneforge.ui.dataset_summary import card
from tuneforge.ui.generator_fields import GeneratorFields
from tuneforge.ui.layout import heading, page

log = logging.getLogger(__name__)

SECTION = "text-subtitle2 text-grey-9"
REFRESH_SECONDS = 1.0
TASK_LABELS = {
    "qa": "Question/answer pairs",
    "instructions": "Instructions and responses",
    "summaries": "Summaries",
    "reasoning": "Step-by-step reasoning",
}
assert set(TASK_LABELS) == set(TASKS), "every task has a label"
EXPLANATION = (
    "A model reads your documents a chunk at a time and writes training examples from each; "
    "curation keeps the ones grounded in the text and drops near-duplicates. The result is a "
    "raw dataset whose rows name their document, pages and chunk, ready to map and process."
)


def _curation_model() -> type[BaseModel]:
    annotation = SynthesisSpec.model_fields["curation"].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def _field(model: type[BaseModel], name: str, value: Any) -> Any:
    """A form field for one of `model`'s simple fields (a number, a flag or a choice)."""
    annotation = model.model_fields[name].annotation
    if annotation == float | None:
        annotation = float
    if annotation is bool:
        return checkbox(model, name, bool(value))
    if annotation is int:
        return number(model, name, value)
    if annotation is float:
        return number(model, name, value, integer=False)
    if get_args(annotation) and all(isinstance(a, str) for a in get_args(annotation)):
        return select(model, name, value)
    return None


class _Documents:
    """The uploaded documents, kept in temporary files until the job is started (or the page
    is left)."""

    def __init__(self) -> None:
        scratch = state().settings.data_dir / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="synthesis-", dir=scratch))
        self.files: list[tuple[str, Path]] = []
        limit = state().settings.max_upload_bytes
        self.uploader = (
            ui.upload(multiple=True, auto_upload=True, max_file_size=limit)
            .props('flat bordered label="Documents (PDF, DOCX, PPTX, HTML, Markdown, TXT, ZIP)"')
            .classes("w-full synthesis-upload")
        )
        self.uploader.on_upload(self.received)
        self.uploader.on_rejected(
            lambda: ui.notify(f"Files can be at most {size_text(limit)}.", type="warning")
        )
        self.listed = ui.row().classes("w-full gap-2 synthesis-files")
        ui.context.client.on_delete(self.discard)  # the page is left for good

    async def received(self, event: UploadEventArguments) -> None:
        file: FileUpload = event.file
        path = self.folder / f"{len(self.files)}"
        if isinstance(file, LargeFileUpload):
            shutil.copyfile(file._path, path)
        else:
            path.write_bytes(await file.read())
        self.files.append((file.name, path))
        self._show()

    def _show(self) -> None:
        self.listed.clear()
        with self.listed:
            for index, (name, path) in enumerate(self.files):
                ui.chip(
                    f"{name} ({size_text(path.stat().st_size)})",
                    icon="description",
                    removable=True,
                    on_value_change=lambda _, i=index: self.remove(i),
                ).props("outline").classes("synthesis-file")

    def remove(self, index: int) -> None:
        _, path = self.files.pop(index)
        path.unlink(missing_ok=True)
        self._show()

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class SynthesisForm(ui.column):
    """Documents, model, task, template, pairs per chunk, chunking and curation; Start."""

    def __init__(self, user: User, secrets: list[str]) -> None:
        super().__init__()
        self.user = user
        self.classes("w-full gap-4 synthesis-form")
        curation = _curation_model()
        with self:
            ui.label(EXPLANATION).classes("text-body2 text-grey-7")
            self.documents = _Documents()
            self.name = (
                ui.input("Name of the new dataset (optional)")
                .props("outlined dense maxlength=200")
                .classes("w-full md:w-1/2 synthesis-name")
            )
            ui.label("The model that writes").classes(SECTION)
            self.generator = GeneratorFields()
            ui.label("What to write").classes(SECTION)
            with ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-3"):
                self.task = ui.select(
                    TASK_LABELS, value=default(SynthesisSpec, "task"), label="Task"
                ).classes("synthesis-task")
                self.pairs = number(
                    SynthesisSpec, "pairs_per_chunk", default(SynthesisSpec, "pairs_per_chunk")
                )
                self.max_chunks = number(
                    SynthesisSpec, "max_chunks", default(SynthesisSpec, "max_chunks")
                )
            self.template = (
                ui.textarea("Prompt template", value=SHAPES[self.task.value].template)
                .props("outlined autogrow")
                .classes("w-full synthesis-template")
            )
            ui.label(
                "The chunk's text goes where {text} is; {document}, {section}, {pages} and "
                "{count} (pairs per chunk) are filled in too. Other braces are kept as written."
            ).classes("text-caption text-grey-7 -mt-3")
            self.task.on_value_change(self._task_changed)
            chunking = ui.expansion("Chunking", icon="view_agenda").classes("w-full")
            with chunking, ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-3"):
                self.chunking = {
                    name: _field(ChunkSettings, name, default(ChunkSettings, name))
                    for name in ChunkSettings.model_fields
                }
            kept = ui.expansion("Curation", icon="filter_alt").classes("w-full synthesis-curation")
            with kept:
                with ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-3"):
                    self.curation = {
                        name: widget
                        for name in curation.model_fields
                        if (widget := _field(curation, name, default(curation, name))) is not None
                    }
                ui.label(
                    "Optionally, a judge model behind an OpenAI-compatible API scores each pair "
                    "against its chunk (one request per pair); pairs under the least score "
                    "are dropped."
                ).classes("text-caption text-grey-7")
                with ui.row().classes("w-full gap-4"):
                    self.judge_url = ui.input("Judge API URL").classes("col-grow")
                    self.judge_model = ui.input("Judge model").classes("col-grow")
                    self.judge_key = ui.select(
                        {"": "(no key)", **{name: name for name in secrets}},
                        value="",
                        label="Judge API key secret",
                    ).classes("col-grow")
            self.start = (
                ui.button("Make the dataset", icon="auto_awesome", on_click=self.launch)
                .props("unelevated")
                .classes("synthesis-start")
            )

    def _task_changed(self) -> None:
        """A new task brings its template, unless the one shown was edited."""
        if self.template.value.strip() in {shape.template.strip() for shape in SHAPES.values()}:
            self.template.set_value(SHAPES[self.task.value].template)

    def spec(self) -> SynthesisSpec:
        """The form as a spec; raises pydantic's ValidationError when it does not fit."""
        template = self.template.value or ""
        return SynthesisSpec.model_validate(
            {
                "generator": self.generator.value(),
                "task": self.task.value,
                "template": None
                if template.strip() == SHAPES[self.task.value].template.strip()
                else template,
                "pairs_per_chunk": self.pairs.value,
                "max_chunks": self.max_chunks.value,
                "chunking": {name: widget.value for name, widget in self.chunking.items()},
                "curation": {name: widget.value for name, widget in self.curation.items()}
                | {"judge": self._judge()},
            }
        )

    def _judge(self) -> dict[str, Any] | None:
        url, model = (self.judge_url.value or "").strip(), (self.judge_model.value or "").strip()
        if not url and not model:
            return None
        return {"base_url": url, "model": model, "api_key_secret": self.judge_key.value or None}

    async def launch(self) -> None:
        try:
            spec = self.spec()
        except ValidationError as exc:
            ui.notify(problems(exc), type="warning", multi_line=True)
            return
        if not self.documents.files:
            ui.notify("Upload at least one document first.", type="warning")
            return
        self.start.props("loading")
        try:
            with reported(), contextlib.ExitStack() as stack:
                uploads = [
                    service.Upload(name, stack.enter_context(path.open("rb")))
                    for name, path in self.documents.files
                ]
                dataset = await call(
                    service.synthesize,
                    state().store,
                    state().settings,
                    self.user,
                    uploads,
                    blank(self.name.value),
                    spec,
                )
                self.documents.discard()
                ui.navigate.to(f"/datasets/{dataset.id}")
        finally:
            self.start.props(remove="loading")


@page("/datasets/synthesize", "Dataset from documents")
async def synthesize_page(user: User) -> None:
    with ui.link(target="/datasets").classes(
        "row items-center gap-1 text-grey-7 no-underline -mb-4"
    ):
        ui.icon("arrow_back", size="xs")
        ui.label("All datasets").classes("text-body2")
    heading(
        "Make a dataset from documents",
        "No examples yet, only a manual? Let a model write questions and answers from it.",
    )
    secrets = [s.name for s in await read(secret_service.list_secrets, user)]
    with ui.card().classes("w-full q-pa-lg"):
        SynthesisForm(user, secrets)


class SynthesisView:
    """The live card of a synthesis: progress, pairs kept, drops by reason, tokens, the last
    pairs kept with their sources; Cancel while it runs, Resume once it failed."""

    def __init__(self, user: User, dataset: Dataset) -> None:
        self.user = user
        self.dataset_id = dataset.id
        with card("Synthesis").classes("synthesis-view"):
            with ui.row().classes("w-full items-center no-wrap gap-4"):
                self.bar = (
                    ui.linear_progress(value=0, show_value=False, size="10px")
                    .props("rounded track-color=grey-3")
                    .classes("col")
                )
                self.percent = ui.label("0%").classes("text-subtitle1 text-weight-medium w-12")
            self.message = ui.label("Waiting for a free worker.").classes(
                "text-body2 text-grey-8 synthesis-message"
            )
            self.counts = ui.label().classes("text-body2 text-weight-medium synthesis-counts")
            self.dropped = ui.label().classes("text-body2 text-grey-8 synthesis-dropped")
            with ui.row().classes("items-center gap-3"):
                self.cancel = ui.button("Cancel", icon="stop", on_click=self._cancel).props(
                    "outline color=negative"
                )
                self.resume = ui.button("Resume", icon="play_arrow", on_click=self._resume)
                self.resume.props("unelevated").classes("synthesis-resume")
                if dataset.job_id:
                    ui.link("See the job and its log", f"/jobs/{dataset.job_id}").classes(
                        "text-body2"
                    )
            ui.label("Latest pairs kept").classes(SECTION)
            self.samples = ui.column().classes("w-full gap-2 synthesis-samples")
        self.cancel.set_visibility(False)
        self.resume.set_visibility(False)
        self.shown: list[dict[str, Any]] = []
        self.timer = ui.timer(REFRESH_SECONDS, self.refresh, active=dataset.status == "processing")

    @classmethod
    async def build(cls, user: User, dataset: Dataset) -> SynthesisView | None:
        """The card, showing where the synthesis is (none when its job was deleted)."""
        try:
            shown = await read(service.progress, user, dataset.id)
        except NotFound:
            return None
        view = cls(user, dataset)
        view.show(shown)
        return view

    async def refresh(self) -> None:
        with reported():
            self.show(await read(service.progress, self.user, self.dataset_id))

    def show(self, shown: SynthesisProgress) -> None:
        running = shown.dataset_status == "processing"
        self.timer.active = running
        self.bar.set_value(shown.progress)
        self.percent.set_text(f"{shown.progress:.0%}")
        if shown.status == "succeeded":
            message = f"Done: {shown.rows:,} rows made from {shown.chunks_total:,} chunks."
        else:
            message = shown.error or shown.message or f"The job is {shown.status}."
        self.message.set_text(message)
        self.counts.set_text(
            f"{shown.chunks_done:,} of {shown.chunks_total:,} chunks · {shown.kept:,} pairs kept"
            f" · tokens {shown.prompt_tokens:,} in, {shown.completion_tokens:,} out"
        )
        dropped = ", ".join(f"{reason} {n:,}" for reason, n in shown.dropped.items())
        self.dropped.set_text(f"Dropped: {dropped}" if dropped else "Dropped: none")
        self.cancel.set_visibility(running and shown.status != "cancelling")
        self.resume.set_visibility(shown.status in ("failed", "cancelled"))
        samples = [sample.model_dump() for sample in shown.samples]
        if samples == self.shown:
            return
        self.shown = samples
        self.samples.clear()
        with self.samples:
            if not samples:
                ui.label("None yet.").classes("text-body2 text-grey-6")
            for sample in reversed(samples):
                with (
                    ui.card()
                    .props("flat bordered")
                    .classes("w-full q-pa-sm gap-1 synthesis-sample")
                ):
                    ui.label(sample["prompt"]).classes("text-body2 text-weight-medium")
                    ui.label(sample["answer"]).classes("text-body2 text-grey-9")
                    if sample["source"]:
                        ui.label(sample["source"]).classes("text-caption text-grey-6")

    async def _cancel(self) -> None:
        with reported():
            job = (await read(service.progress, self.user, self.dataset_id)).job_id
            await call(job_service.cancel_job, self.user, job)
            await self.refresh()

    async def _resume(self) -> None:
        with reported():
            await call(service.resume, state().settings, self.user, self.dataset_id)
            ui.navigate.to(f"/datasets/{self.dataset_id}")
