"""The Playground in a real browser: from a fine-tuned model's page to a side-by-side chat with
its base, both answers streamed into their columns; regenerate, clear, and scoping."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page
from tests.fine_tuned import add_fine_tuned

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
ANSWER_TIMEOUT = 120_000  # ms: the first message starts the inference server and loads the model


def answers(page: Page, column: int) -> list[str]:
    return page.locator(f".playground-answers-{column} .playground-answer").all_inner_texts()


def test_chat_side_by_side_with_the_base_model(studio: Studio, page: Page, tiny_adapter) -> None:
    tuned = add_fine_tuned(studio.settings, "alice", tiny_adapter, name="Colour expert")
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/models/{tuned}")
    page.locator(".model-chat").click()
    expect(page).to_have_url(f"{studio.url}/playground?model={tuned}&compare=tiny-random-gemma3")
    expect(page.locator(".playground-column")).to_have_count(2)
    expect(page.locator(".playground-column").first).to_contain_text("Colour expert")
    mark_page(page)
    page.get_by_text("System prompt and sampling").click()
    page.locator(".playground-temperature input").fill("0")
    page.locator(".playground-max-new-tokens input").fill("12")
    page.locator(".playground-prompt textarea").fill("Which colour is number 3?")
    page.locator(".playground-prompt textarea").press("Enter")
    for column in (0, 1):
        expect(page.locator(f".playground-answers-{column} .playground-user")).to_have_text(
            "Which colour is number 3?"
        )
        expect(page.locator(f".playground-answers-{column} .playground-answer")).not_to_have_text(
            "", timeout=ANSWER_TIMEOUT
        )
    expect(page.locator(".playground-send")).not_to_have_class("q-btn--loading", timeout=60_000)
    for column in range(2):  # how each answer was made
        stats = page.locator(".playground-stats").nth(column)
        expect(stats).to_have_text(re.compile(r"^transformers · \d+ tokens( · \d+ tokens/s)?$"))
    first = (answers(page, 0), answers(page, 1))
    assert first[0] != first[1]  # the fine-tune is not its base
    page.locator(".playground-regenerate").click()
    for column in (0, 1):  # greedy: the same answers again, once they are written
        expect(page.locator(f".playground-answers-{column} .playground-answer")).to_have_text(
            first[column], timeout=60_000
        )
    page.locator(".playground-clear").click()
    expect(page.locator(".playground-answer")).to_have_count(0)
    expect(page.locator(".playground-empty")).to_have_count(2)
    assert page.evaluate("window.__marker") == NOT_RELOADED


def test_another_users_model_is_not_offered(studio: Studio, page: Page, tiny_adapter) -> None:
    tuned = add_fine_tuned(studio.settings, "alice", tiny_adapter, name="Alice's model")
    from tests.conftest import add_user

    add_user(studio.settings, "bob")
    log_in(page, studio, "bob")
    page.goto(f"{studio.url}/playground?model={tuned}")
    expect(page.locator(".playground-column")).to_have_count(1)
    expect(page.locator(".playground-column")).not_to_contain_text("Alice's model")
    page.locator(".playground-model-a").click()
    expect(page.get_by_role("option", name="Alice's model")).to_have_count(0)
