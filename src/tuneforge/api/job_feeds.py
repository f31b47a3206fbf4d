"""Job event streams: one poller per followed job in the web process, shared by its subscribers.

Twenty browsers following one training used to poll the database twenty times every
`poll_interval`. Now the first subscriber of a job starts its feed: one task that reads the job's
new events (and whether it has ended) every `poll_interval`, renders each event once, and puts it
in every subscriber's queue. The last subscriber to leave stops it.

A subscriber joins the feed, then reads its own replay (the events after its `Last-Event-ID`)
from the database once the feed knows where it starts (the `READY` signal): every event is then
in the replay or in the feed or both, and the subscriber skips the ids it has already sent, so
it sends each event once, in order. A subscriber more than `BACKLOG` events behind (a client that
stopped reading) leaves the feed and catches up from the database the same way.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.api.stopping import Stopping
from tuneforge.db.session import transaction
from tuneforge.db.tables import JobEvent, User
from tuneforge.errors import NotFound
from tuneforge.schemas.jobs import JobEventPublic
from tuneforge.services import jobs as service

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
KEEPALIVE_SECONDS = 15.0
#: Events read in one query, by a replay or a feed.
PAGE = 500
#: How many events a subscriber may have waiting before it leaves the feed and catches up.
BACKLOG = 5_000


@dataclass(frozen=True)
class Frame:
    """One event as a stream sends it."""

    id: int
    text: str

    @classmethod
    def of(cls, event: JobEvent) -> Frame:
        public = JobEventPublic.model_validate(event)
        data = public.model_dump_json()
        return cls(public.id, f"id: {public.id}\nevent: {public.type}\ndata: {data}\n\n")


class Signal(enum.Enum):
    READY = "ready"  # the feed knows where it starts: read the replay now
    END = "end"  # the job has ended, and the feed handed out all its events
    LAGGED = "lagged"  # too far behind: leave the feed and catch up from the database
    CLOSED = "closed"  # the feed stopped (the server is stopping, or it failed)


Item = Frame | Signal


class _Feed:
    """One job's poller and its subscribers' queues."""

    def __init__(self, feeds: JobFeeds, job_id: str) -> None:
        self.queues: set[asyncio.Queue[Item]] = set()
        self.cursor: int | None = None  # the newest event id handed out
        self.task = asyncio.create_task(self._run(feeds, job_id))

    def join(self) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        if self.cursor is not None:
            queue.put_nowait(Signal.READY)
        self.queues.add(queue)
        return queue

    def _send(self, item: Item) -> None:
        for queue in list(self.queues):
            if isinstance(item, Frame) and queue.qsize() >= BACKLOG:
                self.queues.discard(queue)  # it catches up from the database
                queue.put_nowait(Signal.LAGGED)
            else:
                queue.put_nowait(item)

    async def _run(self, feeds: JobFeeds, job_id: str) -> None:
        try:
            while not feeds.stopping.is_set():
                try:
                    if self.cursor is None:
                        self.cursor = await feeds.read(service.latest_event_id, job_id)
                        self._send(Signal.READY)
                    ended, frames = await feeds.read(_followed, job_id, self.cursor)
                except OperationalError:  # the database restarts: try again at the next poll
                    ended, frames = False, []
                for frame in frames:
                    self.cursor = frame.id
                    self._send(frame)
                if frames and (ended or len(frames) == PAGE):
                    continue  # the rest at once
                if ended:
                    self._send(Signal.END)
                    return
                await feeds.stopping.sleep(feeds.poll)
        except Exception:
            log.exception("The event feed of job %s failed; its streams end", job_id)
        finally:
            feeds.forget(job_id, self)
            self._send(Signal.CLOSED)  # streams still waiting end (after END, none is)


def _followed(session: Session, job_id: str, after: int) -> tuple[bool, list[Frame]]:
    ended, events = service.followed_events(session, job_id, after=after, limit=PAGE)
    return ended, [Frame.of(event) for event in events]


def _replayed(session: Session, user: User, job_id: str, after: int) -> list[Frame]:
    _, events = service.job_events(session, user, job_id, after=after, limit=PAGE)
    return [Frame.of(event) for event in events]


def _end(job_id: str) -> str:
    return f"event: end\ndata: {json.dumps({'job_id': job_id})}\n\n"


class JobFeeds:
    """The web process's followed jobs, each with one feed while anyone follows it."""

    def __init__(self, sessions: sessionmaker[Session], *, poll: float, stopping: Stopping) -> None:
        self.sessions = sessions
        self.poll = poll
        self.stopping = stopping
        self.feeds: dict[str, _Feed] = {}

    async def read(
        self, work: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(session, ...)` in a read-only transaction, on a worker thread."""

        def run() -> T:
            with transaction(self.sessions, read_only=True) as session:
                return work(session, *args, **kwargs)

        return await run_in_threadpool(run)

    def forget(self, job_id: str, feed: _Feed) -> None:
        if self.feeds.get(job_id) is feed:
            del self.feeds[job_id]

    def _join(self, job_id: str) -> tuple[_Feed, asyncio.Queue[Item]]:
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = _Feed(self, job_id)
        return feed, feed.join()

    def _leave(self, job_id: str, feed: _Feed, queue: asyncio.Queue[Item]) -> None:
        feed.queues.discard(queue)
        if not feed.queues:
            self.forget(job_id, feed)
            feed.task.cancel()

    async def _replay(self, user: User, job_id: str, after: int) -> AsyncIterator[Frame]:
        """The events after `after` from the database, page by page, read as `user`."""
        while not self.stopping.is_set():
            try:
                frames = await self.read(_replayed, user, job_id, after)
            except NotFound:  # deleted meanwhile: its feed ends too
                return
            except OperationalError:  # the database restarts: try again at the next poll
                await self.stopping.sleep(self.poll)
                continue
            for frame in frames:
                yield frame
            if len(frames) < PAGE:
                return
            after = frames[-1].id

    async def stream(
        self,
        user: User,
        job_id: str,
        after: int,
        *,
        follow: bool,
        disconnected: Callable[[], Awaitable[bool]],
    ) -> AsyncIterator[str]:
        """The stream of a job that `user` may read (checked before): its events after `after`,
        then (with `follow`) the new ones until it ends, and `end`. A stopping server ends it
        without `end`: the job goes on, and clients resume from the last event id once the
        server is back."""
        cursor = after
        if not follow:
            async for frame in self._replay(user, job_id, cursor):
                yield frame.text
            if not self.stopping.is_set():
                yield _end(job_id)
            return
        feed, queue = self._join(job_id)
        quiet = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), self.poll)
                except TimeoutError:
                    if await disconnected():
                        return
                    quiet += self.poll
                    if quiet >= KEEPALIVE_SECONDS:
                        yield ": keepalive\n\n"
                        quiet = 0.0
                    continue
                quiet = 0.0
                if item is Signal.READY:
                    async for frame in self._replay(user, job_id, cursor):
                        cursor = frame.id
                        yield frame.text
                elif item is Signal.LAGGED:
                    self._leave(job_id, feed, queue)
                    feed, queue = self._join(job_id)
                elif item is Signal.END:
                    yield _end(job_id)
                    return
                elif item is Signal.CLOSED:
                    return
                elif isinstance(item, Frame) and item.id > cursor:
                    cursor = item.id
                    yield item.text
        finally:
            self._leave(job_id, feed, queue)
