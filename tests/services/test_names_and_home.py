"""Names for lists come in a fixed number of owner-scoped queries, and the home page's
overview is the user's own, administrators included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Dataset, Job, Model, User
from tuneforge.services import accounts
from tuneforge.services.home import Stage, overview
from tuneforge.services.names import names_for_jobs, run_title
from tuneforge.settings import Settings


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings.resolved_database_url)
    with transaction(make_sessionmaker(engine)) as session:
        yield session


def _dataset(session: Session, owner: User, name: str, kind: str = "processed") -> Dataset:
    dataset = Dataset(
        owner_id=owner.id, name=name, kind=kind, origin="upload", origin_ref=name, status="ready"
    )
    session.add(dataset)
    session.flush()
    return dataset


def _job(session: Session, owner: User, kind: str, spec: dict[str, Any], status: str) -> Job:
    job = Job(owner_id=owner.id, kind=kind, spec=spec, status=status)
    session.add(job)
    session.flush()
    return job


def _model(session: Session, owner: User, name: str, job: Job | None = None) -> Model:
    model = Model(
        owner_id=owner.id,
        name=name,
        base_model="tiny-random-gemma3",
        kind="adapter",
        job_id=job.id if job else None,
        spec={},
        artifact_key=name,
    )
    session.add(model)
    session.flush()
    return model


def test_names_take_three_queries_whatever_the_list_and_stay_the_owners(
    session: Session,
) -> None:
    alice = accounts.create_user(session, "alice", "password-alice")
    bob = accounts.create_user(session, "bob", "password-bob")
    mine, theirs = _dataset(session, alice, "capitals"), _dataset(session, bob, "secret data")
    jobs = []
    for number in range(10):
        run = _job(session, alice, "train", {"dataset_id": mine.id, "base_model": "b"}, "running")
        tune = _model(session, alice, f"tune {number}", run)
        jobs.append(run)
        check = {"model": "b", "compare_with": tune.id, "dataset_id": mine.id}
        jobs.append(_job(session, alice, "evaluate", check, "succeeded"))
    jobs.append(
        _job(session, alice, "train", {"dataset_id": theirs.id, "base_model": "b"}, "queued")
    )
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    names = names_for_jobs(session, alice, jobs)
    event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3, statements
    assert names.datasets == {mine.id: "capitals"}  # bob's name is not read for alice
    assert [run_title(job, names) for job in jobs[:4:2]] == ["tune 0", "tune 1"]
    assert names.models[jobs[1].spec["compare_with"]] == "tune 0"
    assert run_title(jobs[-1], names) == "b on (deleted dataset)"


def test_the_overview_is_the_users_own_even_for_an_administrator(session: Session) -> None:
    alice = accounts.create_user(session, "alice", "password-alice")
    admin = accounts.create_user(session, "admin", "password-admin", is_admin=True)
    data = _dataset(session, alice, "capitals")
    _job(session, alice, "train", {"dataset_id": data.id, "base_model": "b"}, "succeeded")
    model = _model(session, alice, "capital-tune")

    seen = overview(session, alice)
    assert (seen.stage, seen.next.action, seen.next.subject_id) == (Stage.TRY, "try", model.id)
    assert [d.name for d in seen.datasets] == ["capitals"]

    theirs = overview(session, admin)
    assert (theirs.stage, theirs.next.action) == (Stage.DATA, "upload")
    assert theirs.datasets == [] and theirs.runs == [] and theirs.models == []


def test_a_runs_automatic_check_leaves_trying_the_model_as_the_next_step(session: Session) -> None:
    alice = accounts.create_user(session, "alice", "password-alice")
    model = _model(session, alice, "capital-tune")
    check = {"model": model.id, "compare_with": "tiny-random-gemma3", "automatic": True}
    _job(session, alice, "evaluate", check, "succeeded")
    assert (overview(session, alice).stage, overview(session, alice).next.action) == (
        Stage.TRY,
        "try",
    )
    _job(session, alice, "evaluate", {**check, "automatic": False}, "succeeded")
    assert overview(session, alice).next.action == "export"
