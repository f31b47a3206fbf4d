"""The Train page's first card, what to train: the dataset, the Gemma model and the trainer, each
described under its picker. The trainer picker says what each trainer learns from; the dataset
picker offers the datasets that do not fit the chosen trainer disabled, saying why, and when none
fits, how to get one. Under the pickers, the run's own fields (the method, a name, the model to
start from) are laid out by the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui

from tuneforge.db.tables import Dataset
from tuneforge.models.availability import Availability
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.recipe import Recipe
from tuneforge.training.registry import recipes
from tuneforge.ui.model_picker import ModelSelect, state_label, summary
from tuneforge.ui.picker import Picker
from tuneforge.ui.train_fit import how_to_fit, learns_from, misfit, mode_name, mode_of
from tuneforge.ui.train_form import trainers

CARD = "w-full q-pa-lg gap-4"
TITLE = "text-subtitle1 text-weight-medium"
CAPTION = "text-caption text-grey-7"


def model_label(entry: CatalogEntry) -> str:
    return f"{entry.name} · test only" if entry.test_only else entry.name


class WhatToTrain:
    """The pickers; `picked` is called when the dataset or model changes, `trainer_chosen` when
    the trainer does."""

    def __init__(
        self,
        datasets: dict[str, Dataset],
        models: dict[str, CatalogEntry],
        states: dict[str, Availability],
        recipe: Recipe[Any],
        dataset_id: str | None,
        model_id: str,
        picked: Callable[[], Any],
        trainer_chosen: Callable[[], Any],
    ) -> None:
        self.datasets = datasets
        self.models = models
        self.states = states
        fitting = [i for i, d in datasets.items() if not misfit(recipe, d, [])]
        if dataset_id not in fitting:  # chosen before the page is built: no change to follow
            dataset_id = fitting[0] if fitting else None
        with ui.card().classes(CARD):
            ui.label("What to train").classes(TITLE)
            with ui.grid().classes("w-full gap-x-6 gap-y-4 grid-cols-1 md:grid-cols-2"):
                with ui.column().classes("w-full gap-1"):
                    self.dataset = (
                        Picker(
                            {d.id: d.name for d in datasets.values()},
                            label="Dataset",
                            value=dataset_id,
                            on_change=picked,
                        )
                        .props("outlined dense options-dense")
                        .classes("w-full train-dataset")
                    )
                    self.dataset_facts = ui.label().classes(CAPTION)
                    self.fit_note = ui.label().classes(
                        "text-body2 q-pa-sm rounded-borders bg-amber-1 text-brown-9 "
                        "train-dataset-fit"
                    )
                with ui.column().classes("w-full gap-1"):
                    self.model = (
                        ModelSelect(
                            {  # what can run here first
                                m.id: state_label(model_label(m), states[m.id])
                                for m in sorted(
                                    models.values(), key=lambda m: not states[m.id].usable
                                )
                            },
                            disabled=[i for i, s in states.items() if not s.usable],
                            label="Model",
                            value=model_id,
                            on_change=picked,
                        )
                        .props("outlined dense options-dense")
                        .classes("w-full train-model")
                    )
                    self.model_facts = ui.label().classes(CAPTION)
                    self.model_state = ui.label().classes("text-caption model-state")
                    note = summary(states.values())
                    ui.label(note).classes(f"{CAPTION} model-summary").set_visibility(bool(note))
                with ui.column().classes("w-full gap-1"):
                    self.trainer = (
                        Picker(
                            trainers(),
                            captions={r.trainer: learns_from(r) for r in recipes()},
                            label="Trainer",
                            value=recipe.trainer,
                            on_change=trainer_chosen,
                        )
                        .props("outlined dense")
                        .classes("w-full train-trainer")
                    )
                    self.trainer_facts = ui.label().classes(f"{CAPTION} trainer-facts")
            self.run_fields = ui.column().classes("w-full gap-4")
        self.fit(recipe)

    def fit(self, recipe: Recipe[Any]) -> None:
        """Offer the datasets for `recipe`: those it cannot learn from disabled, with the reason;
        a dataset that does not fit is swapped for the first that does."""
        self.trainer_facts.set_text(f"{recipe.description} {learns_from(recipe)}")
        others = recipes()
        unfit = {d.id: why for d in self.datasets.values() if (why := misfit(recipe, d, others))}
        fitting = [d for d in self.datasets.values() if d.id not in unfit]
        offered = [*fitting, *(self.datasets[i] for i in unfit)]
        self.dataset.offer(
            {d.id: f"{d.name} · {mode_name(mode_of(d))}" for d in offered},
            disabled=unfit,
            captions={**{d.id: _counts(d) for d in fitting}, **unfit},
        )
        if self.dataset.value in unfit or self.dataset.value not in self.datasets:
            self.dataset.set_value(fitting[0].id if fitting else None)
        self.fit_note.set_text("" if fitting else how_to_fit(recipe))
        self.fit_note.set_visibility(not fitting)

    def describe(self) -> tuple[Dataset | None, CatalogEntry | None]:
        """Say what the chosen dataset and model are; return them."""
        dataset = self.datasets.get(self.dataset.value)
        entry = self.models.get(self.model.value)
        self.dataset_facts.set_text("" if dataset is None else _counts(dataset, evaluated=True))
        if entry is not None:
            self.model_facts.set_text(entry.description)
            available = self.states[entry.id]
            self.model_state.set_text(f"{available.state.capitalize()}: {available.reason}")
            self.model_state.classes(
                replace=f"text-caption model-state model-{available.state} "
                + ("text-negative" if not available.usable else "text-grey-8")
            )
        return dataset, entry


def _counts(dataset: Dataset, *, evaluated: bool = False) -> str:
    test = dataset.splits.get("test", 0)
    said = f"{dataset.splits.get('train', 0):,} training and {test:,} test examples"
    if evaluated and not test:
        said += ": without a test split nothing is evaluated"
    return said
