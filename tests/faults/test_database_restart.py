"""PostgreSQL restarting while a job runs: the job keeps its state and finishes, every event is
recorded and streamed once and in order, the server reconnects, and nothing is marked lost.

To the server and its workers a restart is this: every connection they hold is cut at once
(`terminating connection due to administrator command`), and new ones are made once the database
answers again. The test cuts exactly those connections, the backends of its own database, with
`pg_terminate_backend`, several times while the job reports and beats its heartbeat. Restarting
the cluster itself (`pg_ctlcluster ... restart`) would do the same, but also to the tests that
run in parallel in the other test process.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

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
CUT_EVERYONE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def cut_connections(database_url: str) -> int:
    """Terminate every other connection to the database; returns how many there were."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            return int(connection.execute(text(CUT_EVERYONE)).scalar_one())
    finally:
        engine.dispose()


def test_jobs_and_streams_survive_the_database_dropping_every_connection(make_settings) -> None:
    # A short heartbeat timeout: heartbeats that failed for good would mark the job lost.
    settings = make_settings(heartbeat_timeout=8.0)
    token = add_user(settings, "admin", admin=True)
    with server_process(server_env(settings)) as (url, _), Client(url, token) as client:
        job = client.create_job("diagnostic", {"seconds": 6})
        wait(client, job.id, lambda j: j.status == "running" and j.progress > 0)
        follower = Follower(url, token, job.id)
        follower.start()
        cut = 0
        for _ in range(6):  # about three seconds of the job's six
            cut += cut_connections(settings.resolved_database_url)
            assert client.get_job(job.id).status == "running"  # the server reconnects
            time.sleep(0.5)
        assert cut >= 6, "there were no connections to cut"
        done = client.wait(job.id, timeout=30)
        assert done.status == "succeeded", done.error
        assert done.attempt == 0 and done.error is None
        assert done.result and done.result["ticks"] == 6
        recorded = [e for e in client.events(job.id, follow=False) if e["type"] != "end"]
        assert [e["type"] for e in recorded].count("progress") == 6  # no report was lost
        assert follower.ended.wait(10) and follower.error is None, follower.error
        # The stream, open throughout, carried every event once and in order, then `end`.
        streamed = [int(line[4:]) for line in follower.lines if line.startswith("id: ")]
        assert streamed == [e["id"] for e in recorded]
        assert "event: end" in follower.lines
