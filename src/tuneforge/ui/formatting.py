"""How jobs read on screen: status colours, times, durations, where they run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from tuneforge.db.tables import Job
from tuneforge.jobs.durations import run_seconds
from tuneforge.jobs.resources import Resources
from tuneforge.jobs.status import JobStatus
from tuneforge.ui.run_format import span

STATUS_COLORS: dict[str, str] = {
    JobStatus.QUEUED: "grey-6",
    JobStatus.RUNNING: "primary",
    JobStatus.CANCELLING: "warning",
    JobStatus.SUCCEEDED: "positive",
    JobStatus.FAILED: "negative",
    JobStatus.CANCELLED: "grey-8",
}


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, "grey-6")


def when(moment: datetime | None) -> str:
    """A timestamp in the server's time zone, or a dash."""
    if moment is None:
        return "—"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def duration(job: Job, events: Iterable[Any] = ()) -> str:
    """How long the job ran (so far, while it runs); with its status `events`, over all its
    attempts (`run_seconds`), else its newest attempt only."""
    seconds = run_seconds(job, events)
    return "—" if seconds is None else span(seconds)


def kind_title(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


def resources_text(resources: Mapping[str, Any] | None) -> str:
    """What a job asked its executor for, in words (`1 CPU, 1 GPU, 24.0 GB memory`)."""
    return Resources.model_validate(resources).describe() if resources else "—"


def placement_text(job: Job) -> str:
    """Where a job runs or ran (`local · host`, `ray · 10.0.0.7`), or a dash before it is taken."""
    return " · ".join(part for part in (job.executor, job.worker_host) if part) or "—"
