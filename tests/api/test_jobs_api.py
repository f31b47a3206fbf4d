"""Jobs through the API: lifecycle with a real runner, Server-Sent Events and their resumption."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from tests.conftest import add_user, bearer


def parse_sse(text: str) -> list[dict[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if not fields:  # a keep-alive comment
            continue
        events.append(
            {"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])}
        )
    return events


def wait_status(
    client: TestClient, job_id: str, headers: dict[str, str], status: str, timeout: float = 20
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] == status:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job still {job['status']}")


def test_a_job_runs_and_streams_its_events_resumably(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True)
    admin = bearer(add_user(settings, "admin", admin=True))
    job = client.post(
        "/api/v1/jobs", json={"kind": "diagnostic", "spec": {"seconds": 2}}, headers=admin
    ).json()
    assert job["status"] == "queued" and job["spec"]["seconds"] == 2
    # Following the stream returns when the job ends, with everything in order.
    stream = client.get(f"/api/v1/jobs/{job['id']}/events", headers=admin)
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(stream.text)
    assert events[-1]["event"] == "end"
    body = events[:-1]
    ids = [int(e["id"]) for e in body]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    statuses = [e["data"]["data"]["status"] for e in body if e["event"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert {"progress", "metric", "log"} <= {e["event"] for e in body}
    # Resuming after an id gives exactly the later events, by header or by query.
    middle = ids[len(ids) // 2]
    resumed = parse_sse(
        client.get(
            f"/api/v1/jobs/{job['id']}/events", headers={**admin, "Last-Event-ID": str(middle)}
        ).text
    )
    assert [int(e["id"]) for e in resumed[:-1]] == [i for i in ids if i > middle]
    by_query = parse_sse(
        client.get(f"/api/v1/jobs/{job['id']}/events?after={middle}", headers=admin).text
    )
    assert by_query == resumed
    done = client.get(f"/api/v1/jobs/{job['id']}", headers=admin).json()
    assert done["status"] == "succeeded" and done["result"]["ticks"] == 2
    # A finished job can be deleted, and is gone afterwards.
    assert client.delete(f"/api/v1/jobs/{job['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=admin).status_code == 404


def test_cancel_and_the_moves_that_make_no_sense(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True)
    admin = bearer(add_user(settings, "admin", admin=True))
    job = client.post(
        "/api/v1/jobs", json={"kind": "diagnostic", "spec": {"seconds": 60}}, headers=admin
    ).json()
    wait_status(client, job["id"], admin, "running")
    deleting = client.delete(f"/api/v1/jobs/{job['id']}", headers=admin)
    assert deleting.status_code == 409
    assert "cancel it before deleting" in deleting.json()["error"]["message"]
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=admin).status_code == 200
    cancelled = wait_status(client, job["id"], admin, "cancelled", timeout=10)
    assert cancelled["error"]
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=admin)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_list_filters_and_pages(make_client, settings) -> None:
    client = make_client(auth="local")
    admin = bearer(add_user(settings, "admin", admin=True))
    ids = [
        client.post("/api/v1/jobs", json={"kind": "diagnostic"}, headers=admin).json()["id"]
        for _ in range(3)
    ]
    client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=admin)
    listed = client.get("/api/v1/jobs?limit=2", headers=admin).json()
    assert listed["total"] == 3 and [j["id"] for j in listed["items"]] == ids[::-1][:2]
    queued = client.get("/api/v1/jobs?status=queued", headers=admin).json()
    assert sorted(j["id"] for j in queued["items"]) == sorted(ids[1:])
    assert client.get("/api/v1/jobs?kind=train", headers=admin).json()["total"] == 0
    bad = client.get("/api/v1/jobs?status=sleeping", headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["details"]["problems"][0]["field"]
