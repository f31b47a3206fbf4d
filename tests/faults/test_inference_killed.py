"""The inference server killed in the middle of an answer: the client gets an error that says so
(an `error` event on `/api/v1/chat`, OpenAI's error chunk on `/v1`), and the next chat works,
on the inference server that the studio started again. Each start loads the model again (a few
seconds on a quiet machine), so one test covers both APIs with two kills."""

from __future__ import annotations

import json
import os
import signal

import httpx
import psutil
import pytest

from tests.conftest import add_user, bearer
from tests.faults.live import (
    LONG_ANSWER,
    OPENAI_LONG_ANSWER,
    inference_pid,
    live_answer,
    sse_events,
)
from tests.server import server_env, server_process

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(180)]


def test_a_killed_inference_server_ends_the_answer_with_an_error_and_the_next_one_works(
    make_settings,
) -> None:
    settings = make_settings()
    alice = bearer(add_user(settings, "alice"))
    key = "a-server-secret-key-" * 2
    with (
        server_process(server_env(settings, run_jobs=False, secret_key=key), timeout=60) as (
            url,
            server,
        ),
        httpx.Client(base_url=url, headers=alice, timeout=60) as http,
    ):
        with live_answer(http, "/api/v1/chat", LONG_ANSWER) as rest:
            # Users' models run there: it has its settings from a file it removed, and no
            # secret of the server's environment.
            inference = psutil.Process(inference_pid(server))
            assert not [v for v in inference.environ().values() if key in v]
            assert not list((settings.data_dir / "worker-settings").glob("*.json"))
            os.kill(inference.pid, signal.SIGKILL)
            events = sse_events(list(rest))
        assert events[-1][0] == "error", events[-3:]
        error = json.loads(events[-1][1])
        assert error["code"] == "inference_failed" and "restarted" in error["message"]

        # The next answer works, on the inference server started again; killed in turn, it
        # ends with OpenAI's error chunk.
        with live_answer(http, "/v1/chat/completions", OPENAI_LONG_ANSWER) as rest:
            os.kill(inference_pid(server), signal.SIGKILL)
            chunks = [json.loads(data) for _, data in sse_events(list(rest))]
        assert "error" in chunks[-1], chunks[-3:]  # and no `[DONE]`: it broke off
        assert chunks[-1]["error"]["code"] == "inference_failed"
