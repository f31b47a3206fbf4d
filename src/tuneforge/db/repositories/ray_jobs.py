"""The Ray executor's reads and writes of jobs, across owners.

A Ray runner reserves a queued job before its actor starts: the job stays `queued`, with
`executor` = `ray` and `worker_host` = the runner's reservation tag (`ray:{namespace}`), and says
what it waits for in `waiting`. Its actor moves it to `running` when Ray has placed it. A job
queued again (resume) loses its reservation (`transition()` clears `worker_host`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from tuneforge.db.repositories.jobs import ACTIVE
from tuneforge.db.tables import Job

EXECUTOR = "ray"


def reserve(
    session: Session, job_id: str, tag: str, resources: dict[str, Any], waiting: str
) -> bool:
    """Reserve the queued, unreserved job for the runner `tag` (a compare-and-set: of two
    runners, one wins). Whether this one did."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.worker_host.is_(None))
        .values(worker_host=tag, executor=EXECUTOR, resources=resources, waiting=waiting)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def release(session: Session, job_id: str, tag: str) -> bool:
    """Give a queued job reserved by `tag` back to the queue (its actor is gone before it
    started). Whether it was still reserved."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.worker_host == tag)
        .values(worker_host=None, waiting=None)
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def set_waiting(session: Session, job_id: str, tag: str, waiting: str) -> None:
    """Say why the queued job reserved by `tag` has not started yet."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.worker_host == tag)
        .values(waiting=waiting)
    )


def reserved_by(session: Session, tag: str) -> list[Job]:
    """The queued jobs the runner `tag` reserved."""
    return list(session.scalars(select(Job).where(Job.status == "queued", Job.worker_host == tag)))


def active_on_ray(session: Session) -> list[Job]:
    """Jobs whose Ray actor runs them (or stops them)."""
    return list(
        session.scalars(select(Job).where(Job.status.in_(ACTIVE), Job.executor == EXECUTOR))
    )


def taken_by_ray(session: Session, tag: str) -> int:
    """How many jobs the runner `tag` holds: the ones it reserved and those running on Ray."""
    count = session.scalar(
        select(func.count()).where(
            or_(
                (Job.status == "queued") & (Job.worker_host == tag),
                Job.status.in_(ACTIVE) & (Job.executor == EXECUTOR),
            )
        )
    )
    return count or 0


def job_states(session: Session, job_ids: list[str]) -> dict[str, str]:
    """The status of each of the jobs that still exist, by id."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids)))
    return {job_id: status for job_id, status in rows}
