"""Shared fixtures: a fresh migrated database per test (SQLite, or PostgreSQL when
`TUNEFORGE_TEST_DATABASE_URL` is set), settings that point at it, and API clients."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url, select, text

from tests.fine_tuned import tiny_adapter, tool_calling_model  # noqa: F401  (fixtures for every test folder)
from tests.models import models_cache_dir
from tuneforge.api.app import create_app
from tuneforge.db.session import make_engine, make_sessionmaker, migrate, transaction
from tuneforge.db.tables import Job
from tuneforge.models.catalog import catalog
from tuneforge.services import accounts
from tuneforge.settings import Settings

PG_URL = os.environ.get("TUNEFORGE_TEST_DATABASE_URL")
#: A test reaches the database through these fixtures (directly or through others, such as
#: `settings` and `make_client`), or makes databases itself (tests/db).
DATABASE_FIXTURES = frozenset({"database_url", "database_template"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL (CI's second pass) run only the tests a database can change; the others
    (model conversion, metrics, engines...) already ran, identically, in the SQLite pass. So do
    the browser tests (the pages call the services that the API tests check on PostgreSQL) and
    the tests marked `learning` (minutes of training whose database work, a job and its
    metrics, the training API tests check), and the tests marked `trains` (each trainer's
    runs through the API: the same database work again), `heavy` (models run through the API
    for images and exports: the same records as the lighter API tests) or `surface` (the CLI and
    the Python client against a server: the API's database work, which its own tests check).
    CLI commands that open the database themselves (`admin`, `worker`) stay in both passes, and
    so do the fault tests of tests/faults that use a database, whatever their marks: what a
    failure leaves behind is the database's to keep."""
    _longest_files_first(items)
    if not PG_URL:
        return
    skip = pytest.mark.skip(reason="uses no database: it runs in the SQLite pass")
    sqlite_only = pytest.mark.skip(reason="runs in the SQLite pass only")
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        marked = {"browser", "trains", "heavy", "surface"} & {
            mark.name for mark in item.iter_markers()
        }
        uses_database = bool(fixtures & DATABASE_FIXTURES)
        if item.nodeid.startswith("tests/faults/") and uses_database:
            continue
        if marked or item.get_closest_marker("learning"):
            item.add_marker(sqlite_only)
        elif not uses_database and not item.nodeid.startswith("tests/db/"):
            item.add_marker(skip)


def _longest_files_first(items: list[pytest.Item]) -> None:
    """Order the files so the long ones start first: files with training runs, exports,
    browsers or other slow tests, then the rest, each group in its usual order. `make test`
    hands whole files to its processes in this order, so no long file is left running alone at
    the end."""
    long_marks = {"slow", "trains", "heavy", "browser"}
    long_files = {
        item.nodeid.split("::")[0]
        for item in items
        if long_marks & {mark.name for mark in item.iter_markers()}
    }
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in long_files)


def _admin_engine() -> Any:
    assert PG_URL
    url = make_url(PG_URL).set(database="postgres").render_as_string(False)
    return make_engine(url).execution_options(isolation_level="AUTOCOMMIT")


def create_database(directory: Path, template: str | None = None) -> str:
    """A new database (a copy of `template` when given) and its URL."""
    if not PG_URL:
        path = directory / f"tuneforge-{uuid.uuid4().hex[:8]}.db"
        if template:
            shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    base = make_url(PG_URL)
    name = f"{base.database}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    with admin.connect() as c:
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        c.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    admin.dispose()
    return base.set(database=name).render_as_string(False)


def drop_database(url: str) -> None:
    if PG_URL:
        admin = _admin_engine()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once per test session, copied for each test."""
    url = create_database(tmp_path_factory.mktemp("template"))
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url if PG_URL else make_url(url).database or ""
    drop_database(url)


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database for one test."""
    url = create_database(tmp_path, database_template)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """One model cache for every test: the tokenizer is converted from the GGUF once."""
    return models_cache_dir()


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str, models_dir: Path) -> Callable[..., Settings]:
    """Settings for a test: fast heartbeats and polling, data in `tmp_path`."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "model_cache_dir": models_dir,
            "database_url": database_url,
            "heartbeat_interval": 0.5,
            # The product's default: a busy 2-core machine can starve a worker for seconds.
            "heartbeat_timeout": 30.0,
            "cancel_timeout": 3.0,
            "poll_interval": 0.2,
            "auth": "none",
            "run_jobs": False,
            "warm_models": [],  # no model loads at start, except in the test of warming
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def library_settings(tmp_path: Path, models_dir: Path) -> Settings:
    """Settings for code that runs as a worker's library code does, without the web side: data
    and models as `settings` have them, and no database (its URL names a file in a folder that
    does not exist, so any query fails). A test that uses it needs no PostgreSQL pass."""
    return Settings(
        data_dir=tmp_path / "data",
        model_cache_dir=models_dir,
        database_url=f"sqlite:///{tmp_path / 'no-database' / 'none.db'}",
        warm_models=[],
    )


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    """Start the app (without the UI) with settings overrides; closed after the test."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides), ui=False))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        _stop_workers(client)
        client.__exit__(None, None, None)


def _stop_workers(client: TestClient) -> None:
    """Kill the workers a test left running (a failed test must not leave a training run
    eating the CPU of the tests after it): workers outlive their server by design."""
    with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
        pids = session.scalars(
            select(Job.worker_pid).where(
                Job.status.in_(["running", "cancelling"]), Job.worker_pid.is_not(None)
            )
        ).all()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def add_user(settings: Settings, username: str, *, admin: bool = False) -> str:
    """Create a user with password `password-{username}` and return a new API token."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        user = accounts.create_user(session, username, f"password-{username}", is_admin=admin)
        _, secret = accounts.create_token(session, user, "tests")
    return secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Path:
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma3")
    assert entry is not None
    return model_dir(entry, models_dir)


@pytest.fixture(scope="session")
def tiny_vision_model(models_dir: Path) -> Path:
    """`tiny-random-gemma3-vision`'s directory (built once per cache)."""
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma3-vision")
    assert entry is not None
    return model_dir(entry, models_dir)


@pytest.fixture(scope="session")
def tiny_gemma4_model(models_dir: Path) -> Path:
    """`tiny-random-gemma4`'s directory (built once per cache)."""
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma4")
    assert entry is not None
    return model_dir(entry, models_dir)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An S3 service on loopback (moto's server), for storage and export tests."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
