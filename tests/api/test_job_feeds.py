"""One poller per followed job: however many follow a job, the web process reads its new events
once per poll, and each subscriber still gets every event once, in order (a late one its replay
from the database first, one that fell behind by catching up from the database)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from tests.own_loop import run_in_own_loop
from tuneforge.api import job_feeds
from tuneforge.api.job_feeds import JobFeeds
from tuneforge.api.stopping import Stopping
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, JobEvent, User
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.states import transition
from tuneforge.jobs.status import JobStatus
from tuneforge.services import accounts
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

POLL = 0.05


class Run:
    """A running job of alice's, reported to through its own engine (as a worker does), and
    followed through another one whose reads of `job_events` are counted."""

    def __init__(self, settings: Settings) -> None:
        self.writer = make_sessionmaker(make_engine(settings.resolved_database_url))
        with transaction(self.writer) as session:
            self.user: User = accounts.ensure_user(session, "alice")
            job = Job(owner_id=self.user.id, kind="diagnostic", spec={}, status="running")
            session.add(job)
            session.flush()
            session.expunge_all()
        self.job_id = job.id
        self.context = JobContext(
            self.writer, job, ArtifactStore(settings.resolved_storage_url), settings
        )
        engine = make_engine(settings.resolved_database_url)
        self.reads: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def _count(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "job_events" in statement:
                self.reads.append(statement)

        self.sessions: sessionmaker[Session] = make_sessionmaker(engine)

    async def log(self, count: int, pause: float = 0.0) -> None:
        for step in range(count):
            await asyncio.to_thread(self.context.log, f"step {step}")
            await asyncio.sleep(pause)

    async def finish(self) -> None:
        def move() -> None:
            with transaction(self.writer) as session:
                job = session.get(Job, self.job_id)
                assert job is not None
                transition(session, job, JobStatus.SUCCEEDED)

        await asyncio.to_thread(move)

    def event_ids(self) -> list[int]:
        with transaction(self.writer, read_only=True) as session:
            statement = select(JobEvent.id).where(JobEvent.job_id == self.job_id)
            return list(session.scalars(statement.order_by(JobEvent.id)))

    def follow(self, feeds: JobFeeds, after: int = 0) -> Subscriber:
        return Subscriber(
            feeds.stream(self.user, self.job_id, after, follow=True, disconnected=_never)
        )


async def _never() -> bool:
    return False


class Subscriber:
    def __init__(self, stream: AsyncIterator[str]) -> None:
        self.stream = stream
        self.ids: list[int] = []
        self.ended = False

    async def read(self, until: Callable[[Subscriber], bool] = lambda _: False) -> None:
        async for text in self.stream:
            if text.startswith("event: end"):
                self.ended = True
            self.ids += [int(i) for i in re.findall(r"^id: (\d+)$", text, re.MULTILINE)]
            if until(self):
                return


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_subscribers_of_a_job_share_one_poller_and_each_gets_every_event(
    settings: Settings,
) -> None:
    run = Run(settings)

    async def scenario() -> tuple[list[Subscriber], Subscriber, int, float, JobFeeds]:
        feeds = JobFeeds(run.sessions, poll=POLL, stopping=Stopping())
        await run.log(3)
        early = [run.follow(feeds) for _ in range(10)]
        reading = [asyncio.create_task(s.read()) for s in early]
        await wait_until(lambda: all(len(s.ids) == 3 for s in early))
        assert len(feeds.feeds) == 1
        run.reads.clear()
        started = asyncio.get_running_loop().time()
        await run.log(10, pause=0.02)
        # A late subscriber resumes after the fifth event: its replay, then the shared feed.
        resumed_after = run.event_ids()[4]
        late = run.follow(feeds, after=resumed_after)
        reading.append(asyncio.create_task(late.read()))
        await run.log(10, pause=0.02)
        await asyncio.sleep(5 * POLL)
        elapsed = asyncio.get_running_loop().time() - started
        polls = len(run.reads)
        await run.finish()
        await asyncio.wait_for(asyncio.gather(*reading), 30)
        assert feeds.feeds == {}  # the job ended: its feed stopped
        return early, late, resumed_after, polls / (elapsed / POLL), feeds

    early, late, resumed_after, reads_per_poll, _ = run_in_own_loop(scenario())
    ids = run.event_ids()
    assert len(ids) == 24  # 23 logs and the move to succeeded
    for subscriber in early:
        assert subscriber.ids == ids and subscriber.ended
    assert late.ids == [i for i in ids if i > resumed_after] and late.ended
    # One reader for eleven subscribers: about one query a poll (and the late one's replay),
    # where a poller each made eleven.
    assert reads_per_poll < 2, reads_per_poll


def test_the_last_subscriber_to_leave_stops_the_poller(settings: Settings) -> None:
    run = Run(settings)

    async def scenario() -> None:
        feeds = JobFeeds(run.sessions, poll=POLL, stopping=Stopping())
        await run.log(2)
        first, second = run.follow(feeds), run.follow(feeds)
        await first.read(until=lambda s: len(s.ids) == 2)
        await second.read(until=lambda s: len(s.ids) == 2)
        feed = feeds.feeds[run.job_id]
        await first.stream.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(3 * POLL)
        assert feeds.feeds == {run.job_id: feed} and not feed.task.done()
        await second.stream.aclose()  # type: ignore[attr-defined]
        await wait_until(feed.task.done)
        assert feeds.feeds == {}
        run.reads.clear()
        await asyncio.sleep(5 * POLL)
        assert run.reads == []  # nobody follows: nothing polls

    run_in_own_loop(scenario())


def test_a_subscriber_that_falls_behind_catches_up_from_the_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_feeds, "BACKLOG", 3)
    run = Run(settings)

    async def scenario() -> tuple[Subscriber, Subscriber]:
        feeds = JobFeeds(run.sessions, poll=POLL, stopping=Stopping())
        await run.log(1)
        slow, steady = run.follow(feeds), run.follow(feeds)
        await slow.read(until=lambda s: len(s.ids) == 1)
        reading = asyncio.create_task(steady.read())
        await run.log(12)  # the slow one reads none of them meanwhile: more than its backlog
        await wait_until(lambda: len(steady.ids) == 13)
        await run.finish()
        await asyncio.wait_for(asyncio.gather(reading, slow.read()), 30)
        return slow, steady

    slow, steady = run_in_own_loop(scenario())
    ids = run.event_ids()
    assert slow.ids == ids and slow.ended
    assert steady.ids == ids and steady.ended
