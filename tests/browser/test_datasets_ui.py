"""The Datasets pages in a real browser: upload, live preview in Gemma's format, processing,
the report and charts, errors in words, and another user's dataset staying out of sight."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in

pytestmark = pytest.mark.browser

PROCESSING_TIMEOUT = 120_000  # ms; the first processing in a run builds the Gemma tokenizer
DATASET_URL = re.compile(r"/datasets/[0-9a-f]{32}$")
ROWS = [
    {"instruction": f"Spell the number {n} in words.", "input": "", "output": word}
    for n, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
] + [{"instruction": "Say nothing.", "input": "", "output": ""}]
# Exactly what training sees for the first row: Gemma's chat format, special tokens included.
FIRST_RENDERED = (
    "<bos><start_of_turn>user\nSpell the number 0 in words.<end_of_turn>\n"
    "<start_of_turn>model\nzero<end_of_turn>\n"
)


def upload(page: Page, path: Path) -> None:
    page.locator(".dataset-upload input[type=file]").set_input_files(path)


def test_upload_preview_process_and_report(
    studio: Studio, browser: Browser, page: Page, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "unfinished"')
    alpaca = tmp_path / "numbers.json"
    alpaca.write_text(json.dumps(ROWS))

    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/datasets")
    expect(page.get_by_text("No datasets yet")).to_be_visible()

    upload(page, broken)
    expect(page.get_by_role("alert")).to_contain_text("JSON")  # what is wrong, in words
    expect(page).to_have_url(f"{studio.url}/datasets")
    expect(page.get_by_text("No datasets yet")).to_be_visible()

    page.get_by_label("Name (optional)").fill("Numbers")
    upload(page, alpaca)
    expect(page).to_have_url(DATASET_URL)
    raw_url = page.url
    expect(page.get_by_text("Numbers", exact=True)).to_be_visible()
    expect(page.locator(".dataset-facts")).to_contain_text("alpaca")  # the recognised format
    expect(page.locator(".dataset-rows tbody tr")).to_have_count(len(ROWS))

    examples = page.locator(".gemma-rendered")
    expect(examples).to_have_count(3)
    assert examples.first.inner_text() == FIRST_RENDERED
    expect(examples.first.locator(".gemma-token").first).to_have_text("<bos>")

    # The preview follows the form: a template for the user's turn...
    page.get_by_label("Layout").click()
    page.get_by_role("option", name="fields", exact=True).click()
    user_turn = page.locator(".mapping-role-user")
    user_turn.get_by_role("button", name="Template").click()
    user_turn.get_by_label("Template").fill("Please: {instruction}")
    page.locator(".mapping-role-assistant").get_by_label("Column").click()
    page.get_by_role("option", name="output", exact=True).click()
    expect(examples.first).to_contain_text("Please: Spell the number 0 in words.")
    # ...and says what is wrong when the mapping cannot work.
    user_turn.get_by_label("Template").fill("Please: {nothing}")
    expect(page.locator(".preview-problem")).to_contain_text("{nothing}")
    user_turn.get_by_label("Template").fill("Please: {instruction}")
    expect(examples).to_have_count(3)

    page.get_by_role("button", name="Process").click()
    expect(page).not_to_have_url(raw_url, timeout=PROCESSING_TIMEOUT)
    expect(page).to_have_url(DATASET_URL)
    processed_url = page.url
    expect(page.get_by_text("Numbers (processed)")).to_be_visible()
    expect(page.locator(".report-rows-in")).to_contain_text(str(len(ROWS)))
    expect(page.locator(".report-rows-out")).to_contain_text(str(len(ROWS) - 1))
    expect(page.locator(".validation-report")).to_contain_text(
        "An answer (assistant turn) is empty."
    )
    expect(page.locator(".token-histogram canvas")).to_be_visible()
    expect(page.locator(".dataset-rows tbody tr").first).to_contain_text("user: Please: Spell")
    expect(page.get_by_role("link", name="Numbers")).to_have_attribute(
        "href", raw_url.removeprefix(studio.url)
    )

    with studio.api(studio.admin_token) as api:
        processed = api.get(f"/datasets/{processed_url.rsplit('/', 1)[1]}").json()
    assert processed["status"] == "ready"
    assert processed["mapping"]["user"] == {"template": "Please: {instruction}"}
    assert sum(processed["splits"].values()) == len(ROWS) - 1

    other = browser.new_context()
    try:
        alice = other.new_page()
        log_in(alice, studio, "alice")
        expect(alice).to_have_url(f"{studio.url}/")
        for url in (processed_url, raw_url):
            response = alice.goto(url)
            assert response is not None and response.status == 404
            expect(alice.get_by_text("Dataset not found")).to_be_visible()
        alice.goto(f"{studio.url}/datasets")
        expect(alice.get_by_text("No datasets yet")).to_be_visible()
    finally:
        other.close()
