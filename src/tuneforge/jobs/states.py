"""The job state machine. A job's status changes only through `transition()`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from tuneforge.db.tables import Job, JobEvent, utcnow
from tuneforge.jobs.events import StatusEvent
from tuneforge.jobs.kind import kind_of
from tuneforge.jobs.status import ALLOWED, TERMINAL, JobStatus


class InvalidTransition(Exception):
    """A move the state machine does not allow."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a {current} job cannot become {target}")
        self.current = current
        self.target = target


class StaleTransition(InvalidTransition):
    """Someone else moved the job first (the status read is out of date)."""


def transition(session: Session, job: Job, target: JobStatus, **fields: Any) -> Job:
    """Move `job` to `target`, or raise.

    The update is a compare-and-set on the status that was read, so two runners (or a runner and a
    cancel request) racing on the same job cannot both win. Timestamps follow the move; `fields`
    sets other columns in the same update (error, result, worker, ...); a queued job forgets
    where it ran, and a job that starts or ends no longer waits. A `status` event records
    the move, and the job's kind settles the records that follow the job (an export, a dataset)
    in the same transaction. The caller commits.
    """
    current = JobStatus(job.status)
    if target not in ALLOWED[current]:
        raise InvalidTransition(current, target)
    now = utcnow()
    values: dict[str, Any] = {"status": target.value, **fields}
    if target is JobStatus.RUNNING:
        values.update(started_at=now, heartbeat_at=now, finished_at=None, error=None)
        values.setdefault("waiting", None)
    elif target is JobStatus.QUEUED:
        values.update(
            attempt=job.attempt + 1,
            finished_at=None,
            worker_pid=None,
            worker_host=None,
            executor=None,
            resources=None,
            waiting=None,
            cancel_requested_at=None,
        )
    elif target is JobStatus.CANCELLING:
        values.setdefault("cancel_requested_at", now)
    elif target in TERMINAL:
        values.update(finished_at=now, waiting=None)
        if target is JobStatus.SUCCEEDED:
            values["progress"] = 1.0
    result = session.execute(
        update(Job).where(Job.id == job.id, Job.status == current.value).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(job)
        raise StaleTransition(job.status, target)
    for key, value in values.items():
        setattr(job, key, value)
    event = StatusEvent(status=target, previous=current, error=values.get("error") or None)
    session.add(JobEvent(job_id=job.id, type=event.type, data=event.data()))
    kind_of(job.kind).settle(session, job)
    return job
