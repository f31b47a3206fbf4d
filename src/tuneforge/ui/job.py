"""`/jobs/{id}`: one job, live: status, progress, details, result or error, and its log."""

from __future__ import annotations

import json

from nicegui import ui
from sqlalchemy.orm import Session

from tuneforge.db.tables import Job, JobEvent, User
from tuneforge.errors import NotFound
from tuneforge.jobs.status import TERMINAL, JobStatus
from tuneforge.jobs.waiting import waiting_reasons
from tuneforge.services import jobs as job_service
from tuneforge.services.names import names_for_jobs
from tuneforge.settings import Settings
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.formatting import (
    clock,
    duration,
    placement_text,
    resources_text,
    status_color,
    when,
)
from tuneforge.ui.job_names import JobName, job_name
from tuneforge.ui.layout import EmptyState, confirm, heading, page

REFRESH_SECONDS = 1.0
LOG_LINES = 5000
CANCELLABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
STATUS_HINTS = {JobStatus.CANCELLING: "Asked to stop; waiting for the worker."}


def live_job(
    session: Session, user: User, settings: Settings, job_id: str, after: int = 0
) -> tuple[Job, list[JobEvent], str | None]:
    """The job, its log after event `after`, and why it waits if it is queued."""
    job, logs = job_service.job_events(session, user, job_id, after=after, types={"log"})
    return job, logs, waiting_reasons(session, settings, [job]).get(job.id)


def named_job(
    session: Session, user: User, settings: Settings, job_id: str
) -> tuple[Job, list[JobEvent], str | None, JobName]:
    """Like `live_job` from the start, and what the job is called."""
    job, logs, waiting = live_job(session, user, settings, job_id)
    return job, logs, waiting, job_name(job, names_for_jobs(session, user, [job]))


@page("/jobs/{job_id}", "Job")
async def job_page(user: User, job_id: str) -> None:
    try:
        job, logs, waiting, name = await read(named_job, user, state().settings, job_id)
    except NotFound:
        ui.status_code(404)
        with EmptyState(
            "search_off",
            "Job not found",
            "There is no job with this id among yours. It may have been deleted.",
        ):
            ui.button(
                "Back to jobs", icon="arrow_back", on_click=lambda: ui.navigate.to("/jobs")
            ).classes("q-mt-md")
        return
    JobView(user, job, logs, waiting, name)


