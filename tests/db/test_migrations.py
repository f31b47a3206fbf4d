"""Migrations build the schema from empty, match the tables in code, and go down cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
        now = "2026-01-01 00:00:00"
        with engine.begin() as db:
            db.exec_driver_sql(
                "INSERT INTO users (id, username, is_admin, created_at) "
                f"VALUES ('u', 'u', false, '{now}')"
            )
            for job, status, error in (("j1", "failed", "boom"), ("j2", "succeeded", None)):
                db.exec_driver_sql(
                    "INSERT INTO jobs (id, owner_id, kind, spec, status, error, progress, "
                    f"attempt, created_at) VALUES ('{job}', 'u', 'k', '{{}}', '{status}', "
                    f"{'NULL' if error is None else repr(error)}, 0, 0, '{now}')"
                )
            for dataset, job in (("d1", "j1"), ("d2", "gone"), ("d3", "j2")):
                db.exec_driver_sql(
                    "INSERT INTO datasets (id, owner_id, name, kind, origin, origin_ref, status, "
                    "rows, splits, columns, warnings, size_bytes, job_id, created_at) VALUES "
                    f"('{dataset}', 'u', 'n', 'raw', 'x', 'x', 'processing', 0, '{{}}', '[]', "
                    f"'[]', 0, '{job}', '{now}')"
                )
            db.exec_driver_sql(
                "INSERT INTO models (id, owner_id, name, base_model, kind, spec, metrics, "
                f"artifact_key, files, size_bytes, created_at) VALUES ('m', 'u', 'm', 'b', "
                f"'adapter', '{{}}', '{{}}', 'k', '[]', 0, '{now}')"
            )
            for export, job in (("e1", "'j1'"), ("e2", "NULL"), ("e3", "'j2'")):
                db.exec_driver_sql(
                    "INSERT INTO exports (id, owner_id, model_id, job_id, format, destination, "
                    "status, artifact_key, files, size_bytes, created_at) VALUES "
                    f"('{export}', 'u', 'm', {job}, 'adapter', '{{}}', 'running', 'k', '[]', 0, "
                    f"'{now}')"
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
