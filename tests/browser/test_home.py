"""The home page leads: its one next action follows the user along the path, it shows only
their own things, and lists everywhere name things instead of showing ids."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.path_data import (
    QuietStudio,
    add_export,
    add_job,
    add_model,
    process_dataset,
    set_job,
    upload_dataset,
)
from tests.browser.test_ui import log_in as log_in_as

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def log_in(page: Page, studio: QuietStudio, role: str) -> None:
    """Log in as the test's user `role`, and land on home."""
    log_in_as(page, studio, role)
    expect(page).to_have_url(f"{studio.url}/")


def next_action(page: Page, label: str, target: str) -> None:
    """Reload home and check its one main action reads `label` and leads to `target`."""
    page.goto("/")
    action = page.locator(".home-action")
    expect(action).to_have_count(1)
    expect(action).to_have_text(re.compile(re.escape(label)))
    assert action.get_attribute("href") == target


def step_states(page: Page) -> list[str]:
    return [s.strip() for s in page.locator(".home-step-state").all_inner_texts()]


def test_the_next_action_follows_the_user_along_the_path(
    quiet_studio: QuietStudio, browser: Browser
) -> None:
    studio = quiet_studio
    context = browser.new_context(base_url=studio.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, studio, "alice")
    expect(page.get_by_text("No datasets yet.")).to_be_visible()
    expect(page.get_by_text("No runs yet.")).to_be_visible()
    expect(page.get_by_text("No models yet.")).to_be_visible()
    next_action(page, "Upload a dataset", "/datasets")
    assert step_states(page) == ["next", "later", "later", "later", "later"]

    raw = upload_dataset(studio, "alice", "Capitals raw")
    next_action(page, "Process Capitals raw", f"/datasets/{raw['id']}")

    data = process_dataset(studio, "alice", raw, "Capitals chat")
    next_action(page, "Train on Capitals chat", f"/train?dataset={data['id']}")
    assert step_states(page) == ["done", "next", "later", "later", "later"]

    spec = {"name": "capital-run", "base_model": "tiny-random-gemma3", "dataset_id": data["id"]}
    run = add_job(studio, "alice", "train", spec, status="running", progress=0.4)
    next_action(page, "Watch capital-run", f"/runs/{run}")
    runs = page.locator(".home-recent-card", has_text="Training runs")
    expect(runs).to_contain_text("capital-run")
    expect(runs).to_contain_text("tiny-random-gemma3 on Capitals chat · 40%")

    set_job(studio, run, status="failed", error="loss went NaN")
    next_action(page, "Train on Capitals chat", f"/train?dataset={data['id']}")
    expect(page.locator(".home-also")).to_have_text(re.compile("See why capital-run failed"))

    set_job(studio, run, status="succeeded", progress=1.0, error=None)
    model = add_model(studio, "alice", "capital-tune", data["id"], run)
    # The page follows without a reload.
    expect(page.locator(".home-action")).to_have_text(re.compile("Try capital-tune"))
    next_action(
        page,
        "Try capital-tune in the Playground",
        f"/playground?model={model}&compare=tiny-random-gemma3",
    )
    assert page.locator(".home-also").get_attribute("href") == f"/evaluations?model={model}"
    assert step_states(page) == ["done", "done", "next", "later", "later"]
    expect(page.locator(".home-recent-card", has_text="Models")).to_contain_text("capital-tune")

    evaluation = {
        "model": "tiny-random-gemma3",
        "compare_with": model,
        "dataset_id": data["id"],
        "suite": "extraction",
    }
    check = add_job(studio, "alice", "evaluate", evaluation, status="running")
    next_action(page, "Follow the evaluation of capital-tune", f"/evaluations/{check}")
    set_job(studio, check, status="succeeded", progress=1.0)
    next_action(page, "Export capital-tune", f"/models/{model}")
    assert step_states(page) == ["done", "done", "done", "done", "next"]

    add_export(studio, "alice", model)
    next_action(page, "Train another model", "/train")
    assert step_states(page) == ["done"] * 5

    page.locator(".home-action").click()
    expect(page).to_have_url(f"{studio.url}/train")

    # Bob sees none of it: his home starts at the beginning.
    other = browser.new_context(base_url=studio.url)
    bob = other.new_page()
    log_in(bob, studio, "bob")
    next_action(bob, "Upload a dataset", "/datasets")
    for name in ("Capitals", "capital-run", "capital-tune"):
        expect(bob.get_by_text(name)).to_have_count(0)
    other.close()
    context.close()


def test_lists_show_names_and_ids_only_as_secondary_text(
    quiet_studio: QuietStudio, page: Page
) -> None:
    studio = quiet_studio
    raw = upload_dataset(studio, "alice", "Capitals raw")
    data = process_dataset(studio, "alice", raw, "Capitals chat")
    spec = {"base_model": "tiny-random-gemma3", "dataset_id": data["id"]}
    run = add_job(studio, "alice", "train", spec, status="succeeded", progress=1.0)
    model = add_model(studio, "alice", "capital-tune", data["id"], run)
    evaluation = {
        "model": "tiny-random-gemma3",
        "compare_with": model,
        "dataset_id": data["id"],
        "suite": "extraction",
    }
    check = add_job(studio, "alice", "evaluate", evaluation, status="succeeded", progress=1.0)
    export = {"model_id": model, "format": "gguf", "quantization": "q8_0"}
    add_job(studio, "alice", "export", export, status="succeeded", progress=1.0)
    gone = add_job(
        studio, "alice", "evaluate", evaluation | {"compare_with": "0" * 32}, status="queued"
    )

    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/jobs")
    rows = page.locator(".jobs-table tbody tr")
    expect(rows).to_have_count(4)
    names = [n.strip() for n in page.locator(".jobs-table .job-name").all_inner_texts()]
    assert names == [
        f"tiny-random-gemma3 vs {'0' * 32}",  # a deleted model shows as its id
        "capital-tune",
        "tiny-random-gemma3 vs capital-tune",
        "capital-tune",  # the run is named after the model it made
    ]
    details = page.locator(".jobs-table .job-detail").all_inner_texts()
    assert details[1] == f"Export · gguf q8_0 · {details[1][-8:]}"
    assert details[2] == f"Evaluation · extraction · Capitals chat · {check[:8]}"
    assert details[3] == f"Training run · tiny-random-gemma3 · Capitals chat · {run[:8]}"
    assert gone[:8] in details[0]

    page.goto(f"{studio.url}/evaluations")
    table = page.locator(".evaluations-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator(".evaluation-models").nth(1)).to_have_text(
        "tiny-random-gemma3 vs capital-tune"
    )
    expect(table.locator("tbody tr").nth(1)).to_contain_text("Capitals chat (test)")

    with studio.api("alice") as api:
        assert api.delete(f"/datasets/{data['id']}").status_code == 204
    page.reload()
    expect(table.locator("tbody tr").nth(1)).to_contain_text("(deleted dataset) (test)")
    page.goto(f"{studio.url}/jobs/{run}")
    expect(page.get_by_text("capital-tune", exact=True)).to_be_visible()
    subtitle = f"Training run · tiny-random-gemma3 · (deleted dataset) · job {run}"
    expect(page.get_by_text(subtitle)).to_be_visible()