class JobView:
    """The elements of a job page, and how each tick brings them up to date."""

    def __init__(
        self, user: User, job: Job, logs: list[JobEvent], waiting: str | None, name: JobName
    ) -> None:
        self.user = user
        self.job_id = job.id
        self.log_cursor = 0
        with ui.link(target="/jobs").classes(
            "row items-center gap-1 text-grey-7 no-underline -mb-4"
        ):
            ui.icon("arrow_back", size="xs")
            ui.label("All jobs").classes("text-body2")
        with (
            heading(name.title, name.subtitle),
            ui.row().classes("items-center gap-3"),
        ):
            self.status = (
                ui.badge().classes("job-status text-body2 q-px-md q-py-xs").props("rounded")
            )
            if job.kind == "train":
                ui.button(
                    "Open run page",
                    icon="stacked_line_chart",
                    on_click=lambda: ui.navigate.to(f"/runs/{job.id}"),
                ).props("unelevated")
            self.cancel = ui.button("Cancel job", icon="stop", on_click=self.cancel_job)
            self.cancel.props("outline color=negative")
            self.delete = ui.button("Delete", icon="delete", on_click=self.delete_job)
            self.delete.props("flat color=grey-8")
        with ui.card().classes("w-full q-pa-lg gap-3"):
            with ui.row().classes("w-full items-center no-wrap gap-4"):
                self.progress = (
                    ui.linear_progress(show_value=False, size="10px")
                    .props("rounded track-color=grey-3")
                    .classes("col")
                )
                self.percent = ui.label().classes("text-subtitle1 text-weight-medium w-12")
            self.message = ui.label().classes("text-body2 text-grey-8 job-message")
            self.error = ui.label().classes("w-full q-pa-sm rounded-borders job-error")
        with ui.row().classes("w-full gap-6 items-stretch"):
            with ui.card().classes("col-12 col-md q-pa-lg gap-3"):
                ui.label("Details").classes("text-subtitle1 text-weight-medium")
                with ui.grid(columns="auto 1fr").classes("gap-x-6 gap-y-2 text-body2"):
                    self.facts = {
                        name: self._fact(name)
                        for name in (
                            "Created",
                            "Started",
                            "Finished",
                            "Duration",
                            "Attempt",
                            "Last heartbeat",
                            "Runs on",
                            "Resources",
                        )
                    }
            with ui.card().classes("col-12 col-md q-pa-lg gap-3"):
                ui.label("Settings").classes("text-subtitle1 text-weight-medium")
                ui.code(json.dumps(job.spec, indent=2), language="json").classes("w-full")
                self.result_title = ui.label("Result").classes("text-subtitle1 text-weight-medium")
                self.result = ui.code("", language="json").classes("w-full")
        with ui.card().classes("w-full q-pa-lg gap-3"):
            ui.label("Log").classes("text-subtitle1 text-weight-medium")
            self.log = ui.log(max_lines=LOG_LINES).classes("w-full h-64 job-log text-body2")
            self.no_log = ui.label("Nothing logged yet.").classes("text-body2 text-grey-6")
        self.show(job, logs, waiting)
        self.timer = ui.timer(REFRESH_SECONDS, self.refresh)

    @staticmethod
    def _fact(name: str) -> ui.label:
        ui.label(name).classes("text-grey-7")
        return ui.label()

    def show(self, job: Job, logs: list[JobEvent], waiting: str | None) -> None:
        """Bring every element up to date with `job` (queued: `waiting` says why), and append
        the new `logs`."""
        status = JobStatus(job.status)
        self.status.set_text(status.value)
        self.status.set_background_color(status_color(status))
        self.cancel.set_visibility(status in CANCELLABLE)
        self.delete.set_visibility(status in TERMINAL)
        self.progress.set_value(job.progress)
        self.progress.set_text_color(status_color(status))
        self.percent.set_text(f"{job.progress:.0%}")
        self.message.set_text(waiting or job.message or STATUS_HINTS.get(status, ""))
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
            ("Finished", when(job.finished_at)),
            ("Duration", duration(job)),
            ("Attempt", str(job.attempt + 1)),
            ("Last heartbeat", when(job.heartbeat_at)),
            ("Runs on", placement_text(job)),
            ("Resources", resources_text(job.resources)),
        ):
            self.facts[name].set_text(value)
        self.result.set_content(json.dumps(job.result, indent=2) if job.result else "")
        for element in (self.result_title, self.result):
            element.set_visibility(job.result is not None)
        for event in logs:
            level = event.data.get("level", "info")
            self.log.push(
                f"{clock(event.created_at)}  {level:<7} {event.data.get('message', '')}",
                classes="text-negative" if level in ("error", "critical") else None,
            )
            self.log_cursor = event.id
        self.no_log.set_visibility(self.log_cursor == 0)

    async def refresh(self) -> None:
        try:
            job, logs, waiting = await read(
                live_job, self.user, state().settings, self.job_id, self.log_cursor
            )
        except NotFound:
            self._gone()
            return
        self.show(job, logs, waiting)

    async def cancel_job(self) -> None:
        with reported():
            job = await call(job_service.cancel_job, self.user, self.job_id)
            ui.notify("Cancelled." if job.status == JobStatus.CANCELLED else "Stopping the job…")
        await self.refresh()

    async def delete_job(self) -> None:
        if not await confirm(
            "Delete this job?",
            "Its log, metrics and files are deleted too. This cannot be undone.",
            "Delete job",
        ):
            return
        with reported():
            await call(job_service.delete_job, state().store, self.user, self.job_id)
            ui.navigate.to("/jobs")

    def _gone(self) -> None:
        self.timer.cancel()
        for element in (self.cancel, self.delete):
            element.set_visibility(False)
        self.status.set_text("deleted")
        self.status.set_background_color("grey-6")
        self.message.set_text("This job was deleted.")
