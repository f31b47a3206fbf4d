"""Tool calling in the Playground, in a real browser: a model fine-tuned on a tool-calling
conversation is offered the tool, its call is shown with its arguments, the person types the
tool's result into the message box, and the model answers after it. Tools that are not valid
JSON are said, and nothing is sent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_playground import ANSWER_TIMEOUT
from tests.browser.test_ui import log_in
from tests.fine_tuned import ANSWER, QUESTION, TOOLS, add_fine_tuned

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_a_call_is_shown_and_its_typed_result_answered(
    studio: Studio, page: Page, tool_calling_model: Path
) -> None:
    tuned = add_fine_tuned(
        studio.settings,
        studio.username("alice"),
        tool_calling_model,
        name="Weather caller",
        kind="full",
    )
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/playground?model={tuned}")
    page.get_by_text("Tools the model may call").click()
    tools = page.locator(".playground-tools textarea")
    tools.fill("[{not json")
    prompt = page.locator(".playground-prompt textarea")
    prompt.fill(QUESTION)
    prompt.press("Enter")
    expect(page.locator(".playground-tools-error")).to_contain_text("The tools are not valid")
    expect(page.locator(".playground-answers-0 .playground-user")).to_have_count(0)

    tools.fill(json.dumps(TOOLS))
    prompt.press("Enter")
    answer = page.locator(".playground-answers-0 .playground-answer").first
    expect(answer).to_contain_text("get_weather", timeout=ANSWER_TIMEOUT)
    expect(answer).to_contain_text('{"city": "Oslo"}')
    expect(page.locator(".playground-tools-error")).to_have_text("")
    expect(page.locator(".playground-send")).not_to_have_class("q-btn--loading", timeout=60_000)
    expect(page.locator(".playground-prompt")).to_contain_text("The result of get_weather")

    prompt.fill("cold")
    prompt.press("Enter")
    bubbles = page.locator(".playground-answers-0 .playground-user")
    expect(bubbles.last).to_have_text("get_weather returned: cold")
    final = page.locator(".playground-answers-0 .playground-answer").nth(1)
    expect(final).to_have_text(ANSWER, timeout=ANSWER_TIMEOUT)
    expect(page.locator(".playground-prompt")).not_to_contain_text(
        re.compile("The result of"), timeout=10_000
    )
