"""The grader builder: a set of reward graders put together from the library (each explained: its
title, a paragraph and an example), each with its fields as a form made from its spec (column
pickers list the dataset's columns), its weight, and a button that removes it. The Train page
uses it for GRPO's `graders` and the Evaluations page for the `rewards` suite: one component.

Its `value` is the list of graders as the specs take them (`[{"type": ..., ...}]`); it calls
`on_value_change` handlers on every edit, like NiceGUI's own value elements."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from functools import cache
from typing import Any, get_args

from nicegui import background_tasks, ui
from pydantic import BaseModel

from tuneforge.training.rewards.spec import GraderSpec, library
from tuneforge.ui.picker import Picker
from tuneforge.ui.train_form import SpecForm

Handler = Callable[..., Any]
#: Dataset columns that are never a reference (the prompt itself, processed conversations).
NOT_REFERENCES = frozenset(
    # with an augmented dataset's lineage, which names how a row was made, not what is right
    {"prompt", "messages", "chosen", "rejected", "completion", "augmented_from", "augmentation"}
)
CARD = "w-full q-pa-md gap-2 grader-card"


@cache
def kinds() -> dict[str, type[BaseModel]]:
    """Each grader type's spec class: {type: class}."""
    union = get_args(get_args(GraderSpec)[0])
    return {kind.model_fields["type"].default: kind for kind in union}


@cache
def entries() -> dict[str, dict[str, Any]]:
    """The library, by type: title, explanation, example."""
    return {entry["type"]: entry for entry in library()}


def reference_columns(columns: list[str]) -> list[str]:
    """The columns a grader can read a reference from."""
    return [c for c in columns if c not in NOT_REFERENCES]


class _GraderCard(ui.card):
    """One grader of the set: what it is, its fields, and a button that removes it."""

    def __init__(
        self,
        kind: str,
        values: dict[str, Any],
        columns: list[str],
        changed: Handler,
        remove: Callable[[_GraderCard], None],
    ) -> None:
        super().__init__()
        self.kind = kind
        self.columns = columns
        self.column_pickers: list[Picker] = []
        entry = entries()[kind]
        self.classes(f"{CARD} grader-{kind}").props("flat bordered")
        with self:
            with ui.row().classes("w-full items-center no-wrap gap-2"):
                ui.icon("rule", color="primary")
                ui.label(entry["title"]).classes("text-subtitle2 text-weight-medium col")
                ui.button(icon="close", on_click=lambda: remove(self)).props(
                    "flat round dense color=grey-7"
                ).classes("grader-remove").tooltip("Remove this grader")
            ui.markdown(entry["explanation"]).classes("text-caption text-grey-7 grader-explanation")
            self.form = SpecForm(
                changed,
                kinds()[kind],
                editors={"column": self._column},
                skip=frozenset({"type"}),
            )
            self.form.section("run")
        self.form.set_values(values)

    def _column(self, text: str, schema: dict[str, Any], value: Any) -> Picker:
        """A column picker: the dataset's columns (another can be typed)."""
        offered = reference_columns(self.columns)
        if value and value not in offered:
            offered = [*offered, value]
        picker = Picker(
            {c: c for c in offered},
            label=text,
            value=value,
            with_input=True,
            new_value_mode="add-unique",
            clearable="anyOf" in schema,
        ).props("outlined dense")
        picker.classes("w-full grader-column")
        self.column_pickers.append(picker)
        return picker

    def offer_columns(self, columns: list[str]) -> None:
        self.columns = columns
        for picker in self.column_pickers:
            offered = reference_columns(columns)
            if picker.value and picker.value not in offered:
                offered.append(picker.value)
            picker.offer({c: c for c in offered})

    @property
    def value(self) -> dict[str, Any]:
        """The grader as its spec takes it: empty fields are left to their defaults."""
        values = {k: v for k, v in self.form.values().items() if v is not None}
        return {"type": self.kind, **values}


