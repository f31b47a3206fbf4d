"""A function-calling upload in a real browser: a ShareGPT set in the glaive-toolcall layout is
recognised with its tools column and no input, its preview shows the calls in Gemma's format,
and every row is processed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in
from tests.data.test_tool_calls import glaive_rows

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PROCESSING_TIMEOUT = 90_000  # ms
DATASET_URL = re.compile(r"/datasets/[0-9a-f]{32}$")


def test_a_glaive_toolcall_upload(studio: Studio, page: Page, tmp_path: Path) -> None:
    path = tmp_path / "toolcalls.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in glaive_rows(24, calls=14)))

    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/datasets")
    page.locator(".dataset-upload input[type=file]").set_input_files(path)
    expect(page).to_have_url(DATASET_URL)
    raw_url = page.url
    form = page.locator(".mapping-form")
    expect(form.get_by_label("Layout")).to_have_value("sharegpt")
    expect(form.get_by_label("Tools column")).to_have_value("tools")
    first = page.locator(".preview-example").first
    expect(first).to_contain_text("<start_function_call>call:")
    expect(first).to_contain_text("Here is what I found for question 0.<end_of_turn>")

    page.get_by_role("button", name="Process").click()
    expect(page).not_to_have_url(raw_url, timeout=PROCESSING_TIMEOUT)
    expect(page.locator(".report-rows-out")).to_contain_text("24")
