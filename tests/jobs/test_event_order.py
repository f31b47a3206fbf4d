"""A job's events commit in the order of their ids, so a live stream (which reads on from the
last id it saw) misses none: a worker's report waits while a status move of the same job (a
cancel from the web process) is still uncommitted, instead of committing a later id first."""

from __future__ import annotations

import threading

from sqlalchemy import select

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, JobEvent
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.states import transition
from tuneforge.jobs.status import JobStatus
from tuneforge.services import accounts
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore


def test_a_report_waits_for_a_status_move_in_flight(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        user = accounts.ensure_user(session, "alice")
        job = Job(owner_id=user.id, kind="train", spec={}, status="running")
        session.add(job)
        session.flush()
        session.expunge(job)
    context = JobContext(factory, job, ArtifactStore(settings.resolved_storage_url), settings)
    reported = threading.Event()

    def report() -> None:
        context.log("step 7")
        reported.set()

    worker = threading.Thread(target=report)
    with transaction(factory) as session:
        moving = session.get(Job, job.id)
        assert moving is not None
        transition(session, moving, JobStatus.CANCELLING, error="cancelled by the user")
        session.flush()
        worker.start()
        assert not reported.wait(1.0)  # the report waits for the move to commit
    worker.join(timeout=30)
    assert reported.is_set()
    with transaction(factory, read_only=True) as session:
        statement = select(JobEvent.type).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
        assert list(session.scalars(statement)) == ["status", "log"]
    engine.dispose()
