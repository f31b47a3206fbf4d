"""A LoRA fine-tune trained through the API chats through `/v1` on llama.cpp, with no export
made: the answer's `system_fingerprint` names the engine; its fast-path files go with it."""

from __future__ import annotations

import json
import time

import pytest

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import processed_dataset, spec
from tests.conftest import add_user, bearer
from tuneforge.inference import fast_path
from tuneforge.jobs.kinds.export import export_prefix
from tuneforge.storage import ArtifactStore

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(600)]


def test_a_fine_tune_trained_through_the_api_chats_on_llamacpp_without_an_export(
    make_client, settings
) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(client, alice, rows=12)
    run = spec(dataset["id"], max_steps=3, eval_every=0)
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": run}, headers=alice)
    assert job.status_code == 201, job.text
    done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=300)
    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    question = {
        "model": model["id"],
        "messages": [{"role": "user", "content": "Which colour is number 3?"}],
        "temperature": 0,
        "max_tokens": 8,
    }
    # The first answer starts the fast path's preparation in the inference server (transformers
    # answers if it takes longer than the server waits); once checked, llama.cpp answers.
    first = client.post("/v1/chat/completions", json=question, headers=alice)
    assert first.status_code == 200, first.text
    deadline = time.monotonic() + 240
    while fast_path.verdict(model["artifact_key"], settings.data_dir) is None:
        assert time.monotonic() < deadline, "the fast path was never checked"
        time.sleep(0.5)
    whole = client.post("/v1/chat/completions", json=question, headers=alice)
    assert whole.json()["system_fingerprint"] == "tuneforge-llama.cpp"
    streamed = client.post("/v1/chat/completions", json={**question, "stream": True}, headers=alice)
    chunks = [
        json.loads(line.removeprefix("data: "))
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole.json()["choices"][0]["message"]["content"]
    assert chunks[-1]["system_fingerprint"] == "tuneforge-llama.cpp"
    # The Playground's API says the same.
    chat = client.post(
        "/api/v1/chat",
        json={"model": model["id"], "messages": question["messages"], "stream": False},
        headers=alice,
    )
    assert chat.json()["engine"] == "llama.cpp" and "engine_note" not in chat.json()
    store = ArtifactStore(settings.resolved_storage_url)
    assert store.list(export_prefix(model["owner_id"], model["id"])) == []  # no export made
    folder = fast_path.folder(model["artifact_key"], settings.data_dir)
    assert (folder / "adapter.gguf").is_file()
    assert client.delete(f"/api/v1/models/{model['id']}", headers=alice).status_code == 204
    assert not folder.exists()
