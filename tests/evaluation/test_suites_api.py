"""The rewards and preference suites through the API with tiny-random-gemma3: a fine-tune against
its base on a prompt-only dataset's held-out prompts (graded by a grader set) and on a
preference dataset's held-out pairs, the metrics recomputed from the stored samples, and the
launches that cannot work refused with the field named."""

from __future__ import annotations

import io
import json
import time

import pytest

from tests.api.test_evaluations_api import evaluate
from tests.conftest import add_user, bearer
from tests.fine_tuned import add_fine_tuned
from tuneforge.training.rewards.grade import GraderSet
from tuneforge.training.rewards.spec import GRADERS

TINY = "tiny-random-gemma3"
GRADER_SET = [
    {"type": "numeric_match", "column": "answer", "weight": 2.0},
    {"type": "length", "name": "short", "maximum": 3},
]


def upload(client, headers, name: str, rows: list[dict], test_size: int) -> dict:
    """A processed dataset of `rows`, with the mapping TuneForge detects, `test_size` held out."""
    body = "\n".join(json.dumps(row) for row in rows).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": (name, io.BytesIO(body))}, headers=headers
    ).json()
    config = {"mapping": raw["mapping"], "split": {"test_size": test_size, "seed": 0}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return processed.json()


def sums(client, headers) -> dict:
    rows = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(12)]
    return upload(client, headers, "sums.jsonl", rows, test_size=3)


def pairs(client, headers) -> dict:
    rows = [
        {"prompt": f"Is {i} even?", "chosen": ["No.", "Yes."][i % 2 == 0], "rejected": "Maybe?"}
        for i in range(12)
    ]
    return upload(client, headers, "pairs.jsonl", rows, test_size=4)


def finished(client, headers, job_id: str, timeout: float = 500) -> dict:
    """The evaluation once it succeeded (its error when it did not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        assert job["status"] not in ("failed", "cancelled"), job["error"]
        if job["status"] == "succeeded":
            return dict(job)
        time.sleep(0.2)
    raise AssertionError("the evaluation did not finish in time")


def samples(client, headers, job_id: str) -> list[dict]:
    download = client.get(f"/api/v1/evaluations/{job_id}/samples.jsonl", headers=headers)
    assert download.status_code == 200
    return [json.loads(line) for line in download.text.splitlines()]


@pytest.fixture
def api(make_client, settings, tiny_adapter):
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    return client, alice, add_fine_tuned(settings, "alice", tiny_adapter)


@pytest.mark.trains
@pytest.mark.timeout(600)
def test_the_rewards_suite_measures_a_fine_tune_against_its_base(api) -> None:
    client, alice, tuned = api
    dataset = sums(client, alice)
    job = evaluate(
        client,
        alice,
        model=tuned,
        compare_with=TINY,
        dataset_id=dataset["id"],
        suite="rewards",
        graders=GRADER_SET,
        max_new_tokens=4,
    )
    assert job.status_code == 201, job.text
    done = finished(client, alice, job.json()["id"])
    result = done["result"]
    assert result["suite"] == "rewards" and result["count"] == 3
    rows = samples(client, alice, done["id"])
    graders = GraderSet(GRADERS.validate_python(GRADER_SET))
    for index, label in enumerate("AB"):
        answers = [row["answers"][label] for row in rows]
        references = [{"answer": str(2 * int(row["prompt"].split()[2]))} for row in rows]
        expected = graders.score(answers, references)
        metrics = result["metrics"][index]
        assert metrics["reward"] == pytest.approx(sum(s.total for s in expected) / 3)
        for name in ("numeric_match", "short"):
            assert metrics[f"reward/{name}"] == pytest.approx(
                sum(s.grades[name] for s in expected) / 3
            )
        for row, scores in zip(rows, expected, strict=True):
            assert row["scores"][label]["reward"] == pytest.approx(scores.total)
            assert row["scores"][label]["reason/numeric_match"] == scores.reasons["numeric_match"]
    assert result["difference"]["reward"] == pytest.approx(
        result["metrics"][1]["reward"] - result["metrics"][0]["reward"]
    )
    shown = client.get(f"/api/v1/evaluations/{done['id']}", headers=alice).json()
    assert shown["metrics"] == result["metrics"]


@pytest.mark.trains
@pytest.mark.timeout(600)
def test_the_preference_suite_scores_held_out_pairs_without_generating(api) -> None:
    client, alice, tuned = api
    dataset = pairs(client, alice)
    job = evaluate(
        client, alice, model=tuned, compare_with=TINY, dataset_id=dataset["id"], suite="preference"
    )
    assert job.status_code == 201, job.text
    done = finished(client, alice, job.json()["id"])
    result = done["result"]
    assert result["suite"] == "preference" and result["count"] == 4
    rows = samples(client, alice, done["id"])
    assert all(row["answers"] == {} and row["reference"] in ("Yes.", "No.") for row in rows)
    for index, label in enumerate("AB"):
        scores = [row["scores"][label] for row in rows]
        metrics = result["metrics"][index]
        assert metrics["preference_accuracy"] == sum(s["correct"] for s in scores) / 4
        assert metrics["margin"] == pytest.approx(sum(s["margin"] for s in scores) / 4)
        assert all(
            s["margin"] == pytest.approx(s["chosen_logprob"] - s["rejected_logprob"])
            for s in scores
        )
        assert result["right"][index] == sum(s["correct"] for s in scores)
    # A random LoRA over the base moves the log-probabilities.
    assert result["metrics"][0]["margin"] != pytest.approx(result["metrics"][1]["margin"])
    assert result["details"][0] == {"length_normalized": True, "cut": 0}


def test_launches_that_cannot_work_are_refused(api) -> None:
    client, alice, _ = api
    prompts, preference = sums(client, alice), pairs(client, alice)
    on_prompts = {"model": TINY, "dataset_id": prompts["id"]}

    wrong_data = evaluate(client, alice, **on_prompts, suite="preference")
    assert wrong_data.status_code == 422
    error = wrong_data.json()["error"]
    assert "holds prompt_only rows" in error["message"]
    assert error["details"]["fields"] == ["suite", "dataset_id"]

    missing = evaluate(
        client,
        alice,
        **on_prompts,
        suite="rewards",
        graders=[GRADER_SET[1], {"type": "exact_match", "column": "solution"}],
    )
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert "The grader 'exact_match' reads the column 'solution'" in error["message"]
    assert error["details"]["fields"] == ["graders.1.column"]

    no_graders = evaluate(client, alice, **on_prompts, suite="rewards")
    assert no_graders.status_code == 422
    assert "the rewards suite needs `graders`" in no_graders.text

    hostile = evaluate(
        client,
        alice,
        **on_prompts,
        suite="rewards",
        graders=[{"type": "regex", "pattern": "(?<=a)b"}],
    )
    assert hostile.status_code == 422 and "RE2 cannot use this pattern" in hostile.text

    judged = evaluate(
        client,
        alice,
        model=TINY,
        dataset_id=preference["id"],
        suite="preference",
        judge={"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    )
    assert judged.status_code == 422 and "the preference suite generates none" in judged.text
