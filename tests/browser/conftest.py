"""A real TuneForge server (local accounts) and a headless chromium.

Starting `tuneforge serve` takes seconds, so the tests of a process share one server with a job
runner (`studio`) and one without (`quiet_studio`, tests/browser/path_data.py), each started
when a test first asks for it. A test sees the server as its own: its users are made for it (an
admin, and `alice` and others when it first names them) and deleted with all they own when it
ends (`TestUsers`, tests/browser/users.py); tests speak of them by role (`log_in(page, studio,
"alice")`, `studio.username("alice")`).

Settings, tokens, secrets and quotas are each user's, and the catalog and the runner are fixed
at start. What a server holds for everyone is not shared: the Playground's engines (a
generation one test leaves running holds them for the next, and the inference server counts
answers since it started), so tests/browser/test_playground.py gives each test a server of its
own (`own_studio`), as it does one with its own catalog (`running_server`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.path_data import quiet_server, quiet_studio  # noqa: F401  (fixtures)
from tests.browser.users import TestUsers
from tests.conftest import create_database, drop_database
from tests.server import running_server, server_env
from tuneforge.settings import Settings

# CI runs these tests beside training on two cores, where the server has taken more than 15 s
# to answer a click; Playwright's 5 s default then fails a page that is only slow.
expect.set_options(timeout=30_000)

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
    """A running server as one test sees it: its users by role, the admin's token at hand."""

    url: str
    settings: Settings
    users: TestUsers

    @property
    def admin_token(self) -> str:
        return self.users.token("admin")

    def username(self, role: str) -> str:
        return self.users.username(role)

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,  # uploads and processing wait on a busy 2-core machine
        )


@pytest.fixture(scope="session")
def shared_settings(
    tmp_path_factory: pytest.TempPathFactory, database_template: str, models_dir: Path
) -> Iterator[Callable[[], Settings]]:
    """Settings for a server these tests share, like `make_settings`'s (fast heartbeats and
    polling, no models warmed), each with data and a database of its own."""
    databases: list[str] = []

    def make() -> Settings:
        directory = tmp_path_factory.mktemp("studio")
        databases.append(create_database(directory, database_template))
        values: dict[str, Any] = {
            "data_dir": directory / "data",
            "model_cache_dir": models_dir,
            "database_url": databases[-1],
            "heartbeat_interval": 0.5,
            "heartbeat_timeout": 30.0,
            "cancel_timeout": 3.0,
            "poll_interval": 0.2,
            "auth": "local",
            "warm_models": [],
        }
        return Settings(**values)

    yield make
    for url in databases:
        drop_database(url)


@pytest.fixture(scope="session")
def studio_server(shared_settings: Callable[[], Settings]) -> Iterator[tuple[str, Settings]]:
    """`tuneforge serve` with local accounts and its own job runner: its URL and settings."""
    settings = shared_settings()
    with running_server(server_env(settings), timeout=60) as url:
        yield url, settings


def studio_users(settings: Settings) -> TestUsers:
    """A test's users on a server with `settings`: an admin (`alice` and others are made when
    the test first names them)."""
    users = TestUsers(settings)
    users.add("admin", admin=True)
    return users


@pytest.fixture
def studio(studio_server: tuple[str, Settings]) -> Iterator[Studio]:
    """The shared server with this test's users."""
    url, settings = studio_server
    users = studio_users(settings)
    yield Studio(url, settings, users)
    users.remove(runner=True)


@pytest.fixture
def own_studio(make_settings: Callable[..., Settings]) -> Iterator[Studio]:
    """A server of the test's own (with a job runner), for a test that reads or changes what
    a server holds for everyone."""
    settings = make_settings(auth="local", run_jobs=True)
    with running_server(server_env(settings), timeout=60) as url:
        yield Studio(url, settings, studio_users(settings))


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
