"""Engine, sessions and migrations. SQLite runs in WAL mode so workers and server share it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # No request ever waits for a connection (they are cheap here): one that waited while
        # another request held the write lock could starve that request of its thread.
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, max_overflow=-1
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # A transaction that may write takes the write lock up front: a read that later
            # writes can then never fail on a snapshot that another process (a worker) changed
            # in between. Read-only transactions (live views polling) take no lock at all.
            read_only = connection.get_execution_options().get("read_only", False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], *, read_only: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    `read_only` promises no writes: on SQLite it then waits for no other writer.
    """
    with factory() as session, session.begin():
        if read_only:
            session.connection(execution_options={"read_only": True})
        yield session


def retrying(factory: sessionmaker[Session], work: Callable[[Session], T], *, seconds: float) -> T:
    """`work(session)` in a transaction, run again while the database cannot be reached (it
    restarts, or dropped the connection) for up to `seconds`. A failed try was rolled back, so
    `work` starts afresh; `pool_pre_ping` gives the next try a live connection."""
    deadline = time.monotonic() + seconds
    pause = 0.1
    while True:
        try:
            with transaction(factory) as session:
                return work(session)
        except OperationalError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


#: The PostgreSQL advisory lock that migrations take (any fixed number: "TFMIGRAT").
MIGRATION_LOCK = 0x54464D4947524154


def migrate(engine: Engine, revision: str = "head", *, down: bool = False) -> None:
    """Bring the schema to `revision` with Alembic (upgrade runs on every start).

    On PostgreSQL the migration holds an advisory lock until it commits, so servers and workers
    that start together on a new database (pods, compose services) take turns: the first
    migrates, the others then find the schema up to date."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
