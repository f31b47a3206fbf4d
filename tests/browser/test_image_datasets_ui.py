"""An image dataset in a real browser: a ZIP of images with a CSV of captions is recognised, the
live preview shows each image in place after `<start_of_image>`, processing keeps the images,
and the processed page shows their statistics and thumbnails in the rows and the row's dialog."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_datasets_ui import DATASET_URL, PROCESSING_TIMEOUT, upload
from tests.browser.test_ui import log_in
from tests.images import coloured_images

pytestmark = pytest.mark.browser
IMAGES = 8


def captions_zip(path: Path) -> Path:
    """`pictures/0.png`... and `captions.csv` (file_name, text), plus one broken image."""
    lines = ["file_name,text"]
    with zipfile.ZipFile(path, "w") as archive:
        for index, (data, colour) in enumerate(coloured_images(IMAGES, seed=3)):
            archive.writestr(f"pictures/{index}.png", data)
            lines.append(f"pictures/{index}.png,A {colour} square on grey noise.")
        archive.writestr("pictures/broken.png", b"\x89PNG\r\n\x1a\n" + bytes(40))
        lines.append("pictures/broken.png,Nothing.")
        archive.writestr("captions.csv", "\n".join(lines) + "\n")
    return path


@pytest.mark.timeout(300)
def test_a_zip_of_captioned_images_with_thumbnails(
    studio: Studio, page: Page, tmp_path: Path
) -> None:
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/datasets")
    page.get_by_label("Name (optional)").fill("Squares")
    upload(page, captions_zip(tmp_path / "squares.zip"))
    expect(page).to_have_url(DATASET_URL)
    raw_url = page.url
    expect(page.locator(".dataset-facts")).to_contain_text("image_caption")
    raw_rows = page.locator(".dataset-rows tbody tr")
    expect(raw_rows).to_have_count(IMAGES + 1)
    expect(raw_rows.first.locator("img.row-picture")).to_have_count(1)  # what the path names
    expect(raw_rows.first).to_contain_text("pictures/0.png")
    expect(raw_rows.last.locator("img.row-picture")).to_have_count(0)  # the broken one

    examples = page.locator(".mapping-preview .gemma-rendered")
    expect(examples).to_have_count(3)
    first = examples.first
    expect(first).to_contain_text("<start_of_image>Describe this image.")
    picture = first.locator("img.gemma-image")
    expect(picture).to_have_count(1)
    assert picture.get_attribute("src").startswith("data:image/jpeg;base64,")
    # the picture stands right after its token, inside the rendered prompt
    token = first.locator(".gemma-token", has_text="<start_of_image>")
    assert token.evaluate("t => t.nextElementSibling.tagName") == "IMG"
    assert picture.evaluate("i => i.naturalWidth") > 0  # it decodes in the browser

    # the caption becomes the answer; a different prompt shows at once
    user_turn = page.locator(".mapping-role-user")
    user_turn.get_by_label("Template").fill("What is this?")
    expect(first).to_contain_text("<start_of_image>What is this?")
    expect(first.locator("img.gemma-image")).to_have_count(1)

    page.get_by_role("button", name="Process").click()
    expect(page).not_to_have_url(raw_url, timeout=PROCESSING_TIMEOUT)
    expect(page).to_have_url(DATASET_URL)
    expect(page.locator(".report-rows-out")).to_contain_text(str(IMAGES))
    expect(page.locator(".validation-report")).to_contain_text("cannot be decoded")
    summary = page.locator(".image-summary")
    expect(summary).to_contain_text(f"{IMAGES} images in {IMAGES} examples")
    expect(summary).to_contain_text("260 tokens")
    expect(page.locator(".image-sizes")).to_contain_text("Width (px)")

    rows = page.locator(".dataset-rows tbody tr")
    expect(rows.first.locator("img.row-picture")).to_have_count(1)
    expect(rows.first).to_contain_text("[image]")
    rows.first.click()
    dialog = page.locator(".row-rendered")
    expect(dialog).to_contain_text(re.compile(r"<start_of_image>What is this\?"))
    expect(dialog.locator("img.gemma-image")).to_have_count(1)
