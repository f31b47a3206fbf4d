"""Evaluations in a real browser: from a fine-tuned model's page to an evaluation against its
base, followed live to its results (the metric table with B - A, the samples, a filter); and an
evaluation graded by a judge set up in the form."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_training_ui import processed_dataset
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page
from tests.evaluation.judge_server import judge_server
from tests.fine_tuned import add_fine_tuned

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
EVALUATION_URL = re.compile(r"/evaluations/[0-9a-f]{32}$")


def pick(page: Page, field: str, option: str | re.Pattern[str]) -> None:
    page.locator(f".evaluation-{field}").click()
    page.get_by_role("option", name=option).click()


def extraction_on_colours(page: Page, samples: int) -> None:
    """The extraction suite on the Colours dataset, `samples` answers of up to 6 tokens."""
    pick(page, "dataset", "Colours")
    pick(page, "suite", re.compile("^Extraction"))
    page.locator(".evaluation-max-samples input").fill(str(samples))
    page.locator(".evaluation-max-new-tokens input").fill("6")


def test_evaluate_a_fine_tune_against_its_base(studio: Studio, page: Page, tiny_adapter) -> None:
    processed_dataset(studio, rows=20)
    tuned = add_fine_tuned(studio.settings, "admin", tiny_adapter, name="Colour expert")
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/models/{tuned}")
    page.locator(".model-evaluate").click()
    expect(page).to_have_url(f"{studio.url}/evaluations?model={tuned}")
    pick(page, "compare", "Tiny random Gemma 3 (tests) (base)")
    extraction_on_colours(page, samples=3)
    page.locator(".evaluation-start").click()
    expect(page).to_have_url(EVALUATION_URL, timeout=30_000)
    expect(page.get_by_text("Extraction · Colour expert vs Tiny random Gemma 3")).to_be_visible()
    mark_page(page)
    table = page.locator(".evaluation-metrics")
    expect(table).to_be_visible(timeout=300_000)  # a worker starts, loads the models, answers
    expect(table).to_contain_text("exact_match")
    expect(table).to_contain_text("B - A")
    expect(page.locator(".evaluation-sample")).to_have_count(3)
    expect(page.locator(".evaluation-count")).to_have_text("3 samples")
    page.locator(".evaluation-filter").click()
    page.get_by_role("option", name="Both right").click()  # random weights: never exactly right
    expect(page.locator(".evaluation-count")).to_have_text("0 samples")
    expect(page.locator(".evaluation-sample")).to_have_count(0)
    assert page.evaluate("window.__marker") == NOT_RELOADED
    page.goto(f"{studio.url}/evaluations")
    expect(page.locator(".evaluations-table tbody tr")).to_have_count(1)
    expect(page.locator(".evaluations-table")).to_contain_text("extraction")


def test_a_judge_from_the_form_grades_the_answers(studio: Studio, page: Page) -> None:
    processed_dataset(studio, rows=20)
    key = "sk-judge-browser-test"
    with studio.api(studio.admin_token) as api:
        api.put("/secrets/JUDGE_API_KEY", json={"value": key}).raise_for_status()
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/evaluations")
    pick(page, "model", "Tiny random Gemma 3 (tests) (base)")
    extraction_on_colours(page, samples=2)
    page.get_by_text("Grade the answers with a judge (optional)").click()
    with judge_server(key) as judge:
        page.locator(".evaluation-judge-url input").fill("ftp://nowhere")
        page.locator(".evaluation-start").click()
        expect(page.get_by_text(re.compile("base_url must be an http"))).to_be_visible()
        page.locator(".evaluation-judge-url input").fill(judge.url)
        page.locator(".evaluation-judge-model input").fill("grader")
        page.locator(".evaluation-judge-key").click()
        page.get_by_role("option", name="JUDGE_API_KEY").click()
        page.locator(".evaluation-start").click()
        expect(page).to_have_url(EVALUATION_URL, timeout=30_000)
        table = page.locator(".evaluation-metrics")
        expect(table).to_be_visible(timeout=300_000)
        expect(table).to_contain_text("judge_score")
    assert len(judge.requests) == 2
    assert {r["authorization"] for r in judge.requests} == {f"Bearer {key}"}
