"""`POST /api/v1/chat` beyond the answer itself: sampling left out is the model's default, a
streamed answer says what happens before its first token, closing the connection stops the
generation (against a real `tuneforge serve`), and models are warmed at start."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.test_chat_api import HELLO, chat, inference_health, streamed
from tests.api.test_jobs_api import parse_sse
from tests.conftest import add_user, bearer
from tests.server import running_server, server_env
from tuneforge.inference.sampling import BASE_MAX_NEW_TOKENS
from tuneforge.inference.warmup import models_to_warm

pytestmark = pytest.mark.timeout(300)


def without_sampling(client, headers, **body):
    return client.post(
        "/api/v1/chat",
        json={"model": "tiny-random-gemma3", "messages": HELLO, **body},
        headers=headers,
    )


def test_sampling_left_out_is_the_models_default_and_statuses_come_first(
    make_client, settings
) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    first = parse_sse(without_sampling(client, alice, max_new_tokens=6).text)
    kinds = [e["event"] for e in first]
    assert kinds[:2] == ["status", "status"] and kinds[-1] == "done"  # starting, loading
    assert [e["data"]["phase"] for e in first[:2]] == ["starting", "loading"]
    assert first[1]["data"]["message"] == "Loading Tiny random Gemma 3 (tests)…"
    # A pre-trained base: greedy by default, so the same answer as temperature 0, every time.
    text = "".join(e["data"]["text"] for e in first if e["event"] == "delta")
    greedy, _ = streamed(chat(client, alice, max_new_tokens=6))  # temperature 0
    assert text == greedy
    whole = without_sampling(client, alice, stream=False).json()
    explicit = chat(client, alice, stream=False, max_new_tokens=BASE_MAX_NEW_TOKENS).json()
    assert whole["message"] == explicit["message"]
    assert whole["usage"]["completion_tokens"] <= BASE_MAX_NEW_TOKENS
    # A value given wins over the default: sampling with a seed differs from greedy.
    sampled = without_sampling(client, alice, stream=False, temperature=1.0, seed=7)
    assert sampled.json()["message"] != whole["message"]
    # A loaded model streams no status.
    again = parse_sse(without_sampling(client, alice, max_new_tokens=2).text)
    assert "status" not in [e["event"] for e in again]


@pytest.mark.heavy
def test_closing_a_streamed_chat_stops_the_generation(make_settings) -> None:
    settings = make_settings()
    alice = bearer(add_user(settings, "alice"))
    socket = settings.inference_socket
    body = {
        "model": "tiny-random-gemma3",
        "messages": HELLO,
        "temperature": 1.0,
        "max_new_tokens": 8000,
    }

    def health() -> dict:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as raw:
            return raw.get("http://inference/health").json()  # type: ignore[no-any-return]

    with (
        running_server(server_env(settings, run_jobs=False), timeout=60) as url,
        httpx.Client(base_url=url, headers=alice, timeout=120) as http,
    ):
        # The random model's sampled answer can end at any token, and which one depends on
        # rounding that differs from machine to machine: seeds are tried until an answer is
        # still running after its first words.
        for seed in range(3, 13):
            with http.stream("POST", "/api/v1/chat", json={**body, "seed": seed}) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                for line in lines:  # up to the first words
                    if line == "event: delta":
                        break
                if health()["generating"] == 1:
                    break  # the connection closes mid-answer
                assert "event: done" in list(lines)  # it had ended by itself
        else:
            pytest.fail("every sampled answer ended within its first words")
        left = time.monotonic()
        while (state := health())["generating"]:
            assert time.monotonic() - left < 1.0, state
            time.sleep(0.02)
        assert state["cancelled"] == 1
        # The engine is free for the next answer.
        answer = http.post("/api/v1/chat", json={**body, "max_new_tokens": 3, "stream": False})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] <= 3
        assert health()["cancelled"] == 1


@pytest.mark.heavy
def test_models_are_warmed_at_start(make_client, make_settings) -> None:
    assert models_to_warm(make_settings(warm_models=["gemma-3-1b-it", "tiny-random-gemma3"])) == [
        "tiny-random-gemma3"  # no hub here: only what loads offline is warmed
    ]
    client = make_client(warm_models=["tiny-random-gemma3"])
    deadline = time.monotonic() + 200
    while True:  # no chat was sent: the studio loads the model by itself
        try:
            if inference_health(client)["loads"] == {"transformers:tiny-random-gemma3": 1}:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the model was not warmed"
        time.sleep(0.5)
