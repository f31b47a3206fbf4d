"""Jobs and their events, scoped to their owner."""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVarTuple

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Job, JobEvent

Ts = TypeVarTuple("Ts")


class Report(NamedTuple):
    """An event's id, type and data, without the rest of its row."""

    id: int
    type: str
    data: dict[str, Any]


class JobRepository(OwnedRepository[Job]):
    model = Job
    noun = "job"

    def search(
        self, *, status: str | None, kind: str | None, offset: int, limit: int
    ) -> tuple[list[Job], int]:
        statement = select(Job)
        if status:
            statement = statement.where(Job.status == status)
        if kind:
            statement = statement.where(Job.kind == kind)
        return self.page(
            statement, offset=offset, limit=limit, order=(Job.created_at.desc(), Job.id)
        )

    def events(
        self, job: Job, *, after: int, limit: int, types: set[str] | None = None
    ) -> list[JobEvent]:
        return events_after(self.session, job.id, after=after, limit=limit, types=types)

    def reports(self, job: Job, *, after: int, limit: int, types: set[str]) -> list[Report]:
        """Like `events`, as plain rows of id, type and data: for reads that go through all of
        a job's events (a run's metric series), where building an ORM object for each row took
        most of the time."""
        statement = _following(select(JobEvent.id, JobEvent.type, JobEvent.data), job.id, after)
        statement = statement.where(JobEvent.type.in_(sorted(types))).limit(limit)
        return [Report(*row) for row in self.session.execute(statement)]

    def last_event(self, job: Job, type_: str) -> JobEvent | None:
        """The newest event of `type_` the job reported (its latest metrics, say)."""
        statement = select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == type_)
        return self.session.scalars(statement.order_by(JobEvent.id.desc()).limit(1)).first()

    def status_moves(self, jobs: list[Job]) -> dict[str, list[JobEvent]]:
        """The status events of each of `jobs` (read through this repository), oldest first, in
        one query: what a resumed job's total running time is summed from."""
        if not jobs:
            return {}
        statement = select(JobEvent).where(
            JobEvent.job_id.in_(sorted({job.id for job in jobs})), JobEvent.type == "status"
        )
        moves: dict[str, list[JobEvent]] = {job.id: [] for job in jobs}
        for event in self.session.scalars(statement.order_by(JobEvent.id)):
            moves[event.job_id].append(event)
        return moves


# -- a job's events, across owners: whoever calls has checked the job's owner ------------------
def _following(statement: Select[*Ts], job_id: str, after: int) -> Select[*Ts]:
    """`statement` narrowed to the job's events with ids above `after`, oldest first."""
    return statement.where(JobEvent.job_id == job_id, JobEvent.id > after).order_by(JobEvent.id)


def events_after(
    session: Session, job_id: str, *, after: int, limit: int, types: set[str] | None = None
) -> list[JobEvent]:
    """The job's events with ids above `after`, oldest first, at most `limit`."""
    statement = _following(select(JobEvent), job_id, after)
    if types:
        statement = statement.where(JobEvent.type.in_(sorted(types)))
    return list(session.scalars(statement.limit(limit)))


def latest_event_id(session: Session, job_id: str) -> int:
    """The id of the job's newest event (0 when it has none)."""
    return session.scalar(select(func.max(JobEvent.id)).where(JobEvent.job_id == job_id)) or 0


def job_status(session: Session, job_id: str) -> str | None:
    """The job's status, or None once it is deleted."""
    return session.scalar(select(Job.status).where(Job.id == job_id))


# -- the executor's reads, across owners ---------------------------------------------------------
ACTIVE = ("running", "cancelling")


def active_jobs(session: Session) -> list[Job]:
    """Jobs a worker is running (or stopping), wherever it runs."""
    return list(session.scalars(select(Job).where(Job.status.in_(ACTIVE))))


def cancelling_on(session: Session, host: str) -> list[Job]:
    """Jobs asked to stop whose worker runs on `host`."""
    return list(
        session.scalars(select(Job).where(Job.status == "cancelling", Job.worker_host == host))
    )


def active_count_on(session: Session, host: str) -> int:
    """How many jobs run on `host`."""
    count = session.scalar(
        select(func.count()).where(Job.status.in_(ACTIVE), Job.worker_host == host)
    )
    return count or 0


def active_count(session: Session) -> int:
    """How many jobs run (or stop) anywhere."""
    return session.scalar(select(func.count()).where(Job.status.in_(ACTIVE))) or 0


def queued_ahead(session: Session, job: Job) -> int:
    """How many queued jobs, of any owner, an executor takes before `job` (the same order as
    `oldest_queued`)."""
    earlier = (Job.created_at < job.created_at) | (
        (Job.created_at == job.created_at) & (Job.id < job.id)
    )
    count = session.scalar(select(func.count()).where(Job.status == "queued", earlier))
    return count or 0


def oldest_queued(session: Session) -> Job | None:
    """The job waiting longest that no runner has reserved (a Ray runner reserves the jobs it
    waits for resources for: `ray_jobs.reserve`), locked against other runners where the
    database can (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite ignores it)."""
    return session.scalars(
        select(Job)
        .where(Job.status == "queued", Job.worker_host.is_(None))
        .order_by(Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()


def lock_job(session: Session, job_id: str) -> None:
    """Hold the job's row until this transaction ends (PostgreSQL; SQLite's writers take the
    whole database anyway). Whoever adds a job's event locks its row first (a status move
    updates it), so the job's events commit in the order of their ids: PostgreSQL hands out
    ids at insert, and a stream that saw a later id would never read an earlier one committed
    after it."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())


def set_worker_pid(session: Session, job_id: str, pid: int) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(worker_pid=pid))
