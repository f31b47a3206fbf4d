"""The one door through which every job comes into being."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.tables import Job, JobEvent, User
from tuneforge.errors import InvalidInput, PermissionDenied
from tuneforge.jobs.events import StatusEvent
from tuneforge.jobs.kind import all_kinds, kind_of
from tuneforge.jobs.quotas import check_launch
from tuneforge.jobs.status import JobStatus
from tuneforge.settings import Settings


def create_job(session: Session, user: User, settings: Settings, kind: str, spec: Any) -> Job:
    """Queue a job of `kind` for `user`: the spec validated, the kind's rules checked (who may
    run it, whether it can work here), the user's quotas checked, its first status event and
    its records added. The caller commits."""
    try:
        job_kind = kind_of(kind)
    except KeyError:
        known = ", ".join(sorted(k for k, v in all_kinds().items() if v.public))
        raise InvalidInput(f"There is no job kind {kind!r}; the kinds are {known}.") from None
    if job_kind.admin_only and not user.is_admin:
        raise PermissionDenied(f"Only administrators can run {kind} jobs.")
    typed = job_kind.validate(spec)
    job_kind.check(session, user, settings, typed)
    check_launch(session, user, settings)
    job = Job(
        owner_id=user.id,
        kind=kind,
        spec=job_kind.spec_dump(typed),
        status=JobStatus.QUEUED.value,
    )
    session.add(job)
    session.flush()
    event = StatusEvent(status=JobStatus.QUEUED)
    session.add(JobEvent(job_id=job.id, type=event.type, data=event.data()))
    job_kind.on_queued(session, user, job, typed)
    return job
