"""`/`: the home page. The path from data to a model of one's own, where the user stands on
it, the one thing to do next, and their recent datasets, runs and models."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from nicegui import ui

from tuneforge.db.tables import Dataset, Job, Model, User
from tuneforge.services import home as service
from tuneforge.services.home import Next, Overview, Stage
from tuneforge.services.names import dataset_title, run_title
from tuneforge.ui.backend import read
from tuneforge.ui.formatting import status_color, when
from tuneforge.ui.layout import heading, page
from tuneforge.ui.models import KINDS

REFRESH_SECONDS = 3.0
#: A name in a button is cut after this many characters.
BUTTON_NAME = 40


@dataclass(frozen=True)
class Step:
    title: str
    icon: str
    text: str
    target: str


STEPS = {
    Stage.DATA: Step(
        "Bring data", "table_chart", "Upload examples and process them into chats.", "/datasets"
    ),
    Stage.TRAIN: Step("Train", "model_training", "Teach a Gemma model your examples.", "/train"),
    Stage.TRY: Step("Try", "forum", "Talk to the result beside its base model.", "/playground"),
    Stage.EVALUATE: Step(
        "Evaluate", "rule", "Score it on examples it has not seen.", "/evaluations"
    ),
    Stage.EXPORT: Step(
        "Export", "download", "Take it home: adapter, merged model or GGUF.", "/models"
    ),
}
STATES = {  # a step's state: (label, icon, colour)
    "done": ("done", "check_circle", "positive"),
    "next": ("next", "arrow_circle_right", "primary"),
    "later": ("later", "radio_button_unchecked", "grey-5"),
}


@dataclass(frozen=True)
class Action:
    label: str
    icon: str
    target: str
    #: Why this is the next thing to do (for the main action only).
    why: str = ""


def short(name: str | None) -> str:
    name = name or ""
    return name if len(name) <= BUTTON_NAME else name[: BUTTON_NAME - 1] + "…"


def action(step: Next) -> Action:
    """The button (and the sentence above it) that takes the user to do `step`."""
    name, subject = short(step.subject_name), step.subject_id
    match step.action:
        case "upload":
            return Action(
                "Upload a dataset",
                "upload_file",
                "/datasets",
                "Start with the examples you want a model to learn from: a file of questions "
                "and answers, chats, or plain text.",
            )
        case "follow_dataset":
            return Action(
                f"Open {name}",
                "hourglass_top",
                f"/datasets/{subject}",
                f"{name} is being prepared. When it is ready, process it or train on it.",
            )
        case "process":
            return Action(
                f"Process {name}",
                "tune",
                f"/datasets/{subject}",
                f"{name} is uploaded. Check how its rows become conversations, then process it "
                "into training data.",
            )
        case "train":
            return Action(
                f"Train on {name}",
                "model_training",
                f"/train?dataset={subject}",
                f"{name} is ready to learn from. Pick a Gemma model and start a run; the "
                "defaults are a good start.",
            )
        case "watch_run":
            return Action(
                f"Watch {name}",
                "stacked_line_chart",
                f"/runs/{subject}",
                f"{name} is training. Watch its loss fall and its sample answers change.",
            )
        case "see_run":
            return Action(f"See why {name} failed", "error_outline", f"/runs/{subject}")
        case "try":
            return Action(
                f"Try {name} in the Playground",
                "forum",
                f"/playground?{urlencode({'model': subject, 'compare': step.base or ''})}",
                f"{name} is trained. Talk to it beside the model it started from, then score it "
                "on examples it has not seen.",
            )
        case "evaluate":
            return Action(f"Evaluate {name}", "rule", f"/evaluations?model={subject}")
        case "watch_evaluation":
            return Action(
                f"Follow the evaluation of {name}",
                "rule",
                f"/evaluations/{subject}",
                f"{name} is being evaluated.",
            )
        case "see_evaluation":
            return Action(f"See how {name} scored", "insights", f"/evaluations/{subject}")
        case "export":
            return Action(
                f"Export {name}",
                "download",
                f"/models/{subject}",
                f"{name} is evaluated. Take it home as a LoRA adapter, a merged model or a GGUF "
                "file for Ollama and llama.cpp.",
            )
        case "train_again":
            return Action(
                "Train another model",
                "model_training",
                "/train",
                "You have walked the whole path. Train on new data, or with other settings, "
                "and compare the runs.",
            )


@page("/", "Home")
async def home_page(user: User) -> None:
    heading(
        "From your examples to a model of your own",
        "Five steps, each on its own page. This page keeps your place and says what comes next.",
    )
    view = await read(service.overview, user)
    body = ui.column().classes("w-full gap-6 home-body")
    with body:
        _show(view)
    shown = _state(view)

    async def refresh() -> None:
        """Follow the user's work live (a run that ends moves the next step on)."""
        nonlocal shown
        view = await read(service.overview, user)
        if _state(view) != shown:
            shown = _state(view)
            body.clear()
            with body:
                _show(view)

    ui.timer(REFRESH_SECONDS, refresh)


def _show(view: Overview) -> None:
    _next_card(view)
    _path(view.stage)
    with ui.element("div").classes("w-full grid grid-cols-1 md:grid-cols-3 gap-4 home-recent"):
        _recent_datasets(view.datasets)
        _recent_runs(view)
        _recent_models(view.models)


