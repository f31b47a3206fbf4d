"""`/runs/{id}`: one training run, live without reloading: its status, progress and time left,
its curves, the sample answers at each evaluation, the machine's load and the log; and what to do
next (cancel, resume, clone, compare, open the model).

Each tick reads only the events reported since the last one (`after` the newest id seen), so a
long run costs no more to follow than a short one.
"""

from __future__ import annotations

from nicegui import ui
from sqlalchemy.orm import Session

from tuneforge.db.tables import Job, JobEvent, User, utcnow
from tuneforge.errors import NotFound
from tuneforge.jobs.durations import run_seconds
from tuneforge.jobs.events import metric_values
from tuneforge.jobs.failure import failed_fields
from tuneforge.jobs.status import JobStatus
from tuneforge.services import datasets as dataset_service
from tuneforge.services import jobs as job_service
from tuneforge.services import training as service
from tuneforge.training.estimate.phases import ESTIMATE_METRIC
from tuneforge.training.health import health_flags
from tuneforge.training.registry import DEFAULT_TRAINER
from tuneforge.ui.backend import call, read, reported
from tuneforge.ui.compare import compare_dialog
from tuneforge.ui.formatting import clock, duration, status_color, when
from tuneforge.ui.layout import EmptyState, heading, page
from tuneforge.ui.run_charts import RunCharts, Series
from tuneforge.ui.run_format import metric, metric_name, span, took
from tuneforge.ui.run_health import HealthView
from tuneforge.ui.run_samples import Samples, SamplesView
from tuneforge.ui.run_settings import settings_view, trainer_title
from tuneforge.ui.train_form import VALUE_NAMES

REFRESH_SECONDS = 1.0
READ_LIMIT = 5000  # events per tick; a long run's history arrives over a few ticks
LOG_LINES = 5000
EVENT_TYPES = frozenset({"metric", "samples", "log", "status"})
CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
RESUMABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
#: The numbers over a run's charts, by trainer (the first for trainers not named).
TILES = {
    "sft": ("loss", "eval_loss", "token_accuracy", "tokens_per_second"),
    "dpo": ("loss", "eval_loss", "eval_rewards/accuracy", "tokens_per_second"),
    "orpo": ("loss", "eval_loss", "eval_rewards/accuracy", "tokens_per_second"),
    "kto": ("loss", "eval_loss", "eval_rewards/accuracy", "tokens_per_second"),
    "grpo": ("reward", "eval_reward", "completion_length", "tokens_per_second"),
}
STATUS_HINTS = {
    JobStatus.QUEUED: "Waiting for a free worker.",
    JobStatus.RUNNING: "Starting: loading the model and the data.",
    JobStatus.CANCELLING: "Stopping: saving a checkpoint to resume from.",
    JobStatus.SUCCEEDED: "Finished: the model is saved.",
    JobStatus.CANCELLED: "Cancelled. Resume continues from the newest checkpoint.",
}
# Long log lines wrap instead of scrolling sideways.
LOG_CSS = (
    ".run-log .q-scrollarea__content "
    "{ white-space: pre-wrap; overflow-wrap: anywhere; width: 100%; }"
)


def updates(session: Session, user: User, job_id: str, after: int) -> tuple[Job, list[JobEvent]]:
    """The run and what it reported after event `after` (NotFound unless it is the user's run)."""
    service.training_job(session, user, job_id)
    return job_service.job_events(
        session, user, job_id, after=after, limit=READ_LIMIT, types=set(EVENT_TYPES)
    )


def dataset_name(session: Session, user: User, dataset_id: str) -> str | None:
    try:
        return dataset_service.get_dataset(session, user, dataset_id).name
    except NotFound:
        return None


