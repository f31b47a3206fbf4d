"""The local executor with the real diagnostic worker in real OS processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, JobEvent, User, utcnow
from tuneforge.jobs.kinds.diagnostic import DiagnosticSpec
from tuneforge.jobs.queue import claim_next
from tuneforge.jobs.runner import LocalRunner
from tuneforge.services import accounts
from tuneforge.services import jobs as service
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore
from tuneforge.worker_env import SETTINGS_FILE_ENV

pytestmark = pytest.mark.slow


@pytest.fixture
def factory(settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(settings.resolved_database_url))


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.resolved_storage_url, settings.storage_options)


@pytest.fixture
def admin(factory: sessionmaker[Session]) -> User:
    with transaction(factory) as session:
        return accounts.ensure_user(session, "admin", is_admin=True)


@pytest.fixture
def runners(
    settings: Settings, factory: sessionmaker[Session]
) -> Iterator[Callable[..., LocalRunner]]:
    """Start runners; at the end stop them and kill any worker still alive."""
    started: list[LocalRunner] = []

    def start(**overrides: object) -> LocalRunner:
        runner = LocalRunner(settings.model_copy(update=overrides), factory)
        runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop(terminate_workers=True)
    with transaction(factory) as session:
        workers = session.execute(select(Job.id, Job.worker_pid).where(Job.worker_pid.is_not(None)))
        for job_id, pid in workers:
            try:
                process = psutil.Process(pid)
                if job_id in process.cmdline():
                    process.kill()
            except psutil.Error:
                pass


def submit(factory: sessionmaker[Session], user: User, **spec: object) -> str:
    with transaction(factory) as session:
        spec = DiagnosticSpec(**spec)  # a diagnostic job's kind checks nothing in the settings
        return service.create_job(session, user, Settings(), "diagnostic", spec).id


def read(factory: sessionmaker[Session], job_id: str) -> Job:
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def wait_for(
    factory: sessionmaker[Session], job_id: str, check: Callable[[Job], bool], timeout: float = 20.0
) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = read(factory, job_id)
        if check(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(
                f"job {job_id} is still {job.status} ({job.error}) after {timeout} s"
            )
        time.sleep(0.1)


def events(factory: sessionmaker[Session], job_id: str, type_: str | None = None) -> list[JobEvent]:
    with transaction(factory) as session:
        statement = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        if type_:
            statement = statement.where(JobEvent.type == type_)
        return list(session.scalars(statement))


def running_with_pid(job: Job) -> bool:
    return job.status == "running" and job.worker_pid is not None


def gone(pid: int | None, timeout: float = 5.0) -> bool:
    """Whether the process ends (or is only a zombie) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def wait_until_working(factory: sessionmaker[Session], job_id: str) -> Job:
    """Wait until the worker process has started the job's own code."""
    job = wait_for(factory, job_id, running_with_pid)
    deadline = time.monotonic() + 20
    while not any(
        "started in process" in e.data["message"] for e in events(factory, job_id, "log")
    ):
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.1)
    return job


def test_success_reports_progress_metrics_logs_artifacts_and_result(
    factory, admin, runners, store
) -> None:
    job_id = submit(factory, admin, seconds=2)
    runners()
    job = wait_for(factory, job_id, lambda j: j.status == "succeeded")
    assert job.progress == 1.0 and job.result == {"ticks": 2, "seconds": pytest.approx(2, abs=0.5)}
    assert job.started_at and job.finished_at and job.finished_at > job.started_at
    statuses = [e.data["status"] for e in events(factory, job_id, "status")]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [e.data["progress"] for e in events(factory, job_id, "progress")]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) == 2
    steps = [e.data["step"] for e in events(factory, job_id, "metric")]
    assert steps == [1, 2]
    logs = [e.data["message"] for e in events(factory, job_id, "log")]
    assert logs[-1] == "diagnostic job finished"
    (artifact,) = [e.data for e in events(factory, job_id, "artifact")]
    assert artifact["key"] == f"{admin.id}/diagnostic/{job_id}/report.json"
    stored = json.loads(store.read_bytes(artifact["key"]))
    assert stored["ticks"] == 2 and stored["pid"] == job.worker_pid
    assert artifact["size"] == store.size(artifact["key"])
    # Deleting the job deletes its artifacts.
    with transaction(factory) as session:
        service.delete_job(session, store, admin, job_id)
    assert store.list(f"{admin.id}/diagnostic/{job_id}") == []


def test_failure_is_recorded_with_its_reason(factory, admin, runners) -> None:
    job_id = submit(factory, admin, seconds=5, fail_after=0.5)
    runners()
    job = wait_for(factory, job_id, lambda j: j.status == "failed")
    assert "diagnostic failure" in (job.error or "")
    assert any("Traceback" in e.data["message"] for e in events(factory, job_id, "log"))


def test_cancel_a_running_job(factory, admin, runners) -> None:
    job_id = submit(factory, admin, seconds=60)
    runners()
    job = wait_for(factory, job_id, running_with_pid)
    pid = job.worker_pid
    with transaction(factory) as session:
        assert service.cancel_job(session, admin, job_id).status == "cancelling"
    job = wait_for(factory, job_id, lambda j: j.status == "cancelled", timeout=10)
    assert job.finished_at is not None
    assert gone(pid)


