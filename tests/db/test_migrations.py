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