@page("/runs/{job_id}", "Run")
async def run_page(user: User, job_id: str) -> None:
    try:
        job, events = await read(updates, user, job_id, 0)
    except NotFound:
        ui.status_code(404)
        with EmptyState(
            "search_off",
            "Run not found",
            "There is no training run with this id among yours. It may have been deleted.",
        ):
            ui.button(
                "Back to jobs", icon="arrow_back", on_click=lambda: ui.navigate.to("/jobs")
            ).classes("q-mt-md")
        return
    dataset = await read(dataset_name, user, str(job.spec.get("dataset_id", "")))
    RunView(user, job, dataset).take(job, events)


class RunView:
    """The elements of a run page, and how each tick brings them up to date."""

    def __init__(self, user: User, job: Job, dataset: str | None) -> None:
        self.user = user
        self.job_id = job.id
        self.spec = job.spec
        self.trainer = str(job.spec.get("trainer", DEFAULT_TRAINER))
        self.tile_names = TILES.get(self.trainer, TILES[DEFAULT_TRAINER])
        self.cursor = 0
        self.series: Series = {}
        self.samples: Samples = {}
        self.warnings: list[dict[str, str]] = []  # logged warnings and errors, for the flags
        self.moves: list[JobEvent] = []  # status events: the running spells of every attempt
        self.eta_at = utcnow()  # when the newest time left was reported
        self.model_id: str | None = None
        with ui.link(target="/jobs").classes(
            "row items-center gap-1 text-grey-7 no-underline -mb-4"
        ):
            ui.icon("arrow_back", size="xs")
            ui.label("All jobs").classes("text-body2")
        title = job.spec.get("name") or f"{job.spec.get('base_model')} on {dataset or 'a dataset'}"
        with heading(title, f"Training run {job.id}"), ui.row().classes("items-center gap-2"):
            self.status = (
                ui.badge().classes("run-status text-body2 q-px-md q-py-xs").props("rounded")
            )
            self._actions()
        self.health = HealthView()
        self._progress()
        eval_every = int(job.spec.get("eval_every") or 0)
        waiting = (
            f"Evaluations every {eval_every} steps appear here."
            if eval_every
            else "The evaluation at the end appears here."
        )
        self.charts = RunCharts(waiting, self.trainer)
        with ui.card().classes("w-full q-pa-lg"):
            self.sample_view = SamplesView(
                "Sample answers appear after each evaluation."
                if job.spec.get("sample_answers", True)
                else "No sample answers: this run's settings turn them off."
            )
        with ui.row().classes("w-full gap-6 items-stretch"):
            with ui.card().classes("col-12 col-md q-pa-lg gap-3 min-w-0"):
                self._about(job, dataset)
            with ui.card().classes("col-12 col-md q-pa-lg gap-3 min-w-0"):
                ui.label("Log").classes("text-subtitle1 text-weight-medium")
                ui.add_css(LOG_CSS)
                self.log = ui.log(max_lines=LOG_LINES).classes("w-full h-72 run-log text-body2")
        self.timer = ui.timer(REFRESH_SECONDS, self.refresh)

    def _actions(self) -> None:
        self.cancel = ui.button("Cancel", icon="stop", on_click=self.cancel_run)
        self.cancel.props("outline color=negative")
        self.resume = ui.button("Resume", icon="play_arrow", on_click=self.resume_run)
        self.resume.props("unelevated")
        self.retry = (
            ui.button(
                "Edit and retry",
                icon="edit",
                on_click=lambda: ui.navigate.to(f"/train?retry={self.job_id}"),
            )
            .props("unelevated")
            .classes("run-retry")
        )
        self.retry.tooltip("It failed because of its settings: change them and train again")
        self.open_model = ui.button(
            "Open model",
            icon="inventory_2",
            on_click=lambda: ui.navigate.to(f"/models/{self.model_id}"),
        ).props("unelevated")
        ui.button(
            "Clone",
            icon="content_copy",
            on_click=lambda: ui.navigate.to(f"/train?clone={self.job_id}"),
        ).props("outline").tooltip("Start a new run from these settings")
        dialog = compare_dialog(self.user, self.job_id)
        ui.button("Compare", icon="stacked_line_chart", on_click=dialog.open).props(
            "outline"
        ).tooltip("Overlay this run's curves with other runs")

    def _progress(self) -> None:
        with ui.card().classes("w-full q-pa-lg gap-3"):
            with ui.row().classes("w-full items-center no-wrap gap-4"):
                self.bar = (
                    ui.linear_progress(show_value=False, size="10px")
                    .props("rounded track-color=grey-3")
                    .classes("col")
                )
                self.percent = ui.label().classes("text-subtitle1 text-weight-medium w-12")
            with ui.row().classes("w-full justify-between gap-4"):
                self.message = ui.label().classes("text-body2 text-grey-8 run-message")
                self.eta = ui.label().classes("text-body2 text-grey-8 run-eta")
            self.error = ui.label().classes("w-full q-pa-sm rounded-borders run-error")
            with ui.grid().classes("w-full gap-4 grid-cols-2 md:grid-cols-5 q-pt-sm"):
                self.tiles = {"step": _tile("Step")}
                self.tiles.update({name: _tile(metric_name(name)) for name in self.tile_names})

    def _about(self, job: Job, dataset: str | None) -> None:
        ui.label("About this run").classes("text-subtitle1 text-weight-medium")
        spec = job.spec
        with ui.grid(columns="auto 1fr").classes("gap-x-6 gap-y-2 text-body2 run-facts"):
            ui.label("Model").classes("text-grey-7")
            ui.label(str(spec.get("base_model")))
            ui.label("Dataset").classes("text-grey-7")
            dataset_id = spec.get("dataset_id")
            if dataset:
                ui.link(dataset, f"/datasets/{dataset_id}")
            else:
                ui.label("(deleted)")
            ui.label("Trainer").classes("text-grey-7")
            ui.label(trainer_title(spec))
            ui.label("Method").classes("text-grey-7")
            ui.label(VALUE_NAMES.get(str(spec.get("method")), str(spec.get("method"))))
            if spec.get("start_from"):
                ui.label("Continues").classes("text-grey-7")
                ui.link("the model it started from", f"/models/{spec['start_from']}").classes(
                    "run-started-from"
                )
            self.facts = {name: _fact(name) for name in ("Created", "Started", "Duration")}
        settings_view(spec)
        ui.link("Job details", f"/jobs/{job.id}").classes("text-body2")

    def take(self, job: Job, events: list[JobEvent]) -> None:
        """Fold the new `events` into the page, and show `job` as it is now."""
        changed: set[str] = set()
        samples_changed = warned = False
        for event in events:
            self.cursor = event.id
            if event.type == "metric":
                step = int(event.data["step"])
                if "eta_seconds" in event.data["values"]:
                    self.eta_at = event.created_at
                for name, value in metric_values(event.data).items():
                    self.series.setdefault(name, {})[step] = value
                    changed.add(name)
            elif event.type == "samples":
                self.samples[int(event.data["step"])] = event.data["items"]
                samples_changed = True
            elif event.type == "status":
                self.moves.append(event)
            elif event.type == "log":
                level = event.data.get("level", "info")
                if level in ("warning", "error"):
                    self.warnings.append(
                        {"level": level, "message": str(event.data.get("message"))}
                    )
                    warned = True
                self.log.push(
                    f"{clock(event.created_at)}  {level:<7} {event.data.get('message', '')}",
                    classes="text-negative" if level in ("error", "critical") else None,
                )
        if changed:
            self.charts.redraw(self.series, changed)
            self._tiles()
        if samples_changed:
            self.sample_view.take(self.samples)
        if changed or samples_changed or warned:
            rate = self.spec.get("learning_rate")
            self.health.show(
                health_flags(self.series, self.samples, self.warnings, rate and float(rate))
            )
        self._status(job)

    def _latest(self, name: str) -> tuple[int, float] | None:
        points = self.series.get(name)
        if not points:
            return None
        step = max(points)
        return step, points[step]

    def _tiles(self) -> None:
        loss = self._latest("loss")
        self.tiles["step"].set_text(f"{loss[0]:,}" if loss else "—")
        for name in self.tile_names:
            latest = self._latest(name)
            self.tiles[name].set_text(metric(name, latest[1] if latest else None))

    def _status(self, job: Job) -> None:
        status = JobStatus(job.status)
        self.status.set_text(status.value)
        self.status.set_background_color(status_color(status))
        self.model_id = (job.result or {}).get("model_id")
        self.cancel.set_visibility(status in CANCELLABLE)
        by_settings = bool(failed_fields(job))  # resuming would fail the same way
        self.resume.set_visibility(status in RESUMABLE and not by_settings)
        self.retry.set_visibility(by_settings)
        self.open_model.set_visibility(status is JobStatus.SUCCEEDED and bool(self.model_id))
        self.bar.set_value(job.progress)
        self.bar.props(f"color={status_color(status)}")
        self.percent.set_text(f"{job.progress:.0%}")
        self.message.set_text(_message(status, job.message))
        self.eta.set_text(self._time_left(status, job))
        self.error.set_text(job.error or "")
        self.error.set_visibility(bool(job.error))
        failed = status is JobStatus.FAILED
        self.error.classes(
            add="bg-red-1 text-negative" if failed else "bg-grey-2 text-grey-9",
            remove="bg-grey-2 text-grey-9" if failed else "bg-red-1 text-negative",
        )
        for name, value in (
            ("Created", when(job.created_at)),
            ("Started", when(job.started_at)),
            ("Duration", duration(job, self.moves)),
        ):
            self.facts[name].set_text(value)

    def _time_left(self, status: JobStatus, job: Job) -> str:
        """While it trains, the time left; after the last step, the phase it is in; once it has
        ended, what it took beside what it was estimated to take."""
        estimated = self.series.get(ESTIMATE_METRIC, {}).get(0)
        if job.finished_at is not None:
            return took(run_seconds(job, self.moves), estimated)
        eta = self._latest("eta_seconds")
        if status is not JobStatus.RUNNING:
            return ""
        if eta is None:  # before the first step: what the whole run should take
            if estimated is None:
                return ""
            elapsed = run_seconds(job, self.moves) or 0.0
            if elapsed + 1 < estimated:
                return f"about {span(estimated - elapsed)} left (estimated)"
            return f"taking longer than the estimated {span(estimated)}"
        left = eta[1] - (utcnow() - self.eta_at).total_seconds()  # counted down between steps
        if left < 1:
            return "almost done"
        return f"about {metric('eta_seconds', left)} left"

    async def refresh(self) -> None:
        try:
            job, events = await read(updates, self.user, self.job_id, self.cursor)
        except NotFound:
            self.timer.cancel()
            for element in (self.cancel, self.resume, self.retry, self.open_model):
                element.set_visibility(False)
            self.status.set_text("deleted")
            self.status.set_background_color("grey-6")
            self.message.set_text("This run was deleted.")
            return
        self.take(job, events)

    async def cancel_run(self) -> None:
        with reported():
            job = await call(job_service.cancel_job, self.user, self.job_id)
            ui.notify(
                "Cancelled."
                if job.status == JobStatus.CANCELLED
                else "Stopping after this step; a checkpoint is saved so you can resume."
            )
        await self.refresh()

    async def resume_run(self) -> None:
        with reported():
            await call(service.resume, self.user, self.job_id)
            ui.notify("Queued again: the run continues from its newest checkpoint.")
        await self.refresh()


def _tile(title: str) -> ui.label:
    with ui.column().classes("gap-0 run-tile"):
        ui.label(title).classes("text-caption text-grey-7")
        return ui.label("—").classes("text-h6 text-weight-medium tile-value")


def _fact(name: str) -> ui.label:
    ui.label(name).classes("text-grey-7")
    return ui.label()


def _message(status: JobStatus, message: str | None) -> str:
    """What the run is doing; once it has ended, how it ended (its last message is stale)."""
    if status is JobStatus.FAILED:
        return f"Failed while {message}." if message else "Failed."
    if status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED) or not message:
        return STATUS_HINTS.get(status, "")
    return message
