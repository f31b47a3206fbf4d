"""Export in a real browser: from a fine-tuned model's page, the Export dialog with size
estimates, the export followed live in the model's list until it has passed its check, and
the download it offers."""

from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page
from tests.fine_tuned import add_fine_tuned

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_export_a_fine_tune_from_its_page(studio: Studio, page: Page, tiny_adapter) -> None:
    tuned = add_fine_tuned(
        studio.settings, studio.username("admin"), tiny_adapter, name="Colour expert"
    )
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/models/{tuned}")
    expect(page.locator(".exports-empty")).to_be_visible()
    mark_page(page)
    page.locator(".model-export").click()
    dialog = page.locator(".export-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".export-size")).to_contain_text("Estimated size")
    page.locator(".export-format").click()
    page.get_by_role("option", name="Merged model (safetensors)").click()
    expect(dialog.locator(".export-quantization")).to_be_hidden()
    page.locator(".export-start").click()
    row = page.locator(".export-row")
    expect(row).to_have_count(1, timeout=30_000)
    status = row.locator(".export-status")
    expect(status).to_have_text("succeeded", timeout=300_000)  # a worker merges and checks
    checked = row.locator(".export-verification")
    expect(checked).to_contain_text("merged logits match base + adapter")
    assert page.evaluate("window.__marker") == NOT_RELOADED
    with page.expect_download() as download:
        row.locator(".export-download-zip").click()
    data = download.value.path().read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "model.safetensors" in archive.namelist()
        assert "README.md" in archive.namelist()
