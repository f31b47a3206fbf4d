"""Training in a real browser: the Train page (recommendations, a live estimate, a refusal that
disables Train), a tiny-random-gemma3 run followed live on its page until it succeeds, its sample
answers, the model it made; and another user seeing none of it."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page

pytestmark = pytest.mark.browser

PROCESSING_SECONDS = 180  # the first processing in a run builds the Gemma tokenizer
# ms: a worker imports torch, builds the tiny model, trains 30 steps and evaluates 4 times, on a
# machine busy with the browser and the server too
TRAINING_TIMEOUT = 600_000
RUN_URL = re.compile(r"/runs/[0-9a-f]{32}$")
MODEL_URL = re.compile(r"/models/[0-9a-f]{32}$")
COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "cyan", "rose", "gold"]


def processed_dataset(studio: Studio, rows: int = 40) -> str:
    """A small processed dataset of questions and answers (train and test splits), ready."""
    lines = [
        {"question": f"Which colour is number {i}?", "answer": f"Number {i} is {COLOURS[i % 10]}."}
        for i in range(rows)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    with studio.api(studio.admin_token) as api:
        raw = api.post("/datasets", files={"file": ("colours.jsonl", io.BytesIO(body))})
        assert raw.status_code == 201, raw.text
        config = {
            "name": "Colours",
            "mapping": raw.json()["mapping"],
            "split": {"test_size": 0.2, "seed": 1},
        }
        processed = api.post(f"/datasets/{raw.json()['id']}/process", json=config)
        assert processed.status_code == 201, processed.text
        dataset_id: str = processed.json()["id"]
        deadline = time.monotonic() + PROCESSING_SECONDS
        while (status := api.get(f"/datasets/{dataset_id}").json()["status"]) == "processing":
            assert time.monotonic() < deadline, "the dataset is still being processed"
            time.sleep(0.5)
    assert status == "ready"
    return dataset_id


def loss_points(page: Page) -> int:
    """How many points the loss chart draws (read from ECharts itself)."""
    points: int = page.evaluate(
        """() => {
            const chart = getElement(document.querySelector('.chart-loss')).chart;
            const series = chart.getOption().series || [];
            return series.length ? series[0].data.length : 0;
        }"""
    )
    return points


def choose(page: Page, field: str, option: str) -> None:
    page.locator(field).click()
    page.get_by_role("option", name=option).click()


@pytest.mark.timeout(900)
def test_train_watch_it_learn_live_and_open_the_model(
    studio: Studio, browser: Browser, page: Page
) -> None:
    processed_dataset(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    expect(page.locator(".train-dataset")).to_contain_text("Colours")  # the newest, preselected
    expect(page.locator(".train-trainer")).to_contain_text("Supervised fine-tuning (SFT)")
    # What is recommended, each with its reason, and what the run would take here.
    expect(page.locator(".advice-item").first).to_be_visible()
    expect(page.locator(".advice-reason").first).not_to_be_empty()
    expect(page.locator(".advice-value").first).not_to_be_empty()
    expect(page.locator(".estimate-memory")).to_contain_text("free")
    expect(page.locator(".estimate-duration")).to_contain_text("about")

    choose(page, ".train-model", "Tiny random Gemma 3 (tests) · test only")
    page.get_by_label("Max steps").fill("30")
    page.get_by_text("Evaluation and checkpoints", exact=True).click()  # a folded section
    page.get_by_label("Evaluate every").fill("10")
    page.get_by_label("Sample max new tokens").fill("8")  # short answers: quick evaluations
    expect(page.locator(".estimate-steps")).to_have_text("30")  # estimated again
    train = page.locator(".train-button")
    expect(train).to_be_enabled()
    train.click()

    expect(page).to_have_url(RUN_URL)
    run_url = page.url
    mark_page(page)
    expect(page.locator(".run-status")).to_have_text("succeeded", timeout=TRAINING_TIMEOUT)
    assert page.evaluate("window.__marker") == NOT_RELOADED  # followed live, never reloaded
    assert loss_points(page) == 30
    expect(page.locator(".tile-value").first).to_have_text("30")  # the step reached
    # The sample answers of the newest evaluation (the final one), beside their references.
    expect(page.locator(".sample-step")).to_contain_text("30")
    expect(page.locator(".sample-item").first).to_be_visible()
    expect(page.locator(".sample-prompt").first).to_contain_text("Which colour is number")
    expect(page.locator(".sample-reference").first).to_contain_text("is")
    expect(page.locator(".run-log")).to_contain_text("saved model")

    page.get_by_role("button", name="Open model").click()
    expect(page).to_have_url(MODEL_URL)
    model_url = page.url
    expect(page.locator(".model-facts")).to_contain_text("tiny-random-gemma3")
    expect(page.locator(".model-metrics")).to_contain_text("Eval loss")
    expect(page.locator(".model-files")).to_contain_text("adapter_model.safetensors")
    expect(page.locator(".model-run")).to_have_attribute("href", run_url.removeprefix(studio.url))

    page.goto(f"{studio.url}/models")
    expect(page.locator(".models-table tbody tr")).to_have_count(1)
    expect(page.locator(".models-table")).to_contain_text("Colours")

    other = browser.new_context()
    try:
        alice = other.new_page()
        log_in(alice, studio, "alice")
        expect(alice).to_have_url(f"{studio.url}/")
        response = alice.goto(run_url)
        assert response is not None and response.status == 404
        expect(alice.get_by_text("Run not found")).to_be_visible()
        response = alice.goto(model_url)
        assert response is not None and response.status == 404
        expect(alice.get_by_text("Model not found")).to_be_visible()
        alice.goto(f"{studio.url}/models")
        expect(alice.get_by_text("No models yet")).to_be_visible()
        alice.goto(f"{studio.url}/train")  # alice has no processed dataset
        expect(alice.get_by_text("No training data yet")).to_be_visible()
    finally:
        other.close()


def test_a_run_that_cannot_work_here_is_refused_and_train_is_disabled(
    studio: Studio, page: Page
) -> None:
    processed_dataset(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    train = page.locator(".train-button")
    expect(page.locator(".estimate-memory")).to_be_visible()
    expect(train).to_be_enabled()

    page.locator(".field-method").get_by_role("button", name="QLoRA").click()
    expect(page.locator(".estimate-refusal")).to_contain_text("CUDA")  # no GPU on this machine
    expect(train).to_be_disabled()

    page.locator(".field-method").get_by_role("button", name="LoRA", exact=True).click()
    expect(page.locator(".estimate-refusal")).to_have_count(0)
    expect(train).to_be_enabled()

    # A setting out of its bounds is said in words, and Train waits for it to be fixed.
    page.get_by_label("Batch size").fill("")
    expect(page.locator(".estimate-problem")).to_contain_text("Batch size")
    expect(train).to_be_disabled()
