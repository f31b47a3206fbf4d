"""The web UI in a real browser: logging in, live jobs, isolation between users, API tokens."""

from __future__ import annotations

import re
import socket
from typing import Protocol

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio

pytestmark = pytest.mark.browser

LIVE_TIMEOUT = 20_000  # ms
NOT_RELOADED = "set before, still here"


def submit_login(page: Page, username: str, password: str) -> None:
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


class Users(Protocol):
    """A server as a test sees it: its URL, and its users by role (tests/browser/users.py)."""

    url: str

    def username(self, role: str) -> str: ...


def log_in(page: Page, studio: Users, role: str) -> None:
    """Log in as the test's user `role` ("admin", "alice")."""
    name = studio.username(role)
    page.goto(f"{studio.url}/login")
    submit_login(page, name, f"password-{name}")


def mark_page(page: Page) -> None:
    """Leave a value in the page's window: it survives only if the page is never reloaded."""
    page.evaluate(f"window.__marker = {NOT_RELOADED!r}")


def start_diagnostic_job(studio: Studio, seconds: float) -> str:
    with studio.api(studio.admin_token) as api:
        response = api.post("/jobs", json={"kind": "diagnostic", "spec": {"seconds": seconds}})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_admin_logs_in_and_watches_a_diagnostic_job_finish_live(studio: Studio, page: Page) -> None:
    page.goto(f"{studio.url}/jobs")
    expect(page).to_have_url(f"{studio.url}/login?next=%2Fjobs")

    admin = studio.username("admin")
    submit_login(page, admin, "not-the-password")
    expect(page.locator(".login-error")).to_have_text("Wrong user name or password.")
    expect(page).to_have_url(re.compile(rf"/login\?error=unauthenticated&username={admin}(&|$)"))

    submit_login(page, admin, f"password-{admin}")
    expect(page).to_have_url(f"{studio.url}/jobs")
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    mark_page(page)

    page.get_by_role("button", name="Run diagnostic job").click()
    page.get_by_label("Seconds").fill("5000")  # said, kept as typed, and not started
    page.get_by_role("button", name="Start").click()
    expect(page.locator(".diagnostic-seconds")).to_contain_text("5000 is out of range")
    expect(page.get_by_label("Seconds")).to_have_value("5000")
    page.get_by_label("Seconds").fill("2")
    page.get_by_role("button", name="Start").click()

    row = page.locator(".jobs-table tbody tr")
    expect(row).to_have_count(1)
    status = row.locator(".job-status")
    expect(status).to_have_text(re.compile(r"^\s*(queued|running)\s*$"))
    expect(status).to_have_text("succeeded", timeout=LIVE_TIMEOUT)
    expect(row).to_contain_text("100%")
    expect(row.locator(".job-where")).to_have_text(f"local · {socket.gethostname()}")
    assert page.evaluate("window.__marker") == NOT_RELOADED

    with studio.api(studio.admin_token) as api:
        jobs = api.get("/jobs").json()["items"]
    assert [(job["kind"], job["spec"]["seconds"], job["status"]) for job in jobs] == [
        ("diagnostic", 2, "succeeded")
    ]

    row.click()
    expect(page).to_have_url(f"{studio.url}/jobs/{jobs[0]['id']}")


def test_job_page_shows_progress_and_log_live_then_deletes(studio: Studio, page: Page) -> None:
    log_in(page, studio, "admin")
    expect(page).to_have_url(f"{studio.url}/")
    job_id = start_diagnostic_job(studio, seconds=3)

    page.goto(f"{studio.url}/jobs/{job_id}")
    mark_page(page)
    status = page.locator(".job-status")
    log = page.locator(".job-log")
    expect(status).to_have_text(re.compile(r"^\s*(queued|running)\s*$"))
    expect(log).not_to_contain_text("diagnostic job finished")
    expect(page.get_by_role("button", name="Cancel job")).to_be_visible()

    expect(log).to_contain_text("diagnostic job finished", timeout=LIVE_TIMEOUT)
    expect(status).to_have_text("succeeded")
    expect(page.get_by_text("100%")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    expect(page.get_by_text(f"local · {socket.gethostname()}", exact=True)).to_be_visible()
    assert page.evaluate("window.__marker") == NOT_RELOADED

    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete job").click()
    expect(page).to_have_url(f"{studio.url}/jobs")
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    with studio.api(studio.admin_token) as api:
        assert api.get(f"/jobs/{job_id}").status_code == 404


def test_users_see_only_their_own_jobs(studio: Studio, page: Page) -> None:
    admin_job = start_diagnostic_job(studio, seconds=0)

    page.goto(f"{studio.url}/jobs/{admin_job}")
    expect(page).to_have_url(re.compile(r"/login\?next="))

    log_in(page, studio, "alice")
    expect(page).to_have_url(f"{studio.url}/")
    page.goto(f"{studio.url}/jobs")
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    expect(page.locator(".jobs-table tbody tr")).to_have_count(0)
    expect(page.get_by_role("button", name="Run diagnostic job")).to_have_count(0)

    response = page.goto(f"{studio.url}/jobs/{admin_job}")
    assert response is not None and response.status == 404
    expect(page.get_by_text("Job not found")).to_be_visible()
    expect(page.locator(".job-status")).to_have_count(0)
    expect(page.get_by_text(admin_job)).to_have_count(0)


def test_api_token_created_on_settings_page_works_until_revoked(studio: Studio, page: Page) -> None:
    log_in(page, studio, "alice")
    expect(page).to_have_url(f"{studio.url}/")
    page.goto(f"{studio.url}/settings#tokens")
    page.get_by_label("Token name").fill("notebook")
    page.get_by_role("button", name="Create token").click()

    secret = page.locator(".token-secret input")
    expect(secret).to_have_value(re.compile(r"^tf_\S{20,}$"))
    token = secret.input_value()
    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    page.get_by_role("button", name="Done").click()
    expect(page.locator(".token-secret")).to_have_count(0)

    me = httpx.get(
        f"{studio.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert me.status_code == 200
    assert me.json()["username"] == studio.username("alice")

    row = page.locator(".tokens-table tbody tr", has_text="notebook")
    expect(row).to_contain_text(token[:10])
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0)
    revoked = httpx.get(
        f"{studio.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert revoked.status_code == 401

    page.locator("header").get_by_role("button", name=studio.username("alice")).click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{studio.url}/login")
    page.goto(f"{studio.url}/settings")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fsettings"))


def test_a_secret_is_set_listed_without_its_value_and_deleted(studio: Studio, page: Page) -> None:
    log_in(page, studio, "alice")
    expect(page).to_have_url(f"{studio.url}/")
    page.goto(f"{studio.url}/settings#secrets")
    page.locator(".secret-name input").fill("WANDB_API_KEY")
    page.locator(".secret-value input").fill("wandb-value-123456")
    page.get_by_role("button", name="Save secret").click()
    row = page.locator(".secrets-table tbody tr", has_text="WANDB_API_KEY")
    expect(row).to_have_count(1)
    expect(page.locator(".secret-value input")).to_have_value("")
    assert "wandb-value-123456" not in page.content()
    page.reload()
    assert "wandb-value-123456" not in page.content()
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    expect(page.get_by_text("No secrets yet.")).to_be_visible()
