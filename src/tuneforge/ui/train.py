"""`/train`: choose a processed dataset, a Gemma model, a trainer and a method, see what is
recommended and what the run would take on this machine, and press Train. `?clone=<run>` starts
from a run's settings, `?retry=<run>` too, with the settings that made the run fail highlighted
and why, `?dataset=<id>` from a dataset. Models that cannot run here are offered disabled;
settings that are likely wrong are warned about under their field, and settings that cannot
work are refused before launch (as the `train` kind's check refuses them)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nicegui import ui
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tuneforge.db.tables import Dataset, Model, User
from tuneforge.errors import DomainError, NotFound
from tuneforge.jobs.failure import failed_fields
from tuneforge.models.availability import Availability, each_availability
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.services import datasets as dataset_service
from tuneforge.services import jobs as job_service
from tuneforge.services import models as model_service
from tuneforge.services import training as service
from tuneforge.training import presets
from tuneforge.training.recipe import Recipe
from tuneforge.training.registry import DEFAULT_TRAINER, UnknownTrainer, recipe, recipes
from tuneforge.training.spec import TrainingBase
from tuneforge.training.spec_checks import Finding
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.layout import EmptyState, heading, page
from tuneforge.ui.train_advice import Advice
from tuneforge.ui.train_editors import TrainEditors
from tuneforge.ui.train_estimate import EstimatePanel
from tuneforge.ui.train_fit import first_row, fitting_trainer
from tuneforge.ui.train_form import GROUPS, Note, SpecForm, field_problems, label, problems
from tuneforge.ui.train_what import WhatToTrain

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.4
#: Setting sections open from the start.
OPEN = frozenset({"optimisation", "preference", "rewards", "generation"})
CARD = "w-full q-pa-lg gap-4"
TITLE = "text-subtitle1 text-weight-medium"
CHECK = "w-full items-start no-wrap gap-2 q-pa-sm rounded-borders text-body2"
#: A field whose setting cannot work, or made a run fail.
FLAGGED_CSS = """
.field-flagged { border-left: 3px solid var(--q-negative); padding-left: 10px; }
"""
NO_DATA = (
    "A run learns from a processed dataset: upload your examples on the Datasets page, check "
    "how they map to conversations, and process them. Then come back here."
)


def trainable(session: Session, user: User) -> list[Dataset]:
    """The user's datasets a run can learn from: processed, ready, with training rows."""
    datasets, _ = dataset_service.list_datasets(session, user, kind="processed", limit=500)
    return [d for d in datasets if d.status == "ready" and d.splits.get("train")]


@page("/train", "Train")
async def train_page(
    user: User, clone: str | None = None, dataset: str | None = None, retry: str | None = None
) -> None:
    datasets = await read(trainable, user)
    started_from: dict[str, Any] = {}
    failure: dict[str, Note] = {}
    subtitle = (
        "Pick what to learn from and which Gemma to teach; the settings start from sensible "
        "defaults, and the estimate says whether the run fits this machine."
    )
    if clone or retry:
        try:
            run = await read(service.training_job, user, retry or clone or "")
            started_from = dict(run.spec)
            name = started_from.get("name")
            started_from["name"] = f"{name} (retry)" if retry and name else None
            if clone and name:
                started_from["name"] = f"{name} (copy)"
            title = run.spec.get("name") or run.id[:8]
            subtitle = f"Starting from the settings of run {title}."
            fields = failed_fields(run) if retry else []
            if fields:
                subtitle = (
                    f"Run {title} failed because of its settings: change the highlighted ones "
                    "and train again."
                )
                reason = f"Run {title} failed: {run.error}"
                failure = {field: Note(reason, "failure") for field in fields}
        except NotFound:
            ui.notify("That run was not found; starting from the defaults.", type="warning")
    if dataset:
        started_from["dataset_id"] = dataset
    heading("Train a model", subtitle)
    ui.add_css(FLAGGED_CSS)
    if not datasets:
        with (
            ui.card().classes("w-full"),
            EmptyState("table_chart", "No training data yet", NO_DATA),
        ):
            ui.button(
                "Open Datasets", icon="table_chart", on_click=lambda: ui.navigate.to("/datasets")
            ).props("unelevated").classes("q-mt-md")
        return
    settings = state().settings
    models = load_catalog(settings.catalog_file).models
    states = await asyncio.to_thread(each_availability, models, settings.models_dir)
    mine, _ = await read(model_service.list_models, user, limit=500)
    view = TrainView(user, datasets, models, started_from, states, mine, failure)
    await view.picked()


