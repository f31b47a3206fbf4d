"""Metric values that are not finite numbers (a loss that became NaN) are stored as JSON null,
which every database accepts, and read back as NaN, so the run's health still names them."""

from __future__ import annotations

import math

from sqlalchemy.orm import sessionmaker

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job
from tuneforge.jobs.context import JobContext
from tuneforge.services import accounts, training
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore


def test_a_nan_loss_is_stored_and_flagged(settings: Settings) -> None:
    factory: sessionmaker = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        user = accounts.ensure_user(session, "alice")
        job = Job(owner_id=user.id, kind="train", spec={"learning_rate": 1.0}, status="running")
        session.add(job)
        session.flush()
        session.expunge(job)
    context = JobContext(factory, job, ArtifactStore(settings.resolved_storage_url), settings)
    context.metrics({"loss": 2.5, "grad_norm": 1.0}, step=1)
    context.metrics({"loss": math.nan, "grad_norm": math.inf}, step=2)

    with transaction(factory, read_only=True) as session:
        user = accounts.ensure_user(session, "alice")
        read = training.metrics(session, user, job.id)
    loss = dict(read["series"]["loss"])
    assert loss[1] == 2.5 and math.isnan(loss[2])
    assert math.isnan(dict(read["series"]["grad_norm"])[2])
    assert [flag["code"] for flag in read["health"]][:1] == ["loss_not_finite"]
