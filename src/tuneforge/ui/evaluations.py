"""`/evaluations`: the user's evaluations, live, and a form to start one.

An evaluation is an `evaluate` job: one model, or two side by side (a fine-tune and its base),
answer samples of a processed dataset's split and a suite scores them. The form can be opened
prefilled from a model (`?model=`) or a dataset (`?dataset=`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from nicegui import ui
from pydantic import ValidationError

from tuneforge.db.tables import User
from tuneforge.errors import NotFound
from tuneforge.evaluation import embedding
from tuneforge.evaluation.judge import JudgeSpec
from tuneforge.evaluation.spec import EvaluationSpec, Suite
from tuneforge.services import chat as chat_service
from tuneforge.services import datasets as dataset_service
from tuneforge.services import jobs as job_service
from tuneforge.services import secrets as secret_service
from tuneforge.services.model_check import suggested_evaluation
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.evaluation_list import COLUMNS, SLOTS, evaluation_rows
from tuneforge.ui.graders import GraderBuilder
from tuneforge.ui.layout import EmptyState, heading, page
from tuneforge.ui.model_picker import ModelSelect
from tuneforge.ui.number_field import Bounds, bounded_number
from tuneforge.ui.playground import model_options, unusable
from tuneforge.ui.train_fit import grader_columns

REFRESH_SECONDS = 2.0
SAMPLES_BOUNDS = Bounds.for_field(EvaluationSpec, "max_samples", integer=True)
TOKENS_BOUNDS = Bounds.for_field(EvaluationSpec, "max_new_tokens", integer=True)
SUITES: dict[str, str] = {
    "classification": "Classification: accuracy, macro-F1, confusion matrix",
    "extraction": "Extraction / QA: exact match, token F1",
    "summarisation": "Summarisation: ROUGE-1/2/L",
    "translation": "Translation: BLEU, chrF",
    "json": "JSON output: parse rate, exact match",
    "conversation": "Open conversation: ROUGE-L"
    + (", embedding similarity" if embedding.available() else ""),
    "perplexity": "Perplexity on the answers (no generation)",
    "rewards": "Rewards: your graders' mean reward, per grader",
    "preference": "Preference: does it prefer the chosen answer (no generation)",
    "tool_calls": "Tool calls: right tools, exact and schema-valid arguments, no false calls",
    "vibe": "Vibe check: answers side by side, no metrics",
}
assert set(SUITES) == set(get_args(Suite)), "every suite has a label"


class _JudgeFields:
    """The optional judge: a model behind an OpenAI-compatible API that grades every answer."""

    def __init__(self, secrets: list[str]) -> None:
        with ui.expansion("Grade the answers with a judge (optional)", icon="gavel").classes(
            "w-full evaluation-judge"
        ):
            ui.label(
                "A model behind any OpenAI-compatible API grades every answer from 1 to 10 "
                "against the reference, after the models have answered. Store its API key as a "
                "secret on the Settings page first, then pick it here."
            ).classes("text-caption text-grey-7")
            with ui.row().classes("w-full gap-4"):
                self.url = ui.input(
                    "Judge API URL", placeholder="https://api.openai.com/v1"
                ).classes("col-grow evaluation-judge-url")
                self.model = ui.input("Judge model", placeholder="gpt-4o-mini").classes(
                    "col-grow evaluation-judge-model"
                )
                self.key = ui.select(
                    {"": "(no key)", **{name: name for name in secrets}},
                    value="",
                    label="API key secret",
                ).classes("col-grow evaluation-judge-key")
            self.rubric = (
                ui.textarea("Rubric (optional)", placeholder="What matters in an answer")
                .props("autogrow")
                .classes("w-full evaluation-judge-rubric")
            )

    def spec(self) -> JudgeSpec | None:
        """The judge as the spec takes it, or None when neither URL nor model is given."""
        url, model = (self.url.value or "").strip(), (self.model.value or "").strip()
        if not url and not model:
            return None
        rubric = (self.rubric.value or "").strip()
        return JudgeSpec(
            base_url=url, model=model, api_key_secret=self.key.value or None, rubric=rubric or None
        )


@dataclass(frozen=True)
class _Prefill:
    """The form's first values: from `?model=` (one of the user's fine-tunes: its base, its
    training dataset's test split and the suite that fits the data) and `?dataset=`."""

    model: str | None = None
    compare: str = ""
    dataset: str | None = None
    split: str = "test"
    suite: str = "classification"
    max_new_tokens: int = EvaluationSpec.model_fields["max_new_tokens"].default
    note: str | None = None


async def _prefill(user: User, model: str | None, dataset: str | None) -> _Prefill:
    if not model:
        return _Prefill(dataset=dataset)
    try:
        found = await read(suggested_evaluation, state().store, user, model)
    except NotFound:  # a catalog model, or none of the user's: nothing more to fill
        return _Prefill(model=model, dataset=dataset)
    spec = found.spec
    if spec is None:
        return _Prefill(
            model=found.model,
            compare=found.base,
            dataset=dataset,
            note="Against its base model. The dataset it learned from is gone: pick one.",
        )
    held_out = (
        "the test split of the dataset it learned from."
        if spec.split == "test"
        else "the train split of the dataset it learned from. That dataset has no test split: "
        "these are questions it was trained on; pick another dataset to see how it does on "
        "new ones."
    )
    return _Prefill(
        model=found.model,
        compare=found.base,
        dataset=spec.dataset_id,
        split=spec.split,
        suite=spec.suite,
        max_new_tokens=spec.max_new_tokens,
        note=f"Prefilled: the fine-tune against its base, with the {spec.suite} suite, which "
        f"fits its answers, on {held_out}",
    )


