"""Other ways in: a Hugging Face dataset (the same `load_dataset` path as the Hub, on a local
dataset directory), a file on the server, a ZIP of images; and large data processed in a job."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tuneforge.services import datasets as dataset_service

pytestmark = pytest.mark.slow


def wait_ready(client, headers, dataset_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = client.get(f"/api/v1/datasets/{dataset_id}", headers=headers).json()
        if dataset["status"] != "processing":
            return dataset
        time.sleep(0.2)
    raise AssertionError("still processing")


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return (
        client,
        bearer(add_user(settings, "admin", admin=True)),
        bearer(add_user(settings, "bob")),
    )


def test_a_hugging_face_dataset_directory_keeps_its_splits(api, tmp_path: Path) -> None:
    client, admin, _ = api
    folder = tmp_path / "qa"
    folder.mkdir()
    for split, count in (("train", 8), ("test", 3)):
        lines = [
            json.dumps({"question": f"{split} question {i}?", "answer": f"Answer {i}."})
            for i in range(count)
        ]
        (folder / f"{split}.jsonl").write_text("\n".join(lines))
    response = client.post(
        "/api/v1/datasets/import",
        headers=admin,
        json={"source": "huggingface", "path": str(folder), "name": "qa"},
    )
    assert response.status_code == 202 and response.json()["job_id"]
    dataset = wait_ready(client, admin, response.json()["id"])
    assert dataset["status"] == "ready", dataset["error"]
    assert dataset["splits"] == {"train": 8, "test": 3}
    assert dataset["format"] == "question_answer" and dataset["origin"] == "huggingface"
    processed = client.post(
        f"/api/v1/datasets/{dataset['id']}/process",
        headers=admin,
        json={"mapping": dataset["mapping"], "split": {"mode": "source"}},
    )
    assert processed.json()["splits"] == {"train": 8, "test": 3}


def test_paths_are_for_administrators_and_ids_are_ids(api, tmp_path: Path) -> None:
    client, admin, bob = api
    data = tmp_path / "server.csv"
    data.write_text("prompt,completion\nHi,Hello\n")
    for body in (
        {"source": "server_path", "path": str(data)},
        {"source": "huggingface", "path": "/etc"},
    ):
        refused = client.post("/api/v1/datasets/import", headers=bob, json=body)
        assert refused.status_code == 403
    for bad in ("a/b/c", "name with spaces", "org/-dash"):
        response = client.post(
            "/api/v1/datasets/import", headers=bob, json={"source": "huggingface", "path": bad}
        )
        assert response.status_code == 422, bad
    ok = client.post(
        "/api/v1/datasets/import", headers=admin, json={"source": "server_path", "path": str(data)}
    )
    dataset = wait_ready(client, admin, ok.json()["id"])
    assert (dataset["status"], dataset["rows"], dataset["format"]) == (
        "ready",
        1,
        "prompt_completion",
    )
    missing = client.post(
        "/api/v1/datasets/import",
        headers=admin,
        json={"source": "server_path", "path": str(tmp_path / "none")},
    )
    assert missing.status_code == 422 and "none" in missing.json()["error"]["message"]


def png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_zip_of_images_becomes_vision_conversations(api) -> None:
    client, admin, _ = api
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/red.png", png("red"))
        zf.writestr("images/blue.png", png("blue"))
        zf.writestr("images/broken.png", b"\x89PNG\r\n\x1a\nnot really")
        zf.writestr(
            "metadata.csv",
            "image,question,answer\n"
            "images/red.png,What colour?,Red.\n"
            "images/blue.png,What colour?,Blue.\n"
            "images/broken.png,What colour?,Unknown.\n",
        )
    dataset = client.post(
        "/api/v1/datasets", headers=admin, files={"file": ("colours.zip", archive.getvalue())}
    ).json()
    assert dataset["mapping"]["image_column"] == "image"
    raw_rows = client.get(
        f"/api/v1/datasets/{dataset['id']}/rows", headers=admin, params={"thumbnails": True}
    ).json()["rows"]
    assert raw_rows[0]["image"] == "images/red.png"  # the value itself is unchanged
    assert raw_rows[0]["_images"]["image"][0].startswith("data:image/jpeg;base64,")
    assert "_images" not in raw_rows[2]  # the broken image has no thumbnail
    plain_rows = client.get(f"/api/v1/datasets/{dataset['id']}/rows", headers=admin).json()
    assert "_images" not in plain_rows["rows"][0]
    preview = client.post(
        f"/api/v1/datasets/{dataset['id']}/preview", headers=admin, json=dataset["mapping"]
    ).json()
    assert preview[0]["rendered"].startswith(
        "<bos><start_of_turn>user\n<start_of_image>What colour?<end_of_turn>"
    )
    assert preview[2]["rendered"] is None and "cannot be" in preview[2]["problems"][0]
    assert [len(example.get("images", [])) for example in preview] == [1, 1, 0]
    assert preview[0]["images"][0].startswith("data:image/jpeg;base64,")
    processed = client.post(
        f"/api/v1/datasets/{dataset['id']}/process",
        headers=admin,
        json={"mapping": dataset["mapping"], "split": {"mode": "none"}},
    ).json()
    assert processed["splits"] == {"train": 2}
    report = client.get(f"/api/v1/datasets/{processed['id']}/report", headers=admin).json()
    assert [p["code"] for p in report["problems"]] == ["image_undecodable"]
    stats = client.get(f"/api/v1/datasets/{processed['id']}/stats", headers=admin).json()
    assert stats["images"]["total"] == 2 and stats["images"]["per_row"] == {"1": 2}
    assert stats["images"]["tokens_per_image"] == 260
    rows_url = f"/api/v1/datasets/{processed['id']}/rows"
    plain = client.get(rows_url, headers=admin).json()["rows"]
    assert plain[0]["images"] == [f"<{len(png('red')):,} bytes>"]
    shown = client.get(rows_url, headers=admin, params={"thumbnails": True}).json()["rows"]
    assert shown[0]["images"][0].startswith("data:image/jpeg;base64,")


def test_large_data_is_processed_in_a_job(api, monkeypatch) -> None:
    client, admin, _ = api
    monkeypatch.setattr(dataset_service, "SYNC_ROWS", 50)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["prompt", "response"])
    writer.writerows([f"Say {i}", f"{i}"] for i in range(120))
    raw = client.post(
        "/api/v1/datasets", headers=admin, files={"file": ("big.csv", buffer.getvalue().encode())}
    ).json()
    response = client.post(
        f"/api/v1/datasets/{raw['id']}/process",
        headers=admin,
        json={"mapping": raw["mapping"], "split": {"test_size": 20}},
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    dataset = wait_ready(client, admin, response.json()["id"])
    assert dataset["status"] == "ready" and dataset["splits"] == {"train": 100, "test": 20}
    # The dataset is ready a moment before its job's end is recorded.
    job = wait_status(client, job_id, admin, "succeeded")
    assert job["progress"] == 1.0
