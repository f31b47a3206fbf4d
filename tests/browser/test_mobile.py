"""On a phone-sized screen (390x844) the main path fits the screen, with the navigation behind
the menu button; on any screen the navigation and main actions are reachable with the keyboard,
with a visible focus."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from tests.browser.path_data import (
    QUESTIONS,
    QuietStudio,
    add_event,
    add_job,
    add_model,
    process_dataset,
    upload_dataset,
)
from tests.browser.test_home import log_in
from tuneforge.jobs.events import Sample, SamplesEvent

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PHONE: ViewportSize = {"width": 390, "height": 844}
#: A name with no place to break: it must wrap, not widen the page.
LONG = "capitals_" + "x" * 150


def fits(page: Page) -> None:
    """No horizontal scroll of the page body (tables may scroll inside themselves), once the
    page is live: its socket connected and greeted, and its fonts loaded. (Waiting for the
    network to go idle once took over 30 s on a loaded CI machine.)"""
    page.wait_for_function("window.did_handshake === true", timeout=60_000)
    page.evaluate("document.fonts.ready.then(() => true)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width} px wide"


def follow(page: Page, link: Locator, url: str | re.Pattern[str]) -> None:
    """Click a link and wait for the page it opens, as long as `fits` waits for a socket: on a
    loaded CI machine a page has taken over 15 s to answer."""
    link.click()
    expect(page).to_have_url(url, timeout=60_000)
    fits(page)


def open_from_menu(page: Page, label: str, path: str) -> None:
    drawer = page.locator(".q-drawer")
    expect(drawer.get_by_text(label, exact=True)).not_to_be_in_viewport()
    page.get_by_role("button", name="Menu").click()
    link = drawer.get_by_text(label, exact=True)
    expect(link).to_be_in_viewport()
    follow(page, link, re.compile(re.escape(path) + r"$"))


def test_the_main_path_fits_a_phone(quiet_studio: QuietStudio, browser: Browser) -> None:
    studio = quiet_studio
    rows = [(q, a + "_" + "y" * 200) for q, a in QUESTIONS]  # answers that never break
    raw = upload_dataset(studio, "alice", LONG, rows)
    data = process_dataset(studio, "alice", raw, f"{LONG} chat")
    spec = {"base_model": "tiny-random-gemma3", "dataset_id": data["id"]}
    run = add_job(studio, "alice", "train", spec, status="running", progress=0.5)
    sample = Sample(prompt=rows[0][0], answer="z" * 300, reference=rows[0][1])
    add_event(studio, run, SamplesEvent(step=10, items=[sample]))
    add_model(studio, "alice", f"{LONG} tune", data["id"], None)
    context = browser.new_context(base_url=studio.url, viewport=PHONE)
    page = context.new_page()
    log_in(page, studio, "alice")
    fits(page)
    expect(page.locator(".home-action")).to_be_in_viewport()

    open_from_menu(page, "Datasets", "/datasets")
    follow(
        page,
        page.locator(".datasets-table").get_by_text(LONG, exact=True),
        f"{studio.url}/datasets/{raw['id']}",
    )
    expect(page.get_by_text("Mapping", exact=True)).to_be_visible()
    expect(page.get_by_text(rows[0][1]).first).to_be_visible()  # in the preview
    fits(page)
    open_from_menu(page, "Train", "/train")
    open_from_menu(page, "Jobs", "/jobs")
    follow(page, page.locator(".jobs-table .job-name").first, f"{studio.url}/runs/{run}")
    expect(page.get_by_text("z" * 300)).to_be_visible()  # a sample answer
    fits(page)
    failed = add_job(
        studio,
        "alice",
        "export",
        {"model_id": "gone", "format": "gguf"},
        status="failed",
        error="could not write /" + "w" * 300,
    )
    page.goto(f"/jobs/{failed}")  # a job page: its settings, its error
    expect(page.get_by_text("w" * 300, exact=False).first).to_be_visible()
    fits(page)
    for label, path in (
        ("Models", "/models"),
        ("Playground", "/playground"),
        ("Evaluations", "/evaluations"),
        ("Home", "/"),
    ):
        open_from_menu(page, label, path)
    context.close()


def focused(page: Page) -> str:
    """The focused element's name: its aria-label, or its text without an icon's name."""
    text: str = page.evaluate(
        "(document.activeElement.getAttribute('aria-label') || "
        "document.activeElement.innerText || '').trim()"
    )
    return text.splitlines()[-1].strip() if text else ""


def tab_to(page: Page, name: str, presses: int = 40) -> None:
    """Press Tab until the element named `name` has the focus, and check the focus shows."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if re.search(name, focused(page)):
            style = page.evaluate(
                "(s => [s.outlineStyle, s.boxShadow])(getComputedStyle(document.activeElement))"
            )
            assert style != ["none", "none"], f"{name} has the focus but shows no sign of it"
            return
    raise AssertionError(f"{name} is not reachable with Tab")


def test_navigation_and_main_actions_work_with_the_keyboard(
    quiet_studio: QuietStudio, browser: Browser
) -> None:
    studio = quiet_studio
    upload_dataset(studio, "alice", "Capitals raw")
    context = browser.new_context(base_url=studio.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, studio, "alice")
    tab_to(page, r"^Process Capitals raw$")
    tab_to(page, r"^Datasets$")  # the next one: a recent dataset, ...
    page.goto("/")
    tab_to(page, r"^Train$")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{studio.url}/train")
    context.close()

    phone = browser.new_context(base_url=studio.url, viewport=PHONE)
    page = phone.new_page()
    log_in(page, studio, "alice")
    tab_to(page, r"^Menu$")
    page.keyboard.press("Enter")
    expect(page.locator(".q-drawer").get_by_text("Datasets", exact=True)).to_be_in_viewport()
    tab_to(page, r"^Datasets$")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{studio.url}/datasets")
    phone.close()
