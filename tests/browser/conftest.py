"""A real TuneForge server (local accounts, an admin and a user) and a headless chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.path_data import quiet_studio  # noqa: F401  (a fixture for these tests)
from tests.conftest import add_user
from tests.server import running_server, server_env
from tuneforge.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Studio:
    """A running server with an admin (`admin`, whose API token is kept) and a user (`alice`)."""

    url: str
    admin_token: str
    settings: Settings

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,  # uploads and processing wait on a busy 2-core machine
        )


@pytest.fixture
def studio(make_settings: Callable[..., Settings]) -> Iterator[Studio]:
    """`tuneforge serve` with local accounts and its own job runner, an admin and a user."""
    settings = make_settings(auth="local", run_jobs=True)
    with running_server(server_env(settings), timeout=60) as url:
        add_user(settings, "alice")
        yield Studio(url, add_user(settings, "admin", admin=True), settings)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"The browser tests drive Debian's chromium: apt-get install chromium ({CHROMIUM})."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()
