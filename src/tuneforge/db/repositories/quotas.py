"""What quotas are measured by: a user's limits as an administrator set them, the storage their
records take (the sizes the records carry, never a walk of the disk) and their jobs in flight
have reserved, and their jobs in flight and started lately."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tuneforge.db.tables import Dataset, Export, Job, Model, User, UserQuota

IN_FLIGHT = ("queued", "running", "cancelling")  # the job statuses that hold a place
#: The key of a job's spec that holds the storage the job may write while in flight (a Hugging
#: Face import's download), reserved from its owner's quota until the job ends.
RESERVED = "budget_bytes"


def quota_of(session: Session, user_id: str) -> UserQuota | None:
    return session.get(UserQuota, user_id)


def hold_launches(session: Session, user_id: str) -> None:
    """Make the user's other launches wait until this transaction ends (a row lock on the user
    on PostgreSQL; SQLite lets one writer in at a time anyway), so two jobs started at the same
    instant cannot both pass a limit that has room for one."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update())


def storage_used(session: Session, user_id: str) -> int:
    """Bytes of the user's datasets, models and exports (an export that reuses an identical
    one's files adds nothing)."""
    parts = (
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.owner_id == user_id),
        select(func.coalesce(func.sum(Model.size_bytes), 0)).where(Model.owner_id == user_id),
        select(func.coalesce(func.sum(Export.size_bytes), 0)).where(
            Export.owner_id == user_id, Export.reused_from.is_(None)
        ),
    )
    return sum(int(session.scalar(part) or 0) for part in parts)


def storage_reserved(session: Session, user_id: str) -> int:
    """Bytes the user's jobs in flight have reserved (their specs' `budget_bytes`)."""
    specs = session.scalars(
        select(Job.spec).where(Job.owner_id == user_id, Job.status.in_(IN_FLIGHT))
    )
    return sum(int((spec or {}).get(RESERVED) or 0) for spec in specs)


def lower_reservation(session: Session, job_id: str, reserved: int) -> None:
    """Reserve `reserved` bytes for the job from now on, when that is less than it holds (a
    download whose size became known)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is not None and int((job.spec or {}).get(RESERVED) or 0) > reserved:
        job.spec = {**job.spec, RESERVED: reserved}


def jobs_in_flight(session: Session, user_id: str) -> int:
    """The user's jobs queued, running or stopping."""
    query = select(func.count()).where(Job.owner_id == user_id, Job.status.in_(IN_FLIGHT))
    return int(session.scalar(query.select_from(Job)) or 0)


def jobs_since(session: Session, user_id: str, since: datetime) -> int:
    """The user's jobs created at or after `since` (deleted ones are not counted)."""
    query = select(func.count()).where(Job.owner_id == user_id, Job.created_at >= since)
    return int(session.scalar(query.select_from(Job)) or 0)
