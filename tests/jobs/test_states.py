"""The state machine: every allowed move works, every other move is refused and changes nothing."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, JobEvent
from tuneforge.jobs.states import InvalidTransition, StaleTransition, transition
from tuneforge.jobs.status import ALLOWED, JobStatus
from tuneforge.services import accounts
from tuneforge.settings import Settings

PAIRS = list(itertools.product(JobStatus, JobStatus))
EXPECTED_ALLOWED = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelling"),
    ("running", "queued"),
    ("cancelling", "cancelled"),
    ("cancelling", "failed"),
    ("failed", "queued"),
    ("cancelled", "queued"),
}


@pytest.fixture
def factory(settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(settings.resolved_database_url))


def _job(factory: sessionmaker[Session], status: JobStatus) -> str:
    with transaction(factory) as session:
        user = accounts.ensure_user(session, "alice")
        job = Job(owner_id=user.id, kind="diagnostic", spec={}, status=status.value)
        session.add(job)
        session.flush()
        return job.id


def test_the_table_is_the_documented_one() -> None:
    allowed = {(a.value, b.value) for a, targets in ALLOWED.items() for b in targets}
    assert allowed == EXPECTED_ALLOWED


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_move(factory: sessionmaker[Session], current: JobStatus, target: JobStatus) -> None:
    job_id = _job(factory, current)
    allowed = (current.value, target.value) in EXPECTED_ALLOWED
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        if allowed:
            transition(session, job, target, error="why" if target == "failed" else None)
        else:
            with pytest.raises(InvalidTransition):
                transition(session, job, target)
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()
        if allowed:
            assert job.status == target.value
            assert [e.data["status"] for e in events] == [target.value]
            assert events[0].data["previous"] == current.value
            if target in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
                assert job.finished_at is not None
            if target is JobStatus.RUNNING:
                assert job.started_at is not None and job.heartbeat_at is not None
            if target is JobStatus.QUEUED:
                assert job.attempt == 1 and job.finished_at is None
            if target is JobStatus.SUCCEEDED:
                assert job.progress == 1.0
        else:
            assert job.status == current.value
            assert events == []


def test_a_stale_read_loses_the_race(factory: sessionmaker[Session]) -> None:
    """Two parties read `running`; the first to move wins, the second is told, nothing breaks."""
    job_id = _job(factory, JobStatus.RUNNING)
    reads = []
    for _ in range(2):
        with factory() as session:
            read = session.get(Job, job_id)
            assert read is not None
            session.expunge(read)
            reads.append(read)
    a, b = reads
    with transaction(factory) as session:
        transition(session, session.merge(a, load=False), JobStatus.SUCCEEDED)
    with pytest.raises(StaleTransition), transaction(factory) as session:
        transition(session, session.merge(b, load=False), JobStatus.FAILED, error="late")
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and job.error is None


def test_a_cancel_that_races_the_runners_claim_asks_the_running_job_to_stop(
    factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from tuneforge.services import jobs as service

    job_id = _job(factory, JobStatus.QUEUED)
    read = service.get_job

    def read_then_claimed(session: Session, user: object, job_id: str) -> Job:
        job = read(session, user, job_id)  # type: ignore[arg-type]
        # A runner claims the job after the cancel read it as queued.
        claim = update(Job).where(Job.id == job_id).values(status="running")
        session.execute(claim.execution_options(synchronize_session=False))
        return job

    monkeypatch.setattr(service, "get_job", read_then_claimed)
    with transaction(factory) as session:
        user = accounts.ensure_user(session, "alice")
        job = service.cancel_job(session, user, job_id)
        assert job.status == JobStatus.CANCELLING
    with transaction(factory) as session:
        assert session.get(Job, job_id).status == "cancelling"  # type: ignore[union-attr]
