"""The Python client against a real server process (and a dropped stream against a fake one)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import add_user
from tests.server import running_server, server_env
from tuneforge.client import ApiError, Client
from tuneforge.schemas.quotas import QuotaSet
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = make_settings()
    add_user(settings, "ada", admin=True)
    with running_server(server_env(settings)) as url:
        yield url


def test_jobs_events_and_resume(server: str) -> None:
    with Client.login(server, "ada", "password-ada") as tf:
        assert tf.health()["status"] == "ok"
        assert tf.me()["username"] == "ada"
        assert tf.quota().concurrent_jobs_limit is None  # an administrator: no limits by default
        limited = tf.set_user_quota("ada", QuotaSet(concurrent_jobs=10, jobs_per_day=500))
        assert limited.concurrent_jobs_limit == 10 and limited.own.jobs_per_day == 500
        assert tf.user_quota("ada") == tf.quota() == limited
        with pytest.raises(ApiError) as missing:
            tf.user_quota("nobody")
        assert missing.value.status == 404
        job = tf.create_job("diagnostic", {"seconds": 2})
        assert job.kind == "diagnostic"
        assert job.spec["seconds"] == 2
        assert job.status == "queued"

        events = list(tf.events(job.id))
        types = [e["type"] for e in events]
        assert types[0] == "status"
        assert types[-1] == "end"
        assert "progress" in types
        assert types.index("progress") > 0
        ids = [e["id"] for e in events[:-1]]
        assert ids == sorted(set(ids)), "event ids must increase"
        statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
        assert statuses == ["queued", "running", "succeeded"]

        final = tf.wait(job.id, timeout=30)
        assert final.status == "succeeded"
        assert final.progress == 1.0
        assert final.result is not None and final.result["ticks"] >= 2

        middle = ids[len(ids) // 2]
        resumed = list(tf.events(job.id, after=middle, follow=False))
        assert [e["id"] for e in resumed[:-1]] == [i for i in ids if i > middle]
        assert resumed[-1]["type"] == "end"

        listed = tf.list_jobs(kind="diagnostic")
        assert listed.total == 1
        assert [j.id for j in listed.items] == [job.id]
        assert tf.list_jobs(status="running").total == 0
        assert tf.get_job(job.id).status == "succeeded"

        tf.delete_job(job.id)
        with pytest.raises(ApiError) as missing:
            tf.get_job(job.id)
        assert missing.value.status == 404
        assert missing.value.code == "not_found"
        assert str(missing.value) == missing.value.message
        assert job.id in str(missing.value)


def test_cancel_tokens_and_auth_errors(server: str) -> None:
    with Client.login(server, "ada", "password-ada") as tf:
        job = tf.create_job("diagnostic", {"seconds": 60})
        cancelled = tf.cancel_job(job.id)
        assert cancelled.status in ("cancelled", "cancelling")
        assert tf.wait(job.id, timeout=30).status == "cancelled"
        with pytest.raises(ApiError) as conflict:
            tf.cancel_job(job.id)
        assert conflict.value.status == 409
        assert conflict.value.code == "conflict"

        created = tf.create_token("script")
        assert created["token"].startswith("tf_")
        assert "script" in [t["name"] for t in tf.list_tokens()]
        with Client(server, created["token"]) as scripted:
            assert scripted.me()["username"] == "ada"
            tf.revoke_token(created["id"])
            with pytest.raises(ApiError) as revoked:
                scripted.me()
            assert revoked.value.status == 401

    with Client(server) as anonymous, pytest.raises(ApiError) as unauthenticated:
        anonymous.list_jobs()
    assert unauthenticated.value.status == 401
    assert unauthenticated.value.code == "unauthenticated"
    with pytest.raises(ApiError) as wrong:
        Client.login(server, "ada", "not-the-password")
    assert wrong.value.status == 401


def _event(event_id: int, type_: str, data: dict[str, object]) -> str:
    payload = (
        f'{{"id": {event_id}, "job_id": "j1", "type": "{type_}", '
        f'"data": {json.dumps(data)}, "created_at": "2025-01-01T00:00:00Z"}}'
    )
    return f"id: {event_id}\nevent: {type_}\ndata: {payload}\n\n"


class _Drop(httpx.SyncByteStream):
    """A response body that sends `chunks` and then breaks off like a dropped connection."""

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            yield chunk.encode()
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def test_events_resume_after_a_dropped_connection() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"content-type": "text/event-stream"}
        if len(seen) == 1:
            first = [
                _event(1, "status", {"status": "running"}),
                ": keepalive\n\n",
                _event(2, "progress", {"progress": 0.5, "message": "half"}),
            ]
            return httpx.Response(200, headers=headers, stream=_Drop(first))
        rest = (
            _event(3, "status", {"status": "succeeded"}) + 'event: end\ndata: {"job_id": "j1"}\n\n'
        )
        return httpx.Response(200, headers=headers, content=rest.encode())

    with Client("http://tuneforge.test", "tf_x", transport=httpx.MockTransport(handler)) as tf:
        events = list(tf.events("j1"))

    assert [e["id"] for e in events] == [1, 2, 3, None]
    assert [e["type"] for e in events] == ["status", "progress", "status", "end"]
    assert events[1]["data"] == {"progress": 0.5, "message": "half"}
    assert len(seen) == 2
    assert "last-event-id" not in seen[0].headers
    assert seen[1].headers["last-event-id"] == "2"
    assert seen[1].headers["authorization"] == "Bearer tf_x"
    assert seen[1].url.path == "/api/v1/jobs/j1/events"


def test_events_give_up_after_bounded_reconnects() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(handler)
    with (
        Client("http://tuneforge.test", transport=transport) as tf,
        pytest.raises(httpx.ConnectError),
    ):
        list(tf.events("j1", max_reconnects=2))
    assert calls == 3