class GraderBuilder(ui.column):
    """A set of graders; `value` is their list, `set_value()` replaces it."""

    def __init__(self, columns: list[str], value: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.columns = list(columns)
        self.handlers: list[Handler] = []
        self.cards: list[_GraderCard] = []
        self.classes("w-full gap-3 grader-builder")
        with self:
            with ui.row().classes("w-full items-center justify-between no-wrap gap-4"):
                ui.label(
                    "Each grader scores a completion from 0 to 1; the reward is their weighted "
                    "sum. Nothing you write here runs as code."
                ).classes("text-body2 text-grey-8")
                ui.button("Add a grader", icon="add", on_click=self._library).props(
                    "outline"
                ).classes("grader-add")
            self.list = ui.column().classes("w-full gap-3")
            self.nothing = ui.label(
                "No grader yet: add one from the library; a run needs at least one."
            ).classes("text-body2 text-grey-6 grader-none")
        self.set_value(value or [])

    @property
    def value(self) -> list[dict[str, Any]]:
        return [card.value for card in self.cards]

    def set_value(self, value: list[dict[str, Any]] | None) -> None:
        self.list.clear()
        self.cards = []
        for grader in value or []:
            kind = grader.get("type")
            if kind in kinds():
                self._add(str(kind), {k: v for k, v in grader.items() if k != "type"})
        self._changed()

    def on_value_change(self, handler: Handler) -> GraderBuilder:
        self.handlers.append(handler)
        return self

    def offer_columns(self, columns: list[str]) -> None:
        """The dataset changed: its columns are what the column pickers offer."""
        self.columns = list(columns)
        for card in self.cards:
            card.offer_columns(self.columns)

    def invalid(self) -> list[str]:
        return [name for card in self.cards for name in card.form.invalid()]

    def add(self, kind: str) -> None:
        """Add a grader of `kind`, filled in from its example (its column: one of the data's,
        its name: one not yet taken)."""
        example = {k: v for k, v in entries()[kind]["example"].items() if k != "type"}
        offered = reference_columns(self.columns)
        if "column" in example and offered and example["column"] not in offered:
            example["column"] = offered[0]
        taken = {card.value.get("name") or card.kind for card in self.cards}
        name = str(example.get("name") or kind)
        number = 2
        while name in taken:
            name, number = f"{example.get('name') or kind}_{number}", number + 1
        example["name"] = name
        self._add(kind, example)
        self._changed()

    def _add(self, kind: str, values: dict[str, Any]) -> None:
        with self.list:
            self.cards.append(_GraderCard(kind, values, self.columns, self._changed, self._remove))

    def _remove(self, card: _GraderCard) -> None:
        self.cards.remove(card)
        self.list.remove(card)
        self._changed()

    def _changed(self, *_: Any) -> None:
        self.nothing.set_visibility(not self.cards)
        for handler in self.handlers:
            result = handler()
            if inspect.iscoroutine(result):
                background_tasks.create(result, name="graders changed")

    def _library(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-full max-w-3xl q-pa-lg gap-4"):
            ui.label("Add a grader").classes("text-h6")
            ui.label(
                "Pick what the reward checks. You fill in its fields next, and can try the set "
                "on a sample completion before training."
            ).classes("text-body2 text-grey-7")
            for entry in entries().values():
                with ui.row().classes("w-full no-wrap items-start gap-4 q-py-sm library-item"):
                    with ui.column().classes("col gap-1 min-w-0"):
                        ui.label(entry["title"]).classes("text-subtitle1 text-weight-medium")
                        ui.markdown(entry["explanation"]).classes("text-body2 text-grey-8")
                        example = {k: v for k, v in entry["example"].items() if k != "type"}
                        ui.label("Example: " + json.dumps(example)).classes(
                            "text-caption text-grey-7 font-mono"
                        )

                    def chosen(kind: str = entry["type"]) -> None:
                        self.add(kind)
                        dialog.close()

                    ui.button("Add", on_click=chosen).props("unelevated").classes(
                        f"library-add-{entry['type']}"
                    )
            ui.button("Close", on_click=dialog.close).props("flat")
        dialog.open()
