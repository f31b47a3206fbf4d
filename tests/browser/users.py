"""The users of one test on a server that the tests of a process share: made for the test under
unique names, spoken of by role ("admin", "alice", "bob"), and deleted with all they own when
the test ends. An administrator sees everyone's work, so a test's own users are not enough to
keep tests apart: the users of the tests before it must be gone too."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tests.conftest import add_user
from tuneforge.db.repositories.quotas import IN_FLIGHT
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, User
from tuneforge.services.jobs import cancel_job
from tuneforge.settings import Settings

#: How long the jobs a test leaves running may take to stop (a worker is killed after the
#: settings' cancel timeout).
STOP_SECONDS = 60
_serial = itertools.count(1)


class TestUsers:
    """The users one test made on a shared server, by role."""

    __test__ = False  # not a test class

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names: dict[str, str] = {}
        self.tokens: dict[str, str] = {}

    def add(self, role: str, *, admin: bool = False) -> str:
        """A new user for `role` (password `password-{username}`); its API token."""
        name = f"{role}-{next(_serial)}"
        self.names[role] = name
        self.tokens[role] = add_user(self.settings, name, admin=admin)
        return self.tokens[role]

    def username(self, role: str) -> str:
        """The user name of the test's user `role` (made on first use)."""
        if role not in self.names:
            self.add(role)
        return self.names[role]

    def token(self, role: str) -> str:
        self.username(role)
        return self.tokens[role]

    @contextmanager
    def db(self) -> Iterator[Session]:
        engine = make_engine(self.settings.resolved_database_url)
        try:
            with transaction(make_sessionmaker(engine)) as session:
                yield session
        finally:
            engine.dispose()

    def remove(self, *, runner: bool) -> None:
        """Delete the users and all they own; on a server with a `runner`, their unfinished
        jobs are stopped first (a worker must not write for a user that is gone)."""
        names = list(self.names.values())
        if runner:
            with self.db() as session:
                found = session.scalars(select(User).where(User.username.in_(names)))
                users = {user.id: user for user in found}
                queued = select(Job).where(Job.owner_id.in_(users), Job.status.in_(IN_FLIGHT))
                for job in session.scalars(queued).all():
                    if job.status != "cancelling":
                        cancel_job(session, users[job.owner_id], job.id)
            deadline = time.monotonic() + STOP_SECONDS
            while self._unfinished(names):
                assert time.monotonic() < deadline, "a test's jobs did not stop"
                time.sleep(0.2)
        with self.db() as session:
            session.execute(delete(User).where(User.username.in_(names)))

    def _unfinished(self, names: list[str]) -> bool:
        with self.db() as session:
            owners = select(User.id).where(User.username.in_(names))
            statement = select(Job.id).where(Job.owner_id.in_(owners), Job.status.in_(IN_FLIGHT))
            return session.scalars(statement).first() is not None
