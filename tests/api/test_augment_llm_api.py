"""Augmentation with an LLM through the API, against a loopback OpenAI-compatible server: the
preview asks the endpoint for the previewed rows and estimates requests, tokens and cost; the
job rewrites the train split (lineage naming the method, test split untouched) with the key
from the user's secrets and never shows it; a refused key fails the job clearly; and a
non-administrator may not make the server call a private address."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.test_augment_api import _all_rows, _wait
from tests.conftest import add_user, bearer
from tests.llm_server import LlmServer

pytestmark = pytest.mark.slow
KEY = "sk-augment-loopback-4242"
LOOPBACK = ["127.0.0.1"]
QUESTIONS = [f"Which vegetables grow well in a shady garden bed number {i}?" for i in range(8)]


def reworded(body: dict[str, Any]) -> str:
    return "~" + body["messages"][-1]["content"].split("Text:\n", 1)[1].upper()


@pytest.fixture
def server() -> Iterator[LlmServer]:
    with LlmServer(reply=reworded, api_key=KEY) as running:
        yield running


def _processed(client, headers) -> dict:
    lines = [json.dumps({"question": q, "answer": f"Answer {i}."}) for i, q in enumerate(QUESTIONS)]
    raw = client.post(
        "/api/v1/datasets",
        headers=headers,
        files={"file": ("shade.jsonl", "\n".join(lines).encode())},
    ).json()
    processed = client.post(
        f"/api/v1/datasets/{raw['id']}/process",
        headers=headers,
        json={"mapping": raw["mapping"], "split": {"mode": "manual", "test_size": 2, "seed": 1}},
    ).json()
    assert processed["splits"] == {"train": 6, "test": 2}
    return processed


def _spec(server: LlmServer, key_name: str | None = "LLM_KEY") -> dict:
    generator = {"kind": "endpoint", "base_url": server.url, "model": "m"}
    if key_name:
        generator["api_key_secret"] = key_name
    return {"methods": [{"name": "paraphrase", "generator": generator}], "seed": 2}


def _user_texts(row: dict) -> list[str]:
    return [
        part["text"]
        for m in row["messages"]
        if m["role"] == "user"
        for part in m["content"]
        if part["type"] == "text"
    ]


def test_preview_and_job_rewrite_the_train_split_with_the_users_key(
    make_client, settings, server
) -> None:
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    source = _processed(client, alice)
    url = f"/api/v1/datasets/{source['id']}/augment"
    unset = client.post(f"{url}/preview", headers=alice, json=_spec(server))
    assert unset.status_code == 422 and "LLM_KEY is not set" in unset.text
    client.put("/api/v1/secrets/LLM_KEY", json={"value": KEY}, headers=alice)

    preview = client.post(
        f"{url}/preview?count=3&price_per_1k_tokens=2", headers=alice, json=_spec(server)
    )
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert len(server.requests) == 3 and shown["problems"] == []
    for example in shown["examples"]:
        (variant,) = example["variants"]
        assert variant["methods"] == "paraphrase" and "~WHICH VEGETABLES" in variant["rendered"]
    llm = shown["llm"]
    assert llm["requests"] == 6  # one per train row: the previewed rows' mean, scaled
    # The endpoint counts words: each request's prompt and reply, three of them per three rows.
    asked = server.requests[:3]
    words = sum(len(r["messages"][0]["content"].split()) for r in asked)
    assert llm["prompt_tokens"] == words * 2
    tokens = llm["prompt_tokens"] + llm["completion_tokens"]
    assert shown["cost"]["money"] == pytest.approx(tokens / 1000 * 2, abs=1e-3)
    assert shown["rows_out"] == 12 and "per 1k tokens" in shown["cost"]["note"]

    made = client.post(url, headers=alice, json=_spec(server))
    assert made.status_code == 202, made.text
    done = _wait(client, alice, made.json()["id"])
    assert done["status"] == "ready", done.get("error")
    assert done["splits"] == {"train": 12, "test": 2}
    train = _all_rows(client, alice, done["id"], "train")
    for variant in train[6:]:
        assert variant["augmentation"] == "paraphrase"
        source_row = train[variant["augmented_from"]]
        assert _user_texts(variant) == ["~" + t.upper() for t in _user_texts(source_row)]
    assert _all_rows(client, alice, done["id"], "test") == _all_rows(
        client, alice, source["id"], "test"
    )
    assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    events = client.get(
        f"/api/v1/jobs/{done['job_id']}/events", params={"follow": False}, headers=alice
    )
    assert "requests to the model" in events.text
    for text in (json.dumps(done), events.text, json.dumps(train), preview.text):
        assert KEY not in text


def test_a_refused_key_fails_the_job_clearly(make_client, settings, server) -> None:
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    source = _processed(client, alice)
    client.put("/api/v1/secrets/LLM_KEY", json={"value": "sk-wrong"}, headers=alice)
    made = client.post(
        f"/api/v1/datasets/{source['id']}/augment", headers=alice, json=_spec(server)
    )
    done = _wait(client, alice, made.json()["id"])
    assert done["status"] == "failed"
    assert re.search(r"refused the key \(HTTP 401\)", done["error"]), done["error"]
    assert "sk-wrong" not in json.dumps(done)


def test_a_private_endpoint_is_refused_to_a_non_administrator(make_client, settings) -> None:
    client = make_client(auth="local")  # nothing trusted: 127.0.0.1 is this server's network
    alice = bearer(add_user(settings, "alice"))
    source = _processed(client, alice)
    with LlmServer(reply=reworded) as server:
        for path in ("augment/preview", "augment"):
            refused = client.post(
                f"/api/v1/datasets/{source['id']}/{path}", headers=alice, json=_spec(server, None)
            )
            assert refused.status_code == 422, refused.text
            assert "private or local address" in refused.text
        assert server.requests == []
    listed = client.get("/api/v1/datasets", headers=alice).json()
    assert len(listed["items"]) == 2  # the raw and processed ones: no augmented dataset made


def test_a_local_model_is_previewed_without_loading_it(make_client, settings) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    source = _processed(client, alice)
    spec = {
        "methods": [
            {"name": "back_translation", "generator": {"kind": "local", "model": "gemma-3-270m"}}
        ],
        "copies": 2,
    }
    shown = client.post(
        f"/api/v1/datasets/{source['id']}/augment/preview?count=2&price_per_1k_tokens=5",
        headers=alice,
        json=spec,
    )
    assert shown.status_code == 200, shown.text
    preview = shown.json()
    assert all(example["variants"] == [] for example in preview["examples"])
    assert "loaded only by the job" in preview["problems"][0]
    llm = preview["llm"]
    assert llm["requests"] == 6 * 2 * 2  # rows, copies, two requests each
    assert llm["prompt_tokens"] > llm["completion_tokens"] > 0
    assert llm["money"] == 0 and preview["cost"]["money"] == 0
    assert preview["rows_out"] == 6 + 12 and preview["cost"]["seconds"] > 5
    unknown = dict(
        spec, methods=[dict(spec["methods"][0], generator={"kind": "local", "model": "nope"})]
    )
    refused = client.post(f"/api/v1/datasets/{source['id']}/augment", headers=alice, json=unknown)
    assert refused.status_code == 404 and "No model 'nope'" in refused.text


def test_a_cancel_stops_sending_requests(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    source = _processed(client, alice)
    with LlmServer(reply=reworded, delay=0.5) as server:
        spec = _spec(server, None)
        spec["methods"][0]["generator"]["concurrency"] = 1
        spec["copies"] = 10
        spec["methods"].append(dict(spec["methods"][0], name="back_translation"))
        made = client.post(
            f"/api/v1/datasets/{source['id']}/augment", headers=alice, json=spec
        ).json()
        deadline = time.monotonic() + 60
        while len(server.requests) < 2:  # 120 requests of 0.5 s one at a time: a minute
            assert time.monotonic() < deadline, "no request came"
            time.sleep(0.05)
        cancelled = client.post(f"/api/v1/jobs/{made['job_id']}/cancel", headers=alice)
        assert cancelled.status_code == 200, cancelled.text
        dataset = _wait(client, alice, made["id"])
        sent = len(server.requests)
    job = client.get(f"/api/v1/jobs/{made['job_id']}", headers=alice).json()
    assert job["status"] == "cancelled" and dataset["status"] == "failed"
    assert sent < 30
