"""What a Hugging Face import of a user's may download: the server's cap, lowered to what is
left of their storage quota once their other imports in progress have their reservations;
nothing but their own quota for an administrator. Launches hold each other, so two at once
cannot both count the same room."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.data.config import DatasetImport
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Dataset, Export, Job, Model, User
from tuneforge.errors import QuotaExceeded
from tuneforge.jobs.lifecycle import create_job
from tuneforge.jobs.quotas import check_storage, import_budget, usage_of
from tuneforge.jobs.states import transition
from tuneforge.jobs.status import JobStatus
from tuneforge.schemas.quotas import QuotaSet
from tuneforge.services import accounts, datasets, quotas
from tuneforge.settings import Settings


def test_the_import_budget_follows_the_cap_and_the_storage_left(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(hub_import_max_bytes=10_000, quota_storage_bytes=8_000)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        user = accounts.create_user(session, "frank", "password-frank")
        admin = accounts.create_user(session, "root", "password-root", is_admin=True)
        assert import_budget(session, user, settings) == 8_000  # the quota is below the cap
        assert import_budget(session, admin, settings) is None  # defaults spare administrators

        raw = Dataset(
            owner_id=user.id,
            name="d",
            kind="raw",
            origin="upload",
            origin_ref="d.csv",
            status="ready",
            size_bytes=1_500,
        )
        session.add(raw)
        session.flush()
        model = Model(
            owner_id=user.id,
            name="m",
            base_model="tiny",
            kind="adapter",
            spec={},
            artifact_key="k",
            size_bytes=2_000,
        )
        session.add(model)
        session.flush()
        shared = {"model_id": model.id, "format": "adapter", "destination": {}, "status": "done"}
        session.add(Export(owner_id=user.id, artifact_key="e", size_bytes=500, **shared))
        session.add(  # reuses the first one's files: takes no more room
            Export(owner_id=user.id, artifact_key="e", size_bytes=500, reused_from="x", **shared)
        )
        session.flush()
        assert import_budget(session, user, settings) == 8_000 - 4_000

        quotas.store_quota(session, settings, user, QuotaSet(storage_bytes=100_000))
        assert import_budget(session, user, settings) == 10_000  # now the cap is lower
        quotas.store_quota(session, settings, user, QuotaSet(storage_bytes=3_000))
        with pytest.raises(QuotaExceeded, match="Delete some of them"):
            import_budget(session, user, settings)  # over quota: nothing more

        quotas.store_quota(session, settings, admin, QuotaSet(storage_bytes=5_000))
        assert import_budget(session, admin, settings) == 5_000  # an administrator's own quota


def _import(session: Session, user: User, settings: Settings, name: str) -> Job:
    """Start importing `tester/<name>` from the Hub for `user`; its job."""
    request = DatasetImport(source="huggingface", path=f"tester/{name}")
    return session.get_one(Job, datasets.import_dataset(session, user, settings, request).job_id)


def test_imports_in_progress_share_what_is_left_until_they_end(
    make_settings: Callable[..., Settings],
) -> None:
    """Each import reserves its budget with its job: the next one gets what is left after it
    (never the whole remainder again), uploads and launches count it, and it is released
    whether the import succeeds, fails or is cancelled."""
    settings = make_settings(hub_import_max_bytes=12_000, quota_storage_bytes=20_000)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        user = accounts.create_user(session, "frank", "password-frank")
        first = _import(session, user, settings, "a")
        second = _import(session, user, settings, "b")
        budgets = [job.spec["budget_bytes"] for job in (first, second)]
        assert budgets == [12_000, 8_000]  # the cap, then what the first left
        assert usage_of(session, user).storage_reserved == 20_000

        with pytest.raises(QuotaExceeded) as refused:
            _import(session, user, settings, "c")
        message = refused.value.message
        assert "imports in progress have reserved 19.5 KiB more until they end" in message
        assert "wait for an import to end" in message
        assert refused.value.details == {
            "quota": "storage_bytes",
            "limit": 20_000,
            "used": 0,
            "reserved": 20_000,
        }
        with pytest.raises(QuotaExceeded, match="and this adds 1 bytes"):
            check_storage(session, user, settings, incoming=1)  # an upload counts them too

        transition(session, first, JobStatus.RUNNING)
        assert usage_of(session, user).storage_reserved == 20_000  # running: still held
        transition(session, first, JobStatus.SUCCEEDED)
        assert usage_of(session, user).storage_reserved == 8_000
        third = _import(session, user, settings, "c")
        assert third.spec["budget_bytes"] == 12_000

        transition(session, second, JobStatus.RUNNING)
        transition(session, second, JobStatus.FAILED, error="too large")
        assert usage_of(session, user).storage_reserved == 12_000
        transition(session, third, JobStatus.CANCELLED)
        assert usage_of(session, user).storage_reserved == 0
        assert quotas.quota_view(session, user, settings).storage_bytes_reserved == 0


def _race(
    settings: Settings, user_id: str, launch: Callable[[Session, User], object]
) -> tuple[object, object]:
    """Launch once in a transaction that stays open while a second launch starts in another
    thread; both outcomes (what `launch` returned, or its `QuotaExceeded`), once the second
    has had to wait for the first to commit."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    outcome: list[object] = []

    def second_launch() -> None:
        try:
            with transaction(factory) as session:
                outcome.append(launch(session, session.get_one(User, user_id)))
        except QuotaExceeded as exc:
            outcome.append(exc)

    with transaction(factory) as session:
        first = launch(session, session.get_one(User, user_id))
        racer = threading.Thread(target=second_launch)
        racer.start()
        racer.join(timeout=1.5)
        assert racer.is_alive(), "the second launch must wait for the first"
    racer.join(timeout=30)
    assert len(outcome) == 1, outcome
    return first, outcome[0]


def test_two_launches_at_once_cannot_both_take_the_last_place(
    make_settings: Callable[..., Settings],
) -> None:
    """The second launch waits for the first to commit, then counts its job: without the hold
    on PostgreSQL, both would count none in flight and both would be queued."""
    settings = make_settings()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        # An administrator (diagnostic jobs are theirs) with one place for jobs.
        user = accounts.create_user(session, "frank", "password-frank", is_admin=True)
        quotas.store_quota(session, settings, user, QuotaSet(concurrent_jobs=1))
        user_id = user.id

    def launch(session: Session, user: User) -> object:
        return create_job(session, user, settings, "diagnostic", {"seconds": 1}).id

    first, second = _race(settings, user_id, launch)
    assert isinstance(second, QuotaExceeded), second
    with transaction(factory) as session:
        assert [job.id for job in session.scalars(select(Job))] == [first]


def test_two_imports_at_once_cannot_both_reserve_the_same_room(
    make_settings: Callable[..., Settings],
) -> None:
    """The second import's budget is counted once the first has committed its reservation:
    without the hold on PostgreSQL, both would see all 20,000 bytes left and take 12,000."""
    settings = make_settings(hub_import_max_bytes=12_000, quota_storage_bytes=20_000)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        user_id = accounts.create_user(session, "frank", "password-frank").id

    def launch(session: Session, user: User) -> object:
        return _import(session, user, settings, "rows").spec["budget_bytes"]

    assert _race(settings, user_id, launch) == (12_000, 8_000)
