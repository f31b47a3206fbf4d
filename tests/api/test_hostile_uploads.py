"""The hostile corpus uploaded to a real server: every file gets a 4xx that says what to fix, or
is read (with its warning); never a 5xx, never a hang; the server's peak memory stays bounded.

Hostile images go the whole way (upload, preview, processing, a page of thumbnails): each is a
row problem with its code and a clear message; a ZIP of a thousand images, each named once, is
processed with the images streamed (the server's memory grows by less than their total size)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import add_user, bearer
from tests.data.hostile import hostile_corpus
from tests.data.hostile_images import THOUSAND, hostile_images_zip, thousand_images_zip
from tests.server import server_env, server_process

PEAK_RSS_LIMIT = 2 << 30
PER_FILE_SECONDS = 30
MIB = 1 << 20


def peak_rss(pid: int) -> int:
    """The process's high-water resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_hostile_uploads(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    token = add_user(settings, "mallory")
    cases = hostile_corpus(tmp_path / "corpus")
    assert len(cases) >= 30
    wrong: list[str] = []
    with server_process(server_env(settings, run_jobs=False)) as (url, server):
        with httpx.Client(base_url=url, headers=bearer(token), timeout=PER_FILE_SECONDS) as http:
            for case in cases:
                started = time.monotonic()
                with case.path.open("rb") as handle:
                    response = http.post(
                        "/api/v1/datasets", files={"file": (case.filename, handle)}
                    )
                elapsed = time.monotonic() - started
                body = response.json()
                phrase = case.phrase.lower()
                if response.status_code >= 500 or elapsed > PER_FILE_SECONDS:
                    wrong.append(f"{case.name}: {response.status_code} in {elapsed:.1f} s")
                elif case.outcome == "error":
                    message = body.get("error", {}).get("message", "")
                    if not (400 <= response.status_code < 500 and phrase in message.lower()):
                        wrong.append(f"{case.name}: {response.status_code} {message[:200]!r}")
                elif response.status_code != 201:
                    wrong.append(f"{case.name}: expected a dataset, got {response.text[:200]}")
                elif case.outcome == "warning" and not any(
                    phrase in w.lower() for w in body["warnings"]
                ):
                    wrong.append(
                        f"{case.name}: no warning with {case.phrase!r}: {body['warnings']}"
                    )
            assert http.get("/api/v1/health").json()["status"] == "ok"
        peak = peak_rss(server.pid)
    assert wrong == []
    print(f"peak server RSS over {len(cases)} hostile uploads: {peak / 2**20:.0f} MiB")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"


def _dataset(http: httpx.Client, path: Path) -> dict:
    with path.open("rb") as handle:
        response = http.post("/api/v1/datasets", files={"file": (path.name, handle)})
    assert response.status_code == 201, response.text
    return response.json()


def _process(http: httpx.Client, dataset: dict) -> dict:
    response = http.post(
        f"/api/v1/datasets/{dataset['id']}/process",
        json={"mapping": dataset["mapping"], "split": {"mode": "none"}},
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.timeout(300)
def test_hostile_images_and_a_thousand_streamed(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    token = add_user(settings, "mallory")
    warm = tmp_path / "warm.zip"
    thousand_images_zip(warm, count=8)
    codes = hostile_images_zip(tmp_path / "hostile.zip")
    images_total = thousand_images_zip(tmp_path / "thousand.zip")
    with server_process(server_env(settings, run_jobs=False)) as (url, server):
        with httpx.Client(base_url=url, headers=bearer(token), timeout=120) as http:
            # the tokenizer, Pillow, Parquet's writer... once: not the cost of the images
            _process(http, _dataset(http, warm))
            baseline = peak_rss(server.pid)

            hostile = _dataset(http, tmp_path / "hostile.zip")
            assert hostile["format"] == "image_caption"
            preview = http.post(
                f"/api/v1/datasets/{hostile['id']}/preview", json=hostile["mapping"]
            ).json()
            said = [" ".join(example["problems"]) for example in preview]
            assert "declares 10,000.0 MP; the limit is 50 MP (a decompression" in said[0]  # bomb
            assert "declares 400.0 MP; the limit is 50 MP" in said[1]  # 20,000 x 20,000
            assert "The JPEG image cannot be decoded" in said[2]  # truncated.jpg
            processed = _process(http, hostile)
            report = http.get(f"/api/v1/datasets/{processed['id']}/report").json()
            expected: dict[str, int] = {}
            for code in codes.values():
                if code:
                    expected[code] = expected.get(code, 0) + 1
            assert {p["code"]: p["count"] for p in report["problems"]} == expected
            assert report["rows_out"] == 1
            details = [e["detail"] for p in report["problems"] for e in p["examples"]]
            assert sum("SVG images are refused" in d for d in details) == 2

            thousand = _dataset(http, tmp_path / "thousand.zip")
            assert thousand["rows"] == THOUSAND and thousand["format"] == "image_caption"
            processed = _process(http, thousand)
            assert processed["splits"] == {"train": THOUSAND}
            stats = http.get(f"/api/v1/datasets/{processed['id']}/stats").json()
            assert stats["images"]["total"] == THOUSAND
            assert stats["images"]["bytes"]["max"] < 128 * 1024
            page = http.get(
                f"/api/v1/datasets/{processed['id']}/rows",
                params={"offset": 990, "limit": 10, "thumbnails": True},
            ).json()
            assert len(page["rows"]) == 10
            assert all(r["images"][0].startswith("data:image/jpeg") for r in page["rows"])
            assert http.get("/api/v1/health").json()["status"] == "ok"
        grown = peak_rss(server.pid) - baseline
    print(
        f"server peak RSS grew {grown / MIB:.0f} MiB over the hostile images and "
        f"{THOUSAND:,} images of {images_total / MIB:.0f} MiB"
    )
    assert grown < images_total, f"{grown / MIB:.0f} MiB: the images were held in memory"
    assert grown < 64 * MIB
