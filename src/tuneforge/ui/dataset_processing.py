"""The processing options of a raw dataset (`ProcessingConfig` as a form) and its Process button."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui
from pydantic import ValidationError

from tuneforge.data.config import ProcessingConfig
from tuneforge.data.mapping import MappingSpec
from tuneforge.data.splits import SplitSpec
from tuneforge.db.tables import Dataset, User
from tuneforge.services import datasets as service
from tuneforge.ui.backend import call, reported, state
from tuneforge.ui.dataset_fields import (
    blank,
    checkbox,
    choices,
    default,
    number,
    problems,
    select,
    text,
)

SECTION = "text-subtitle2 text-grey-9"
WORKING = (
    "Mapping, checking and measuring every row in Gemma tokens. The first time also prepares "
    "the Gemma tokenizer, which takes a little longer."
)


class ProcessingForm(ui.column):
    """Options for turning `source` into a processed dataset with the mapping from `mapping()`."""

    def __init__(self, user: User, source: Dataset, mapping: Callable[[], MappingSpec]) -> None:
        super().__init__()
        self.user = user
        self.source_id = source.id
        self.mapping = mapping
        columns = [column["name"] for column in source.columns]
        split_modes = [
            m for m in choices(SplitSpec, "mode") if m != "source" or len(source.splits) > 1
        ]
        self.classes("w-full gap-4 processing-form")
        with self:
            ui.label("Train/test split").classes(SECTION)
            with ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-3"):
                self.split_mode = select(SplitSpec, "mode", default(SplitSpec, "mode"), split_modes)
                self.test_size = number(
                    SplitSpec, "test_size", default(SplitSpec, "test_size"), integer=False
                )
                self.stratify_by = select(SplitSpec, "stratify_by", None, columns, optional=True)
                self.sample_size = number(SplitSpec, "sample_size", None)
                self.seed = number(SplitSpec, "seed", default(SplitSpec, "seed"))
            ui.label("Checks").classes(SECTION)
            with ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-3"):
                self.max_length = number(
                    ProcessingConfig, "max_length", default(ProcessingConfig, "max_length")
                )
                self.on_problem = select(
                    ProcessingConfig, "on_problem", default(ProcessingConfig, "on_problem")
                )
                self.label_column = select(
                    ProcessingConfig, "label_column", None, columns, optional=True
                )
            self.drop_duplicates = checkbox(
                ProcessingConfig, "drop_duplicates", default(ProcessingConfig, "drop_duplicates")
            )
            ui.label("Result").classes(SECTION)
            self.name = text(ProcessingConfig, "name", None).classes("w-full md:w-1/2")
            self.name.props(f'placeholder="{source.name} (processed)"')
            with ui.row().classes("items-center gap-4"):
                self.button = ui.button("Process", icon="play_arrow", on_click=self.process)
                self.button.props("unelevated")
                self.working = ui.label(WORKING).classes("text-body2 text-grey-7 max-w-xl")
                self.working.set_visibility(False)
        for widget in (self.test_size, self.stratify_by):
            widget.bind_visibility_from(self.split_mode, "value", value="manual")

    def config(self) -> ProcessingConfig:
        """The options as filled in; raises pydantic's ValidationError when they do not fit."""
        return ProcessingConfig.model_validate(
            {
                "name": blank(self.name.value),
                "mapping": self.mapping(),
                "split": {
                    "mode": self.split_mode.value,
                    "test_size": self.test_size.value,
                    "stratify_by": self.stratify_by.value,
                    "sample_size": self.sample_size.value,
                    "seed": self.seed.value,
                },
                "max_length": self.max_length.value,
                "on_problem": self.on_problem.value,
                "drop_duplicates": self.drop_duplicates.value,
                "label_column": self.label_column.value,
            }
        )

    async def process(self) -> None:
        try:
            config = self.config()
        except ValidationError as exc:
            ui.notify(problems(exc), type="warning", multi_line=True)
            return
        self._busy(True)
        try:
            with reported():
                dataset = await call(
                    service.process_dataset,
                    state().store,
                    state().settings,
                    self.user,
                    self.source_id,
                    config,
                )
                ui.navigate.to(f"/datasets/{dataset.id}")
        finally:
            self._busy(False)

    def _busy(self, busy: bool) -> None:
        if busy:
            self.button.props("loading")
        else:
            self.button.props(remove="loading")
        self.working.set_visibility(busy)
