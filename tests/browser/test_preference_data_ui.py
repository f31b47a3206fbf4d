"""Preference data in a real browser: a ShareGPT preference upload is recognised with no input, its
preview shows each pair's chosen and rejected answers side by side, and once processed the
statistics show each side's length and the margin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

PROCESSING_TIMEOUT = 60_000  # ms
DATASET_URL = re.compile(r"/datasets/[0-9a-f]{32}$")


def _pair(i: int) -> dict[str, object]:
    return {
        "conversations": [{"from": "human", "value": f"What is {i} + {i}?"}],
        "chosen": {"from": "gpt", "value": f"{i} + {i} = {2 * i}."},
        "rejected": {"from": "gpt", "value": "I do not know."},
    }


def test_a_sharegpt_preference_upload(studio: Studio, page: Page, tmp_path: Path) -> None:
    rows = [_pair(i) for i in range(12)]
    rows.append({**_pair(12), "rejected": {"from": "gpt", "value": "12 + 12 = 24."}})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))

    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/datasets")
    page.locator(".dataset-upload input[type=file]").set_input_files(path)
    expect(page).to_have_url(DATASET_URL)
    raw_url = page.url
    expect(page.locator(".dataset-facts")).to_contain_text("preference")
    expect(page.locator(".mapping-form").get_by_label("Mode")).to_have_value("preference")

    pair = page.locator(".preview-pair").first
    expect(pair.locator(".pair-chosen")).to_contain_text("Chosen")
    expect(pair.locator(".pair-chosen")).to_contain_text("0 + 0 = 0.<end_of_turn>")
    expect(pair.locator(".pair-rejected")).to_contain_text("Rejected")
    expect(pair.locator(".pair-rejected")).to_contain_text("I do not know.<end_of_turn>")
    prompt = page.locator(".preview-example").first.locator(".gemma-rendered").first
    expect(prompt).to_contain_text("What is 0 + 0?<end_of_turn>")

    page.get_by_role("button", name="Process").click()
    expect(page).not_to_have_url(raw_url, timeout=PROCESSING_TIMEOUT)
    expect(page.locator(".report-rows-out")).to_contain_text("12")
    expect(page.locator(".validation-report")).to_contain_text("chosen and rejected answers")
    sides = page.locator(".side-summary")
    for part in ("Prompt", "Chosen", "Rejected"):
        expect(sides).to_contain_text(part)
    expect(page.locator(".margin-mean")).to_contain_text("chosen minus rejected, mean")
    expect(page.locator(".margin-histogram canvas")).to_be_visible()
