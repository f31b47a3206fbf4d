"""SIGTERM (what `docker stop`, systemd and Kubernetes send) stops `tuneforge serve` within 10 s
whatever is in flight: event and chat streams end cleanly, the inference server stops with it, and
jobs run on in their own processes, to be adopted by the next server."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import httpx
import psutil
import pytest

from tests.conftest import add_user, bearer
from tests.faults.live import (
    LONG_ANSWER,
    OPENAI_LONG_ANSWER,
    Follower,
    inference_pid,
    live_answer,
    sse_events,
)
from tests.jobs.test_restart import wait, worker_pid
from tests.server import server_env, server_process
from tuneforge.client import Client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
STOP_SECONDS = 10.0


def stop(server: subprocess.Popen[bytes]) -> float:
    """Send SIGTERM and return how long the server took to exit."""
    asked = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=STOP_SECONDS + 5)
    took = time.monotonic() - asked
    assert took < STOP_SECONDS, f"the server took {took:.1f} s to stop"
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert server.returncode in (0, -signal.SIGTERM), server.returncode
    return took


def test_sigterm_ends_event_streams_and_the_job_runs_on_to_be_adopted(make_settings) -> None:
    settings = make_settings(heartbeat_timeout=60.0)
    token = add_user(settings, "admin", admin=True)
    env = server_env(settings)
    with server_process(env) as (url, server), Client(url, token) as client:
        job = client.create_job("diagnostic", {"seconds": 8})
        wait(client, job.id, lambda j: j.status == "running" and j.progress > 0)
        followers = [Follower(url, token, job.id) for _ in range(2)]
        for follower in followers:
            follower.start()
        for follower in followers:
            follower.wait_streaming()
        pid = worker_pid(settings, job.id)
        stop(server)
        for follower in followers:
            assert follower.ended.wait(5), "an event stream outlived the server"
            # Cleanly ended (the whole chunked body arrived), and without `end`: the job goes on.
            assert follower.error is None, follower.error
            assert "event: end" not in follower.lines
        worker = psutil.Process(pid)  # the server neither killed the worker nor waited for it
        assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
    with server_process(env) as (url, _), Client(url, token) as client:
        done = client.wait(job.id, timeout=30)  # adopted: it was never marked lost
        assert done.status == "succeeded", done.error
        assert done.attempt == 0 and done.result and done.result["ticks"] == 8
        kinds = [e["type"] for e in client.events(job.id)]
        assert kinds.count("progress") == 8 and kinds[-1] == "end"


@pytest.mark.heavy
def test_sigterm_ends_chat_streams_with_a_reason_and_stops_the_inference_server(
    make_settings,
) -> None:
    settings = make_settings()
    alice = bearer(add_user(settings, "alice"))
    with (
        server_process(server_env(settings, run_jobs=False), timeout=60) as (url, server),
        httpx.Client(base_url=url, headers=alice, timeout=60) as http,
        live_answer(http, "/api/v1/chat", LONG_ANSWER) as rest,
    ):
        inference = psutil.Process(inference_pid(server))
        # A second answer waits behind the first one, its response not yet begun.
        waiting: dict[str, httpx.Response] = {}
        openai = threading.Thread(
            target=lambda: waiting.update(
                response=http.post("/v1/chat/completions", json=OPENAI_LONG_ANSWER)
            ),
            daemon=True,
        )
        openai.start()
        time.sleep(1.0)
        assert "response" not in waiting, "the second answer did not wait behind the first"
        stop(server)
        events = sse_events(list(rest))
        assert events[-1][0] == "error", events[-3:]
        error = json.loads(events[-1][1])
        assert error["code"] == "server_stopping" and "stopping" in error["message"]
        openai.join(5)
        answer = waiting["response"]
        if answer.status_code == 200:  # it had begun after all: OpenAI's error chunk ends it
            assert "[DONE]" not in answer.text
            error = json.loads(sse_events(answer.text.splitlines())[-1][1])["error"]
        else:  # still waiting: the answer never began
            assert answer.status_code == 503, answer.text
            error = answer.json()["error"]
        assert error["code"] == "server_stopping"
        inference.wait(5)  # it stopped with the server
