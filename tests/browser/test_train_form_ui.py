"""The Train form refuses nonsense with words, and pickers show what can run here, in a real
browser on this offline machine: out-of-range values are said and kept as typed, a learning rate
of 1 draws a warning, a max length that cuts every answer is refused before launch (and by the
API), unavailable models cannot be picked on the Train page nor in the Playground, and a run
that failed because of its settings offers Edit and retry, which opens the form prefilled with
the field highlighted."""

from __future__ import annotations

import io
import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.api.test_training_refusals import chats_with_a_long_first_question
from tests.browser.conftest import Studio
from tests.browser.test_training_ui import PROCESSING_SECONDS, processed_dataset
from tests.browser.test_ui import log_in

pytestmark = pytest.mark.browser

UNAVAILABLE = "Gemma 3 1B IT · unavailable here"


def field(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f".field-{name}")


@pytest.mark.timeout(300)
def test_out_of_range_values_are_said_and_kept_and_block_train(studio: Studio, page: Page) -> None:
    processed_dataset(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    train = page.locator(".train-button")
    expect(page.locator(".estimate-memory")).to_be_visible()
    expect(train).to_be_enabled()
    expect(field(page, "learning_rate")).to_contain_text("More than 0, at most 1")  # the bounds
    expect(field(page, "max_length")).to_contain_text("16 to 131,072")

    rate, length = page.get_by_label("Learning rate"), page.get_by_label("Max length")
    rate.fill("1000")
    length.fill("1")
    page.get_by_label("Batch size").click()  # leave the fields: nothing is clamped on blur
    expect(field(page, "learning_rate")).to_contain_text("1000 is out of range")
    expect(field(page, "max_length")).to_contain_text("1 is out of range")
    expect(rate).to_have_value("1000")
    expect(length).to_have_value("1")
    expect(train).to_be_disabled()

    rate.fill("2e-4")
    length.fill("64")
    page.get_by_label("Batch size").click()
    expect(field(page, "learning_rate")).not_to_contain_text("out of range")
    expect(rate).to_have_value("2e-4")  # not rewritten as 0.0002
    expect(train).to_be_enabled()

    # Legal but almost surely wrong: a warning with its reason, and Train stays possible.
    rate.fill("1")
    expect(field(page, "learning_rate").locator(".field-warning")).to_contain_text(
        "far above what LoRA trains with"
    )
    expect(page.locator(".check-warning")).to_contain_text("Learning rate 1")
    expect(train).to_be_enabled()
    page.get_by_label("Max steps").fill("1")
    expect(field(page, "max_steps").locator(".field-warning")).to_contain_text("before one epoch")


@pytest.mark.timeout(300)
def test_a_max_length_that_cuts_every_answer_is_refused_before_launch(
    studio: Studio, page: Page
) -> None:
    dataset_id = processed_dataset(studio)
    with studio.api(studio.admin_token) as api:
        shortest = api.get(f"/datasets/{dataset_id}/stats").json()["prompt_tokens"]["min"]
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    train = page.locator(".train-button")
    expect(train).to_be_enabled()
    page.get_by_label("Max length").fill(str(shortest))
    refusal = field(page, "max_length").locator(".field-refusal")
    expect(refusal).to_contain_text("cuts every answer away")
    expect(refusal).to_contain_text("Raise max length to")
    expect(field(page, "max_length")).to_have_class(re.compile("field-flagged"))
    expect(page.locator(".check-refusal")).to_contain_text("cuts every answer away")
    expect(train).to_be_disabled()
    page.get_by_label("Max length").fill(str(shortest + 8))
    expect(refusal).to_have_count(0)
    expect(train).to_be_enabled()

    spec = {"base_model": "tiny-random-gemma3", "dataset_id": dataset_id, "max_length": shortest}
    with studio.api(studio.admin_token) as api:
        refused = api.post("/jobs", json={"kind": "train", "spec": spec})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"]["fields"] == ["max_length"]
        assert api.get("/jobs").json()["items"] == []


@pytest.mark.timeout(300)
def test_offline_unavailable_models_cannot_be_picked(studio: Studio, page: Page) -> None:
    processed_dataset(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    expect(page.locator(".model-summary")).to_contain_text("6 of 29 models can run")
    page.locator(".train-model").click()
    option = page.get_by_role("option", name=UNAVAILABLE)
    expect(option).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_role("option", name="Gemma 3 270M", exact=True)).not_to_have_attribute(
        "aria-disabled", "true"
    )
    option.click(force=True)
    expect(page.locator(".train-model")).to_contain_text("Gemma 3 270M")  # not taken
    page.keyboard.press("Escape")
    expect(page.locator(".model-state")).to_contain_text("Available")

    page.goto(f"{studio.url}/playground?model=gemma-3-1b-it")  # a link cannot preselect it
    expect(page.locator(".playground-model-a input")).to_have_value("Gemma 3 270M (base)")
    for picker in (".playground-model-a", ".playground-model-b"):
        page.locator(picker).click()
        option = page.get_by_role("option", name="Gemma 3 1B IT (base) · unavailable here").last
        expect(option).to_have_attribute("aria-disabled", "true")
        option.click(force=True)
        page.keyboard.press("Escape")
        expect(page.get_by_role("listbox")).to_have_count(0)
        expect(page.locator(f"{picker} input")).not_to_have_value(re.compile("1B IT"))


def conversations_whose_first_question_fills(studio: Studio, tokens_of_text: int) -> str:
    """A processed dataset of two-exchange chats whose first question is long: the launch check
    cannot refuse a short max length (a later answer might fit), and the run fails."""
    body = chats_with_a_long_first_question(tokens_of_text)
    with studio.api(studio.admin_token) as api:
        raw = api.post("/datasets", files={"file": ("chats.jsonl", io.BytesIO(body))}).json()
        config = {"name": "Chats", "mapping": raw["mapping"], "split": {"test_size": 0.25}}
        processed = api.post(f"/datasets/{raw['id']}/process", json=config)
        assert processed.status_code == 201, processed.text
        dataset_id: str = processed.json()["id"]
        deadline = time.monotonic() + PROCESSING_SECONDS
        while api.get(f"/datasets/{dataset_id}").json()["status"] == "processing":
            assert time.monotonic() < deadline
            time.sleep(0.5)
    return dataset_id


@pytest.mark.timeout(600)
def test_a_run_failed_by_its_settings_offers_edit_and_retry(
    studio: Studio, page: Page, browser: Browser
) -> None:
    dataset_id = conversations_whose_first_question_fills(studio, 8)
    spec = {
        "base_model": "tiny-random-gemma3",
        "dataset_id": dataset_id,
        "max_length": 16,
        "max_steps": 2,
        "name": "Too short",
    }
    with studio.api(studio.admin_token) as api:
        job = api.post("/jobs", json={"kind": "train", "spec": spec})
        assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/runs/{job_id}")
    expect(page.locator(".run-status")).to_have_text("failed", timeout=300_000)
    retry = page.locator(".run-retry")
    expect(retry).to_be_visible()
    expect(page.get_by_role("button", name="Resume")).to_be_hidden()  # it would fail again

    retry.click()
    expect(page).to_have_url(f"{studio.url}/train?retry={job_id}")
    expect(page.get_by_text("failed because of its settings")).to_be_visible()
    box = field(page, "max_length")
    expect(box).to_have_class(re.compile("field-flagged"))
    expect(box.locator(".field-failure")).to_contain_text("No training example has tokens")
    expect(page.get_by_label("Max length")).to_have_value("16")
    expect(page.get_by_label("Max steps")).to_have_value("2")
    expect(page.get_by_label("Name")).to_have_value("Too short (retry)")
    expect(page.locator(".train-dataset")).to_contain_text("Chats")
    page.get_by_label("Max length").fill("512")  # changed: the failure no longer applies
    expect(box.locator(".field-failure")).to_have_count(0)
    expect(box).not_to_have_class(re.compile("field-flagged"))

    other = browser.new_context()
    try:
        alice = other.new_page()
        log_in(alice, studio, "alice")
        alice.goto(f"{studio.url}/train?retry={job_id}")  # another user's run: not found
        expect(alice.get_by_text("That run was not found")).to_be_visible()
        expect(alice.locator(".field-failure")).to_have_count(0)
    finally:
        other.close()


@pytest.mark.timeout(300)
def test_the_evaluation_form_says_bounds_and_offers_only_what_runs(
    studio: Studio, page: Page
) -> None:
    processed_dataset(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/evaluations")
    samples = page.locator(".evaluation-max-samples")
    expect(samples).to_contain_text("A whole number, 1 to 5,000")
    samples.locator("input").fill("9000")
    page.locator(".evaluation-max-new-tokens input").click()
    expect(samples).to_contain_text("9000 is out of range")
    expect(samples.locator("input")).to_have_value("9000")
    page.locator(".evaluation-start").click()
    expect(page.get_by_text("Fix the numbers marked in red first.")).to_be_visible()

    page.locator(".evaluation-model").click()
    option = page.get_by_role("option", name="Gemma 3 1B IT (base) · unavailable here")
    expect(option).to_have_attribute("aria-disabled", "true")


@pytest.mark.timeout(300)
def test_devices_and_gpu_type_are_chosen_with_the_runs_hardware(studio: Studio, page: Page) -> None:
    processed_dataset(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    train = page.locator(".train-button")
    expect(train).to_be_enabled()
    page.locator(".panel-hardware").get_by_text("Hardware and precision").click()
    devices, box = page.get_by_label("Devices"), field(page, "devices")
    expect(devices).to_have_value("1")
    expect(box).to_contain_text("Any whole number, or auto")

    devices.fill("two")  # the field itself says it
    expect(box).to_contain_text("two is neither a whole number nor auto")
    expect(train).to_be_disabled()
    devices.fill("0")  # the spec says it, under the field
    expect(box.locator(".field-refusal")).to_contain_text("a whole number from 1 to 64")
    expect(box).to_have_class(re.compile("field-flagged"))
    expect(train).to_be_disabled()
    devices.fill("auto")
    expect(box.locator(".field-refusal")).to_have_count(0)
    expect(train).to_be_enabled()

    devices.fill("2")
    page.get_by_label("GPU type").fill("L4")
    expect(page.locator(".estimate-memory")).to_be_visible()
    expect(train).to_be_enabled()
    train.click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]+$"))
    with studio.api(studio.admin_token) as api:
        spec = api.get(f"/jobs/{page.url.rsplit('/', 1)[1]}").json()["spec"]
    assert (spec["trainer"], spec["method"], spec["devices"], spec["gpu_type"]) == (
        "sft",
        "lora",
        2,
        "L4",
    )
    expect(page.locator(".run-changed")).to_contain_text("Devices")
    expect(page.locator(".run-changed")).to_contain_text("L4")
