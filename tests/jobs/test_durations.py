"""A job's duration is the total of its attempts: a run that failed, waited in the queue and was
resumed counts both running spells and not the wait."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, JobEvent
from tuneforge.jobs.durations import run_seconds
from tuneforge.jobs.states import transition
from tuneforge.jobs.status import JobStatus
from tuneforge.services import accounts
from tuneforge.settings import Settings
from tuneforge.ui.formatting import duration
from tuneforge.ui.jobs import job_rows
from tuneforge.ui.run_format import span

SPELL = 1.0  # seconds of each running spell
WAIT = 2.0  # seconds in the queue between them


@pytest.fixture
def factory(settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(settings.resolved_database_url))


def move(factory: sessionmaker[Session], job_id: str, target: JobStatus) -> None:
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        transition(session, job, target, error="worker lost" if target == "failed" else None)


def read(factory: sessionmaker[Session], job_id: str) -> tuple[Job, list[JobEvent]]:
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        events = list(
            session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        )
        session.expunge_all()
    return job, events


@pytest.mark.timeout(60)
def test_a_resumed_runs_duration_is_the_total_of_its_attempts(
    factory: sessionmaker[Session], settings: Settings
) -> None:
    with transaction(factory) as session:
        user = accounts.ensure_user(session, "alice")
        job = Job(owner_id=user.id, kind="diagnostic", spec={}, status="queued")
        session.add(job)
        session.flush()
        job_id = job.id
    assert run_seconds(*read(factory, job_id)) is None  # not started yet
    move(factory, job_id, JobStatus.RUNNING)
    time.sleep(SPELL)
    move(factory, job_id, JobStatus.FAILED)
    move(factory, job_id, JobStatus.QUEUED)  # resumed: waits for a worker
    time.sleep(WAIT)
    move(factory, job_id, JobStatus.RUNNING)
    time.sleep(SPELL / 2)
    job, events = read(factory, job_id)
    running = run_seconds(job, events)  # while it runs: so far
    assert running is not None and 1.5 * SPELL <= running < 1.5 * SPELL + 0.9
    time.sleep(SPELL / 2)
    move(factory, job_id, JobStatus.SUCCEEDED)
    job, events = read(factory, job_id)
    total = run_seconds(job, events)
    assert total is not None and 2 * SPELL <= total < 2 * SPELL + 0.9  # not the wait
    last = run_seconds(job)  # without its events: only the newest attempt is known
    assert last is not None and SPELL <= last < SPELL + 0.9
    assert duration(job, events) == span(total) != duration(job)
    with transaction(factory) as session:  # the Jobs list shows the total too
        rows, _ = job_rows(session, accounts.ensure_user(session, "alice"), settings, None, 10)
    assert [row["duration"] for row in rows] == [span(total)]
