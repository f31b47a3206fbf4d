"""The Playground in a real browser: from a fine-tuned model's page to a side-by-side chat with
its base, both answers streamed into their columns; regenerate, clear, and scoping; sampling
defaults by model kind, the base-model note, the loading state, Stop, and long text that wraps."""

from __future__ import annotations

import base64
import re
import time

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Studio
from tests.browser.test_ui import NOT_RELOADED, log_in, mark_page, submit_login
from tests.conftest import add_user
from tests.fine_tuned import add_fine_tuned
from tests.images import png
from tests.server import running_server, server_env
from tuneforge.inference.sampling import BASE_MAX_NEW_TOKENS
from tuneforge.models.catalog import catalog

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
ANSWER_TIMEOUT = 120_000  # ms: the first message starts the inference server and loads the model
VISION = "tiny-random-gemma3-vision"


@pytest.fixture
def studio(own_studio: Studio) -> Studio:
    """A server per test: its engines, and what they count, are the server's, not a user's
    (tests/browser/conftest.py)."""
    return own_studio


def answers(page: Page, column: int) -> list[str]:
    return page.locator(f".playground-answers-{column} .playground-answer").all_inner_texts()


def test_chat_side_by_side_with_the_base_model(studio: Studio, page: Page, tiny_adapter) -> None:
    tuned = add_fine_tuned(
        studio.settings, studio.username("alice"), tiny_adapter, name="Colour expert"
    )
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
        answer = page.locator(f".playground-answers-{column} .playground-answer")
        expect(answer).not_to_have_class(re.compile("playground-status"), timeout=ANSWER_TIMEOUT)
    expect(page.locator(".playground-send")).not_to_have_class("q-btn--loading", timeout=60_000)
    # How each answer was made: the fine-tune by llama.cpp, or by transformers while llama.cpp
    # is prepared for it (saying so); the tiny base (no GGUF) by transformers.
    speed = r"\d+ tokens( · \d+ tokens/s)?"
    expect(page.locator(".playground-stats").nth(0)).to_have_text(
        re.compile(
            rf"^(llama\.cpp · {speed}|transformers · {speed} · llama\.cpp is still being "
            r"prepared for this fine-tune .*)$"
        )
    )
    expect(page.locator(".playground-stats").nth(1)).to_have_text(
        re.compile(rf"^transformers · {speed}$")
    )
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
    tuned = add_fine_tuned(
        studio.settings, studio.username("alice"), tiny_adapter, name="Alice's model"
    )
    log_in(page, studio, "bob")
    page.goto(f"{studio.url}/playground?model={tuned}")
    expect(page.locator(".playground-column")).to_have_count(1)
    expect(page.locator(".playground-column")).not_to_contain_text("Alice's model")
    page.locator(".playground-model-a").click()
    expect(page.get_by_role("option", name="Alice's model")).to_have_count(0)


def inference_health(studio: Studio) -> dict:
    socket = studio.settings.inference_socket
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as raw:
        return raw.get("http://inference/health").json()  # type: ignore[no-any-return]


def send(page: Page, message: str) -> None:
    page.locator(".playground-prompt textarea").fill(message)
    page.locator(".playground-prompt textarea").press("Enter")


