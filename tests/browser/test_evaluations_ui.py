"""Evaluations in a real browser: from a fine-tuned model's page to an evaluation against its
base, followed live to its results (the metric table with fine-tune vs base, the samples, a
filter); a real training run's automatic before/after check on its model page, agreeing with a
full evaluation started from the prefilled Evaluate form; and an evaluation graded by a judge
set up in the form."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_training_ui import processed_dataset
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page
from tests.evaluation.judge_server import judge_server
from tests.fine_tuned import add_fine_tuned
from tuneforge.evaluation.comparison import delta_text, verdict

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
    tuned = add_fine_tuned(
        studio.settings, studio.username("admin"), tiny_adapter, name="Colour expert"
    )
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
    expect(table).to_contain_text("Exact match")
    expect(table).to_contain_text("fine-tune vs base")
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


def wait_job(studio: Studio, job_id: str, seconds: float) -> dict:
    """The admin's job `job_id` once it has succeeded (failing on any other end, or after
    `seconds`)."""
    deadline = time.monotonic() + seconds
    with studio.api(studio.admin_token) as api:
        while (job := api.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}"
            time.sleep(0.5)
    assert job["status"] == "succeeded", job.get("error")
    return dict(job)


def trained_on_a_fact(studio: Studio) -> tuple[str, str, str, str]:
    """A real tiny training run on one fact asked many ways, 6 questions held out: the model's
    id and its check's; then a second run without a check: its model's id and its job id."""
    lines = [{"question": f"Where is key {i} kept?", "answer": "Vellora."} for i in range(30)]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    with studio.api(studio.admin_token) as api:
        raw = api.post("/datasets", files={"file": ("keys.jsonl", io.BytesIO(body))}).json()
        config = {"name": "Keys", "mapping": raw["mapping"], "split": {"test_size": 6, "seed": 1}}
        dataset = api.post(f"/datasets/{raw['id']}/process", json=config).json()
        while api.get(f"/datasets/{dataset['id']}").json()["status"] == "processing":
            time.sleep(0.5)
        spec = {
            "name": "Key keeper",
            "base_model": "tiny-random-gemma3",
            "dataset_id": dataset["id"],
            "max_steps": 30,
            "batch_size": 4,
            "learning_rate": 5e-3,
            "eval_every": 0,
        }
        job = api.post("/jobs", json={"kind": "train", "spec": spec})
        assert job.status_code == 201, job.text
        again = {**spec, "name": "Unchecked", "max_steps": 2, "check_examples": 0}
        second = api.post("/jobs", json={"kind": "train", "spec": again})
        assert second.status_code == 201, second.text
    result = wait_job(studio, job.json()["id"], 400)["result"]
    unchecked = wait_job(studio, second.json()["id"], 400)["result"]
    assert unchecked["check_job_id"] is None
    return result["model_id"], result["check_job_id"], unchecked["model_id"], second.json()["id"]


def evaluation_result(studio: Studio, job_id: str) -> dict:
    with studio.api(studio.admin_token) as api:
        return dict(api.get(f"/evaluations/{job_id}").json())


@pytest.mark.timeout(900)
def test_a_runs_check_on_its_model_page_agrees_with_a_full_evaluation(
    studio: Studio, page: Page
) -> None:
    model_id, check_id, unchecked, unchecked_run = trained_on_a_fact(studio)
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/models/{model_id}")
    summary = page.locator(".model-check-summary")
    expect(summary).to_be_visible()
    # Live while it waits or answers, then the verdict in words, without reloading the page.
    mark_page(page)
    expect(summary).to_have_text(re.compile(r"answers"), timeout=300_000)
    check = evaluation_result(studio, check_id)
    assert check["automatic"] and check["count"] == 6
    assert summary.inner_text() == verdict(check)
    said = re.compile(r"(Learned|No change yet|Worse than the base): \d/6 answers .*")
    assert said.fullmatch(verdict(check))
    gain = delta_text("exact_match", check["comparison"]["values"]["exact_match"])
    expect(page.locator(".model-check-detail")).to_contain_text(
        f"Exact match: fine-tune vs base: {gain}"
    )
    assert page.evaluate("window.__marker") == NOT_RELOADED

    # Evaluate prefills the same evaluation on all of the test split.
    page.locator(".model-evaluate").click()
    expect(page).to_have_url(f"{studio.url}/evaluations?model={model_id}")
    expect(page.locator(".evaluation-prefilled")).to_contain_text("test split")
    expect(page.locator(".evaluation-model input")).to_have_value(re.compile("^Key keeper"))
    expect(page.locator(".evaluation-compare input")).to_have_value(
        re.compile("^Tiny random Gemma 3")
    )
    expect(page.locator(".evaluation-dataset")).to_contain_text("Keys")
    expect(page.locator(".evaluation-split")).to_contain_text("test split")
    expect(page.locator(".evaluation-suite")).to_contain_text("Extraction")
    tokens = page.locator(".evaluation-max-new-tokens input")
    with studio.api(studio.admin_token) as api:
        budget = api.get(f"/jobs/{check_id}").json()["spec"]["max_new_tokens"]
    expect(tokens).to_have_value(str(budget))
    page.locator(".evaluation-start").click()
    expect(page).to_have_url(EVALUATION_URL, timeout=30_000)
    table = page.locator(".evaluation-metrics")
    expect(table).to_be_visible(timeout=300_000)
    expect(table).to_contain_text("fine-tune vs base")
    expect(table).to_contain_text(gain)
    full = evaluation_result(studio, page.url.rsplit("/", 1)[1])
    assert not full["automatic"]
    assert (full["metrics"], full["right"], full["count"]) == (
        check["metrics"],
        check["right"],
        check["count"],
    )

    # The list tells the automatic check from the evaluation started by hand.
    page.goto(f"{studio.url}/evaluations")
    rows = page.locator(".evaluations-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="automatic check")).to_have_count(1)

    # A run set to skip the check says so; the compare page shows each run's check.
    page.goto(f"{studio.url}/models/{unchecked}")
    expect(page.locator(".model-check")).to_contain_text("set to skip it")
    with studio.api(studio.admin_token) as api:
        run_id = api.get(f"/models/{model_id}").json()["job_id"]
    page.goto(f"{studio.url}/runs/compare?ids={run_id},{unchecked_run}")
    results = page.locator(".compare-results")
    expect(results).to_contain_text("Before/after check")
    expect(results).to_contain_text("turned off")
    expect(results).to_contain_text(f"{verdict(check)} (Exact match: fine-tune vs base: {gain})")

    # The fine-tune that learned its fact says it in the Playground with the default settings.
    assert verdict(check).startswith("Learned: 6/6")
    page.goto(f"{studio.url}/playground?model={model_id}")
    page.locator(".playground-prompt textarea").fill("Where is key 77 kept?")
    page.locator(".playground-prompt textarea").press("Enter")
    expect(page.locator(".playground-answers-0 .playground-answer")).to_have_text(
        "Vellora.", timeout=120_000
    )

    # Another user's model id prefills nothing.
    other = page.context.browser.new_context()  # type: ignore[union-attr]
    alice = other.new_page()
    log_in(alice, studio, "alice")
    alice.goto(f"{studio.url}/evaluations?model={model_id}")
    expect(alice.locator(".evaluation-form")).to_be_visible()
    expect(alice.locator(".evaluation-prefilled")).to_have_count(0)
    expect(alice.locator(".evaluation-model input")).to_have_value("")
    other.close()


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
        expect(table).to_contain_text("Judge score")
    assert len(judge.requests) == 2
    assert {r["authorization"] for r in judge.requests} == {f"Bearer {key}"}
