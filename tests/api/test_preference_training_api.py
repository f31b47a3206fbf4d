"""DPO, ORPO and KTO through the API with tiny-random-gemma3: live events and the preference
metrics, the model record whose adapter PEFT loads, every trained weight moved and the loss fell;
a killed worker resumes from its checkpoint with the reference log-probabilities stored there."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from tests.api.test_jobs_api import parse_sse, wait_status
from tests.api.test_training_api import log_lines, start_and_reach
from tests.conftest import add_user, bearer
from tests.jobs.test_restart import worker_pid
from tuneforge.models.catalog import catalog
from tuneforge.storage import ArtifactStore

COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "cyan", "rose", "gold"]
REWARDS = ["rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"]
OWN_METRICS = {"dpo": [], "orpo": ["nll_loss", "log_odds_ratio"], "kto": ["kl"]}
#: How far the loss falls in 8 steps at least: ORPO's is mostly the chosen answers' language
#: loss, which a random model with Gemma's vocabulary unlearns slowly; KTO's reference point
#: (the KL estimate) rises as the model moves, which slows its fall.
FALLS_TO = {"dpo": 0.5, "orpo": 0.9, "kto": 0.7}
#: KTO trains single answers: 4 a step are the tokens of DPO's 2 pairs.
BATCH = {"dpo": 2, "orpo": 2, "kto": 4}


def preference_dataset(client, headers, rows: int = 16) -> dict:
    """A processed preference dataset: the right colour chosen over an evasive answer."""
    lines = [
        {
            "prompt": f"Which colour is number {i}?",
            "chosen": f"Number {i} is {COLOURS[i % 10]}.",
            "rejected": "I would rather not say.",
        }
        for i in range(rows)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("pairs.jsonl", io.BytesIO(body))}, headers=headers
    ).json()
    assert raw["mapping"]["mode"] == "preference", raw["mapping"]
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return processed.json()


def spec(trainer: str, dataset_id: str, **values: object) -> dict[str, object]:
    return {
        "trainer": trainer,
        "base_model": "tiny-random-gemma3",
        "dataset_id": dataset_id,
        "max_steps": 8,
        "batch_size": 2,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "eval_every": 4,
        "eval_max_examples": 2,
        "sample_max_new_tokens": 8,
        "lora_r": 4,
        "lora_alpha": 8,
        "check_examples": 0,  # no before/after check: these runs are about training itself
        **values,
    }


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    return client, alice, preference_dataset(client, alice)


@pytest.mark.trains
@pytest.mark.timeout(600)
@pytest.mark.parametrize("trainer", ["dpo", "orpo", "kto"])
def test_preference_training_streams_its_metrics_and_makes_a_model_that_learned(
    api, settings, trainer: str
) -> None:
    client, alice, dataset = api
    run = spec(trainer, dataset["id"], batch_size=BATCH[trainer])
    estimate = client.post("/api/v1/trainings/estimate", json=run, headers=alice)
    assert estimate.status_code == 200, estimate.text
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": run}, headers=alice)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    events = parse_sse(client.get(f"/api/v1/jobs/{job_id}/events", headers=alice).text)
    assert {"status", "progress", "metric", "samples", "log"} <= {e["event"] for e in events}
    done = wait_status(client, job_id, alice, "succeeded", timeout=60)
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]
    # KTO's steps may see answers of one label only: no chosen or rejected mean then.
    every_step = ["rewards/accuracy"] if trainer == "kto" else REWARDS
    for name in ["loss", *every_step, *OWN_METRICS[trainer], "update_ratio", "eta_seconds"]:
        assert [step for step, _ in series[name]] == list(range(1, 9)), name
    assert set(REWARDS) <= set(series)
    for name in ["eval_loss", *(f"eval_{n}" for n in REWARDS + OWN_METRICS[trainer])]:
        assert [step for step, _ in series[name]] == [0, 4, 8], name
    losses = [value for _, value in series["loss"]]
    assert sum(losses[-2:]) / 2 < FALLS_TO[trainer] * losses[0], losses
    assert series["eval_rewards/accuracy"][-1][1] == 1.0
    assert series["eval_rewards/margin"][-1][1] > series["eval_rewards/margin"][0][1]
    # The model record; its adapter loads with PEFT, and every trained matrix moved.
    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    assert model["kind"] == "adapter" and model["job_id"] == job_id
    store = ArtifactStore(settings.resolved_storage_url)
    local = Path(settings.data_dir) / "check"
    store.get_dir(model["artifact_key"], local)
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, model_dir
    from tuneforge.training.registry import recipe
    from tuneforge.training.runtime import prepare_model, runtime_for

    path = model_dir(catalog().get("tiny-random-gemma3"), settings.models_dir)
    tuned = PeftModel.from_pretrained(load_causal_lm(path, torch.float32), local)
    assert tuned(torch.tensor([[2, 105, 2364, 107]])).logits.shape[-1] == 262144
    trained = load_file(str(local / "adapter_model.safetensors"))
    start = recipe(trainer).spec.model_validate(run)
    initial = get_peft_model_state_dict(prepare_model(start, path, runtime_for(start)))
    assert set(trained) == set(initial) and trained
    unchanged = [n for n, t in trained.items() if torch.equal(t, initial[n].to(t.dtype))]
    assert not unchanged


@pytest.mark.trains
@pytest.mark.timeout(900)
@pytest.mark.parametrize("trainer", ["dpo", "orpo", "kto"])
def test_a_killed_run_resumes_from_its_checkpoint(api, settings, trainer: str) -> None:
    """DPO and KTO keep their reference log-probabilities with the checkpoint and reuse them;
    ORPO has no reference model, so it neither computes nor stores one."""
    client, alice, dataset = api
    run = spec(
        trainer,
        dataset["id"],
        batch_size=BATCH[trainer],
        max_steps=16,
        eval_every=0,
        checkpoint_every=3,
    )
    job_id = start_and_reach(client, alice, run, step=7)
    os.kill(worker_pid(settings, job_id), signal.SIGKILL)  # no chance to checkpoint
    wait_status(client, job_id, alice, "failed", timeout=60)
    before = log_lines(client, job_id, alice)
    computing = "computing the reference log-probabilities of the train split"
    assert any(m.startswith(computing) for m in before) == (trainer != "orpo")
    assert client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice).status_code == 200
    done = wait_status(client, job_id, alice, "succeeded", timeout=300)
    assert done["result"]["steps"] == 16
    loss = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]["loss"]
    assert [s for s, _ in loss] == list(range(1, 17))
    after = log_lines(client, job_id, alice)[len(before) :]
    assert any(m.startswith("resumed from step ") for m in after)
    stored = "using the reference log-probabilities of the train split stored with the checkpoint"
    assert (stored in after) == (trainer != "orpo")
    assert not any(m.startswith("computing the reference") for m in after)
