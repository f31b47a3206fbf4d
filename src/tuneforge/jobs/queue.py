"""Claiming queued jobs safely when several runners share one database."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.repositories.jobs import oldest_queued
from tuneforge.db.tables import Job
from tuneforge.jobs.states import StaleTransition, transition
from tuneforge.jobs.status import JobStatus


def claim_next(session: Session, host: str, executor: str = "local") -> Job | None:
    """Take the oldest queued job for a runner of `executor` on `host`, or None.

    PostgreSQL skips rows other runners hold (`FOR UPDATE SKIP LOCKED`); on SQLite, where the
    clause does not exist, the compare-and-set inside `transition()` makes a lost race harmless.
    """
    job = oldest_queued(session)
    if job is None:
        return None
    try:
        return transition(
            session, job, JobStatus.RUNNING, worker_host=host, worker_pid=None, executor=executor
        )
    except StaleTransition:
        return None
