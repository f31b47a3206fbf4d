"""Evaluation of tiny-random-gemma3-vision through the API on image datasets (a ZIP of generated
images with a `metadata.jsonl`, processed with a test split): the classification, extraction,
caption (conversation) and vibe suites each run as a job and report every sample with a
thumbnail of its image; the stored per-sample scores agree with the answers; a text-only model
is refused at launch, by name, before anything is queued."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import pytest
from PIL import Image

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.images import coloured_images, image_zip
from tuneforge.evaluation.metrics.classification import normalize_label
from tuneforge.evaluation.metrics.extraction import normalize_answer, token_f1

# Models run through the API: the PostgreSQL pass skips them (see tests/conftest.py).
pytestmark = pytest.mark.heavy

VISION = "tiny-random-gemma3-vision"
TEST_ROWS = 4


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


def image_dataset(client, headers, answer: str = "{colour}", rows: int = 12) -> dict[str, Any]:
    """A processed dataset of generated coloured squares, `TEST_ROWS` of them held out; each
    row asks for the colour, answered by `answer` with the colour filled in."""
    images = [(data, answer.format(colour=colour)) for data, colour in coloured_images(rows)]
    upload = client.post(
        "/api/v1/datasets",
        files={"file": ("squares.zip", io.BytesIO(image_zip(images)))},
        headers=headers,
    )
    assert upload.status_code == 201, upload.text
    raw = upload.json()
    config = {"mapping": raw["mapping"], "split": {"test_size": TEST_ROWS, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return dict(processed.json())


def evaluate(client, headers, **spec: object):
    return client.post("/api/v1/jobs", json={"kind": "evaluate", "spec": spec}, headers=headers)


def finished(client, headers, dataset_id: str, suite: str) -> tuple[dict, list[dict]]:
    """The results and stored samples of `VISION` evaluated with `suite` on the dataset."""
    job = evaluate(
        client, headers, model=VISION, dataset_id=dataset_id, suite=suite, max_new_tokens=6
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    wait_status(client, job_id, headers, "succeeded", timeout=240)
    result = client.get(f"/api/v1/evaluations/{job_id}", headers=headers).json()
    page = client.get(f"/api/v1/evaluations/{job_id}/samples?limit=50", headers=headers).json()
    assert (result["suite"], result["count"], result["skipped"]) == (suite, TEST_ROWS, 0)
    assert page["total"] == TEST_ROWS
    for sample in page["items"]:
        assert sample["prompt"] == "What colour is the square?"
        assert len(sample["images"]) == 1
        head, data = sample["images"][0].split(",", 1)
        assert head == "data:image/jpeg;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 160
        assert sample["answers"]["A"] == sample["answers"]["A"].strip()
    table = client.get(f"/api/v1/evaluations/{job_id}/samples.csv", headers=headers).text
    lines = list(csv.DictReader(io.StringIO(table)))
    assert [line["images"] for line in lines] == ["1"] * TEST_ROWS
    return result, page["items"]


@pytest.mark.timeout(300)
def test_classification_on_images(api) -> None:
    client, alice = api
    dataset = image_dataset(client, alice)
    result, samples = finished(client, alice, dataset["id"], "classification")
    truth = [normalize_label(s["reference"]) for s in samples]
    predicted = [normalize_label(s["answers"]["A"]) for s in samples]
    right = [t == p for t, p in zip(truth, predicted, strict=True)]
    assert [s["scores"]["A"]["correct"] for s in samples] == right
    assert result["metrics"][0]["accuracy"] == pytest.approx(sum(right) / TEST_ROWS)
    assert result["right"] == [sum(right)]
    assert set(truth) <= {"red", "green", "blue", "yellow"}


@pytest.mark.timeout(300)
def test_extraction_on_images(api) -> None:
    client, alice = api
    dataset = image_dataset(client, alice)
    result, samples = finished(client, alice, dataset["id"], "extraction")
    exact = [normalize_answer(s["answers"]["A"]) == s["reference"] for s in samples]
    f1 = [token_f1(s["answers"]["A"], s["reference"]) for s in samples]
    assert [s["scores"]["A"]["correct"] for s in samples] == exact
    assert result["metrics"][0] == pytest.approx(
        {"exact_match": sum(exact) / TEST_ROWS, "f1": sum(f1) / TEST_ROWS}
    )


@pytest.mark.timeout(300)
def test_captions_on_images(api) -> None:
    client, alice = api
    dataset = image_dataset(client, alice, answer="A {colour} square on a noisy grey background.")
    result, samples = finished(client, alice, dataset["id"], "conversation")
    assert "rougeL" in result["metrics"][0]
    assert all(s["reference"].startswith("A ") for s in samples)
    assert all(0 <= s["scores"]["A"]["score"] <= 1 for s in samples)


@pytest.mark.timeout(300)
def test_vibe_on_images(api) -> None:
    client, alice = api
    dataset = image_dataset(client, alice)
    result, samples = finished(client, alice, dataset["id"], "vibe")
    assert result["metrics"] == [{}] and result["right"] is None
    assert all(set(s["answers"]) == {"A"} and s["scores"] == {} for s in samples)


def test_a_text_only_model_is_refused_at_launch(api) -> None:
    client, alice = api
    dataset = image_dataset(client, alice)
    stats = client.get(f"/api/v1/datasets/{dataset['id']}/stats", headers=alice).json()
    assert stats["images"]["total"] == 12  # what the launch check reads
    for spec in (
        {"model": "tiny-random-gemma3"},
        {"model": VISION, "compare_with": "tiny-random-gemma3"},
    ):
        refused = evaluate(client, alice, dataset_id=dataset["id"], suite="vibe", **spec)
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert message.startswith("Tiny random Gemma 3 (tests) is a text-only model"), message
    assert client.get("/api/v1/jobs", headers=alice).json()["total"] == 0


@pytest.mark.trains
@pytest.mark.timeout(420)
def test_the_automatic_check_of_a_vision_run_shows_its_images(api) -> None:
    """A short vision training run checks itself on its test images: the fine-tune and its base
    answer each held-out image, scored by the suite that fits the labels (classification, not
    the vibe suite that image rows used to fall back to), each sample with its thumbnail."""
    client, alice = api
    dataset = image_dataset(client, alice)
    spec = {
        "base_model": VISION,
        "dataset_id": dataset["id"],
        "max_steps": 2,
        "batch_size": 2,
        "eval_every": 0,
        "sample_max_new_tokens": 4,  # the run's own sample answers are not what is tested here
        "check_examples": TEST_ROWS,
    }
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert job.status_code == 201, job.text
    trained = wait_status(client, job.json()["id"], alice, "succeeded", timeout=300)
    check_id = trained["result"]["check_job_id"]
    assert check_id, trained["result"]
    wait_status(client, check_id, alice, "succeeded", timeout=240)
    result = client.get(f"/api/v1/evaluations/{check_id}", headers=alice).json()
    assert (result["automatic"], result["suite"], result["count"]) == (True, "classification", 4)
    assert [m["id"] for m in result["models"]] == [trained["result"]["model_id"], VISION]
    samples = client.get(f"/api/v1/evaluations/{check_id}/samples", headers=alice).json()
    for sample in samples["items"]:
        assert len(sample["images"]) == 1 and sample["images"][0].startswith("data:image/jpeg")
        assert set(sample["answers"]) == {"A", "B"}
