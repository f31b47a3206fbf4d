"""The tool_calls suite in a real browser: picked in the Evaluations form (with its one-line
description) on a tool-calling dataset uploaded in OpenAI's shape, followed to its results: the
suite's metrics by name, and under each answer the calls read from it and the checks it failed
(tiny-random-gemma3 calls nothing: where a call was due, it says so)."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import log_in
from tests.evaluation.test_tool_calls_suite import openai_rows

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
EVALUATION_URL = re.compile(r"/evaluations/[0-9a-f]{32}$")


def weather_dataset(studio: Studio) -> list[dict]:
    """A processed tool-calling dataset named Weather; its test split's rows."""
    body = "\n".join(json.dumps(row) for row in openai_rows()).encode()
    with studio.api(studio.admin_token) as api:
        raw = api.post("/datasets", files={"file": ("weather.jsonl", io.BytesIO(body))}).json()
        config = {"name": "Weather", "mapping": raw["mapping"], "split": {"test_size": 4}}
        processed = api.post(f"/datasets/{raw['id']}/process", json=config)
        assert processed.status_code == 201, processed.text
        dataset_id = processed.json()["id"]
        deadline = time.monotonic() + 120
        while (status := api.get(f"/datasets/{dataset_id}").json()["status"]) == "processing":
            assert time.monotonic() < deadline, "the dataset is still being processed"
            time.sleep(0.5)
        assert status == "ready"
        rows = api.get(f"/datasets/{dataset_id}/rows", params={"split": "test", "limit": 10})
    assert rows.status_code == 200, rows.text
    return list(rows.json()["rows"])


def test_tool_calls_are_scored_and_shown_per_sample(studio: Studio, page: Page) -> None:
    test_rows = weather_dataset(studio)
    calling = sum(any(m.get("tool_calls") for m in row["messages"]) for row in test_rows)
    assert 0 < calling < 4  # the split holds samples of both kinds
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/evaluations")
    page.locator(".evaluation-model").click()
    page.get_by_role("option", name=re.compile("^Tiny random Gemma 3")).first.click()
    page.locator(".evaluation-dataset").click()
    page.get_by_role("option", name="Weather").click()
    page.locator(".evaluation-suite").click()
    page.get_by_role(
        "option",
        name="Tool calls: right tools, exact and schema-valid arguments, no false calls",
    ).click()
    page.locator(".evaluation-max-new-tokens input").fill("8")
    page.locator(".evaluation-start").click()
    expect(page).to_have_url(EVALUATION_URL, timeout=30_000)
    expect(page.get_by_text(re.compile("^Tool calls · Tiny random Gemma 3"))).to_be_visible()
    table = page.locator(".evaluation-metrics")
    expect(table).to_be_visible(timeout=300_000)  # a worker starts, loads the model, answers
    for label in ("Right tools", "Arguments exact", "Arguments match the schema"):
        expect(table).to_contain_text(label)
    samples = page.locator(".evaluation-sample")
    expect(samples).to_have_count(4)
    expect(page.locator(".evaluation-calls")).to_have_count(4)
    wrong = page.locator(".evaluation-sample", has_text="Weather in")
    expect(wrong).to_have_count(calling)
    for index in range(calling):
        sample = wrong.nth(index)
        expect(sample).to_contain_text('Reference: get_weather({"city": ')
        expect(sample.locator(".evaluation-calls")).to_have_text("Calls: (no call)")
        expect(sample.locator(".evaluation-tool-checks")).to_have_text("did not call")
    expect(table).to_contain_text("No call when none is due")
    answered = page.locator(".evaluation-sample", has_text="Say hello")
    expect(answered).to_have_count(4 - calling)
    expect(answered.locator(".evaluation-tool-checks")).to_have_count(0)  # none was due