def _state(view: Overview) -> tuple[object, ...]:
    """What the page shows of `view`: when it changes, the page is drawn again."""
    return (
        view.stage,
        view.next,
        view.also,
        [(d.id, d.name, d.status, d.rows) for d in view.datasets],
        [(r.id, r.status, round(r.progress, 2)) for r in view.runs],
        [(m.id, m.name) for m in view.models],
        view.names,
    )


def _next_card(view: Overview) -> None:
    main = action(view.next)
    with ui.card().classes("w-full q-pa-lg gap-3 bg-indigo-1 home-next").props("flat bordered"):
        ui.label("Next").classes("text-overline text-primary")
        ui.label(main.why).classes("text-subtitle1 text-grey-10 home-why")
        with ui.row().classes("items-center gap-3"):
            # Links that look like buttons: they go somewhere, and open in a new tab if asked.
            _link_button(main, "unelevated size=lg").classes("home-action")
            if view.also is not None:
                _link_button(action(view.also), "outline").classes("home-also")


def _link_button(to: Action, props: str) -> ui.button:
    return ui.button(to.label, icon=to.icon).props(f'{props} href="{to.target}"')


def _path(stage: Stage) -> None:
    """The five steps in order, each marked done, next or later."""
    with ui.element("ol").classes(
        "w-full grid grid-cols-1 sm:grid-cols-5 gap-3 q-pl-none q-ma-none home-path"
    ):
        for number, (step_stage, step) in enumerate(STEPS.items(), start=1):
            state = "done" if step_stage < stage else "next" if step_stage == stage else "later"
            _step(number, step, state)


def _step(number: int, step: Step, state: str) -> None:
    label, icon, color = STATES[state]
    edge = "var(--q-primary)" if state == "next" else "#e0e0e0"
    with (
        ui.element("li").classes(f"list-none home-step home-step-{state}"),
        ui.link(target=step.target)
        .classes("block h-full no-underline text-grey-9 rounded-borders bg-white q-pa-md")
        .style(f"border: 1px solid {edge}"),
    ):
        with ui.row().classes("items-center no-wrap gap-2"):
            ui.icon(step.icon, color="grey-6" if state == "later" else "primary")
            ui.label(f"{number}. {step.title}").classes("text-subtitle2 col")
            ui.icon(icon, color=color, size="sm")
        # On a phone only the next step says what it is about: the list stays short.
        brief = "" if state == "next" else " gt-xs"
        ui.label(step.text).classes(f"text-caption text-grey-7 q-mt-xs{brief}")
        ui.label(label).classes(f"text-caption text-weight-medium text-{color} home-step-state")


def _recent(title: str, more: str) -> ui.card:
    """A card for recent things, with its title and a link to all of them."""
    card = ui.card().classes("w-full q-pa-md gap-2 home-recent-card")
    with card, ui.row().classes("w-full items-center justify-between no-wrap"):
        ui.label(title).classes("text-subtitle1 text-weight-medium")
        ui.link("All", more).classes("text-body2 text-primary")
    return card


def _entry(name: str, target: str, detail: str, status: str, color: str) -> None:
    with ui.row().classes("w-full items-start no-wrap gap-2 q-py-xs home-entry"):
        with ui.column().classes("col gap-0 min-w-0"):
            ui.link(name, target).classes("text-primary text-weight-medium no-underline tf-wrap")
            ui.label(detail).classes("text-caption text-grey-7 tf-wrap")
        ui.badge(status, color=color).props("rounded").classes("q-mt-xs")


def _empty(text: str) -> None:
    ui.label(text).classes("text-body2 text-grey-7 home-empty")


DATASET_COLORS = {"ready": "positive", "processing": "primary", "failed": "negative"}


def _recent_datasets(datasets: list[Dataset]) -> None:
    with _recent("Datasets", "/datasets"):
        if not datasets:
            _empty("No datasets yet. Upload a file of examples on the Datasets page.")
        for dataset in datasets:
            kind = "training data" if dataset.kind == "processed" else "uploaded"
            _entry(
                dataset.name,
                f"/datasets/{dataset.id}",
                f"{kind} · {dataset.rows:,} rows · {when(dataset.created_at)}",
                dataset.status,
                DATASET_COLORS.get(dataset.status, "grey-6"),
            )


def _recent_runs(view: Overview) -> None:
    with _recent("Training runs", "/jobs"):
        if not view.runs:
            _empty("No runs yet. Once a dataset is processed, train a model on it.")
        for run in view.runs:
            _run_entry(run, view)


def _run_entry(run: Job, view: Overview) -> None:
    title = run_title(run, view.names)
    trained = f"{run.spec.get('base_model', '')} on {dataset_title(run.spec, view.names)}"
    facts = [trained] if trained != title else []
    if run.status == "running":
        facts.append(f"{run.progress:.0%}")
    facts.append(when(run.created_at))
    _entry(
        title,
        f"/runs/{run.id}",
        " · ".join(facts),
        run.status,
        status_color(run.status),
    )


def _recent_models(models: list[Model]) -> None:
    with _recent("Models", "/models"):
        if not models:
            _empty("No models yet. Every run that finishes leaves one here.")
        for model in models:
            _entry(
                model.name,
                f"/models/{model.id}",
                f"{KINDS.get(model.kind, model.kind)} of {model.base_model} · "
                f"{when(model.created_at)}",
                "ready",
                "positive",
            )
