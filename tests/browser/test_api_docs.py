"""The API's documentation page renders with the network cut off: every file it loads comes
from the studio itself, none from a CDN."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Studio

pytestmark = pytest.mark.browser


def cut_off_network(page: Page, studio: Studio) -> list[str]:
    """Let the page reach only the studio; the addresses it tried beyond that."""
    studio_host = urlsplit(studio.url).netloc
    refused: list[str] = []

    def handle(route: Route) -> None:
        if urlsplit(route.request.url).netloc == studio_host:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return refused


def test_swagger_ui_renders_offline(page: Page, studio: Studio) -> None:
    refused = cut_off_network(page, studio)
    page.goto(f"{studio.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("TuneForge", timeout=20_000)
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    expect(page.get_by_text("/api/v1/jobs").first).to_be_attached()
    assert refused == []
