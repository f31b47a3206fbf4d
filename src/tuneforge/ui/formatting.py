"""How jobs read on screen: status colours, times, durations."""

from __future__ import annotations

from datetime import datetime

from tuneforge.db.tables import Job, utcnow
from tuneforge.jobs.status import JobStatus

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


def duration(job: Job) -> str:
    """How long the job ran (so far, while it runs)."""
    if job.started_at is None:
        return "—"
    seconds = int(((job.finished_at or utcnow()) - job.started_at).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def kind_title(kind: str) -> str:
    return kind.replace("_", " ").capitalize()
