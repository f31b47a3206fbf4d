"""The Augmentation section of a processed dataset's page in a real browser: methods picked,
originals previewed beside their variants with counts and cost, and the job started from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in
from tests.llm_server import LlmServer

pytestmark = pytest.mark.browser
JOB_TIMEOUT = 120_000  # ms: the job's worker starts and builds the tokenizer on a busy machine
ROWS = [
    {
        "question": f"Which bright flowers bloom early in a cold spring garden number {i}?",
        "answer": "Crocuses.",
    }
    for i in range(8)
]


def test_preview_and_augment_from_the_dataset_page(
    studio: Studio, page: Page, tmp_path: Path
) -> None:
    data = tmp_path / "flowers.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in ROWS))
    with studio.api(studio.admin_token) as api, data.open("rb") as file:
        raw = api.post("/datasets", files={"file": ("flowers.jsonl", file)}).json()
        source = api.post(
            f"/datasets/{raw['id']}/process",
            json={"mapping": raw["mapping"], "split": {"mode": "manual", "test_size": 2}},
        ).json()
    assert source["splits"] == {"train": 6, "test": 2}

    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/datasets/{source['id']}")
    form = page.locator(".augment-form")
    expect(form).to_be_visible()
    expect(form.locator(".augment-method-flip")).to_have_count(0)  # no images here
    form.locator(".augment-method-delete").click()
    form.get_by_role("button", name="Preview").click()
    examples = page.locator(".augment-example")
    expect(examples).to_have_count(3, timeout=JOB_TIMEOUT)
    expect(page.locator(".augment-counts")).to_contain_text("Train rows 6 → about")
    expect(page.locator(".augment-counts")).to_contain_text("cost 0 USD")
    expect(examples.first.locator(".augment-variant").first).to_be_visible()

    page.get_by_role("button", name="Augment").click()
    expect(page).not_to_have_url(f"{studio.url}/datasets/{source['id']}", timeout=JOB_TIMEOUT)
    expect(page.get_by_text("flowers.jsonl (processed) (augmented)")).to_be_visible()
    expect(page.locator(".dataset-status")).to_have_text("ready", timeout=JOB_TIMEOUT)
    expect(page.locator(".dataset-rows thead")).to_contain_text("augmented_from")
    made_id = re.sub(r".*/datasets/", "", page.url)
    with studio.api(studio.admin_token) as api:
        made = api.get(f"/datasets/{made_id}").json()
    assert made["splits"]["test"] == 2 and made["splits"]["train"] > 6
    assert made["config"]["augmentation"]["spec"]["methods"] == [
        {"name": "swap", "rate": 0.1},
        {"name": "delete", "rate": 0.1},
    ]


def _processed(studio: Studio, tmp_path: Path) -> dict:
    data = tmp_path / "flowers.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in ROWS))
    with studio.api(studio.admin_token) as api, data.open("rb") as file:
        raw = api.post("/datasets", files={"file": ("flowers.jsonl", file)}).json()
        return api.post(
            f"/datasets/{raw['id']}/process",
            json={"mapping": raw["mapping"], "split": {"mode": "manual", "test_size": 2}},
        ).json()


def test_paraphrase_through_an_endpoint_from_the_dataset_page(
    studio: Studio, page: Page, tmp_path: Path
) -> None:
    source = _processed(studio, tmp_path)
    log_in(page, studio, "admin")  # an administrator may call an endpoint on this network
    page.goto(f"{studio.url}/datasets/{source['id']}")
    form = page.locator(".augment-form")
    expect(form.locator(".augment-generator")).to_be_hidden()
    form.locator(".augment-method-swap").click()  # off: paraphrase alone
    form.locator(".augment-method-paraphrase").click()
    expect(form.locator(".augment-generator")).to_be_visible()
    with LlmServer(reply=lambda body: "~" + body["messages"][-1]["content"][-30:]) as llm:
        form.locator(".generator-url input").fill(llm.url)
        form.locator(".generator-model input").fill("m")
        form.locator(".augment-price input").fill("2")
        form.get_by_role("button", name="Preview").click()
        examples = page.locator(".augment-example")
        expect(examples).to_have_count(3, timeout=JOB_TIMEOUT)
        expect(examples.first.locator(".augment-variant")).to_have_text(re.compile("paraphrase"))
        expect(examples.first).to_contain_text("~")
        expect(page.locator(".augment-llm")).to_contain_text("LLM: about 6 requests")
        expect(page.locator(".augment-counts")).not_to_contain_text("cost 0 USD")
        assert len(llm.requests) == 3
        page.get_by_role("button", name="Augment").click()
        expect(page).not_to_have_url(f"{studio.url}/datasets/{source['id']}", timeout=JOB_TIMEOUT)
        expect(page.locator(".dataset-status")).to_have_text("ready", timeout=JOB_TIMEOUT)
        assert len(llm.requests) == 3 + 6
    made_id = re.sub(r".*/datasets/", "", page.url)
    with studio.api(studio.admin_token) as api:
        made = api.get(f"/datasets/{made_id}").json()
    (method,) = made["config"]["augmentation"]["spec"]["methods"]
    assert method["name"] == "paraphrase" and method["generator"]["base_url"] == llm.url
    assert made["splits"] == {"train": 12, "test": 2}
