"""GRPO through the API with tiny-random-gemma3: per-grader rewards streamed live, graded samples,
a model record whose adapter PEFT loads and whose every LoRA matrix learnt, refusals that say
which grader is wrong, and a killed worker's run resumed from its last checkpoint."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.api.test_jobs_api import parse_sse, wait_status
from tests.api.test_training_api import log_lines, start_and_reach
from tests.conftest import add_user, bearer
from tests.jobs.test_restart import worker_pid
from tuneforge.models.catalog import catalog
from tuneforge.storage import ArtifactStore

#: A length window no random completion reaches, so each scores in proportion to its length:
#: the rewards of a prompt's completions differ, and GRPO has something to learn from.
GRADERS = [
    {"type": "length", "name": "long", "unit": "chars", "minimum": 400},
    {"type": "numeric_match", "name": "number", "column": "answer"},
]


def prompt_dataset(client, headers, rows: int = 16) -> dict:
    """A processed prompt-only dataset: a `prompt` and an `answer` column the graders read."""
    lines = [{"prompt": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(rows)]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("sums.jsonl", io.BytesIO(body))}, headers=headers
    ).json()
    assert raw["mapping"]["mode"] == "prompt_only", raw
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return processed.json()


def grpo(dataset_id: str, **values: object) -> dict[str, object]:
    return {
        "trainer": "grpo",
        "base_model": "tiny-random-gemma3",
        "dataset_id": dataset_id,
        "graders": GRADERS,
        "max_steps": 4,
        "batch_size": 2,
        "num_generations": 4,
        "max_completion_length": 8,
        "learning_rate": 1e-2,
        "eval_every": 2,
        "eval_max_examples": 4,
        "check_examples": 0,
        **values,
    }


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


@pytest.mark.trains
@pytest.mark.timeout(300)
def test_grpo_streams_rewards_per_grader_and_makes_a_model_peft_loads(api, settings) -> None:
    client, alice = api
    dataset = prompt_dataset(client, alice)
    job = client.post(
        "/api/v1/jobs", json={"kind": "train", "spec": grpo(dataset["id"])}, headers=alice
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    events = parse_sse(client.get(f"/api/v1/jobs/{job_id}/events", headers=alice).text)
    assert {"status", "progress", "metric", "samples", "log"} <= {e["event"] for e in events}
    done = wait_status(client, job_id, alice, "succeeded", timeout=60)
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]
    for name in (
        "loss",
        "reward",
        "reward_std",
        "reward/long",
        "reward/long/std",
        "reward/number",
        "reward/number/std",
        "completion_length",
        "clip_ratio",
        "grad_norm",
    ):
        assert [step for step, _ in series[name]] == [1, 2, 3, 4], name
    assert "kl" not in series  # beta 0: no reference pass
    assert all(0 < value < 1 for _, value in series["reward/long"])
    assert all(value > 0 for _, value in series["reward_std"])
    assert all(0 < value <= 8 for _, value in series["completion_length"])
    for name in ("eval_reward", "eval_reward/long", "eval_reward/number"):
        assert [step for step, _ in series[name]] == [0, 2, 4], name
    samples = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["samples"]
    assert samples[-1]["step"] == 4
    item = samples[-1]["items"][0]
    assert set(item["grades"]) == {"long", "number"}
    expected = item["grades"]["long"] + item["grades"]["number"]
    assert item["reward"] == pytest.approx(expected)
    assert item["prompt"].startswith("What is") and isinstance(item["answer"], str)

    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    assert model["kind"] == "adapter" and model["base_model"] == "tiny-random-gemma3"
    assert model["spec"]["trainer"] == "grpo" and "eval_reward" in model["metrics"]
    local = Path(settings.data_dir) / "grpo"
    ArtifactStore(settings.resolved_storage_url).get_dir(model["artifact_key"], local)
    # LoRA's B matrices start at zero: every one of them moved.
    weights = load_file(str(local / "adapter_model.safetensors"))
    b_matrices = {name: w for name, w in weights.items() if "lora_B" in name}
    assert b_matrices and all(w.abs().sum() > 0 for w in b_matrices.values())
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, model_dir

    entry = catalog().get("tiny-random-gemma3")
    base = load_causal_lm(model_dir(entry, settings.models_dir), torch.float32)
    ids = torch.tensor([[2, 105, 2364, 107]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, local)
    assert not torch.allclose(tuned(ids).logits, before)


def test_grpo_without_graders_or_reading_a_missing_column_is_refused_saying_which(api) -> None:
    client, alice = api
    dataset = prompt_dataset(client, alice, rows=8)
    spec = grpo(dataset["id"])
    del spec["graders"]
    missing = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert missing.status_code == 422 and "graders" in missing.text
    empty = client.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec": grpo(dataset["id"], graders=[])},
        headers=alice,
    )
    assert empty.status_code == 422 and "graders" in empty.text
    wrong = [*GRADERS, {"type": "exact_match", "name": "solved", "column": "solution"}]
    refused = client.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec": grpo(dataset["id"], graders=wrong)},
        headers=alice,
    )
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "'solved'" in message and "'solution'" in message and "answer" in message
    assert refused.json()["error"]["details"]["fields"] == ["graders"]


@pytest.mark.trains
@pytest.mark.timeout(300)
def test_a_killed_grpo_worker_resumes_from_its_last_checkpoint(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = prompt_dataset(client, alice)
    run = grpo(dataset["id"], max_steps=10, eval_every=0, checkpoint_every=2, sample_answers=False)
    job_id = start_and_reach(client, alice, run, step=5)
    os.kill(worker_pid(settings, job_id), signal.SIGKILL)  # no chance to checkpoint
    failed = wait_status(client, job_id, alice, "failed", timeout=60)
    assert failed["error"].startswith("worker lost")
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]
    reached = max(step for step, _ in series["reward"])
    first_attempt = dict((step, value) for step, value in series["reward"])
    assert client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice).status_code == 200
    done = wait_status(client, job_id, alice, "succeeded", timeout=240)
    assert done["attempt"] == 1 and done["result"]["steps"] == 10
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()
    series = metrics["series"]
    assert [step for step, _ in series["reward"]] == list(range(1, 11))
    assert series["eval_reward"] and not metrics["samples"]  # evaluated; sample answers off
    resumed = [m for m in log_lines(client, job_id, alice) if m.startswith("resumed from step ")]
    checkpoint = reached - reached % 2
    assert resumed and resumed[0] in {
        f"resumed from step {checkpoint} of 10",
        f"resumed from step {checkpoint - 2} of 10",  # killed while writing that checkpoint
    }
    # The completions are seeded by the step: the resumed steps sampled and scored as before.
    again = int(resumed[0].split()[3]) + 1
    for step, value in series["reward"]:
        if again <= step <= reached:
            assert value == pytest.approx(first_attempt[step]), step
