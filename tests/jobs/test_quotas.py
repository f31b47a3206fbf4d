"""What a Hugging Face import of a user's may download: the server's cap, lowered to what is
left of their storage quota; nothing but their own quota for an administrator."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Dataset, Export, Job, Model, User
from tuneforge.errors import QuotaExceeded
from tuneforge.jobs.lifecycle import create_job
from tuneforge.jobs.quotas import import_budget
from tuneforge.schemas.quotas import QuotaSet
from tuneforge.services import accounts, quotas
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
        assert import_budget(session, user, settings) == 0  # over quota: nothing more

        quotas.store_quota(session, settings, admin, QuotaSet(storage_bytes=5_000))
        assert import_budget(session, admin, settings) == 5_000  # an administrator's own quota


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
    spec = {"seconds": 1}
    outcome: list[object] = []

    def second_launch() -> None:
        try:
            with transaction(factory) as session:
                user = session.get(User, user_id)
                assert user is not None
                outcome.append(create_job(session, user, settings, "diagnostic", spec).id)
        except QuotaExceeded as exc:
            outcome.append(exc)

    with transaction(factory) as session:
        user = session.get(User, user_id)
        assert user is not None
        first = create_job(session, user, settings, "diagnostic", spec)
        racer = threading.Thread(target=second_launch)
        racer.start()
        racer.join(timeout=1.5)
        assert racer.is_alive(), "the second launch must wait for the first"
    racer.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], QuotaExceeded), outcome
    with transaction(factory) as session:
        assert [job.id for job in session.scalars(select(Job))] == [first.id]
