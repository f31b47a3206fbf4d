"""What cannot work is refused through the API before anything is queued, naming the field; a
run that fails because of its settings records which ones; every catalog listing says what can
run here (the test machine reaches no model hub)."""

from __future__ import annotations

import io
import json

import pytest

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import processed_dataset, spec
from tests.conftest import add_user, bearer


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


def chats_with_a_long_first_question(repeats: int) -> bytes:
    """12 two-exchange chats (JSONL) whose first question is long and both answers short: a
    short max length cuts the first answer away, and a launch check cannot refuse it (the
    second answer might fit)."""
    question = "Tell me everything about the colour of each numbered thing " * repeats
    lines = [
        {
            "messages": [
                {"role": "user", "content": f"{question} {i}"},
                {"role": "assistant", "content": "Red."},
                {"role": "user", "content": "And then?"},
                {"role": "assistant", "content": "Blue."},
            ]
        }
        for i in range(12)
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


def test_catalogs_say_what_can_run_here(api) -> None:
    client, alice = api
    catalog = client.get("/api/v1/catalog", headers=alice).json()
    states = {model["id"]: model["availability"] for model in catalog}
    assert {i for i, s in states.items() if s["state"] == "available"} == {
        "gemma-3-270m",
        "tiny-random-gemma3",
        "tiny-random-gemma3-vision",
        "tiny-random-gemma4",
        "tiny-random-gemma4-unified",
        "tiny-random-gemma4-moe",
    }
    assert states["gemma-3-1b-it"]["state"] == "unavailable"
    assert "no model hub is reachable" in states["gemma-3-1b-it"]["reason"].lower()
    chat = client.get("/api/v1/chat/models", headers=alice).json()["items"]
    assert {m["id"]: m["availability"] for m in chat} == states


@pytest.mark.timeout(120)
def test_an_unavailable_model_is_refused_before_anything_is_queued(api) -> None:
    client, alice = api
    dataset = processed_dataset(client, alice)
    run = {"kind": "train", "spec": spec(dataset["id"], base_model="gemma-3-1b-it")}
    refused = client.post("/api/v1/jobs", json=run, headers=alice)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert "cannot run on this server" in error["message"]
    assert error["details"]["fields"] == ["base_model"]
    chat = {"model": "gemma-3-1b-it", "messages": [{"role": "user", "content": "Hi"}]}
    answer = client.post("/api/v1/chat", json=chat, headers=alice)
    assert answer.status_code == 503 and "cannot run" in answer.json()["error"]["message"]
    assert client.get("/api/v1/jobs", headers=alice).json()["items"] == []


@pytest.mark.timeout(120)
def test_a_max_length_that_cuts_every_answer_is_refused_with_the_field_named(api) -> None:
    client, alice = api
    dataset = processed_dataset(client, alice)
    stats = client.get(f"/api/v1/datasets/{dataset['id']}/stats", headers=alice).json()
    shortest = stats["prompt_tokens"]["min"]
    run = {"kind": "train", "spec": spec(dataset["id"], max_length=max(16, shortest - 1))}
    refused = client.post("/api/v1/jobs", json=run, headers=alice)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["details"]["fields"] == ["max_length"]
    assert "cuts every answer away" in error["message"] and "Raise max length" in error["message"]
    assert client.get("/api/v1/jobs", headers=alice).json()["items"] == []
    # The estimate says so beforehand, with the warnings the Train page shows.
    wrong = spec(dataset["id"], max_length=max(16, shortest - 1), learning_rate=1)
    checks = client.post("/api/v1/trainings/estimate", json=wrong, headers=alice).json()["checks"]
    assert {(c["fields"][0], c["severity"]) for c in checks} == {
        ("max_length", "refusal"),
        ("learning_rate", "warning"),
    }
    fine = client.post("/api/v1/trainings/estimate", json=spec(dataset["id"]), headers=alice)
    assert fine.json()["checks"] == []


@pytest.mark.timeout(600)
def test_a_run_failed_by_its_settings_records_them(api) -> None:
    """Conversations whose first question alone fills max length pass the check (a later answer
    might fit) and fail in the worker: the failure names max_length."""
    client, alice = api
    body = chats_with_a_long_first_question(8)
    raw = client.post(
        "/api/v1/datasets", files={"file": ("chats.jsonl", io.BytesIO(body))}, headers=alice
    ).json()
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=alice)
    assert processed.status_code == 201, processed.text
    run = {"kind": "train", "spec": spec(processed.json()["id"], max_length=16)}
    job = client.post("/api/v1/jobs", json=run, headers=alice)
    assert job.status_code == 201, job.text
    failed = wait_status(client, job.json()["id"], alice, "failed", timeout=300)
    assert "No training example has tokens" in failed["error"]
    assert failed["result"] == {"error_fields": ["max_length"]}