class TrainView:
    """The pickers, recommendations, settings form, estimate and Train button, kept in step."""

    def __init__(
        self,
        user: User,
        datasets: list[Dataset],
        models: list[CatalogEntry],
        start: dict[str, Any],
        states: dict[str, Availability],
        mine: list[Model],
        failure: dict[str, Note] | None = None,
    ) -> None:
        self.user = user
        self.datasets = {d.id: d for d in datasets}
        self.models = {m.id: m for m in models}
        self.states = states
        self.failure = failure or {}
        # The failure is said under a field while it keeps the value the run failed with.
        self.failed_with = {name: start.get(name) for name in self.failure}
        self.findings: list[Finding] = []
        self.presets = presets.list_presets()
        self.asked = 0
        self.recipe = _recipe(start.get("trainer", DEFAULT_TRAINER))
        self.editors = TrainEditors(user, mine, self.apply)
        dataset_id = start.get("dataset_id")
        if dataset_id is not None and dataset_id not in self.datasets:
            ui.notify(
                "That dataset cannot be trained on (it is gone, raw, or not ready): "
                "choose a processed one.",
                type="warning",
            )
            dataset_id = None
        if dataset_id is not None and "trainer" not in start:  # the trainer its data is for
            trainer = fitting_trainer(recipes(), self.datasets[dataset_id], self.recipe.trainer)
            self.recipe = recipe(trainer)
        model_id = start.get("base_model")
        usable = [m for m in models if states[m.id].usable]
        if model_id not in self.models:
            model_id = next((m.id for m in usable if not m.test_only), (usable or models)[0].id)
        with ui.grid().classes("w-full gap-6 grid-cols-1 lg:grid-cols-[1fr_340px] items-start"):
            with ui.column().classes("w-full gap-6 min-w-0"):
                self.what = WhatToTrain(
                    self.datasets,
                    self.models,
                    states,
                    self.recipe,
                    dataset_id or datasets[0].id,
                    model_id,
                    self.picked,
                    self.trainer_chosen,
                )
                self.dataset, self.model = self.what.dataset, self.what.model
                self.trainer, self.run_fields = self.what.trainer, self.what.run_fields
                with ui.card().classes(CARD):
                    self.advice = Advice(self.apply, lambda name: self.form.value(name))
                self._settings()
            with (
                ui.column().classes("w-full gap-4 lg:sticky lg:top-20"),
                ui.card().classes("w-full q-pa-lg gap-4"),
            ):
                self.estimate = EstimatePanel()
                self.checks = ui.column().classes("w-full gap-2 train-checks")
                self.train_button = ui.button("Train", icon="play_arrow", on_click=self.train)
                self.train_button.props("unelevated size=lg").classes("w-full train-button")
                ui.label(
                    "The run is a job: it goes on when you close the browser, and you can "
                    "watch it learn on its page."
                ).classes("text-caption text-grey-7")
        self.editors.base = self.model.value  # the models a cloned run may start from
        self._build_form()
        self.form.set_values({k: v for k, v in start.items() if k != "base_model"})
        for name in self.failure:
            panel = self.panels.get(str(self.form.schema.get(name, {}).get("group")))
            if panel is not None:
                panel.set_value(True)

    def _settings(self) -> None:
        with ui.card().classes(CARD):
            with ui.row().classes("w-full items-center justify-between gap-4"):
                with ui.column().classes("gap-0"):
                    ui.label("Settings").classes(TITLE)
                    ui.label(
                        "Every setting says what it does; the defaults are a good start."
                    ).classes("text-body2 text-grey-7")
                self.preset = (
                    ui.select({}, label="Start from a preset", clearable=True)
                    .props("outlined dense options-dense")
                    .classes("w-80 train-preset")
                )
            self.preset_facts = ui.label().classes("text-caption text-grey-7 preset-facts")
            self.preset.on_value_change(self.preset_chosen)
            self.sections = ui.column().classes("w-full gap-4")

    def _build_form(self) -> None:
        """The chosen trainer's form, in its places: the method and the other run fields under
        the pickers, every other group in a folding section."""
        self.form = SpecForm(self.changed, self.recipe.spec, self.editors.factories())
        self.run_fields.clear()
        with self.run_fields:
            self.form.field("method")
            for name in self.form.fields("run"):
                if name != "method":
                    self.form.field(name)
        self.sections.clear()
        self.panels: dict[str, ui.expansion] = {}
        with self.sections:
            for group in self.form.groups():
                if group == "run":
                    continue
                with (
                    ui.expansion(GROUPS.get(group, label(group)), value=group in OPEN)
                    .classes(f"w-full panel-{group}")
                    .props("dense header-class='text-weight-medium'") as panel
                ):
                    self.form.section(group)
                self.panels[group] = panel

    async def trainer_chosen(self) -> None:
        """Another trainer: its own form, keeping the settings the trainers share."""
        values = self.form.values()
        self.recipe = recipe(self.trainer.value)
        self.what.fit(self.recipe)
        self._build_form()
        self.form.set_values(values)
        await self.picked()

    def apply(self, values: dict[str, Any]) -> None:
        """Fill in `values` (recommendations, a preset): the pickers' fields and the form's."""
        values = dict(values)
        model = values.pop("base_model", None)
        if model in self.models:
            self.model.set_value(model)
        values.pop("dataset_id", None)
        values.pop("trainer", None)
        self.form.set_values(values)

    def _offer_presets(self) -> None:
        """The presets of the chosen model and trainer."""
        offered = {
            p.id: p.title
            for p in self.presets
            if p.model == self.model.value and p.trainer == self.recipe.trainer
        }
        if self.preset.value not in offered:
            self.preset.set_value(None)
        self.preset.set_options(offered)
        self.preset.set_visibility(bool(offered))

    async def preset_chosen(self) -> None:
        chosen = next((p for p in self.presets if p.id == self.preset.value), None)
        self.preset_facts.set_text(
            f"{chosen.description} Hardware: {chosen.hardware}" if chosen else ""
        )
        self.preset_facts.set_visibility(chosen is not None)
        if chosen is not None:
            self.apply(presets.load_preset(chosen.id))
            ui.notify(f"{chosen.title}: its settings are in the form.", type="positive")

    async def picked(self) -> None:
        """A dataset or model was chosen: describe them, and fetch their recommendations."""
        dataset, entry = self.what.describe()
        row = await read(first_row, state().store, self.user, dataset) if dataset else None
        self.editors.follow(dataset, entry.id if entry else None, row)
        self._offer_presets()
        await self.changed()
        if dataset is None or entry is None:
            return
        try:
            items = await read(
                service.recommendations,
                self.user,
                state().settings,
                dataset.id,
                entry.id,
                self.recipe.trainer,
            )
        except Exception as exc:
            self.advice.problem(_failure(exc, "Recommending settings"))
            return
        if (self.dataset.value, self.model.value) == (dataset.id, entry.id):
            self.advice.show(items)

    def spec(self) -> TrainingBase:
        """The settings as the trainer's spec; raises pydantic's ValidationError when they do
        not fit."""
        spec: TrainingBase = self.recipe.spec.model_validate(
            {
                **self.form.values(),
                "dataset_id": self.dataset.value,
                "base_model": self.model.value,
            }
        )
        return spec

    async def changed(self) -> None:
        """Something changed: follow it at once in the page, and estimate once typing pauses."""
        self.asked += 1
        asked = self.asked
        self.advice.update_applied()
        lora = self.panels.get("lora")
        if lora is not None:
            lora.set_visibility(self.form.value("method") != "full")
        self.estimate.busy(True)
        await asyncio.sleep(DEBOUNCE_SECONDS)
        if asked != self.asked:
            return
        try:
            spec = self.spec()
        except ValidationError as exc:
            self._ready(False)
            self.estimate.problem(self._problems(exc))
            self.estimate.busy(False)
            self._show_checks(self._refused_fields(exc))
            return
        try:
            found = await read(service.setting_checks, self.user, state().settings, spec)
        except DomainError as exc:
            found = [Finding(("dataset_id",), exc.message, "refusal")]
        if asked != self.asked:
            return
        self._show_checks(found)
        try:
            estimate = await read(service.estimate_run, self.user, state().settings, spec)
        except Exception as exc:
            if asked == self.asked:
                self._ready(False)
                self.estimate.problem(_failure(exc, "Estimating the run"))
                self.estimate.busy(False)
            return
        if asked != self.asked:  # the form changed while this was estimated
            return
        self.estimate.show(estimate)
        self.estimate.busy(False)
        self._ready(not estimate.refusal)

    def _problems(self, error: ValidationError) -> str:
        """Why the settings cannot be estimated: the fields marked (by themselves, or by the
        spec under them), or the spec's own words."""
        marked = self.form.invalid() + [f.fields[0] for f in self._refused_fields(error)]
        if marked:
            return f"Fix the settings marked in red first: {', '.join(map(label, marked))}."
        return problems(error)

    def _refused_fields(self, error: ValidationError) -> list[Finding]:
        """What the spec says is wrong with the fields on the form that do not say so
        themselves (a number outside its bounds does), to be said under them."""
        invalid = set(self.form.invalid())
        return [
            Finding((name,), message, "refusal")
            for name, message in field_problems(error).items()
            if name in self.form.widgets and name not in invalid
        ]

    def _show_checks(self, found: list[Finding]) -> None:
        """The settings' warnings and refusals (`found`: none when the settings do not validate),
        under their fields and above the Train button (with a field outside its bounds, the
        field says so itself)."""
        self.findings = []
        available = self.states.get(self.model.value)
        if available is not None and not available.usable:
            self.findings.append(
                Finding(
                    ("base_model",), f"This model cannot run here: {available.reason}", "refusal"
                )
            )
        self.findings += found
        notes: dict[str, list[Note]] = {}
        for finding in self.findings:
            for name in finding.fields:
                notes.setdefault(name, []).append(Note(finding.message, finding.severity))
        for name, note in self.failure.items():
            if self.form.value(name) == self.failed_with[name]:
                notes.setdefault(name, []).insert(0, note)
        self.form.mark(notes)
        self.checks.clear()
        with self.checks:
            for finding in self.findings:
                refusal = finding.severity == "refusal"
                style = (
                    "bg-red-1 text-negative check-refusal"
                    if refusal
                    else "bg-amber-1 text-brown-9 check-warning"
                )
                with ui.row().classes(f"{CHECK} {style}"):
                    ui.icon("block" if refusal else "warning").classes("q-mt-xs")
                    ui.label(finding.message)
        if any(f.severity == "refusal" for f in self.findings):
            self._ready(False)

    def _ready(self, ready: bool) -> None:
        refused = any(f.severity == "refusal" for f in self.findings)
        self.train_button.set_enabled(ready and not refused)

    async def train(self) -> None:
        try:
            spec = self.spec()
        except ValidationError as exc:
            ui.notify(self._problems(exc), type="warning", multi_line=True)
            return
        self.train_button.props("loading")
        try:
            with reported():
                job = await call(job_service.create_job, self.user, state().settings, "train", spec)
                ui.navigate.to(f"/runs/{job.id}")
        finally:
            self.train_button.props(remove="loading")


def _failure(exc: Exception, doing: str) -> str:
    """What to tell the user when `doing` failed with `exc`."""
    if isinstance(exc, DomainError):
        return exc.message
    log.error("%s failed", doing, exc_info=exc)
    return f"{doing} failed unexpectedly; the details are in the server's log."


def _recipe(trainer: str) -> Recipe[Any]:
    """The recipe a page starts with: `trainer`'s, or the default one if it is not known here."""
    try:
        return recipe(trainer)
    except UnknownTrainer:
        ui.notify(
            f"The trainer {trainer!r} is not available here; starting from the default.",
            type="warning",
        )
        return recipe(DEFAULT_TRAINER)
