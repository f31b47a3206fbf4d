"""Creating, reading, cancelling and deleting jobs, always as their owner (or an admin)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.repositories import jobs as jobs_repository
from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.tables import Job, JobEvent, User
from tuneforge.errors import Conflict
from tuneforge.jobs import lifecycle
from tuneforge.jobs.states import InvalidTransition, StaleTransition, transition
from tuneforge.jobs.status import TERMINAL, JobStatus
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore, artifact_prefix


def create_job(session: Session, user: User, settings: Settings, kind: str, spec: Any) -> Job:
    """Queue a job of `kind` with `spec` for the user, checked by its kind."""
    return lifecycle.create_job(session, user, settings, kind, spec)


def get_job(session: Session, user: User, job_id: str) -> Job:
    return JobRepository(session, user).require(job_id)


def list_jobs(
    session: Session,
    user: User,
    *,
    status: JobStatus | None = None,
    kind: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Job], int]:
    return JobRepository(session, user).search(
        status=status.value if status else None, kind=kind, offset=offset, limit=limit
    )


def status_moves(session: Session, user: User, jobs: list[Job]) -> dict[str, list[JobEvent]]:
    """The status events of the resumed ones among `jobs`: their total running time is summed
    from them (a job that never resumed ran in one spell, which its row already says)."""
    return JobRepository(session, user).status_moves([job for job in jobs if job.attempt])


def cancel_job(session: Session, user: User, job_id: str) -> Job:
    """Queued jobs are cancelled at once; running ones are asked to stop (`cancelling`).

    A runner may claim a queued job between the read and the move: the move is then tried
    again from the status the job has now (a running job is asked to stop)."""
    job = get_job(session, user, job_id)
    while True:
        target = JobStatus.CANCELLED if job.status == JobStatus.QUEUED else JobStatus.CANCELLING
        try:
            transition(session, job, target, error="cancelled by the user")
            return job
        except StaleTransition as exc:
            if exc.current != JobStatus.RUNNING:  # only queued -> running can race a cancel
                raise Conflict(f"This job is {exc.current}; it cannot be cancelled.") from exc
        except InvalidTransition as exc:
            raise Conflict(f"This job is {exc.current}; it cannot be cancelled.") from exc


def delete_job(session: Session, store: ArtifactStore, user: User, job_id: str) -> None:
    """Delete a finished job with its events and artifacts."""
    job = get_job(session, user, job_id)
    if job.status not in TERMINAL:
        raise Conflict(f"This job is {job.status}; cancel it before deleting it.")
    store.delete(artifact_prefix(job.owner_id, job.kind, job.id))
    session.delete(job)


def job_events(
    session: Session,
    user: User,
    job_id: str,
    *,
    after: int = 0,
    limit: int = 500,
    types: set[str] | None = None,
) -> tuple[Job, list[JobEvent]]:
    repository = JobRepository(session, user)
    job = repository.require(job_id)
    return job, repository.events(job, after=after, limit=limit, types=types)


# -- the web process's shared poller of a followed job (api/job_feeds.py) -------------------------
# It reads once for all the job's subscribers, across owners: each one was checked with
# `get_job` before it joined.
def latest_event_id(session: Session, job_id: str) -> int:
    """Where a followed job's feed starts: its newest event's id."""
    return jobs_repository.latest_event_id(session, job_id)


def followed_events(
    session: Session, job_id: str, *, after: int, limit: int
) -> tuple[bool, list[JobEvent]]:
    """Whether a followed job has ended (or is gone), and its events after `after`. The status
    is read first: once it says ended, the events read next include the job's last ones."""
    status = jobs_repository.job_status(session, job_id)
    ended = status is None or status in TERMINAL
    return ended, jobs_repository.events_after(session, job_id, after=after, limit=limit)
