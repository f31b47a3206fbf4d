"""A request's session: reads begin without SQLite's write lock and writes with it, a failed
request leaves nothing behind, and a request crosses to a worker thread only where it does I/O or
FastAPI asks (the user's lookup, the route, the check of its answer, the end of its transaction),
not to read the settings or open the session: on a busy server every hop waits for the
interpreter (it was six hops a read, now four)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest
from sqlalchemy import event, func, select

from tests.conftest import add_user, bearer
from tuneforge.db.session import transaction
from tuneforge.db.tables import Job


def test_reads_begin_unlocked_writes_locked_and_a_failure_rolls_back(make_client, settings) -> None:
    if not settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("BEGIN IMMEDIATE is SQLite's")
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice", admin=True))  # diagnostic jobs are admins'
    begins: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    engine = client.app.state.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", record)
    assert client.get("/api/v1/jobs", headers=alice).status_code == 200
    assert begins == ["BEGIN"]
    begins.clear()
    created = client.post("/api/v1/jobs", json={"kind": "diagnostic"}, headers=alice)
    assert created.status_code == 201 and begins == ["BEGIN IMMEDIATE"]
    # A request that fails after its transaction began (the token's lookup): nothing of it is
    # kept, and its session is closed: the write below would wait for its lock otherwise.
    refused = client.post(
        "/api/v1/jobs", json={"kind": "diagnostic", "spec": {"seconds": -1}}, headers=alice
    )
    assert refused.status_code == 422
    event.remove(engine, "before_cursor_execute", record)
    with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_a_read_crosses_to_worker_threads_four_times(
    make_client, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    assert client.get("/api/v1/jobs", headers=alice).status_code == 200  # the token's first use
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(getattr(func, "func", func), "__qualname__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    assert client.get("/api/v1/jobs", headers=alice).status_code == 200
    # The user's lookup first, the transaction's end last, FastAPI's two between (the route,
    # the check of its answer); not the settings nor the session's opening, which do no I/O.
    assert len(hops) == 4 and hops[0] == "get_current_user" and hops[-1] == "_end", hops
