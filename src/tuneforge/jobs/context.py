"""What a worker uses to report: progress, metrics, logs and artifacts, all persisted as events."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.repositories.jobs import lock_job
from tuneforge.db.session import retrying, transaction
from tuneforge.db.tables import Job, JobEvent, utcnow
from tuneforge.errors import JobCancelled
from tuneforge.jobs.events import (
    ArtifactEvent,
    JobEventData,
    LogEvent,
    MetricEvent,
    ProgressEvent,
    Sample,
    SamplesEvent,
)
from tuneforge.jobs.status import ACTIVE, JobStatus
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore, artifact_prefix


class JobContext:
    """The worker's handle on its job. Thread-safe; every report is committed at once."""

    def __init__(
        self, factory: sessionmaker[Session], job: Job, store: ArtifactStore, settings: Settings
    ) -> None:
        self.job_id = job.id
        self.owner_id = job.owner_id
        self.kind = job.kind
        self.attempt = job.attempt
        self.settings = settings
        self.store = store
        self._factory = factory
        self.cancel_event = threading.Event()

    # -- reporting ---------------------------------------------------------------------------
    def _event(self, event: JobEventData, **job_fields: Any) -> None:
        """Record `event`; a database that restarts meanwhile is waited for (as long as the
        runner waits for a heartbeat), so the job goes on."""

        def write(session: Session) -> None:
            lock_job(session, self.job_id)  # the job's events commit in the order of their ids
            session.add(JobEvent(job_id=self.job_id, type=event.type, data=event.data()))
            if job_fields:
                session.execute(update(Job).where(Job.id == self.job_id).values(**job_fields))

        retrying(self._factory, write, seconds=self.settings.heartbeat_timeout)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far along the job is (0..1) and, optionally, what it is doing."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._event(
            ProgressEvent(progress=fraction, message=message), progress=fraction, message=message
        )

    def metric(self, name: str, value: float, step: int) -> None:
        """Record one point of the named series `name`."""
        self.metrics({name: value}, step)

    def metrics(self, values: dict[str, float], step: int) -> None:
        """Record several series at the same step."""
        self._event(MetricEvent(step=step, values={k: float(v) for k, v in values.items()}))

    def samples(self, step: int, items: list[dict[str, str]]) -> None:
        """Record generated answers (`prompt`, `answer`, optional `reference`) at `step`."""
        self._event(SamplesEvent(step=step, items=[Sample.model_validate(i) for i in items]))

    def log(self, message: str, level: str = "info") -> None:
        """Log a line; `level` is debug, info, warning or error."""
        self._event(LogEvent.model_validate({"level": level, "message": message}))

    def artifact(self, name: str, source: bytes | Path) -> str:
        """Store a file the job produced under `{owner}/{kind}/{job}/{name}`; returns its key."""
        key = f"{artifact_prefix(self.owner_id, self.kind, self.job_id)}/{name}"
        if isinstance(source, bytes):
            self.store.write_bytes(key, source)
            size = len(source)
        else:
            self.store.put_file(key, source)
            size = source.stat().st_size
        self._event(ArtifactEvent(name=name, key=key, size=size))
        return key

    # -- control -----------------------------------------------------------------------------
    @property
    def cancel_requested(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if the job was asked to stop; call it between units of work."""
        if self.cancel_event.is_set():
            raise JobCancelled("cancelled on request")

    def transaction(self) -> AbstractContextManager[Session]:
        """A database transaction, for workers that record what they made (a dataset, a model)."""
        return transaction(self._factory)

    def heartbeat(self) -> None:
        """Prove the worker is alive, and learn whether a cancel was requested."""
        with transaction(self._factory) as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.status.in_([s.value for s in ACTIVE]))
                .values(heartbeat_at=utcnow())
            )
            status = session.get(Job, self.job_id, populate_existing=True)
            if status is not None and status.status == JobStatus.CANCELLING:
                self.cancel_event.set()
