"""SQLite settings that let the server and its worker processes share one database file."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from tuneforge.db.session import make_engine, make_sessionmaker, migrate, transaction
from tuneforge.db.tables import User


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_reads_do_not_wait_for_a_writer_and_see_committed_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        session.add(User(username="before"))
    with transaction(factory) as writer:  # holds the write lock until the block ends
        writer.add(User(username="during"))
        writer.flush()
        started = time.monotonic()
        with transaction(factory, read_only=True) as reader:
            names = reader.scalars(text("SELECT username FROM users")).all()
        assert time.monotonic() - started < 1.0
        assert names == ["before"]  # not the writer's uncommitted row
