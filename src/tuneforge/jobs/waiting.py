"""Why a queued job waits: what the user sees instead of a bare `queued`.

An executor that took a job but cannot start it yet says why itself (`Job.waiting`: the Ray
executor names the resources the cluster lacks). Otherwise the job waits in the queue, and the
reason is read from the queue: how many jobs run, how many this server runs at once, and how
many queued jobs go first. A server that runs no jobs itself (`run_jobs` off) waits for a
`tuneforge worker` to take them.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from tuneforge.db.repositories.jobs import active_count, queued_ahead
from tuneforge.db.tables import Job
from tuneforge.jobs.status import JobStatus
from tuneforge.settings import Settings


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def waiting_reason(session: Session, settings: Settings, job: Job, running: int) -> str:
    """Why the queued `job` has not started, with `running` jobs active."""
    if job.waiting:
        return job.waiting
    ahead = queued_ahead(session, job)
    verb = "goes" if ahead == 1 else "go"
    before = f"; {_plural(ahead, 'queued job')} {verb} first" if ahead else ""
    if not settings.run_jobs and settings.executor == "local":
        return f"Waiting for a worker (this server runs no jobs itself){before}."
    if running >= settings.max_concurrent_jobs or ahead:
        return (
            f"Waiting for a free slot: {_plural(running, 'job')} running, "
            f"{settings.max_concurrent_jobs} at once on this server{before}."
        )
    return "Starting: the next look at the queue takes it."


def waiting_reasons(session: Session, settings: Settings, jobs: Iterable[Job]) -> dict[str, str]:
    """The reasons of the queued ones among `jobs`, by id."""
    queued = [job for job in jobs if job.status == JobStatus.QUEUED]
    if not queued:
        return {}
    running = active_count(session)
    return {job.id: waiting_reason(session, settings, job, running) for job in queued}