def test_a_fine_tune_answers_greedily_by_default_as_the_api_does(
    studio: Studio, browser: Browser, tiny_adapter
) -> None:
    """A fine-tune of a pre-trained base gets greedy, short answers with the reason said, and its
    Playground answer is the API's answer with the model's defaults (nothing set)."""
    tuned = add_fine_tuned(studio.settings, studio.username("admin"), tiny_adapter, name="Capitals")
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    try:
        log_in(page, studio, "admin")
        page.goto(f"{studio.url}/playground?model={tuned}")
        expect(page.locator(".playground-defaults")).to_contain_text("greedy (temperature 0)")
        expect(page.locator(".playground-defaults")).to_contain_text("Capitals")
        expect(page.locator(".playground-base-note")).to_have_count(0)  # a fine-tune, not a base
        page.get_by_text("System prompt and sampling").click()
        expect(page.locator(".playground-temperature input")).to_have_value("0")
        expect(page.locator(".playground-max-new-tokens input")).to_have_value(
            str(BASE_MAX_NEW_TOKENS)
        )
        send(page, "Which colour is number 3?")
        stats = page.locator(".playground-stats")
        # llama.cpp, or transformers while llama.cpp is prepared for the fine-tune
        expect(stats).to_have_text(
            re.compile(r"^(transformers|llama\.cpp) · \d+ tokens"), timeout=ANSWER_TIMEOUT
        )
        with studio.api(studio.admin_token) as api:
            api.timeout = httpx.Timeout(120)  # 128 tokens on a busy machine
            answer = api.post(
                "/chat",
                json={
                    "model": tuned,
                    "messages": [{"role": "user", "content": "Which colour is number 3?"}],
                    "stream": False,
                },
            )
        assert answer.status_code == 200, answer.text
        engine = answer.json()["engine"]
        if not (stats.text_content() or "").startswith(engine):
            # The API's request found llama.cpp ready where the Playground's did not: the same
            # engine answers a regenerated turn.
            page.locator(".playground-regenerate").click()
            expect(stats).to_have_text(
                re.compile(rf"^{re.escape(engine)} · \d+ tokens"), timeout=ANSWER_TIMEOUT
            )
        page.locator(".playground-copy").first.click()
        shown = page.evaluate("navigator.clipboard.readText()")
        assert shown == answer.json()["message"]["content"] and shown
    finally:
        context.close()


