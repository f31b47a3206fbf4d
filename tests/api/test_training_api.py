"""Training through the API with tiny-random-gemma3: launch, live events, metrics, the model
record and its adapter, estimates, refusals, resume and comparison."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.api.test_jobs_api import parse_sse, wait_status
from tests.conftest import add_user, bearer
from tests.jobs.test_restart import worker_pid
from tuneforge.models.catalog import catalog
from tuneforge.storage import ArtifactStore

COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "cyan", "rose", "gold"]


def processed_dataset(client, headers, rows: int = 24) -> dict:
    lines = [
        {"question": f"Which colour is number {i}?", "answer": f"Number {i} is {COLOURS[i % 10]}."}
        for i in range(rows)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("colours.jsonl", io.BytesIO(body))}, headers=headers
    ).json()
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return processed.json()


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


def spec(dataset_id: str, **values: object) -> dict[str, object]:
    return {
        "base_model": "tiny-random-gemma3",
        "dataset_id": dataset_id,
        "max_steps": 12,
        "batch_size": 4,
        "learning_rate": 3e-3,
        "eval_every": 6,
        "check_examples": 0,  # no before/after check: these runs are about training itself
        **values,
    }


def test_recommendations_are_for_the_chosen_trainer(api) -> None:
    client, alice = api
    dataset = processed_dataset(client, alice)
    query = {"dataset_id": dataset["id"], "base_model": "tiny-random-gemma3"}
    url = "/api/v1/trainings/recommendations"
    default = client.get(url, params=query, headers=alice)
    assert default.status_code == 200 and default.json()
    sft = client.get(url, params={**query, "trainer": "sft"}, headers=alice)
    assert sft.json() == default.json()
    unknown = client.get(url, params={**query, "trainer": "nope"}, headers=alice)
    assert unknown.status_code == 422
    message = unknown.json()["error"]["message"]
    assert "no trainer 'nope'" in message and "sft" in message


@pytest.mark.timeout(900)
def test_train_streams_metrics_and_makes_a_model_peft_loads(api, settings) -> None:
    client, alice = api
    dataset = processed_dataset(client, alice)
    estimate = client.post("/api/v1/trainings/estimate", json=spec(dataset["id"]), headers=alice)
    assert estimate.status_code == 200, estimate.text
    assert estimate.json()["estimate"]["fits"] is True
    assert estimate.json()["recommendations"]
    job = client.post(
        "/api/v1/jobs", json={"kind": "train", "spec": spec(dataset["id"])}, headers=alice
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    events = parse_sse(client.get(f"/api/v1/jobs/{job_id}/events", headers=alice).text)
    kinds = {e["event"] for e in events}
    assert {"status", "progress", "metric", "samples", "log"} <= kinds
    done = wait_status(client, job_id, alice, "succeeded", timeout=60)
    steps = [e["data"]["data"]["step"] for e in events if e["event"] == "metric"]
    assert max(steps) == 12
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()
    assert [step for step, _ in metrics["series"]["loss"]] == list(range(1, 13))
    assert [step for step, _ in metrics["series"]["eval_loss"]] == [0, 6, 12]
    assert metrics["samples"][-1]["step"] == 12
    model_id = done["result"]["model_id"]
    model = client.get(f"/api/v1/models/{model_id}", headers=alice).json()
    assert model["base_model"] == "tiny-random-gemma3" and model["kind"] == "adapter"
    assert model["dataset_id"] == dataset["id"] and model["job_id"] == job_id
    assert "adapter_model.safetensors" in model["files"] and model["metrics"]["eval_loss"] > 0
    listed = client.get("/api/v1/models", headers=alice).json()
    assert [m["id"] for m in listed["items"]] == [model_id]
    # The adapter loads with PEFT over the base model and changes its answers: LoRA's B matrices
    # start at zero, so an adapter that never trained would give the base's logits exactly.
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, model_dir

    store = ArtifactStore(settings.resolved_storage_url)
    local = Path(settings.data_dir) / "check"
    store.get_dir(model["artifact_key"], local)
    entry = catalog().get("tiny-random-gemma3")
    base = load_causal_lm(model_dir(entry, settings.models_dir), torch.float32)
    tuned = PeftModel.from_pretrained(base, local)
    ids = torch.tensor([[2, 105, 2364, 107]])
    with torch.no_grad():
        logits = tuned(ids).logits
        with tuned.disable_adapter():
            base_logits = tuned(ids).logits
    assert logits.shape[-1] == 262144
    assert (logits - base_logits).abs().max().item() > 1e-3
    # Deleting the model removes its files.
    assert client.delete(f"/api/v1/models/{model_id}", headers=alice).status_code == 204
    assert not store.is_complete(model["artifact_key"])


def test_a_run_that_cannot_fit_is_refused_with_what_to_change(api) -> None:
    client, alice = api
    dataset = processed_dataset(client, alice, rows=8)
    refused = client.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec": spec(dataset["id"], method="qlora")},
        headers=alice,
    )
    assert refused.status_code == 422
    assert "LoRA" in refused.json()["error"]["message"]
    raw = client.get("/api/v1/datasets", headers=alice).json()["items"][-1]
    not_processed = client.post(
        "/api/v1/jobs", json={"kind": "train", "spec": spec(raw["id"])}, headers=alice
    )
    assert not_processed.status_code == 422 and "process it" in not_processed.text
    unknown = client.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec": spec(dataset["id"], base_model="gemma-9")},
        headers=alice,
    )
    assert unknown.status_code == 422 and "gemma-9" in unknown.text


@pytest.mark.timeout(900)
def test_cancel_then_resume_continues_the_step_count(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True, cancel_timeout=60)  # time for the checkpoint
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(client, alice)
    run = spec(dataset["id"], max_steps=60, eval_every=0, checkpoint_every=1000)
    job_id = start_and_reach(client, alice, run, step=3)
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)
    cancelled = wait_status(client, job_id, alice, "cancelled", timeout=120)
    stopped_at = max(
        s
        for s, _ in client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"][
            "loss"
        ]
    )
    assert f"step {stopped_at}" in cancelled["error"]
    resumed = client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    done = wait_status(client, job_id, alice, "succeeded", timeout=300)
    assert done["attempt"] == 1 and done["result"]["steps"] == 60
    loss = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]["loss"]
    assert [s for s, _ in loss] == list(range(1, 61))
    logs = log_lines(client, job_id, alice)
    assert f"resumed from step {stopped_at} of 60" in logs
    # A finished run cannot be resumed; comparing shows both runs and what differs.
    assert client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice).status_code == 409
    other = client.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec": spec(dataset["id"], max_steps=3, learning_rate=1e-3)},
        headers=alice,
    ).json()["id"]
    wait_status(client, other, alice, "succeeded", timeout=60)
    comparison = client.get(
        f"/api/v1/trainings/compare?ids={job_id}&ids={other}", headers=alice
    ).json()
    assert comparison["differences"]["max_steps"] == [60, 3]
    assert comparison["differences"]["learning_rate"] == [3e-3, 1e-3]
    assert len(comparison["runs"][1]["series"]["loss"]) == 3


@pytest.mark.timeout(900)
def test_a_killed_worker_resumes_from_its_last_checkpoint(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(client, alice)
    run = spec(dataset["id"], max_steps=30, eval_every=0, checkpoint_every=4)
    job_id = start_and_reach(client, alice, run, step=10)
    pid = worker_pid(settings, job_id)
    os.kill(pid, signal.SIGKILL)  # no chance to checkpoint
    failed = wait_status(client, job_id, alice, "failed", timeout=60)
    assert failed["error"].startswith("worker lost")
    reached = max(
        s
        for s, _ in client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"][
            "loss"
        ]
    )
    assert client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice).status_code == 200
    done = wait_status(client, job_id, alice, "succeeded", timeout=300)
    assert done["attempt"] == 1 and done["result"]["steps"] == 30
    loss = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]["loss"]
    assert [s for s, _ in loss] == list(range(1, 31))
    logs = log_lines(client, job_id, alice)
    checkpoint = reached - reached % 4  # the last checkpoint the killed worker completed
    resumed = [m for m in logs if m.startswith("resumed from step ")]
    assert resumed and resumed[0] in {
        f"resumed from step {checkpoint} of 30",
        f"resumed from step {checkpoint - 4} of 30",  # killed while writing that checkpoint
    }


def log_lines(client, job_id: str, headers: dict[str, str]) -> list[str]:
    events = parse_sse(client.get(f"/api/v1/jobs/{job_id}/events", headers=headers).text)
    return [e["data"]["data"]["message"] for e in events if e["event"] == "log"]


def start_and_reach(client, headers: dict[str, str], run: dict[str, object], step: int) -> str:
    """Start a training run and return its id once it has reported `step`."""
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": run}, headers=headers)
    job_id: str = job.json()["id"]
    for event in parse_sse_stream(client, job_id, headers):
        if event["event"] == "metric" and event["data"]["data"]["step"] >= step:
            break
    return job_id


def parse_sse_stream(client, job_id: str, headers: dict[str, str]):
    """Events as they arrive (the stream is read line by line)."""
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as response:
        block: list[str] = []
        for line in response.iter_lines():
            if line:
                block.append(line)
                continue
            if any(line.startswith("event:") for line in block):  # not a keep-alive comment
                yield parse_sse("\n".join(block))[0]
            block = []
