"""The run page says when a run is going wrong, while it runs: a tiny-random-gemma3 run with
learning rate 1 (the product's defaults otherwise) is flagged with what to change, live, without
a reload; once it ends, the page says what it was estimated to take and what it took."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_training_ui import processed_dataset
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page

pytestmark = pytest.mark.browser

RUN_SECONDS = 600  # a worker imports torch and trains 24 steps on a machine shared with others


def start_run(studio: Studio, dataset_id: str, **values: object) -> str:
    spec = {"base_model": "tiny-random-gemma3", "dataset_id": dataset_id, **values}
    with studio.api(studio.admin_token) as api:
        response = api.post("/jobs", json={"kind": "train", "spec": spec})
        assert response.status_code == 201, response.text
        job_id: str = response.json()["id"]
    return job_id


@pytest.mark.timeout(900)
def test_a_run_with_learning_rate_1_is_flagged_while_it_runs(studio: Studio, page: Page) -> None:
    dataset_id = processed_dataset(studio)
    log_in(page, studio, "admin")
    job_id = start_run(studio, dataset_id, learning_rate=1.0)
    page.goto(f"{studio.url}/runs/{job_id}")
    mark_page(page)
    flag = page.locator(".health-updates_exploding")
    expect(flag).to_be_visible(timeout=RUN_SECONDS * 1000)
    # seen while the run goes on, not in a report afterwards
    assert page.locator(".run-status").inner_text() in ("running", "cancelling")
    expect(flag).to_contain_text("The updates are exploding")
    expect(flag.locator(".health-advice")).to_contain_text("Lower the learning rate (now 1")
    expect(page.locator(".run-health .health-flag").first).to_have_class(re.compile("bg-red-1"))

    expect(page.locator(".run-status")).to_have_text("succeeded", timeout=RUN_SECONDS * 1000)
    assert page.evaluate("window.__marker") == NOT_RELOADED  # followed live, never reloaded
    expect(flag).to_be_visible()  # the finished run still says what went wrong
    # what it was expected to take beside what it took; both whole seconds, not "under a second"
    expect(page.locator(".run-eta")).to_have_text(re.compile(r"^estimated \d.*, took \d"))
    estimated = page.locator(".run-eta").inner_text()
    assert not re.match(r"estimated [0-4] s,", estimated), estimated


@pytest.mark.timeout(900)
def test_a_healthy_run_raises_no_learning_rate_flag(studio: Studio, page: Page) -> None:
    dataset_id = processed_dataset(studio)
    log_in(page, studio, "admin")
    job_id = start_run(studio, dataset_id, max_steps=8, sample_answers=False)
    page.goto(f"{studio.url}/runs/{job_id}")
    expect(page.locator(".run-status")).to_have_text("succeeded", timeout=RUN_SECONDS * 1000)
    for code in ("updates_exploding", "loss_exploding", "grad_exploding", "loss_not_finite"):
        expect(page.locator(f".health-{code}")).to_have_count(0)
    # its settings turned sample answers off: the page says so, and shows none
    expect(page.locator(".run-samples")).to_contain_text("this run's settings turn them off")
    expect(page.locator(".run-samples .sample-text")).to_have_count(0)
