"""GRPO in a real browser: on the Train page a set of two graders is built from the library (a
numeric match reading the row's answer, a format check), tried on a sample completion (each
grade with its reason, and the total) and launched as a short run on the tiny model, whose page
draws each grader's reward and shows its sample answers with their grades."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_preference_ui import RUN_SECONDS, TINY, processed, wait_for_lines
from tests.browser.test_training_ui import RUN_URL, choose
from tests.browser.test_ui import log_in

pytestmark = pytest.mark.browser

GRPO = "Reinforcement learning from graders (GRPO)"
PROMPTS = {"mode": "prompt_only", "layout": "fields", "user": {"column": "question"}}
FORMAT = r"^<answer>\d+</answer>$"


@pytest.mark.timeout(240)
def test_build_graders_try_them_on_a_sample_and_train_grpo(studio: Studio, page: Page) -> None:
    sums = processed(
        studio,
        "Sums",
        [{"question": f"What is {i} plus 3?", "answer": str(i + 3)} for i in range(10)],
        PROMPTS,
    )
    log_in(page, studio, "admin")
    page.goto(f"{studio.url}/train?dataset={sums}")
    expect(page.locator(".train-trainer")).to_contain_text(GRPO)  # the trainer its data is for
    expect(page.locator(".grader-none")).to_be_visible()

    page.locator(".grader-add").click()
    library = page.get_by_role("dialog")
    expect(library).to_contain_text("Numeric match")  # each grader explained, with an example
    expect(library).to_contain_text("the last one inside a tag such as")
    library.locator(".library-add-numeric_match").click()
    numeric = page.locator(".grader-numeric_match")
    expect(numeric.locator(".grader-column input")).to_have_value("answer")  # the data's column
    page.locator(".grader-add").click()
    page.get_by_role("dialog").locator(".library-add-phrases").click()
    page.locator(".grader-phrases .grader-remove").click()  # changed my mind
    expect(page.locator(".grader-card")).to_have_count(1)
    page.locator(".grader-add").click()
    page.get_by_role("dialog").locator(".library-add-regex").click()
    regex = page.locator(".grader-regex")
    regex.get_by_label("Pattern").fill(FORMAT)
    regex.get_by_label("Weight").fill("0.5")

    # The first test row, and a plausible answer in the tag the numeric grader reads.
    trial = page.locator(".grader-try")
    expect(trial.locator(".try-prompt")).to_contain_text("plus 3?")
    completion = trial.locator(".try-completion textarea")
    expect(completion).to_have_value(re.compile(r"^<answer>\d+</answer>$"))
    trial.locator(".try-button").click()
    grades = trial.locator(".try-grade")
    expect(grades).to_have_count(2)
    expect(grades.nth(0)).to_contain_text("numeric_match · weight 1")
    expect(grades.nth(0)).to_contain_text("1.00")
    expect(grades.nth(1)).to_contain_text("format · weight 0.5")
    expect(trial.locator(".try-total")).to_have_text("Total reward: 1.50 of 1.5")

    completion.fill("<answer>1000</answer>")  # the right format, the wrong number
    trial.locator(".try-button").click()
    expect(grades.nth(0)).to_contain_text("0.00")
    expect(grades.nth(0).locator(".try-reason")).to_contain_text("1000")  # why, in words
    expect(grades.nth(1)).to_contain_text("1.00")
    expect(trial.locator(".try-total")).to_have_text("Total reward: 0.50 of 1.5")

    choose(page, ".train-model", TINY)
    page.get_by_label("Max steps").fill("3")
    page.get_by_label("Num generations").fill("2")
    page.get_by_label("Max completion length").fill("8")
    page.get_by_text("Evaluation and checkpoints", exact=True).click()
    page.get_by_label("Evaluate every").fill("1")
    page.get_by_label("Sample max new tokens").fill("8")
    expect(page.locator(".estimate-steps")).to_have_text("3")
    train = page.locator(".train-button")
    expect(train).to_be_enabled()
    train.click()

    expect(page).to_have_url(RUN_URL)
    expect(page.locator(".chart-graders")).to_be_visible()
    wait_for_lines(page, "graders", {"numeric_match", "format"}, RUN_SECONDS)
    wait_for_lines(page, "reward", {"Mean reward", "± spread"}, RUN_SECONDS)
    sample = page.locator(".sample-item").first
    expect(sample.locator(".sample-grades")).to_contain_text("numeric_match", timeout=30_000)
    expect(sample.locator(".sample-grades")).to_contain_text("format")
    expect(sample.locator(".sample-reward")).to_contain_text("Reward")
    wait_for_lines(page, "completion-length", {"Tokens"}, RUN_SECONDS)
    expect(page.locator(".chart-kl")).to_be_hidden()  # no KL weight (beta 0): no KL curve
