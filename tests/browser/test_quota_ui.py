"""Settings shows the user's usage beside the limits an administrator set."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.path_data import QuietStudio
from tests.browser.test_ui import log_in
from tuneforge.db.tables import User
from tuneforge.schemas.quotas import QuotaSet
from tuneforge.services import quotas

pytestmark = pytest.mark.browser


def test_settings_shows_usage_beside_the_quota(studio: Studio, page: Page) -> None:
    with studio.api(studio.admin_token) as admin:
        limits = {"storage_bytes": 1 << 30, "jobs_per_day": 5}
        alice = studio.username("alice")
        assert admin.put(f"/admin/users/{alice}/quota", json=limits).status_code == 200
    log_in(page, studio, "alice")
    expect(page).to_have_url(f"{studio.url}/")
    page.goto(f"{studio.url}/settings#quota")
    card = page.locator(".quota-card")
    lines = card.locator(".quota-line")
    expect(lines).to_have_count(3)
    expect(lines.nth(0)).to_contain_text("Storage")
    expect(lines.nth(0)).to_contain_text("0 bytes of 1 GiB")
    expect(lines.nth(1)).to_contain_text("Jobs queued or running")
    expect(lines.nth(1)).to_contain_text("0, no limit")
    expect(lines.nth(2)).to_contain_text("0 of 5")
    expect(card.locator(".q-linear-progress")).to_have_count(2)  # the limited ones


def test_settings_shows_what_an_import_in_progress_reserves(
    quiet_studio: QuietStudio, page: Page
) -> None:
    studio = quiet_studio
    alice = studio.user_id("alice")
    with studio.db() as session:
        quotas.store_quota(
            session, studio.settings, session.get_one(User, alice), QuotaSet(storage_bytes=4 << 20)
        )
    with studio.api("alice") as api:  # no runner: the import stays queued
        started = api.post("/datasets/import", json={"source": "huggingface", "path": "a/rows"})
        assert started.status_code == 202, started.text
    log_in(page, studio, "alice")
    expect(page).to_have_url(f"{studio.url}/")
    page.goto(f"{studio.url}/settings#quota")
    storage = page.locator(".quota-card .quota-line").nth(0)
    expect(storage).to_contain_text("0 bytes of 4 MiB")
    expect(storage.locator(".quota-reserved")).to_have_text(
        "and 4 MiB reserved by imports in progress"
    )
    expect(storage.locator(".q-linear-progress")).to_have_class(re.compile("text-negative"))
