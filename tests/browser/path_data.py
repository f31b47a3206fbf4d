"""A studio without a job runner, and the rows a user leaves along the path (bring data → train
→ try → evaluate → export), made fast: datasets through the API, jobs, models and exports
written straight into the database as the workers would have left them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.browser.users import TestUsers
from tests.server import running_server, server_env
from tuneforge.db.tables import Export, Job, JobEvent, Model, User
from tuneforge.jobs.events import JobEventData
from tuneforge.settings import Settings


@dataclass(frozen=True)
class QuietStudio:
    """A server whose jobs stay as the test leaves them (no runner), as one test sees it: its
    users by role (`alice`, `bob`: made for the test when it first names them,
    tests/browser/users.py)."""

    url: str
    settings: Settings
    users: TestUsers

    def username(self, role: str) -> str:
        return self.users.username(role)

    def api(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.users.token(role)}"},
            timeout=30,
        )

    @contextmanager
    def db(self) -> Iterator[Session]:
        with self.users.db() as session:
            yield session

    def user_id(self, role: str) -> str:
        with self.db() as session:
            name = self.username(role)
            return session.scalars(select(User.id).where(User.username == name)).one()


@pytest.fixture(scope="session")
def quiet_server(shared_settings: Callable[[], Settings]) -> Iterator[tuple[str, Settings]]:
    """`tuneforge serve` without a job runner, shared by the tests of a process."""
    settings = shared_settings()
    with running_server(server_env(settings, run_jobs=False), timeout=60) as url:
        yield url, settings


@pytest.fixture
def quiet_studio(quiet_server: tuple[str, Settings]) -> Iterator[QuietStudio]:
    url, settings = quiet_server
    users = TestUsers(settings)
    yield QuietStudio(url, settings, users)
    users.remove(runner=False)


QUESTIONS = [(f"What is the capital of country number {i}?", f"City {i}.") for i in range(12)]


def upload_dataset(
    studio: QuietStudio,
    role: str,
    name: str,
    rows: list[tuple[str, str]] = QUESTIONS,
) -> dict[str, Any]:
    """A raw dataset of questions and answers, uploaded as a JSON lines file."""
    lines = "\n".join(json.dumps({"question": q, "answer": a}) for q, a in rows)
    with studio.api(role) as api:
        response = api.post(
            "/datasets", files={"file": ("capitals.jsonl", lines.encode())}, data={"name": name}
        )
    assert response.status_code == 201, response.text
    dataset: dict[str, Any] = response.json()
    return dataset


def process_dataset(
    studio: QuietStudio, role: str, raw: dict[str, Any], name: str
) -> dict[str, Any]:
    """The raw dataset processed (at once: it is small) with a test split."""
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}, "name": name}
    with studio.api(role) as api:
        response = api.post(f"/datasets/{raw['id']}/process", json=config)
    assert response.status_code == 201, response.text
    processed: dict[str, Any] = response.json()
    assert processed["status"] == "ready"
    return processed


def add_job(studio: QuietStudio, role: str, kind: str, spec: dict[str, Any], **fields: Any) -> str:
    with studio.db() as session:
        job = Job(owner_id=studio.user_id(role), kind=kind, spec=spec, **fields)
        session.add(job)
        session.flush()
        return job.id


def set_job(studio: QuietStudio, job_id: str, **fields: Any) -> None:
    with studio.db() as session:
        job = session.get(Job, job_id)
        assert job is not None
        for name, value in fields.items():
            setattr(job, name, value)


def add_event(studio: QuietStudio, job_id: str, event: JobEventData) -> None:
    """An event as the job's worker would report it."""
    with studio.db() as session:
        session.add(JobEvent(job_id=job_id, type=event.type, data=event.data()))


def add_model(
    studio: QuietStudio, role: str, name: str, dataset_id: str, job_id: str | None
) -> str:
    """A model row as a finished run leaves it (its files are not needed by these pages)."""
    with studio.db() as session:
        model = Model(
            owner_id=studio.user_id(role),
            name=name,
            base_model="tiny-random-gemma3",
            kind="adapter",
            dataset_id=dataset_id,
            job_id=job_id,
            spec={},
            metrics={"loss": 1.25},
            artifact_key=f"fixture/{name}/model",
            files=[],
            size_bytes=1234,
        )
        session.add(model)
        session.flush()
        return model.id


def add_export(studio: QuietStudio, role: str, model_id: str) -> str:
    with studio.db() as session:
        export = Export(
            owner_id=studio.user_id(role),
            model_id=model_id,
            format="gguf",
            quantization="q8_0",
            destination={"kind": "download"},
            status="succeeded",
            artifact_key=f"fixture/exports/{model_id}",
        )
        session.add(export)
        session.flush()
        return export.id