@page("/evaluations", "Evaluations")
async def evaluations_page(
    user: User, model: str | None = None, dataset: str | None = None
) -> None:
    settings = state().settings
    chat_models = await read(chat_service.chat_models, user, settings)
    models, blocked = model_options(chat_models), unusable(chat_models)
    datasets, _ = await read(dataset_service.list_datasets, user, kind="processed", limit=500)
    ready = {d.id: d.name for d in datasets if d.status == "ready"}
    by_id = {d.id: d for d in datasets}
    heading(
        "Evaluations",
        "Score a model on your task, or a fine-tune against its base, on a dataset split.",
    )
    with ui.card().classes("w-full q-pa-lg gap-3 evaluation-form"):
        ui.label("New evaluation").classes("text-subtitle1 text-weight-medium")
        if not ready:
            ui.label(
                "You need a processed dataset first: upload one on the Datasets page and process "
                "it with a test split."
            ).classes("text-body2 text-grey-7")
        fill = await _prefill(user, model, dataset)
        if fill.note:
            ui.label(fill.note).classes("text-body2 text-grey-8 evaluation-prefilled")
        with ui.row().classes("w-full gap-4"):
            model_a = ModelSelect(
                models,
                disabled=blocked,
                value=fill.model if fill.model in models and fill.model not in blocked else None,
                label="Model (A)",
                with_input=True,
            ).classes("col-grow evaluation-model")
            model_b = ModelSelect(
                {"": "(none)", **models},
                disabled=blocked,
                value=fill.compare
                if fill.compare in models and fill.compare not in blocked
                else "",
                label="Compare with (B)",
                with_input=True,
            ).classes("col-grow evaluation-compare")
        with ui.row().classes("w-full gap-4"):
            dataset_select = ui.select(
                ready, value=fill.dataset if fill.dataset in ready else None, label="Dataset"
            ).classes("col-grow evaluation-dataset")
            split = ui.select(
                {"test": "test split", "train": "train split"}, value=fill.split
            ).classes("evaluation-split")
            suite = ui.select(SUITES, value=fill.suite, label="Suite").classes(
                "col-grow evaluation-suite"
            )
        with ui.column().classes("w-full gap-2 evaluation-graders") as rewards:
            ui.label("Graders").classes("text-subtitle2 text-weight-medium")
            graders = GraderBuilder([])
        normalized = ui.switch(
            "Per token (length-normalised)",
            value=EvaluationSpec.model_fields["length_normalized"].default,
        ).classes("evaluation-length-normalized")
        normalized.tooltip(str(EvaluationSpec.model_fields["length_normalized"].description))

        def suited() -> None:
            """Show what the chosen suite takes; offer the chosen dataset's columns."""
            rewards.set_visibility(suite.value == "rewards")
            normalized.set_visibility(suite.value == "preference")
            chosen = by_id.get(dataset_select.value)
            graders.offer_columns(grader_columns(chosen) if chosen else [])

        suite.on_value_change(suited)
        dataset_select.on_value_change(suited)
        suited()
        judge = _JudgeFields([s.name for s in await read(secret_service.list_secrets, user)])
        with ui.row().classes("w-full gap-4 items-end"):
            limits = EvaluationSpec.model_fields
            samples = bounded_number(
                "Max samples", limits["max_samples"].default, SAMPLES_BOUNDS
            ).classes("w-48 evaluation-max-samples")
            samples.props(f'hint="{SAMPLES_BOUNDS.hint()}"')
            tokens = bounded_number("Max new tokens", fill.max_new_tokens, TOKENS_BOUNDS).classes(
                "w-48 evaluation-max-new-tokens"
            )
            tokens.props(f'hint="{TOKENS_BOUNDS.hint()}"')
            start = (
                ui.button("Evaluate", icon="rule").props("unelevated").classes("evaluation-start")
            )

    async def launch() -> None:
        if not (samples.validate() and tokens.validate()):
            ui.notify("Fix the numbers marked in red first.", type="warning")
            return
        try:
            spec = EvaluationSpec(
                model=model_a.value or "",
                compare_with=model_b.value or None,
                dataset_id=dataset_select.value or "",
                split=split.value,
                suite=suite.value,
                max_samples=int(samples.value or 1),
                max_new_tokens=int(tokens.value or 1),
                judge=judge.spec(),
                graders=graders.value if suite.value == "rewards" else None,
                length_normalized=normalized.value,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            ui.notify(f"Check the form: {problems}", type="warning", multi_line=True)
            return
        start.props("loading")
        try:
            with reported():
                job = await call(job_service.create_job, user, settings, "evaluate", spec)
                ui.navigate.to(f"/evaluations/{job.id}")
        finally:
            start.props(remove="loading")

    start.on_click(launch)
    if not ready:
        start.disable()
    with ui.card().classes("w-full q-pa-none gap-0"):
        table = ui.table(columns=COLUMNS, rows=[], row_key="id").props("flat")
        table.classes("w-full evaluations-table")
        for name, template in SLOTS.items():
            table.add_slot(name, template)
        table.on("rowClick", lambda e: ui.navigate.to(f"/evaluations/{e.args[1]['id']}"))
        nothing = EmptyState(
            "rule",
            "No evaluations yet",
            "Start one above: its progress shows here, and its results on its own page.",
        )

    async def refresh() -> None:
        rows = await read(evaluation_rows, user, 100)
        if rows != table.rows:
            table.rows = rows
            table.update()
        table.set_visibility(bool(rows))
        nothing.set_visibility(not rows)

    await refresh()
    ui.timer(REFRESH_SECONDS, refresh)
