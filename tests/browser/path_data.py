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

from tests.conftest import add_user
from tests.server import running_server, server_env
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Export, Job, JobEvent, Model, User
from tuneforge.jobs.events import JobEventData
from tuneforge.settings import Settings


@dataclass(frozen=True)
class QuietStudio:
    """A server whose jobs stay as the test leaves them (no runner), with `alice` and `bob`."""

    url: str
    settings: Settings
    tokens: dict[str, str]

    def api(self, username: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.tokens[username]}"},
            timeout=30,
        )

    @contextmanager
    def db(self) -> Iterator[Session]:
        factory = make_sessionmaker(make_engine(self.settings.resolved_database_url))
        with transaction(factory) as session:
            yield session

    def user_id(self, username: str) -> str:
        with self.db() as session:
            return session.scalars(select(User.id).where(User.username == username)).one()


@pytest.fixture
def quiet_studio(make_settings: Callable[..., Settings]) -> Iterator[QuietStudio]:
    settings = make_settings(auth="local")
    with running_server(server_env(settings, run_jobs=False), timeout=60) as url:
        tokens = {name: add_user(settings, name) for name in ("alice", "bob")}
        yield QuietStudio(url, settings, tokens)


QUESTIONS = [(f"What is the capital of country number {i}?", f"City {i}.") for i in range(12)]


def upload_dataset(
    studio: QuietStudio,
    username: str,
    name: str,
    rows: list[tuple[str, str]] = QUESTIONS,
) -> dict[str, Any]:
    """A raw dataset of questions and answers, uploaded as a JSON lines file."""
    lines = "\n".join(json.dumps({"question": q, "answer": a}) for q, a in rows)
    with studio.api(username) as api:
        response = api.post(
            "/datasets", files={"file": ("capitals.jsonl", lines.encode())}, data={"name": name}
        )
    assert response.status_code == 201, response.text
    dataset: dict[str, Any] = response.json()
    return dataset


def process_dataset(
    studio: QuietStudio, username: str, raw: dict[str, Any], name: str
) -> dict[str, Any]:
    """The raw dataset processed (at once: it is small) with a test split."""
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}, "name": name}
    with studio.api(username) as api:
        response = api.post(f"/datasets/{raw['id']}/process", json=config)
    assert response.status_code == 201, response.text
    processed: dict[str, Any] = response.json()
    assert processed["status"] == "ready"
    return processed


def add_job(
    studio: QuietStudio, username: str, kind: str, spec: dict[str, Any], **fields: Any
) -> str:
    with studio.db() as session:
        job = Job(owner_id=studio.user_id(username), kind=kind, spec=spec, **fields)
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
    studio: QuietStudio, username: str, name: str, dataset_id: str, job_id: str | None
) -> str:
    """A model row as a finished run leaves it (its files are not needed by these pages)."""
    with studio.db() as session:
        model = Model(
            owner_id=studio.user_id(username),
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


def add_export(studio: QuietStudio, username: str, model_id: str) -> str:
    with studio.db() as session:
        export = Export(
            owner_id=studio.user_id(username),
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
