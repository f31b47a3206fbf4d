"""`/jobs`: the user's jobs, live, with a status filter (and, for admins, a diagnostic job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui
from sqlalchemy.orm import Session

from tuneforge.db.tables import Job, JobEvent, User
from tuneforge.jobs.kinds.diagnostic import DiagnosticSpec
from tuneforge.jobs.status import JobStatus
from tuneforge.jobs.waiting import waiting_reasons
from tuneforge.services import jobs as job_service
from tuneforge.services.names import names_for_jobs
from tuneforge.settings import Settings
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.formatting import (
    duration,
    placement_text,
    resources_text,
    status_color,
    when,
)
from tuneforge.ui.job_names import JobName, job_name
from tuneforge.ui.layout import EmptyState, heading, page
from tuneforge.ui.number_field import Bounds, bounded_number

SHOWN = 100  # newest jobs on the page
REFRESH_SECONDS = 1.0

COLUMNS = [
    {"name": "kind", "label": "Job", "field": "kind", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "progress", "label": "Progress", "field": "progress", "align": "left"},
    {"name": "where", "label": "Runs on", "field": "where", "align": "left"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "duration", "label": "Duration", "field": "duration", "align": "left"},
    {"name": "error", "label": "Error", "field": "error", "align": "left"},
]

SLOTS = {
    "body-cell-kind": """
        <q-td :props="props">
          <a :href="props.row.href" @click.stop
             class="text-primary text-weight-medium tf-wrap job-name"
             style="text-decoration: none">{{ props.value }}</a>
          <div class="text-caption text-grey-6 tf-wrap job-detail">{{ props.row.detail }}</div>
        </q-td>""",
    "body-cell-status": """
        <q-td :props="props">
          <q-badge class="job-status q-px-sm q-py-xs" rounded
                   :color="props.row.color" :label="props.value" />
        </q-td>""",
    "body-cell-progress": """
        <q-td :props="props">
          <div class="row items-center no-wrap" style="gap: 8px">
            <q-linear-progress :value="props.value" :color="props.row.color" track-color="grey-3"
                               rounded size="6px" style="width: 96px" />
            <span class="text-caption text-grey-8">{{ Math.round(props.value * 100) }}%</span>
          </div>
        </q-td>""",
    "body-cell-where": """
        <q-td :props="props">
          <div class="tf-wrap job-where" style="max-width: 260px"
               :class="props.row.status === 'queued' ? 'text-grey-7' : ''">{{ props.value }}</div>
          <div class="text-caption text-grey-6 job-resources">{{ props.row.resources }}</div>
        </q-td>""",
    "body-cell-error": """
        <q-td :props="props">
          <div class="ellipsis" style="max-width: 260px" :title="props.value"
               :class="props.row.status === 'failed' ? 'text-negative' : 'text-grey-7'">
            {{ props.value }}</div>
        </q-td>""",
}

NO_JOBS = (
    "Jobs are the long-running work of the studio: preparing datasets, training, evaluating "
    "and exporting models. Each one you start shows up here with its progress and logs."
)
#: Kinds with a page of their own (the others open the job page).
PAGES = {"train": "/runs/", "evaluate": "/evaluations/"}
FILTERS: dict[str, str] = {"": "All statuses"} | {s.value: s.value.capitalize() for s in JobStatus}


def job_rows(
    session: Session, user: User, settings: Settings, status: JobStatus | None, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest jobs as table rows, named after what they work on, with where they run (or
    why they wait)."""
    jobs, total = job_service.list_jobs(session, user, status=status, limit=limit)
    names = names_for_jobs(session, user, jobs)
    moves = job_service.status_moves(session, user, jobs)
    reasons = waiting_reasons(session, settings, jobs)
    rows = [
        _row(job, job_name(job, names), moves.get(job.id, []), reasons.get(job.id)) for job in jobs
    ]
    return rows, total


def _row(job: Job, name: JobName, moves: list[JobEvent], waiting: str | None) -> dict[str, Any]:
    return {
        "id": job.id,
        "href": PAGES.get(job.kind, "/jobs/") + job.id,
        "kind": name.title,
        "detail": name.detail,
        "status": job.status,
        "color": status_color(job.status),
        "progress": job.progress,
        "where": waiting or placement_text(job),
        "resources": "" if waiting or not job.resources else resources_text(job.resources),
        "created": when(job.created_at),
        "duration": duration(job, moves),
        "error": job.error or "",
    }


@page("/jobs", "Jobs")
async def jobs_page(user: User) -> None:
    with (
        heading(
            "Jobs",
            "Everything that takes a while runs as a job, in its own process. "
            "Jobs keep running when you close the browser.",
        ),
        ui.row().classes("items-center gap-3") as actions,
    ):
        status_filter = (
            ui.select(FILTERS, value="", label="Status")
            .props("outlined dense options-dense")
            .classes("w-44")
        )
    with ui.card().classes("w-full q-pa-none gap-0"):
        table = (
            ui.table(columns=COLUMNS, rows=[], row_key="id")
            .props("flat")
            .classes("w-full jobs-table")
        )
        for name, template in SLOTS.items():
            table.add_slot(name, template)
        table.on("rowClick", lambda e: ui.navigate.to(e.args[1]["href"]))
        nothing = EmptyState("work_history")
        count = ui.label().classes("text-caption text-grey-7 q-px-md q-py-sm")

    async def refresh() -> None:
        status = JobStatus(status_filter.value) if status_filter.value else None
        rows, total = await read(job_rows, user, state().settings, status, SHOWN)
        if rows != table.rows:
            table.rows = rows
            table.update()
        table.set_visibility(bool(rows))
        count.set_visibility(bool(rows))
        nothing.set_visibility(not rows)
        if status is None:
            nothing.show("No jobs yet", NO_JOBS)
        else:
            nothing.show(f"No {status.value} jobs", "Choose another status to see more.")
        shown = f"the newest {len(rows)} of " if total > len(rows) else ""
        count.set_text(f"Showing {shown}{total} job{'s' if total != 1 else ''}.")

    if user.is_admin:
        dialog = _diagnostic_dialog(user, refresh)
        with actions:
            ui.button("Run diagnostic job", icon="play_arrow", on_click=dialog.open).props(
                "unelevated"
            )
    status_filter.on_value_change(refresh)
    await refresh()
    ui.timer(REFRESH_SECONDS, refresh)


def _diagnostic_dialog(user: User, refresh: Callable[[], Awaitable[None]]) -> ui.dialog:
    """Admins check the worker pipeline end to end with a job that only waits and reports."""
    with ui.dialog() as dialog, ui.card().classes("w-96 q-pa-lg gap-4"):
        ui.label("Run a diagnostic job").classes("text-h6")
        ui.label(
            "It runs in a worker process for the time you choose and reports its progress "
            "every second: a quick check that jobs work end to end."
        ).classes("text-body2 text-grey-8")
        bounds = Bounds.for_field(DiagnosticSpec, "seconds", integer=False)
        seconds = (
            bounded_number("Seconds", 5, bounds)
            .props(f'outlined dense hint="{bounds.hint()}"')
            .classes("w-full diagnostic-seconds")
        )
        fail = ui.checkbox("Fail at the end (to see how failures look)")

        async def start() -> None:
            if not seconds.validate():  # the field says what is wrong
                return
            spec = DiagnosticSpec(seconds=seconds.value, fail=fail.value)
            with reported():
                await call(job_service.create_job, user, state().settings, "diagnostic", spec)
                dialog.close()
                ui.notify("Diagnostic job queued.", type="positive")
                await refresh()

        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Start", icon="play_arrow", on_click=start).props("unelevated")
    return dialog
