"""Chat through the API with tiny-random-gemma3 and a LoRA fine-tune of it: streamed and whole
answers, one model load for many requests, owner scoping and clear errors (an inference server
killed mid-answer: tests/faults/test_inference_killed.py)."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.api.test_jobs_api import parse_sse
from tests.conftest import add_user, bearer
from tests.fine_tuned import add_fine_tuned
from tuneforge.inference.client import InferenceClient

pytestmark = pytest.mark.timeout(300)
HELLO = [{"role": "user", "content": "Say hello."}]
IDLE_IN_TRANSACTION = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
)


def chat(client, headers, **body):
    return client.post(
        "/api/v1/chat",
        json={"model": "tiny-random-gemma3", "messages": HELLO, "temperature": 0, **body},
        headers=headers,
    )


def streamed(response) -> tuple[str, dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [e["event"] for e in events][-1] == "done"
    return "".join(e["data"]["text"] for e in events if e["event"] == "delta"), events[-1]["data"]


def inference_health(client) -> dict:
    socket = client.app.state.inference.process.socket
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as raw:
        return raw.get("http://inference/health").json()  # type: ignore[no-any-return]


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local")
    return client, bearer(add_user(settings, "alice"))


@pytest.mark.heavy
def test_streamed_and_whole_answers_agree_and_the_model_loads_once(api) -> None:
    client, alice = api
    text, done = streamed(chat(client, alice, max_new_tokens=8))
    assert done["usage"]["completion_tokens"] <= 8 and done["engine"] == "transformers"
    whole = chat(client, alice, max_new_tokens=8, stream=False)
    assert whole.status_code == 200, whole.text
    assert whole.json()["message"] == {"role": "assistant", "content": text}
    assert whole.json()["finish_reason"] == done["finish_reason"]
    system = chat(client, alice, max_new_tokens=8, stream=False, system="Answer in French.")
    assert system.status_code == 200
    assert inference_health(client)["loads"] == {"transformers:tiny-random-gemma3": 1}


def test_fine_tuned_models_answer_their_owner_only(api, settings, tiny_adapter) -> None:
    client, alice = api
    bob = bearer(add_user(settings, "bob"))
    tuned = add_fine_tuned(settings, "alice", tiny_adapter)
    base_answer = chat(client, alice, stream=False, max_new_tokens=10).json()["message"]
    tuned_answer = chat(client, alice, model=tuned, stream=False, max_new_tokens=10)
    assert tuned_answer.status_code == 200, tuned_answer.text
    assert tuned_answer.json()["message"] != base_answer
    listed = client.get("/api/v1/chat/models", headers=alice).json()["items"]
    assert listed[0]["id"] == tuned and listed[0]["fine_tuned"]
    assert "tiny-random-gemma3" in [m["id"] for m in listed]
    assert tuned not in [
        m["id"] for m in client.get("/api/v1/chat/models", headers=bob).json()["items"]
    ]
    assert chat(client, bob, model=tuned).status_code == 404
    completion = {"model": tuned, "messages": HELLO, "max_tokens": 8}
    assert client.post("/v1/chat/completions", json=completion, headers=bob).status_code == 404
    assert client.post("/v1/chat/completions", json=completion, headers=alice).status_code == 200
    # Without an export, llama.cpp serves the LoRA fine-tune through its fast path; vLLM needs
    # a GPU.
    served = chat(client, alice, model=tuned, engine="llama.cpp", stream=False, max_new_tokens=10)
    assert served.status_code == 200, served.text
    assert served.json()["engine"] == "llama.cpp"
    refused = chat(client, alice, model=tuned, engine="vllm")
    assert refused.status_code == 409 and "CUDA" in refused.json()["error"]["message"]


def test_no_database_lock_is_held_while_a_model_answers(api, settings, monkeypatch) -> None:
    """A chat ends its request's transaction before waiting for the model: on SQLite an open one
    holds the write lock, and every other writer (job heartbeats, uploads) would wait for the
    answer; on PostgreSQL it would sit idle in transaction, holding its row locks."""
    client, alice = api
    url = settings.resolved_database_url
    writable: list[bool] = []

    def can_write() -> bool:
        if url.startswith("sqlite"):
            connection = sqlite3.connect(url.split("///", 1)[1], timeout=0, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError:  # database is locked
                return False
            finally:
                connection.close()
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as connection:
            idle = connection.scalar(text(IDLE_IN_TRANSACTION))
        engine.dispose()
        return idle == 0

    original = InferenceClient.events  # every answer goes through it

    async def events(self, request):  # the moment the model starts answering
        writable.append(await asyncio.to_thread(can_write))
        async for event in original(self, request):
            yield event

    monkeypatch.setattr(InferenceClient, "events", events)
    streamed(chat(client, alice, max_new_tokens=4))
    assert chat(client, alice, max_new_tokens=4, stream=False).status_code == 200
    completion = {"model": "tiny-random-gemma3", "messages": HELLO, "max_tokens": 4}
    assert client.post("/v1/chat/completions", json=completion, headers=alice).status_code == 200
    assert writable == [True, True, True]


def test_bad_conversations_get_clear_errors(api) -> None:
    client, alice = api
    assistant_first = chat(client, alice, messages=[{"role": "assistant", "content": "Hi"}])
    assert assistant_first.status_code == 422 and "user" in assistant_first.text
    unknown = chat(client, alice, model="gemma-9")
    assert unknown.status_code == 404 and "gemma-3-270m" in unknown.json()["error"]["message"]
    assert chat(client, alice, temperature=5).status_code == 422
    assert chat(client, alice, stop=["a", "b", "c", "d", "e"]).status_code == 422
    assert client.post("/api/v1/chat", json={"model": "x", "messages": HELLO}).status_code == 401
