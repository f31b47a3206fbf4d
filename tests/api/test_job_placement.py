"""Where a job runs and why a queued one waits, through the API."""

from __future__ import annotations

import socket

import pytest

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer


def _diagnostic(client, headers, seconds: float = 0.5) -> str:
    response = client.post(
        "/api/v1/jobs", json={"kind": "diagnostic", "spec": {"seconds": seconds}}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_queued_jobs_on_a_server_without_a_runner_wait_for_a_worker(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=False)
    admin = bearer(add_user(settings, "admin", admin=True))
    first, second = _diagnostic(client, admin), _diagnostic(client, admin)
    job = client.get(f"/api/v1/jobs/{first}", headers=admin).json()
    assert job["waiting"] == "Waiting for a worker (this server runs no jobs itself)."
    assert job["executor"] is job["node"] is job["resources"] is None
    listed = {j["id"]: j for j in client.get("/api/v1/jobs", headers=admin).json()["items"]}
    assert listed[second]["waiting"] == (
        "Waiting for a worker (this server runs no jobs itself); 1 queued job goes first."
    )
    assert listed[first]["waiting"] == job["waiting"]
    cancelled = client.post(f"/api/v1/jobs/{first}/cancel", headers=admin).json()
    assert cancelled["status"] == "cancelled" and cancelled["waiting"] is None
    after = client.get(f"/api/v1/jobs/{second}", headers=admin).json()
    assert after["waiting"] == "Waiting for a worker (this server runs no jobs itself)."


@pytest.mark.timeout(90)
def test_a_job_shows_where_it_runs_and_the_next_one_why_it_waits(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True, max_concurrent_jobs=1)
    admin = bearer(add_user(settings, "admin", admin=True))
    first = _diagnostic(client, admin, seconds=4)
    running = wait_status(client, first, admin, "running")
    second = _diagnostic(client, admin)
    waiting = client.get(f"/api/v1/jobs/{second}", headers=admin).json()
    assert waiting["status"] == "queued"
    assert waiting["waiting"] == "Waiting for a free slot: 1 job running, 1 at once on this server."
    assert running["executor"] == "local" and running["node"] == socket.gethostname()
    assert running["resources"] == {
        "cpus": 0.5,
        "gpus": 0.0,
        "memory_gb": None,
        "accelerator": None,
    }
    assert running["waiting"] is None
    done = wait_status(client, second, admin, "succeeded", timeout=60)
    assert done["waiting"] is None and done["executor"] == "local"
    assert client.get(f"/api/v1/jobs/{first}", headers=admin).json()["status"] == "succeeded"
