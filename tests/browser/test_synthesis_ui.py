"""Making a dataset from documents in a real browser: from the datasets page to the form, a
manual uploaded, an endpoint named, the job started; the dataset's page shows the pairs as they
are made with their sources, then the rows with their pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in
from tests.llm_server import LlmServer
from tests.synthesis_documents import manual, reply
from tuneforge.data.synthesis.templates import SHAPES

pytestmark = pytest.mark.browser
JOB_TIMEOUT = 120_000  # ms: the job's worker starts and builds the tokenizer on a busy machine


def test_make_a_dataset_from_a_manual(studio: Studio, page: Page, tmp_path: Path) -> None:
    pdf = manual(tmp_path / "manual.pdf", 10)
    log_in(page, studio, "admin")  # an administrator may name an endpoint on this machine
    page.goto(f"{studio.url}/datasets")
    page.locator(".dataset-from-documents").click()
    expect(page).to_have_url(f"{studio.url}/datasets/synthesize")
    form = page.locator(".synthesis-form")
    template = form.locator(".synthesis-template textarea")
    expect(template).to_have_value(SHAPES["qa"].template)
    form.locator(".synthesis-upload input[type=file]").set_input_files(pdf)
    expect(form.locator(".synthesis-file")).to_contain_text("manual.pdf")
    with LlmServer(reply=reply, delay=1.0) as model:
        form.locator(".generator-url input").fill(model.url)
        form.locator(".generator-model input").fill("writer")
        form.get_by_label("Pairs per chunk").fill("1")
        form.locator(".synthesis-name input").fill("Pump manual pairs")
        form.get_by_text("Chunking").click()
        form.get_by_text("Split pages").click()
        form.get_by_role("button", name="Make the dataset").click()
        expect(page).to_have_url(re.compile(r"/datasets/[0-9a-f]+$"), timeout=JOB_TIMEOUT)
        view = page.locator(".synthesis-view")
        expect(view).to_be_visible()
        # While it runs: the pairs kept so far, each with its source.
        sample = page.locator(".synthesis-sample").first
        expect(sample).to_contain_text("manual.pdf, page ", timeout=JOB_TIMEOUT)
        expect(page.locator(".dataset-status")).to_have_text("processing")
        expect(page.locator(".synthesis-counts")).to_contain_text("pairs kept")
        expect(page.locator(".dataset-status")).to_have_text("ready", timeout=JOB_TIMEOUT)
    expect(page.get_by_text("Pump manual pairs")).to_be_visible()
    expect(page.locator(".synthesis-counts")).to_contain_text("10 of 10 chunks")
    expect(page.locator(".dataset-rows thead")).to_contain_text("chunk_id")
    expect(page.locator(".dataset-rows tbody")).to_contain_text("manual.pdf")