def test_the_base_model_note_and_long_text_that_wraps(studio: Studio, page: Page) -> None:
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/playground?model=tiny-random-gemma3")
    expect(page.locator(".playground-base-note")).to_have_text(
        "Tiny random Gemma 3 (tests) is a pre-trained base model: it continues text; fine-tune "
        "it or pick an -it model."
    )
    expect(page.locator(".playground-defaults")).to_contain_text("a pre-trained base model")
    page.get_by_text("System prompt and sampling").click()
    page.locator(".playground-max-new-tokens input").fill("4")
    page.locator(".playground-max-new-tokens input").blur()
    expect(page.locator(".playground-defaults")).to_contain_text("your settings")
    send(page, "x" * 600)  # one unbroken word, far wider than the column
    user = page.locator(".playground-user").first
    expect(user).to_be_visible()
    column = page.locator(".playground-column").first.bounding_box()
    bubble = user.bounding_box()
    assert column and bubble and bubble["x"] + bubble["width"] <= column["x"] + column["width"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_loading_state_then_stop_ends_a_long_answer_and_frees_the_engine(
    studio: Studio, page: Page
) -> None:
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/playground?model=tiny-random-gemma3")
    page.get_by_text("System prompt and sampling").click()
    page.locator(".playground-temperature input").fill("1")
    page.locator(".playground-max-new-tokens input").fill("8000")
    send(page, "Tell me a very long story.")
    answer = page.locator(".playground-answer").first
    # Before the first token the bubble says what is happening (the studio starts cold).
    expect(answer).to_have_text(
        re.compile("Starting the inference server…|Loading Tiny random Gemma 3 \\(tests\\)…"),
        timeout=30_000,
    )
    expect(answer).not_to_have_class(re.compile("playground-status"), timeout=ANSWER_TIMEOUT)
    expect(answer).not_to_have_text("")
    assert inference_health(studio)["generating"] == 1
    started = time.monotonic()
    page.locator(".playground-stop").click()
    expect(answer).to_have_class(re.compile("playground-stopped"), timeout=1_000)
    expect(page.locator(".playground-stop")).to_be_hidden(timeout=1_000)
    stopped = time.monotonic() - started
    partial = answer.inner_text()
    assert partial and "stopped" not in partial  # the partial text stays
    while inference_health(studio)["generating"]:  # the server stopped generating, too
        assert time.monotonic() - started < 1.0
        time.sleep(0.02)
    assert stopped < 1.0 and inference_health(studio)["cancelled"] == 1
    expect(page.locator(".playground-stats")).to_have_text("stopped by you")
    page.locator(".playground-max-new-tokens input").fill("5")
    send(page, "And now briefly?")
    second = page.locator(".playground-answer").nth(1)
    expect(page.locator(".playground-stats")).to_have_text(
        re.compile(r"^transformers · [1-5] tokens"), timeout=60_000
    )
    expect(second).not_to_have_class(re.compile("playground-stopped|playground-status"))
    assert answer.inner_text() == partial


def test_defaults_follow_the_model_picked_until_the_user_changes_them(
    make_settings, page: Page, tiny_model, tmp_path
) -> None:
    """An instruction-tuned model (the tiny model's weights, listed as `it`) gets Gemma's
    recommended sampling; switching models switches the defaults, except the user's own."""
    tiny = catalog().get("tiny-random-gemma3")
    assert tiny is not None
    chat_model = {
        **tiny.model_dump(mode="json", exclude={"source", "hub_id", "path"}),
        "id": "tiny-chat",
        "name": "Tiny chat model",
        "variant": "it",
        "source": "local",
        "path": str(tiny_model),
    }
    extra = tmp_path / "catalog.yaml"
    extra.write_text(yaml.safe_dump({"models": [chat_model]}))
    settings = make_settings(auth="local", run_jobs=False, catalog_file=extra)
    with running_server(server_env(settings, run_jobs=False), timeout=60) as url:
        add_user(settings, "alice")
        page.goto(f"{url}/login")
        submit_login(page, "alice", "password-alice")
        page.goto(f"{url}/playground?model=tiny-random-gemma3")
        defaults = page.locator(".playground-defaults")
        expect(defaults).to_contain_text("greedy (temperature 0)")
        page.get_by_text("System prompt and sampling").click()
        temperature = page.locator(".playground-temperature input")
        max_tokens = page.locator(".playground-max-new-tokens input")
        expect(temperature).to_have_value("0")

        def pick(label: str) -> None:
            page.locator(".playground-model-a").click()
            page.get_by_role("option", name=label).click()

        pick("Tiny chat model (base)")
        expect(defaults).to_contain_text("Gemma's recommended sampling (temperature 1")
        expect(temperature).to_have_value("1")
        expect(max_tokens).to_have_value("512")
        expect(page.locator(".playground-base-note")).to_have_count(0)  # it chats
        max_tokens.fill("64")
        max_tokens.blur()
        expect(defaults).to_contain_text("your settings")
        pick("Tiny random Gemma 3 (tests) (base)")
        expect(page.locator(".playground-base-note")).to_have_count(1)
        expect(temperature).to_have_value("1")  # the user's settings stay
        expect(max_tokens).to_have_value("64")
        expect(defaults).to_contain_text("your settings")
        expect(defaults).to_contain_text("greedy (temperature 0)")


def test_closing_the_tab_stops_its_answer(studio: Studio, page: Page) -> None:
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/playground?model=tiny-random-gemma3")
    page.get_by_text("System prompt and sampling").click()
    page.locator(".playground-temperature input").fill("1")
    page.locator(".playground-max-new-tokens input").fill("8000")
    send(page, "Tell me a very long story.")
    answer = page.locator(".playground-answer").first
    expect(answer).not_to_have_class(re.compile("playground-status"), timeout=ANSWER_TIMEOUT)
    assert inference_health(studio)["generating"] == 1
    page.close()
    deadline = time.monotonic() + 30  # the page's client is dropped after its reconnect grace
    while inference_health(studio)["generating"]:
        assert time.monotonic() < deadline, "the answer of a closed tab is still generated"
        time.sleep(0.2)
    assert inference_health(studio)["cancelled"] == 1


def test_out_of_range_sampling_is_said_and_kept_and_nothing_is_sent(
    studio: Studio, page: Page
) -> None:
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/playground?model=tiny-random-gemma3")
    page.get_by_text("System prompt and sampling").click()
    expect(page.locator(".playground-temperature")).to_contain_text("0 to 2")  # its bounds
    temperature = page.locator(".playground-temperature input")
    temperature.fill("5")
    temperature.blur()
    expect(page.locator(".playground-temperature")).to_contain_text("5 is out of range")
    expect(temperature).to_have_value("5")  # kept as typed, not clamped to 2
    page.locator(".playground-prompt textarea").fill("Hello?")
    page.locator(".playground-prompt textarea").press("Enter")
    expect(page.get_by_text("Some sampling settings are out of range")).to_be_visible()
    expect(page.locator(".playground-user")).to_have_count(0)
    temperature.fill("0")
    expect(page.locator(".playground-temperature")).not_to_contain_text("out of range")


def _drop(page: Page, data: bytes, name: str, event: str) -> None:
    """Drop (or paste) an image file onto the page as the browser would."""
    page.evaluate(
        """([b64, name, event]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            if (event === "paste") {
                const paste = new ClipboardEvent(
                    "paste", { clipboardData: transfer, bubbles: true }
                );
                document.querySelector(".playground-prompt textarea").dispatchEvent(paste);
            } else {
                const target = document.querySelector(".playground-answers-0");
                for (const type of ["dragenter", "dragover", "drop"]) {
                    const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
                    target.dispatchEvent(new DragEvent(type, options));
                }
            }
        }""",
        [base64.b64encode(data).decode(), name, event],
    )


def test_images_in_a_turn_go_to_both_sides(studio: Studio, page: Page, tmp_path) -> None:
    """An image attached by the button, one dropped and one pasted wait as thumbnails, go in the
    message to both columns (shown in the turn) and are answered; a text-only model is named and
    nothing is sent; a file that is no image is refused."""
    red, blue, green = (png(c, size=96, seed=i) for i, c in enumerate(("red", "blue", "green")))
    (tmp_path / "red.png").write_bytes(red)
    log_in(page, studio, "alice")
    page.goto(f"{studio.url}/playground?model={VISION}&compare=tiny-random-gemma3")
    mark_page(page)
    page.locator(".playground-upload input[type=file]").set_input_files(tmp_path / "red.png")
    expect(page.locator(".playground-attachment")).to_have_count(1)
    expect(page.locator(".playground-images-refused")).to_contain_text(
        "Tiny random Gemma 3 (tests) does not take images"
    )
    send(page, "Which colour?")
    expect(page.locator(".q-notification")).to_contain_text("does not take images")
    expect(page.locator(".playground-user")).to_have_count(0)  # nothing was sent
    page.locator(".playground-model-b").click()
    page.get_by_role("option", name=re.compile(r"^Tiny random Gemma 3 vision")).click()
    expect(page.locator(".playground-images-refused")).to_have_count(0)
    _drop(page, blue, "blue.png", "drop")
    _drop(page, green, "green.png", "paste")
    expect(page.locator(".playground-attachment")).to_have_count(3)
    page.locator(".playground-attachment-remove").nth(2).click()  # the pasted one goes again
    expect(page.locator(".playground-attachment")).to_have_count(2)
    page.locator(".playground-attachment-remove").first.click()
    expect(page.locator(".playground-attachment")).to_have_count(1)
    # The same file again: the uploader forgot it once uploaded (it refuses a file it holds).
    page.locator(".playground-upload input[type=file]").set_input_files(tmp_path / "red.png")
    expect(page.locator(".playground-attachment")).to_have_count(2)
    page.get_by_text("System prompt and sampling").click()
    page.locator(".playground-max-new-tokens input").fill("6")
    send(page, "Which colour?")
    expect(page.locator(".playground-attachment")).to_have_count(0)
    for column in (0, 1):
        turn = page.locator(f".playground-answers-{column}")
        expect(turn.locator(".playground-turn-image")).to_have_count(2)
        expect(turn.locator(".playground-user")).to_have_text("Which colour?")
        answer = turn.locator(".playground-answer")
        expect(answer).not_to_have_class(re.compile("playground-status"), timeout=ANSWER_TIMEOUT)
        expect(answer).not_to_have_class(re.compile("text-negative"))
    expect(page.locator(".playground-stats").first).to_have_text(
        re.compile(r"^transformers · 6 tokens"), timeout=60_000
    )
    health = inference_health(studio)
    assert health["loads"] == {f"transformers:{VISION}": 1}  # one model, both sides
    (tmp_path / "notes.png").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    page.locator(".playground-upload input[type=file]").set_input_files(tmp_path / "notes.png")
    expect(page.locator(".q-notification").last).to_contain_text("SVG images are refused")
    expect(page.locator(".playground-attachment")).to_have_count(0)
    assert page.evaluate("window.__marker") == NOT_RELOADED