def test_a_worker_that_ignores_cancel_is_killed(factory, admin, runners) -> None:
    job_id = submit(factory, admin, seconds=60, ignore_cancel=True)
    runners(cancel_timeout=1.0)
    wait_until_working(factory, job_id)
    with transaction(factory) as session:
        service.cancel_job(session, admin, job_id)
    job = wait_for(factory, job_id, lambda j: j.status == "cancelled", timeout=10)
    assert "did not stop within 1 s; killed" in (job.error or "")


def test_cancel_a_queued_job_needs_no_worker(factory, admin) -> None:
    job_id = submit(factory, admin, seconds=60)
    with transaction(factory) as session:
        assert service.cancel_job(session, admin, job_id).status == "cancelled"


def test_kill_9_of_the_worker_fails_the_job_as_worker_lost(
    factory, admin, runners, settings
) -> None:
    job_id = submit(factory, admin, seconds=60)
    runner = runners()
    job = wait_for(factory, job_id, running_with_pid)
    os.kill(job.worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    job = wait_for(factory, job_id, lambda j: j.status == "failed", timeout=10)
    assert time.monotonic() - killed_at < 10 < settings.heartbeat_timeout  # not by the heartbeat
    assert job.error == f"worker lost: process {job.worker_pid} was killed by signal 9"
    assert runner.alive
    # The runner goes on running new work.
    next_id = submit(factory, admin, seconds=1)
    wait_for(factory, next_id, lambda j: j.status == "succeeded")


def test_a_hung_worker_is_killed_and_declared_lost(factory, admin, runners) -> None:
    """A worker that is alive but stopped (SIGSTOP) no longer beats its heart."""
    job_id = submit(factory, admin, seconds=60)
    runners(heartbeat_timeout=2.0)
    job = wait_until_working(factory, job_id)
    os.kill(job.worker_pid, signal.SIGSTOP)
    job = wait_for(factory, job_id, lambda j: j.status == "failed", timeout=10)
    assert job.error == "worker lost: no heartbeat for 2 s"
    assert gone(job.worker_pid)


def test_a_silent_worker_elsewhere_is_declared_lost(factory, admin, runners, settings) -> None:
    """A job claimed by a runner on another host whose heartbeat stopped."""
    job_id = submit(factory, admin)
    with transaction(factory) as session:
        job = claim_next(session, "another-host")
        assert job is not None and job.id == job_id
        job.heartbeat_at = utcnow() - timedelta(seconds=settings.heartbeat_timeout + 1)
    runners()
    job = wait_for(factory, job_id, lambda j: j.status == "failed", timeout=5)
    assert job.error == f"worker lost: no heartbeat for {settings.heartbeat_timeout:g} s"


def test_a_new_runner_adopts_a_live_worker(factory, admin, runners) -> None:
    """The server restarts mid-job: the worker goes on and the new runner does not start another."""
    job_id = submit(factory, admin, seconds=4)
    first = runners()
    job = wait_for(factory, job_id, running_with_pid)
    first.stop()
    runners()
    done = wait_for(factory, job_id, lambda j: j.status == "succeeded")
    assert done.worker_pid == job.worker_pid and done.attempt == 0
    starts = [
        e for e in events(factory, job_id, "log") if "started in process" in e.data["message"]
    ]
    assert len(starts) == 1


def test_a_new_runner_settles_a_dead_worker_at_once(factory, admin, runners) -> None:
    job_id = submit(factory, admin, seconds=60)
    first = runners()
    job = wait_for(factory, job_id, running_with_pid)
    first.stop()
    os.kill(job.worker_pid, signal.SIGKILL)
    started = time.monotonic()
    runners(heartbeat_timeout=60.0)
    job = wait_for(factory, job_id, lambda j: j.status == "failed", timeout=5)
    assert time.monotonic() - started < 5
    assert job.error == f"worker lost: process {job.worker_pid} is gone"


def test_concurrency_is_bounded(factory, admin, runners) -> None:
    ids = [submit(factory, admin, seconds=1) for _ in range(3)]
    runners(max_concurrent_jobs=1)
    most = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = [read(factory, i) for i in ids]
        most = max(most, sum(j.status == "running" for j in jobs))
        if all(j.status == "succeeded" for j in jobs):
            break
        time.sleep(0.05)
    assert [read(factory, i).status for i in ids] == ["succeeded"] * 3
    assert most == 1


def test_concurrent_claims_never_share_a_job(factory, admin) -> None:
    ids = {submit(factory, admin) for _ in range(20)}
    claimed: list[list[str]] = [[], [], []]

    def claim(into: list[str]) -> None:
        while True:
            with transaction(factory) as session:
                job = claim_next(session, "host")
            if job is None:
                return
            into.append(job.id)

    threads = [threading.Thread(target=claim, args=(c,)) for c in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for c in claimed for i in c]
    assert sorted(everything) == sorted(ids)


def test_a_worker_runs_without_the_servers_secrets(
    factory, admin, runners, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEFORGE_SECRET_KEY", "server-secret")
    monkeypatch.setenv("TUNEFORGE_PROXY_SECRET", "gateway")
    runners(secret_key="k" * 40)
    job_id = submit(factory, admin, seconds=2)
    job = wait_until_working(factory, job_id)
    env = psutil.Process(job.worker_pid).environ()
    assert "TUNEFORGE_SECRET_KEY" not in env and "TUNEFORGE_PROXY_SECRET" not in env
    assert env["PATH"] and SETTINGS_FILE_ENV in env
    assert not Path(env[SETTINGS_FILE_ENV]).exists()  # read, then removed
    assert wait_for(factory, job_id, lambda j: j.status == "succeeded").result["ticks"] >= 1
