"""Preference training in a real browser: on the Train page a preference dataset is offered
disabled to SFT and a conversation dataset to DPO, each saying why; a DPO run of a few steps on
the tiny model, started from the page, draws its chosen and rejected rewards, margin and
accuracy live on its run page, step after step, without a reload."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_training_ui import PROCESSING_SECONDS, RUN_URL, choose
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page

pytestmark = pytest.mark.browser

TINY = "Tiny random Gemma 3 (tests) · test only"
DPO = "Direct preference optimisation (DPO)"
API_SECONDS = 60
RUN_SECONDS = 120  # a worker loads torch and the tiny model, scores the pairs and trains


def processed(
    studio: Studio, name: str, rows: list[dict[str, Any]], mapping: dict[str, Any] | None = None
) -> str:
    """Upload `rows` as JSON lines and process them (with the detected mapping unless given)."""
    body = "\n".join(json.dumps(row) for row in rows).encode()
    with studio.api(studio.admin_token) as api:
        api.timeout = httpx.Timeout(API_SECONDS)  # an upload parses it: slow on a busy machine
        raw = api.post("/datasets", files={"file": (f"{name}.jsonl", io.BytesIO(body))})
        assert raw.status_code == 201, raw.text
        config = {
            "name": name,
            "mapping": mapping or raw.json()["mapping"],
            "split": {"test_size": 0.2, "seed": 1},
        }
        started = api.post(f"/datasets/{raw.json()['id']}/process", json=config)
        assert started.status_code == 201, started.text
        dataset_id: str = started.json()["id"]
        deadline = time.monotonic() + PROCESSING_SECONDS
        while (status := api.get(f"/datasets/{dataset_id}").json()["status"]) == "processing":
            assert time.monotonic() < deadline, f"{name} is still being processed"
            time.sleep(0.5)
    assert status == "ready"
    return dataset_id


def chart_lines(page: Page, key: str) -> dict[str, int]:
    """The lines a run chart draws, by name, with their number of points (read from ECharts)."""
    lines: dict[str, int] = page.evaluate(
        """key => {
            const chart = getElement(document.querySelector('.chart-' + key)).chart;
            const lines = {};
            for (const s of chart.getOption().series || []) lines[s.name] = s.data.length;
            return lines;
        }""",
        key,
    )
    return lines


def wait_for_lines(page: Page, key: str, names: set[str], seconds: float) -> dict[str, int]:
    """Wait until chart `key` draws every line in `names`; its lines then."""
    deadline = time.monotonic() + seconds
    while not names <= set(lines := chart_lines(page, key)):
        assert time.monotonic() < deadline, f"{key} draws only {sorted(lines)}"
        page.wait_for_timeout(500)
    return lines


@pytest.mark.timeout(240)
def test_a_dpo_run_from_the_train_page_draws_its_rewards_live(studio: Studio, page: Page) -> None:
    processed(
        studio,
        "Polite pairs",
        [
            {
                "prompt": f"What is {i} plus {i}?",
                "chosen": f"Gladly: {i} plus {i} is {2 * i}.",
                "rejected": f"{2 * i}. Work it out yourself.",
            }
            for i in range(10)
        ],
    )
    processed(
        studio,
        "Colours",
        [{"question": f"Colour {i}?", "answer": f"Colour {i} is red."} for i in range(10)],
    )
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train")
    dataset = page.locator(".train-dataset")
    expect(dataset).to_contain_text("Colours · conversations")  # what SFT learns from

    dataset.click()
    pairs = page.get_by_role("option").filter(has_text="Polite pairs")
    expect(pairs).to_have_attribute("aria-disabled", "true")  # not for SFT, and why
    expect(pairs).to_contain_text(re.compile(r"needs conversations or plain text; DPO\b.* learns"))
    page.keyboard.press("Escape")

    choose(page, ".train-trainer", DPO)
    expect(page.locator(".trainer-facts")).to_contain_text("Learns from preference pairs")
    expect(dataset).to_contain_text("Polite pairs · preference pairs")  # swapped for one that fits
    dataset.click()
    colours = page.get_by_role("option").filter(has_text="Colours")
    expect(colours).to_have_attribute("aria-disabled", "true")
    expect(colours).to_contain_text(f"Holds conversations: {DPO} needs preference pairs")
    page.keyboard.press("Escape")

    choose(page, ".train-model", TINY)
    page.get_by_label("Max steps").fill("4")
    page.get_by_text("Evaluation and checkpoints", exact=True).click()
    page.get_by_label("Evaluate every").fill("2")
    page.get_by_label("Sample max new tokens").fill("4")
    expect(page.locator(".estimate-steps")).to_have_text("4")
    train = page.locator(".train-button")
    expect(train).to_be_enabled()
    train.click()

    expect(page).to_have_url(RUN_URL)
    mark_page(page)
    expect(page.locator(".chart-rewards")).to_be_visible()  # before its first point
    expect(page.locator(".chart-eval")).to_be_hidden()  # SFT's perplexity: not for DPO
    first = wait_for_lines(page, "rewards", {"Chosen", "Rejected"}, RUN_SECONDS)
    assert first["Chosen"] == first["Rejected"] >= 1
    wait_for_lines(page, "margin", {"Margin", "Eval margin"}, RUN_SECONDS)
    wait_for_lines(page, "accuracy", {"Accuracy", "Eval accuracy"}, RUN_SECONDS)
    # Every step joins the same lines, live: the page opened before the first point and was
    # never reloaded (a fast run may have drawn them all by the first look, so none is awaited).
    deadline = time.monotonic() + RUN_SECONDS
    while chart_lines(page, "rewards")["Chosen"] < 4:
        assert time.monotonic() < deadline, "not every step was drawn"
        page.wait_for_timeout(500)
    expect(page.locator(".tile-value").nth(3)).not_to_have_text("—")  # eval preference accuracy
    assert page.evaluate("window.__marker") == NOT_RELOADED
