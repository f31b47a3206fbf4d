"""A vision model's evaluation in a real browser: tiny-random-gemma3-vision evaluated on a ZIP of
generated images (through the API), then its page: every sample shows the image the model saw
as a thumbnail that decodes in the browser, above its question, reference and answer."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in
from tests.images import coloured_images, image_zip

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
VISION = "tiny-random-gemma3-vision"
SAMPLES = 3


def evaluated_images(studio: Studio) -> str:
    """The id of a finished classification evaluation of `VISION` on `SAMPLES` held-out images."""
    archive = image_zip(coloured_images(9, seed=5))
    with studio.api(studio.admin_token) as api:
        raw = api.post("/datasets", files={"file": ("squares.zip", archive)}).json()
        config = {"mapping": raw["mapping"], "split": {"test_size": SAMPLES, "seed": 1}}
        processed = api.post(f"/datasets/{raw['id']}/process", json=config)
        assert processed.status_code == 201, processed.text
        spec = {
            "model": VISION,
            "dataset_id": processed.json()["id"],
            "suite": "classification",
            "max_new_tokens": 4,
        }
        job = api.post("/jobs", json={"kind": "evaluate", "spec": spec}).json()
        deadline = time.monotonic() + 240
        while (state := api.get(f"/jobs/{job['id']}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "the evaluation is still running"
            time.sleep(0.5)
        assert state["status"] == "succeeded", state.get("error")
    return str(job["id"])


def test_evaluation_samples_show_their_images(studio: Studio, page: Page) -> None:
    job_id = evaluated_images(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/evaluations/{job_id}")
    samples = page.locator(".evaluation-sample")
    expect(samples).to_have_count(SAMPLES, timeout=30_000)
    for index in range(SAMPLES):
        sample = samples.nth(index)
        picture = sample.locator("img.evaluation-image")
        expect(picture).to_have_count(1)
        assert (picture.get_attribute("src") or "").startswith("data:image/jpeg;base64,")
        assert picture.evaluate("i => i.complete && i.naturalWidth") > 0  # decodes here
        assert picture.get_attribute("alt") == "image 1 of the prompt"
        expect(sample).to_contain_text("What colour is the square?")
        expect(sample).to_contain_text("Reference: ")
    # the picture stands above the question
    first = samples.first.locator(".evaluation-images")
    assert first.evaluate("e => e.nextElementSibling.textContent") == "What colour is the square?"
