"""The worker process (`python -m tuneforge.jobs JOB_ID`) runs one job to its end.

The runner claims the job (queued -> running) and starts this process in a session of its own, so
the job outlives the server that started it. This process beats the job's heartbeat, turns SIGTERM
into a cancel request, and settles the job's final status itself.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.session import make_engine, make_sessionmaker, retrying, transaction
from tuneforge.db.tables import Job
from tuneforge.errors import DomainError, JobCancelled
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.failure import failure_fields
from tuneforge.jobs.kind import kind_of
from tuneforge.jobs.states import StaleTransition, transition
from tuneforge.jobs.status import JobStatus
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore
from tuneforge.storage.disk_full import disk_full
from tuneforge.worker_env import read_worker_settings


def _load(path: str) -> Callable[[Any, JobContext], Any]:
    module, _, name = path.partition(":")
    fn: Callable[[Any, JobContext], Any] = getattr(importlib.import_module(module), name)
    return fn


def _beat(ctx: JobContext, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            ctx.heartbeat()
        except Exception as exc:  # a database hiccup must not kill the job
            print(f"heartbeat failed: {exc}", file=sys.stderr)


def run(job_id: str, settings: Settings, terminate: threading.Event) -> JobStatus:
    """Run job `job_id` (already claimed and `running`) and settle its final status."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        if job is None:
            return JobStatus.FAILED
        if job.status == JobStatus.CANCELLING:
            transition(session, job, JobStatus.CANCELLED, error="cancelled before it started")
        if job.status != JobStatus.RUNNING:
            return JobStatus(job.status)
        session.expunge(job)
    store = ArtifactStore(settings.resolved_storage_url, settings.storage_options)
    ctx = JobContext(factory, job, store, settings)
    ctx.cancel_event = terminate
    stop = threading.Event()
    beat = threading.Thread(
        target=_beat, args=(ctx, settings.heartbeat_interval, stop), daemon=True
    )
    beat.start()
    target, fields = JobStatus.SUCCEEDED, dict[str, Any]()
    try:
        kind = kind_of(job.kind)
        spec = kind.validate(job.spec)
        outcome = kind.result.model_validate(_load(kind.worker)(spec, ctx))
        fields = {"result": outcome.model_dump(mode="json")}
        if ctx.cancel_requested:
            target = JobStatus.CANCELLED
    except JobCancelled as exc:
        target, fields = JobStatus.CANCELLED, {"error": str(exc)}
    except DomainError as exc:  # the user's data or request: the message says it all
        ctx.log(exc.message, level="error")
        target, fields = JobStatus.FAILED, failure_fields(exc)
    except Exception as exc:
        ctx.log(traceback.format_exc(), level="error")
        full = disk_full(exc, settings.data_dir)
        if full is not None:
            ctx.log(full.message, level="error")
        reason = full.message if full is not None else f"{type(exc).__name__}: {exc}"
        target, fields = JobStatus.FAILED, {"error": reason}
    finally:
        stop.set()

    def settle(session: Session) -> JobStatus:
        row = session.get(Job, job_id, populate_existing=True)
        assert row is not None
        final = target
        if row.status == JobStatus.CANCELLING and target is JobStatus.SUCCEEDED:
            final = JobStatus.CANCELLED
        try:
            transition(session, row, final, **fields)
        except StaleTransition:  # the runner settled it first (e.g. it gave up on us)
            return JobStatus(row.status)
        return final

    # The work is done: a database that restarts meanwhile is waited for, not a lost job.
    return retrying(factory, settle, seconds=settings.heartbeat_timeout)


def main(job_id: str, terminate: threading.Event) -> int:
    """Run the job with the runner's settings; the exit code says whether it succeeded."""
    settings = read_worker_settings()
    return 0 if run(job_id, settings, terminate) is JobStatus.SUCCEEDED else 1
