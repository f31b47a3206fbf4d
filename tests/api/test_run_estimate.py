"""Honest estimates, with real tiny-random-gemma3 runs: the forecast counts starting, evaluating,
answering the sample prompts and saving (a run of a minute is not "under a second"), a second
run is forecast from the phases the first one measured and lands within a sane factor of what it
takes; the saving phase reports its progress, and the run's health flags are in its metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.api.test_jobs_api import parse_sse, wait_status
from tests.api.test_training_api import api, processed_dataset  # noqa: F401 (a fixture)
from tuneforge.training.estimate.phases import ESTIMATE_METRIC

SPEC = {
    "base_model": "tiny-random-gemma3",
    "max_steps": 8,
    "batch_size": 4,
    "eval_every": 4,
    "sample_max_new_tokens": 8,
    "check_examples": 0,  # no before/after check queued behind the run
}
FACTOR = 2.5  # a measured forecast is within this factor of the real duration (a shared machine)


def train(client: Any, headers: dict[str, str], dataset_id: str) -> tuple[float, float, list]:
    """Run one tiny training: its forecast (made as it started), its duration, its events."""
    job = client.post(
        "/api/v1/jobs",
        json={"kind": "train", "spec": {**SPEC, "dataset_id": dataset_id}},
        headers=headers,
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    events = parse_sse(client.get(f"/api/v1/jobs/{job_id}/events", headers=headers).text)
    done = wait_status(client, job_id, headers, "succeeded", timeout=60)
    took = (
        datetime.fromisoformat(str(done["finished_at"]))
        - datetime.fromisoformat(str(done["started_at"]))
    ).total_seconds()
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=headers).json()
    [(step, estimated)] = metrics["series"][ESTIMATE_METRIC]
    print(f"estimated {estimated:.0f} s, took {took:.0f} s")
    assert step == 0
    return estimated, took, events


@pytest.mark.trains
@pytest.mark.timeout(900)
def test_the_forecast_counts_every_phase_and_learns_them_from_a_run(api) -> None:  # noqa: F811
    client, alice = api
    dataset = processed_dataset(client, alice)
    spec = {**SPEC, "dataset_id": dataset["id"]}
    first = client.post("/api/v1/trainings/estimate", json=spec, headers=alice).json()["estimate"]
    phases = first["phases"]
    assert first["duration_seconds"] == pytest.approx(sum(phases.values()), abs=0.5)
    assert phases["loading"] >= 10 and phases["saving"] >= 1  # a worker starts, the model saved
    assert phases["evaluating"] > 0 and phases["sampling"] > 0  # 3 evaluations, 3 prompts each
    assert first["duration_seconds"] > 5 * first["training_seconds"]  # the steps are the least

    estimated, took, events = train(client, alice, dataset["id"])
    assert estimated == pytest.approx(first["duration_seconds"], rel=0.01)  # what the form said
    assert estimated >= 15 and took / 6 < estimated, (estimated, took)  # not "under a second"
    # the saving phase says what it is doing, file by file; the steps fill only part of the bar
    progress = [e["data"]["data"] for e in events if e["event"] == "progress"]
    storing = [p for p in progress if "saving the model: storing" in (p["message"] or "")]
    assert any("adapter_model.safetensors" in p["message"] for p in storing)
    assert all(p["progress"] < 1 for p in storing)
    last_step = [p for p in progress if (p["message"] or "").startswith("step 8/8")]
    assert last_step and last_step[-1]["progress"] < 0.95

    # the second run is forecast from the phases the first one measured here
    measured = client.post("/api/v1/trainings/estimate", json=spec, headers=alice).json()
    assert measured["estimate"]["calibrated"]
    estimated, took, _ = train(client, alice, dataset["id"])
    assert took / FACTOR < estimated < took * FACTOR, (estimated, took)


@pytest.mark.timeout(600)
def test_a_runs_metrics_carry_its_health_flags(api) -> None:  # noqa: F811
    client, alice = api
    dataset = processed_dataset(client, alice)
    job = client.post(
        "/api/v1/jobs",
        json={
            "kind": "train",
            "spec": {**SPEC, "dataset_id": dataset["id"], "learning_rate": 1.0, "eval_every": 0},
        },
        headers=alice,
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    parse_sse(client.get(f"/api/v1/jobs/{job_id}/events", headers=alice).text)
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()
    codes = [flag["code"] for flag in metrics["health"]]
    assert "updates_exploding" in codes
    flag = next(f for f in metrics["health"] if f["code"] == "updates_exploding")
    assert flag["level"] == "error" and "learning rate" in flag["advice"]
    assert all("ended" in item for item in metrics["samples"][-1]["items"])
