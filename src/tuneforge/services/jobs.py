"""Creating, reading, cancelling and deleting jobs, always as their owner (or an admin)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.tables import Job, JobEvent, User
from tuneforge.jobs.registry import KINDS
from tuneforge.jobs.states import InvalidTransition, transition
from tuneforge.jobs.status import TERMINAL, JobStatus
from tuneforge.schemas.jobs import EvaluateJobCreate, ExportJobCreate, JobCreate, TrainJobCreate
from tuneforge.services import evaluations, exports, training
from tuneforge.errors import Conflict, NotFound, PermissionDenied
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore, artifact_prefix


def create_job(
    session: Session, user: User, request: JobCreate, settings: Settings | None = None
) -> Job:
    """Queue a job; a training run or an evaluation is checked first (`settings` needed) and
    refused if it cannot work here or names data or models the user cannot use."""
    kind = KINDS[request.kind]
    if kind.admin_only and not user.is_admin:
        raise PermissionDenied(f"Only administrators can run {request.kind} jobs.")
    if isinstance(request, TrainJobCreate | EvaluateJobCreate | ExportJobCreate):
        if settings is None:
            raise ValueError(f"checking a {request.kind} job needs the settings")
        if isinstance(request, ExportJobCreate):
            exports.check_export(session, user, settings, request.spec)
        elif isinstance(request, TrainJobCreate):
            training.check_launch(session, user, settings, request.spec)
        else:
            evaluations.check_launch(session, user, settings, request.spec)
    job = Job(
        owner_id=user.id,
        kind=request.kind,
        spec=request.spec.model_dump(mode="json"),
        status=JobStatus.QUEUED.value,
    )
    session.add(job)
    session.flush()
    session.add(JobEvent(job_id=job.id, type="status", data={"status": job.status}))
    if isinstance(request, ExportJobCreate):
        exports.add_record(session, user, job, request.spec)
    return job


def get_job(session: Session, user: User, job_id: str) -> Job:
    job = JobRepository(session, user).get(job_id)
    if job is None:
        raise NotFound(f"No job {job_id}.")
    return job


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


def cancel_job(session: Session, user: User, job_id: str) -> Job:
    """Queued jobs are cancelled at once; running ones are asked to stop (`cancelling`)."""
    job = get_job(session, user, job_id)
    target = JobStatus.CANCELLED if job.status == JobStatus.QUEUED else JobStatus.CANCELLING
    try:
        transition(session, job, target, error="cancelled by the user")
    except InvalidTransition as exc:
        raise Conflict(f"This job is {exc.current}; it cannot be cancelled.") from exc
    return job


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
    job = repository.get(job_id)
    if job is None:
        raise NotFound(f"No job {job_id}.")
    return job, repository.events(job, after=after, limit=limit, types=types)
