"""Jobs: create, list, read, cancel, delete, and their events as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from tuneforge.api.deps import (
    MAX_EVENT_ID,
    MAX_OFFSET,
    CurrentUser,
    SessionDep,
    SettingsDep,
    StoreDep,
)
from tuneforge.api.job_feeds import JobFeeds
from tuneforge.api.openapi import errors
from tuneforge.db.tables import Job
from tuneforge.jobs.status import JobStatus
from tuneforge.jobs.waiting import waiting_reasons
from tuneforge.schemas.jobs import JobCreate, JobList, JobPublic
from tuneforge.schemas.trainings import RunMetrics
from tuneforge.services import jobs as service
from tuneforge.services import training
from tuneforge.settings import Settings

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _public(session: Session, settings: Settings, jobs: list[Job]) -> list[JobPublic]:
    """`jobs` as the API shows them, queued ones with why they wait."""
    reasons = waiting_reasons(session, settings, jobs)
    return [
        JobPublic.model_validate(job).model_copy(update={"waiting": reasons.get(job.id)})
        for job in jobs
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses=errors(403, 404, 409, 429),
)
def create_job(
    body: JobCreate, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> JobPublic:
    job = service.create_job(session, user, settings, body.kind, body.spec)
    return _public(session, settings, [job])[0]


@router.get("", response_model=JobList)
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    kind: Annotated[str | None, Query(description="Only jobs of this kind.")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many jobs.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Return at most this many.")] = 50,
) -> JobList:
    rows, total = service.list_jobs(
        session, user, status=status, kind=kind, offset=offset, limit=limit
    )
    return JobList(items=_public(session, settings, rows), total=total)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(
    job_id: str, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> JobPublic:
    return _public(session, settings, [service.get_job(session, user, job_id)])[0]


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=errors(409))
def cancel_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobPublic:
    return JobPublic.model_validate(service.cancel_job(session, user, job_id))


@router.post("/{job_id}/resume", response_model=JobPublic, responses=errors(409, 429))
def resume_job(
    job_id: str, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> JobPublic:
    """Queue a failed or cancelled training run again, from its newest checkpoint."""
    return _public(session, settings, [training.resume(session, user, job_id)])[0]


@router.get("/{job_id}/metrics", response_model=RunMetrics)
def job_metrics(job_id: str, session: SessionDep, user: CurrentUser) -> RunMetrics:
    """A training run's metric series and sample generations."""
    return RunMetrics.model_validate(training.metrics(session, user, job_id))


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(409))
def delete_job(job_id: str, session: SessionDep, store: StoreDep, user: CurrentUser) -> None:
    service.delete_job(session, store, user, job_id)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `status`, `progress`, `metric`, `samples`, `log`, "
            "`artifact`, and a final `end` once the job has finished. A server that stops "
            "ends the stream without `end` (the job runs on in its worker): reconnect with the "
            "`Last-Event-ID` header or `after` to go on from the last event received.",
        }
    },
)
def job_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    last_event_id: Annotated[
        int | None, Header(ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
    ] = None,
    after: Annotated[
        int, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
    ] = 0,
    follow: Annotated[bool, Query(description="Keep streaming until the job ends.")] = True,
) -> StreamingResponse:
    service.get_job(session, user, job_id)  # 404 before the stream starts
    feeds: JobFeeds = request.app.state.job_feeds
    events = feeds.stream(
        user,
        job_id,
        max(after, last_event_id or 0),
        follow=follow,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
