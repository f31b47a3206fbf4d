"""Evaluation through the API with tiny-random-gemma3: a model fine-tuned on a classification
dataset (by a real training run) against its base, the metrics recomputed with scikit-learn
from the stored answers, the difference table, the sample filters and pages, the CSV and JSONL
downloads, refusals at launch, and another user's evaluations, datasets and models as 404s."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import parse_sse_stream
from tests.conftest import add_user, bearer
from tuneforge.evaluation.metrics.classification import normalize_label

TINY = "tiny-random-gemma3"
WORDS = ["lovely", "awful", "great", "boring", "superb", "dreadful"]


def reviews(client, headers, rows: int = 30) -> dict:
    """A processed classification dataset: short reviews labelled positive or negative, 10 of
    them held out as the test split."""
    lines = [
        {"review": f"Film {i} was {WORDS[i % 6]}.", "label": ["positive", "negative"][i % 2]}
        for i in range(rows)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("reviews.jsonl", io.BytesIO(body))}, headers=headers
    ).json()
    config = {
        "mapping": {"user": {"column": "review"}, "assistant": {"column": "label"}},
        "split": {"test_size": 10, "seed": 1},
    }
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return processed.json()


def evaluate(client, headers, **spec: object):
    return client.post("/api/v1/jobs", json={"kind": "evaluate", "spec": spec}, headers=headers)


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice")), bearer(add_user(settings, "bob"))


def fine_tune(client, headers, dataset_id: str) -> str:
    """A LoRA fine-tune of tiny-random-gemma3 that has learnt to answer with a label."""
    spec = {
        "base_model": TINY,
        "dataset_id": dataset_id,
        "max_steps": 40,
        "batch_size": 4,
        "learning_rate": 5e-3,
        "eval_every": 0,
        "check_examples": 0,  # the tests evaluate it themselves
    }
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=headers)
    assert job.status_code == 201, job.text
    done = wait_status(client, job.json()["id"], headers, "succeeded", timeout=300)
    return str(done["result"]["model_id"])


def right(row: dict, label: str) -> bool:
    return normalize_label(row["answers"][label]) == normalize_label(row["reference"])


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_a_fine_tune_against_its_base_matches_scikit_learn(api) -> None:
    client, alice, bob = api
    dataset = reviews(client, alice)
    model_id = fine_tune(client, alice, dataset["id"])
    job = evaluate(
        client,
        alice,
        model=TINY,
        compare_with=model_id,
        dataset_id=dataset["id"],
        suite="classification",
        max_samples=8,
        max_new_tokens=4,
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    early = client.get(f"/api/v1/evaluations/{job_id}", headers=alice)
    assert early.status_code == 409 and "once it has finished" in early.json()["error"]["message"]
    wait_status(client, job_id, alice, "succeeded", timeout=300)

    result = client.get(f"/api/v1/evaluations/{job_id}", headers=alice).json()
    assert [m["id"] for m in result["models"]] == [TINY, model_id]
    assert (result["suite"], result["split"], result["count"]) == ("classification", "test", 8)
    download = client.get(f"/api/v1/evaluations/{job_id}/samples.jsonl", headers=alice)
    assert download.status_code == 200
    assert download.headers["content-disposition"] == (
        f'attachment; filename="evaluation-{job_id}.jsonl"'
    )
    rows = [json.loads(line) for line in download.text.splitlines()]
    assert len(rows) == 8 and [r["index"] for r in rows] == sorted(r["index"] for r in rows)
    # Accuracy and macro-F1 (over the reference classes) as scikit-learn computes them from the
    # stored answers, for both models.
    truth = [normalize_label(row["reference"]) for row in rows]
    for label, metrics in zip("AB", result["metrics"], strict=True):
        predicted = [normalize_label(row["answers"][label]) for row in rows]
        assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
        assert metrics["macro_f1"] == pytest.approx(
            f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0)
        )
        assert [row["scores"][label]["correct"] for row in rows] == [
            t == p for t, p in zip(truth, predicted, strict=True)
        ]
    base, tuned = result["metrics"]
    assert tuned["accuracy"] > 0 and base["accuracy"] == 0  # the fine-tune learnt the labels
    assert result["difference"] == pytest.approx({k: tuned[k] - base[k] for k in tuned})
    matrix = result["details"][1]["confusion_matrix"]
    assert sum(map(sum, matrix)) == 8 and result["details"][1]["labels"] == ["negative", "positive"]

    # The filters, against the stored answers.
    expected = {
        "a_right_b_wrong": (True, False),
        "a_wrong_b_right": (False, True),
        "both_right": (True, True),
        "both_wrong": (False, False),
    }
    for name, (a, b) in expected.items():
        page = client.get(
            f"/api/v1/evaluations/{job_id}/samples?filter={name}&limit=500", headers=alice
        ).json()
        wanted = [r["index"] for r in rows if (right(r, "A"), right(r, "B")) == (a, b)]
        assert [s["index"] for s in page["items"]] == wanted and page["total"] == len(wanted)
    page = client.get(f"/api/v1/evaluations/{job_id}/samples?offset=2&limit=3", headers=alice)
    assert page.json()["total"] == 8 and page.json()["items"] == rows[2:5]
    bad = client.get(f"/api/v1/evaluations/{job_id}/samples?filter=sometimes", headers=alice)
    assert bad.status_code == 422

    # The CSV holds the same samples, a column per answer and per score of each model.
    table = client.get(f"/api/v1/evaluations/{job_id}/samples.csv", headers=alice)
    assert table.headers["content-type"].startswith("text/csv")
    assert table.headers["content-disposition"].startswith("attachment;")
    lines = list(csv.DictReader(io.StringIO(table.text)))
    assert list(lines[0]) == [
        "index",
        "prompt",
        "reference",
        "answer_a",
        "correct_a",
        "score_a",
        "answer_b",
        "correct_b",
        "score_b",
    ]
    assert [(int(x["index"]), x["answer_a"], x["answer_b"]) for x in lines] == [
        (r["index"], r["answers"]["A"], r["answers"]["B"]) for r in rows
    ]
    assert [x["correct_b"] == "true" for x in lines] == [right(r, "B") for r in rows]

    # Bob sees none of it, and cannot evaluate Alice's model on his own data.
    for path in ("", "/samples", "/samples.csv", "/samples.jsonl"):
        response = client.get(f"/api/v1/evaluations/{job_id}{path}", headers=bob)
        assert response.status_code == 404, path
    own = reviews(client, bob, rows=12)
    stolen = evaluate(client, bob, model=model_id, dataset_id=own["id"], suite="vibe")
    assert stolen.status_code == 404 and model_id in stolen.json()["error"]["message"]
    borrowed = evaluate(client, bob, model=TINY, dataset_id=dataset["id"], suite="vibe")
    assert borrowed.status_code == 404


def test_bad_launches_are_refused_before_they_are_queued(api) -> None:
    client, alice, _ = api
    dataset = reviews(client, alice, rows=12)
    good = {"model": TINY, "dataset_id": dataset["id"], "suite": "classification"}
    unknown = evaluate(client, alice, **(good | {"model": "gemma-9"}))
    assert unknown.status_code == 404 and "gemma-9" in unknown.json()["error"]["message"]
    missing = evaluate(client, alice, **(good | {"compare_with": "0" * 32}))
    assert missing.status_code == 404
    raw = client.get("/api/v1/datasets?kind=raw", headers=alice).json()["items"][0]
    not_processed = evaluate(client, alice, **(good | {"dataset_id": raw["id"]}))
    assert not_processed.status_code == 422 and "process it" in not_processed.text
    for refused in (
        {"compare_with": TINY},  # itself
        {"json_schema": {"type": "object"}},  # not the json suite
        {"suite": "json", "json_schema": {"type": "nonsense"}},  # not a JSON Schema
        {"suite": "bleu"},
        {"max_samples": 0},
    ):
        response = evaluate(client, alice, **(good | refused))
        assert response.status_code == 422, refused
    assert client.get("/api/v1/jobs", headers=alice).json()["total"] == 0


@pytest.mark.timeout(300)
def test_a_cancelled_evaluation_stops_and_has_no_results(api) -> None:
    client, alice, _ = api
    dataset = reviews(client, alice, rows=12)
    job_id = evaluate(
        client,
        alice,
        model=TINY,
        dataset_id=dataset["id"],
        suite="vibe",
        max_new_tokens=4096,  # a random model hardly ever stops: minutes for the 10 rows
    ).json()["id"]
    for event in parse_sse_stream(client, job_id, alice):
        if event["event"] == "progress":
            assert event["data"]["data"]["message"] == "model A: 0/10"
            break
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)
    cancelled = wait_status(client, job_id, alice, "cancelled", timeout=60)
    assert cancelled["progress"] < 0.5
    results = client.get(f"/api/v1/evaluations/{job_id}", headers=alice)
    assert results.status_code == 409
    assert "ended cancelled" in results.json()["error"]["message"]
