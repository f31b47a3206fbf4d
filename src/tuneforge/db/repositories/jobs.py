"""Jobs and their events, scoped to their owner."""

from __future__ import annotations

from sqlalchemy import select

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Job, JobEvent


class JobRepository(OwnedRepository[Job]):
    model = Job

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
        statement = select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.id > after)
        if types:
            statement = statement.where(JobEvent.type.in_(sorted(types)))
        return list(self.session.scalars(statement.order_by(JobEvent.id).limit(limit)))
