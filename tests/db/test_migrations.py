"""Migrations build the schema from empty, match the tables in code, and go down cleanly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect

from tests.conftest import create_database, drop_database
from tuneforge.db.session import make_engine, migrate
from tuneforge.db.tables import Base


def test_up_from_empty_matches_the_models_and_down_removes_everything(tmp_path: Path) -> None:
    url = create_database(tmp_path)
    engine = make_engine(url)
    try:
        assert inspect(engine).get_table_names() == []
        migrate(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"users", "api_tokens", "jobs", "job_events", "alembic_version"} <= tables
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        migrate(engine, "base", down=True)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate(engine)  # and up again
        assert set(inspect(engine).get_table_names()) == tables
    finally:
        engine.dispose()
        drop_database(url)


def test_records_left_unfinished_by_ended_jobs_are_settled_on_upgrade(tmp_path: Path) -> None:
    url = create_database(tmp_path)
    engine = make_engine(url)
    try:
        migrate(engine, "0005")
        at_0005 = MetaData()
        at_0005.reflect(engine)
        t = at_0005.tables
        now = datetime(2026, 1, 1, tzinfo=UTC)
        empty = {"created_at": now, "size_bytes": 0}
        with engine.begin() as db:
            db.execute(
                t["users"].insert(),
                [{"id": "u", "username": "u", "is_admin": False, "created_at": now}],
            )
            db.execute(
                t["jobs"].insert(),
                [
                    {
                        "id": job,
                        "owner_id": "u",
                        "kind": "k",
                        "spec": {},
                        "status": status,
                        "error": error,
                        "progress": 0.0,
                        "attempt": 0,
                        "created_at": now,
                    }
                    for job, status, error in (("j1", "failed", "boom"), ("j2", "succeeded", None))
                ],
            )
            db.execute(
                t["datasets"].insert(),
                [
                    {
                        "id": dataset,
                        "owner_id": "u",
                        "name": "n",
                        "kind": "raw",
                        "origin": "x",
                        "origin_ref": "x",
                        "status": "processing",
                        "rows": 0,
                        "splits": {},
                        "columns": [],
                        "warnings": [],
                        "job_id": job,
                        **empty,
                    }
                    for dataset, job in (("d1", "j1"), ("d2", "gone"), ("d3", "j2"))
                ],
            )
            db.execute(
                t["models"].insert(),
                [
                    {
                        "id": "m",
                        "owner_id": "u",
                        "name": "m",
                        "base_model": "b",
                        "kind": "adapter",
                        "spec": {},
                        "metrics": {},
                        "artifact_key": "k",
                        "files": [],
                        **empty,
                    }
                ],
            )
            db.execute(
                t["exports"].insert(),
                [
                    {
                        "id": export,
                        "owner_id": "u",
                        "model_id": "m",
                        "job_id": job,
                        "format": "adapter",
                        "destination": {},
                        "status": "running",
                        "artifact_key": "k",
                        "files": [],
                        **empty,
                    }
                    for export, job in (("e1", "j1"), ("e2", None), ("e3", "j2"))
                ],
            )
        migrate(engine)
        with engine.connect() as db:
            datasets = dict(
                db.exec_driver_sql("SELECT id, status || ':' || error FROM datasets").all()
            )
            exports = dict(
                db.exec_driver_sql("SELECT id, status || ':' || error FROM exports").all()
            )
            left = db.exec_driver_sql("SELECT status FROM datasets WHERE id = 'd3'").scalar()
            running = db.exec_driver_sql("SELECT status FROM exports WHERE id = 'e3'").scalar()
        assert datasets["d1"] == "failed:boom"
        assert datasets["d2"] == "failed:its job ended unfinished"
        assert left == "processing"  # its job succeeded: the worker fills it
        assert exports["e1"] == "failed:boom"
        assert exports["e2"] == "failed:Its export job was deleted."
        assert running == "running"
    finally:
        engine.dispose()
        drop_database(url)


@pytest.mark.timeout(60)  # without the lock, they can also deadlock
def test_servers_starting_together_on_a_new_database_take_turns_migrating(tmp_path: Path) -> None:
    """Pods or compose services that start at once each migrate a new database: one does, the
    others wait for it and find the schema up to date (none fails on a table another made)."""
    url = create_database(tmp_path)
    engines = [make_engine(url) for _ in range(3)]
    failures: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            migrate(engine)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        assert "jobs" in inspect(engines[0]).get_table_names()
    finally:
        for engine in engines:
            engine.dispose()
        drop_database(url)
