"""PostgreSQL restarting while a job runs: the job keeps its state and finishes, every event is
recorded and streamed once and in order, the server reconnects, and nothing is marked lost.

To the server and its workers a restart is this: every connection they hold is cut at once
(`terminating connection due to administrator command`), new ones are refused for a while, then
accepted again. The test does exactly that to its own database, from the maintenance database:
`ALLOW_CONNECTIONS false`, `pg_terminate_backend` of every backend, a pause in which the job's
reports and heartbeats fail, `ALLOW_CONNECTIONS true`; three times while the job runs.
Restarting the cluster itself (`pg_ctlcluster ... restart`) would do the same, but also to the
tests that run in parallel in the other test process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import make_url, text

from tests.conftest import PG_URL, add_user
from tests.faults.live import Follower
from tests.jobs.test_restart import wait
from tests.server import server_env, server_process
from tuneforge.client import Client
from tuneforge.db.session import make_engine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not PG_URL, reason="PostgreSQL only: set TUNEFORGE_TEST_DATABASE_URL"),
]
DOWN_SECONDS = 1.5  # longer than the job's time between two reports


@contextmanager
def database_down(database_url: str) -> Iterator[int]:
    """Cut every connection to the database and refuse new ones until the block ends; yields
    how many connections were cut."""
    name = make_url(database_url).database
    maintenance = make_url(database_url).set(database="postgres").render_as_string(False)
    engine = make_engine(maintenance).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            try:
                cut = connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name"
                    ),
                    {"name": name},
                ).scalar_one()
                yield int(cut)
            finally:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        engine.dispose()


def test_jobs_and_streams_survive_a_database_restart(make_settings) -> None:
    # A short heartbeat timeout: heartbeats that failed for good would mark the job lost.
    settings = make_settings(heartbeat_timeout=8.0)
    token = add_user(settings, "admin", admin=True)
    with server_process(server_env(settings)) as (url, _), Client(url, token) as client:
        job = client.create_job("diagnostic", {"seconds": 8})
        wait(client, job.id, lambda j: j.status == "running" and j.progress > 0)
        follower = Follower(url, token, job.id)
        follower.start()
        follower.wait_streaming()
        cut = 0
        for _ in range(3):  # about six seconds of the job's eight
            with database_down(settings.resolved_database_url) as connections:
                cut += connections
                time.sleep(DOWN_SECONDS)
            # The server reconnects, and the job was not given up on.
            assert client.get_job(job.id).status in ("running", "succeeded")
            time.sleep(0.5)
        assert cut >= 3, "there were no connections to cut"
        done = client.wait(job.id, timeout=30)
        assert done.status == "succeeded", done.error
        assert done.attempt == 0 and done.error is None
        assert done.result and done.result["ticks"] >= 2
        recorded = [e for e in client.events(job.id, follow=False) if e["type"] != "end"]
        # No report was lost: one progress event per tick (reports that waited for the database
        # took some of the job's eight seconds, so there are fewer than eight ticks).
        progress = [e["data"]["message"] for e in recorded if e["type"] == "progress"]
        assert progress == [f"tick {n}" for n in range(1, done.result["ticks"] + 1)]
        assert follower.ended.wait(10) and follower.error is None, follower.error
        # The stream, open throughout, carried every event once and in order, then `end`.
        streamed = [int(line[4:]) for line in follower.lines if line.startswith("id: ")]
        assert streamed == [e["id"] for e in recorded]
        assert "event: end" in follower.lines
