"""Augmentation through the API: a preview of originals beside their variants with counts,
tokens and cost; the job that makes the augmented dataset (train augmented with lineage, test
untouched); refusals; and another user's dataset answers 404."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import add_user, bearer

pytestmark = pytest.mark.slow
QUESTIONS = [
    f"What would a careful gardener plant in a small sunny garden during month {i}?"
    for i in range(12)
]


def _wait(client, headers, dataset_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = client.get(f"/api/v1/datasets/{dataset_id}", headers=headers).json()
        if dataset["status"] != "processing":
            return dataset
        time.sleep(0.2)
    raise AssertionError("still processing")


def _all_rows(client, headers, dataset_id: str, split: str) -> list[dict]:
    page = client.get(
        f"/api/v1/datasets/{dataset_id}/rows",
        params={"split": split, "limit": 200},
        headers=headers,
    ).json()
    assert page["total"] == len(page["rows"])
    return page["rows"]


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    alice, bob = bearer(add_user(settings, "alice")), bearer(add_user(settings, "bob"))
    lines = [
        json.dumps({"question": q, "answer": f"Answer {i}: tomatoes."})
        for i, q in enumerate(QUESTIONS)
    ]
    raw = client.post(
        "/api/v1/datasets",
        headers=alice,
        files={"file": ("garden.jsonl", "\n".join(lines).encode())},
    ).json()
    processed = client.post(
        f"/api/v1/datasets/{raw['id']}/process",
        headers=alice,
        json={"mapping": raw["mapping"], "split": {"mode": "manual", "test_size": 3, "seed": 1}},
    ).json()
    assert processed["splits"] == {"train": 9, "test": 3}
    return client, alice, bob, raw, processed


SPEC = {"methods": [{"name": "synonym", "rate": 0.2}, {"name": "swap"}], "copies": 2, "seed": 5}


def test_preview_then_job_makes_an_augmented_dataset(api) -> None:
    client, alice, _, _, source = api
    preview = client.post(
        f"/api/v1/datasets/{source['id']}/augment/preview?count=3", headers=alice, json=SPEC
    )
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert len(shown["examples"]) == 3 and shown["rows_in"] == 9
    assert shown["rows_out_max"] == 27 and 9 < shown["rows_out"] <= 27
    assert shown["copied_splits"] == {"test": 3}
    assert shown["tokens_in"] > 0 and shown["tokens_out"] > shown["tokens_in"]
    assert shown["cost"]["money"] == 0 and shown["cost"]["seconds"] > 0
    first = shown["examples"][0]
    assert first["rendered"].startswith("<bos><start_of_turn>user\n")
    assert first["variants"] and first["variants"][0]["rendered"] != first["rendered"]
    # The answer is never rewritten by default.
    answer = first["rendered"].split("<start_of_turn>model\n")[1]
    assert all(v["rendered"].endswith(answer) for v in first["variants"])

    started = client.post(f"/api/v1/datasets/{source['id']}/augment", headers=alice, json=SPEC)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "processing" and started.json()["job_id"]
    made = _wait(client, alice, started.json()["id"])
    assert made["status"] == "ready", made["error"]
    assert (made["kind"], made["origin"], made["source_id"]) == (
        "processed",
        "augmentation",
        source["id"],
    )
    assert made["config"]["augmentation"]["source_id"] == source["id"]
    assert made["config"]["augmentation"]["spec"]["methods"][0]["name"] == "synonym"
    assert made["config"]["mapping"] == source["config"]["mapping"]

    train = _all_rows(client, alice, made["id"], "train")
    source_train = _all_rows(client, alice, source["id"], "train")
    assert made["splits"]["train"] == len(train) and len(train) > 9
    assert [r["messages"] for r in train[:9]] == [r["messages"] for r in source_train]
    for variant in train[9:]:
        assert variant["augmentation"] in {"synonym", "swap"}
        assert variant["messages"] != source_train[variant["augmented_from"]]["messages"]
    # The preview showed exactly what the job made.
    assert [v["methods"] for v in first["variants"]] == [
        r["augmentation"] for r in train[9:] if r["augmented_from"] == 0
    ]
    assert _all_rows(client, alice, made["id"], "test") == _all_rows(
        client, alice, source["id"], "test"
    )
    stats = client.get(f"/api/v1/datasets/{made['id']}/stats", headers=alice).json()
    assert stats["rows"] == made["splits"]
    job = client.get(f"/api/v1/jobs/{made['job_id']}", headers=alice).json()
    assert (job["kind"], job["status"]) == ("dataset_augment", "succeeded")


def test_another_users_dataset_answers_404(api) -> None:
    client, _, bob, _, source = api
    for path in ("augment/preview", "augment"):
        response = client.post(f"/api/v1/datasets/{source['id']}/{path}", headers=bob, json=SPEC)
        assert response.status_code == 404, path


def test_bad_requests_are_refused_clearly(api) -> None:
    client, alice, _, raw, source = api
    raw_refused = client.post(f"/api/v1/datasets/{raw['id']}/augment", headers=alice, json=SPEC)
    assert raw_refused.status_code == 409 and "process" in raw_refused.json()["error"]["message"]
    unknown = client.post(
        f"/api/v1/datasets/{source['id']}/augment",
        headers=alice,
        json={"methods": [{"name": "paint"}]},
    )
    assert unknown.status_code == 422
    no_images = client.post(
        f"/api/v1/datasets/{source['id']}/augment/preview",
        headers=alice,
        json={"methods": [{"name": "flip"}]},
    )
    assert no_images.status_code == 422 and "no images" in no_images.json()["error"]["message"]


def test_an_image_dataset_is_previewed_with_thumbnails_and_augmented(api) -> None:
    import io

    from tests.images import coloured_images, image_zip

    client, alice, *_ = api
    archive = image_zip(coloured_images(6), question="What colour is the square?")
    raw = client.post(
        "/api/v1/datasets", files={"file": ("squares.zip", io.BytesIO(archive))}, headers=alice
    ).json()
    source = client.post(
        f"/api/v1/datasets/{raw['id']}/process",
        headers=alice,
        json={"mapping": raw["mapping"], "split": {"mode": "manual", "test_size": 2}},
    ).json()
    assert source["splits"] == {"train": 4, "test": 2}
    spec = {"methods": [{"name": "rotate", "degrees": 40}, {"name": "color"}], "combine": "all"}
    shown = client.post(
        f"/api/v1/datasets/{source['id']}/augment/preview?count=2", headers=alice, json=spec
    ).json()
    first = shown["examples"][0]
    assert first["images"][0].startswith("data:image/jpeg;base64,")
    variant = first["variants"][0]
    assert variant["methods"] == "rotate+color" and variant["images"][0] != first["images"][0]
    assert variant["rendered"] == first["rendered"]  # the text is left alone
    # An image counts the same tokens whatever its pixels.
    assert variant["tokens"] == first["tokens"]

    started = client.post(f"/api/v1/datasets/{source['id']}/augment", headers=alice, json=spec)
    made = _wait(client, alice, started.json()["id"])
    assert made["status"] == "ready", made["error"]
    assert made["splits"] == {"train": 8, "test": 2}
    stats = client.get(f"/api/v1/datasets/{made['id']}/stats", headers=alice).json()
    assert stats["images"]["total"] == 10
    page = client.get(
        f"/api/v1/datasets/{made['id']}/rows",
        params={"split": "train", "offset": 4, "limit": 4},
        headers=alice,
    ).json()
    assert [row["augmented_from"] for row in page["rows"]] == [0, 1, 2, 3]
    assert all(row["augmentation"] == "rotate+color" for row in page["rows"])


def test_a_running_augmentation_can_be_cancelled(api) -> None:
    client, alice, *_ = api
    lines = [
        json.dumps({"question": f"{q} (variant {i})", "answer": "Plant beans."})
        for i in range(3000)
        for q in QUESTIONS[:1]
    ]
    raw = client.post(
        "/api/v1/datasets", headers=alice, files={"file": ("big.jsonl", "\n".join(lines).encode())}
    ).json()
    source = client.post(
        f"/api/v1/datasets/{raw['id']}/process",
        headers=alice,
        json={"mapping": raw["mapping"], "split": {"mode": "none"}},
    ).json()
    assert source["splits"] == {"train": 3000}
    spec = {"methods": [{"name": "swap"}, {"name": "delete"}, {"name": "synonym"}], "copies": 10}
    made = client.post(f"/api/v1/datasets/{source['id']}/augment", headers=alice, json=spec).json()
    deadline = time.monotonic() + 60
    while True:  # cancel once it has done some of the work, not before
        job = client.get(f"/api/v1/jobs/{made['job_id']}", headers=alice).json()
        assert job["status"] in ("queued", "running"), job
        if job["progress"] > 0:
            break
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)
    cancelled = client.post(f"/api/v1/jobs/{made['job_id']}/cancel", headers=alice)
    assert cancelled.status_code == 200, cancelled.text
    dataset = _wait(client, alice, made["id"])
    job = client.get(f"/api/v1/jobs/{made['job_id']}", headers=alice).json()
    assert job["status"] == "cancelled" and job["progress"] < 0.9
    assert dataset["status"] == "failed" and dataset["rows"] == 0
