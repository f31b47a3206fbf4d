"""Real server processes: a job outlives a killed server, and a killed worker never takes the
server down."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import add_user
from tests.server import server_env, server_process
from tuneforge.client import Client

pytestmark = pytest.mark.slow


def wait(client: Client, job_id: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_job(job_id)
        if check(job):
            return job
        assert time.monotonic() < deadline, f"job is still {job.status}: {job.error}"
        time.sleep(0.1)


def worker_pid(settings, job_id: str) -> int:
    from tuneforge.db.session import make_engine, make_sessionmaker, transaction
    from tuneforge.db.tables import Job

    with transaction(make_sessionmaker(make_engine(settings.resolved_database_url))) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.worker_pid is not None
        return job.worker_pid


def test_a_job_survives_a_killed_server(make_settings) -> None:
    settings = make_settings()
    token = add_user(settings, "admin", admin=True)
    env = server_env(settings)
    with server_process(env) as (url, server), Client(url, token) as client:
        job = client.create_job("diagnostic", {"seconds": 6})
        wait(client, job.id, lambda j: j.status == "running" and j.progress > 0)
        server.kill()  # no chance to clean up
        server.wait()
    with server_process(env) as (url, _), Client(url, token) as client:
        done = client.wait(job.id, timeout=30)
        assert done.status == "succeeded", done.error
        assert done.attempt == 0 and done.result and done.result["ticks"] == 6


def test_kill_9_of_a_worker_fails_its_job_and_the_server_goes_on(make_settings) -> None:
    settings = make_settings()
    token = add_user(settings, "admin", admin=True)
    with server_process(server_env(settings)) as (url, server), Client(url, token) as client:
        job = client.create_job("diagnostic", {"seconds": 60})
        wait(client, job.id, lambda j: j.status == "running" and j.progress > 0)
        os.kill(worker_pid(settings, job.id), signal.SIGKILL)
        failed = wait(client, job.id, lambda j: j.status == "failed", timeout=10)
        assert failed.error and failed.error.startswith("worker lost")
        assert server.poll() is None and client.health()["status"] == "ok"
        after = client.create_job("diagnostic", {"seconds": 1})
        assert client.wait(after.id, timeout=20).status == "succeeded"


def test_a_restarted_server_settles_a_job_whose_worker_died_meanwhile(make_settings) -> None:
    settings = make_settings(heartbeat_timeout=120.0)
    token = add_user(settings, "admin", admin=True)
    env = server_env(settings)
    with server_process(env) as (url, server), Client(url, token) as client:
        job = client.create_job("diagnostic", {"seconds": 60})
        wait(client, job.id, lambda j: j.status == "running" and j.progress > 0)
        pid = worker_pid(settings, job.id)
        server.kill()
        server.wait()
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    with server_process(env) as (url, _), Client(url, token) as client:
        failed = wait(client, job.id, lambda j: j.status == "failed", timeout=10)
        assert failed.error == f"worker lost: process {pid} is gone"
    assert time.monotonic() - started < 30  # long before the 120 s heartbeat timeout
