"""`/playground`: chat with one model, or with two side by side, streamed.

Two columns answer the same user messages, each continuing its own conversation, so a
fine-tune and the model it started from can be compared turn by turn. Sampling starts at the
model's defaults (`inference/sampling.py`: greedy and short for pre-trained bases and their
fine-tunes, Gemma's recommended sampling for instruction-tuned ones), stated with their reason,
and follows the model picked until the user changes it. Before the first token an answer says what
is happening (starting the inference server, loading the model, waiting behind another answer);
Stop ends it and keeps what was written. Nothing here reloads a model: the inference server keeps
them loaded between messages.

Images go with a message to vision models: attached with the image button, dropped anywhere on
the page or pasted into it. Each goes through Quasar's uploader (so a large file streams to the
server instead of through the websocket), is checked as every chat image is (size and type from
its header, before decoding), waits above the message box as a thumbnail, and is sent, in the
message, to both columns. A text-only model is named and nothing is sent.

Tools (`ui/playground_tools.py`): definitions pasted into the Tools box go with every message;
a call is shown with its arguments, and the message box then takes the tool's result.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from nicegui import ui

from tuneforge.db.tables import User
from tuneforge.errors import DomainError
from tuneforge.inference.engine import Delta, Finished, Status
from tuneforge.inference.params import GenerationParams, Tool, ToolCall
from tuneforge.inference.sampling import SAMPLING_FIELDS, SamplingDefaults
from tuneforge.models.tool_format import CallStream, openai_tool_calls
from tuneforge.schemas.chat import ChatTurn
from tuneforge.services import chat as service
from tuneforge.ui.backend import read, state
from tuneforge.ui.layout import heading, page
from tuneforge.ui.model_picker import ModelSelect, state_label
from tuneforge.ui.number_field import Bounds, bounded_number
from tuneforge.ui.playground_images import CSS as IMAGE_CSS
from tuneforge.ui.playground_images import ImageTray, Said
from tuneforge.ui.playground_tools import (
    ToolBox,
    calls_markdown,
    result_markdown,
    result_turn,
    waiting_calls,
)

NONE = ""
REDRAW_SECONDS = 0.25  # the answer is redrawn at most this often while it streams
PARAMS = GenerationParams.model_fields
INTEGERS = frozenset({"top_k", "max_new_tokens", "seed"})
# Long unbroken text (a URL, a token soup) wraps inside its bubble instead of widening the page.
CSS = """
.playground-column { min-width: 0; }
.playground-user, .playground-answer { min-width: 0; max-width: 100%; overflow-wrap: anywhere; }
.playground-user pre, .playground-answer pre { white-space: pre-wrap; overflow-wrap: anywhere; }
"""


@dataclass
class Column:
    """One model's side of the conversation."""

    model: str
    turns: list[Said] = field(default_factory=list)
    box: ui.column | None = None
    stats: str = ""  # how the last answer was made: engine, tokens, speed
    stats_label: ui.label | None = None


def model_options(models: list[service.ChatModel]) -> dict[str, str]:
    """Each model's label, saying whether it can run here (see `ui/model_picker.py`)."""

    def label(m: service.ChatModel) -> str:
        if m.fine_tuned:
            return f"{m.name} (fine-tuned {m.base})"
        return state_label(f"{m.name} (base)", m.availability)

    return {m.id: label(m) for m in models}


def unusable(models: list[service.ChatModel]) -> list[str]:
    """The models that cannot run here: offered, but disabled."""
    return [m.id for m in models if not m.availability.usable]


@page("/playground", "Playground")
async def playground_page(user: User, model: str | None = None, compare: str | None = None) -> None:
    settings = state().settings
    models = await read(service.chat_models, user, settings)
    options = model_options(models)
    defaults = {m.id: service.defaults(settings, m) for m in models}
    seeing = {m.id for m in models if service.takes_images(settings, m)}
    names = {m.id: m.name for m in models}
    blocked = unusable(models)
    usable = [m for m in options if m not in blocked] or list(options)
    first = model if model in usable else usable[0]
    second = compare if compare in usable else NONE
    heading("Playground", "Chat with a model, or with two side by side to compare them.")
    ui.add_css(CSS + IMAGE_CSS)
    columns = [Column(first), Column(second)]
    params: dict[str, float | int | None] = dict(defaults[first].values())
    params["seed"] = None
    applied = dict(defaults[first].values())  # the defaults last put into the form
    tasks: list[asyncio.Task[None]] = []

    def changed_by_user() -> bool:
        return any(params[name] != value for name, value in applied.items())

    def model_changed() -> None:
        """New defaults for the new model, unless the user set the sampling themselves."""
        chosen = defaults.get(columns[0].model)
        if chosen is not None and not changed_by_user():
            params.update(chosen.values())
            applied.clear()
            applied.update(chosen.values())
        sampling.refresh()
        answers.refresh()
        tray.show.refresh()

    with ui.row().classes("w-full items-end gap-4"):
        ModelSelect(options, disabled=blocked, value=first, label="Model", with_input=True).classes(
            "col-grow playground-model-a"
        ).bind_value(columns[0], "model").on_value_change(model_changed)
        ModelSelect(
            {NONE: "(none)", **options},
            disabled=blocked,
            value=second,
            label="Compare with",
            with_input=True,
        ).classes("col-grow playground-model-b").bind_value(columns[1], "model").on_value_change(
            lambda: (answers.refresh(), tray.show.refresh())
        )

    @ui.refreshable
    def sampling() -> None:
        chosen = defaults.get(columns[0].model)
        with ui.row().classes("w-full items-center no-wrap gap-2 text-body2 text-grey-8"):
            ui.icon("tune").classes("text-grey-6")
            if chosen is None:
                return
            if changed_by_user():
                text = f"Sampling: your settings. This model's defaults: {chosen.reason}"
            else:
                text = f"Sampling: {chosen.reason}"
            ui.label(text).classes("playground-defaults")

    sampling()
    with ui.expansion("System prompt and sampling", icon="tune").classes("w-full"):
        system = (
            ui.textarea("System prompt", placeholder="Optional: how the model should behave.")
            .classes("w-full playground-system")
            .props("autogrow")
        )
        fields: list[ui.number] = []
        with ui.row().classes("w-full gap-4 items-start"):
            for name in (*SAMPLING_FIELDS, "seed"):
                info = PARAMS[name]
                bounds = Bounds.for_field(GenerationParams, name, integer=name in INTEGERS)
                label = "Seed" if name == "seed" else name.replace("_", " ").capitalize()
                number = (
                    bounded_number(label, params[name], bounds)
                    .bind_value(params, name)
                    .props(f'hint="{bounds.hint()}"')
                    .classes(f"w-44 playground-{name.replace('_', '-')}")
                    .tooltip(info.description or "")
                )
                if name != "seed":
                    number.on_value_change(lambda: sampling.refresh())
                fields.append(number)
    toolbox = ToolBox()

    @ui.refreshable
    def answers() -> None:
        shown = [c for c in columns if c.model]
        with ui.row().classes("w-full gap-4 items-stretch no-wrap"):
            for index, column in enumerate(shown):
                with ui.card().classes("col q-pa-md gap-2 playground-column"):
                    ui.label(options.get(column.model, column.model)).classes(
                        "text-subtitle2 text-grey-8"
                    )
                    _base_note(defaults.get(column.model))
                    column.stats_label = ui.label(column.stats).classes(
                        "text-caption text-grey-6 playground-stats"
                    )
                    column.box = ui.column().classes(f"w-full gap-2 playground-answers-{index}")
                    with column.box:
                        for said in column.turns:
                            _message(said.turn.role, _shown(said), said.thumbs)
                        if not column.turns:
                            ui.label("Say something below to start.").classes(
                                "text-body2 text-grey-6 playground-empty"
                            )

    answers()

    def show_stats(column: Column, text: str) -> None:
        column.stats = text
        if column.stats_label is not None:
            column.stats_label.set_text(text)

    async def generate(
        column: Column, user_turns: list[ChatTurn], tools: list[Tool] | None
    ) -> None:
        assert column.box is not None
        with column.box:
            bubble = _message("assistant", "*Waiting for the answer…*")
            waiting = Waiting(bubble, "Waiting for the answer…")
            timer = ui.timer(1.0, waiting.show)
        bubble.classes("playground-status")
        text = ""
        calls: list[ToolCall] = []
        try:
            values = {k: v for k, v in params.items() if v is not None}
            generation = GenerationParams.model_validate(values)
            model, request = await read(
                service.prepare,
                user,
                settings,
                column.model,
                generation,
                _with_system(system.value, user_turns),
                tools=tools,
            )
            markers = service.chat_format(settings, model).tool_markers
            splitter = CallStream(markers) if tools else None
            first = shown = None
            async for event in state().inference.events(request):
                if isinstance(event, Status):
                    waiting.message = event.message
                    waiting.show()
                elif isinstance(event, Delta):
                    now = time.perf_counter()
                    if first is None:
                        first = now
                        bubble.classes(remove="playground-status")
                    text += splitter.feed(event.text) if splitter else event.text
                    if shown is None or now - shown >= REDRAW_SECONDS:  # not every token
                        bubble.set_content(_lines(text))
                        shown = now
                else:
                    if splitter is not None:
                        rest, found = splitter.finish()
                        text += rest
                        calls = [ToolCall.model_validate(c) for c in openai_tool_calls(found)]
                    bubble.classes(remove="playground-status")
                    bubble.set_content(_shown(Said(_answer(text, calls))))
                    show_stats(column, _stats(event, first, time.perf_counter()))
        except asyncio.CancelledError:  # Stop: keep what was written
            bubble.classes(remove="playground-status", add="playground-stopped")
            bubble.set_content(_lines(text) if text else "*(stopped before the first word)*")
            show_stats(column, "stopped by you")
        except (DomainError, ValueError) as exc:
            bubble.classes(remove="playground-status", add="text-negative")
            bubble.set_content(f"**Could not answer:** {getattr(exc, 'message', exc)}")
            return
        finally:
            timer.cancel()
        column.turns.append(Said(_answer(text, calls)))
        if not text and not calls and "playground-stopped" not in bubble.classes:
            bubble.set_content("*(an empty answer)*")

    async def send(regenerate: bool = False) -> None:
        if tasks:  # still answering
            return
        if not all([number.validate() for number in fields]):  # each says what is wrong
            ui.notify("Some sampling settings are out of range: see below them.", type="warning")
            return
        message = prompt.value.strip()
        active = [c for c in columns if c.model]
        try:
            tools = toolbox.tools()
        except ValueError as exc:
            ui.notify(str(exc), type="warning")
            return
        if tray.pending and not regenerate and (blind := tray.blind()):
            ui.notify(f"{blind}: pick a vision model, or remove the image.", type="warning")
            return
        if regenerate:
            for column in active:
                if column.turns and column.turns[-1].turn.role == "assistant":
                    column.turns.pop()
            if not active or not active[0].turns:
                return
        elif not message and not tray.pending:
            return
        else:
            said = tray.take(message)
            for column in active:
                waiting = waiting_calls([s.turn for s in column.turns])
                column.turns.append(Said(result_turn(waiting[0], message)) if waiting else said)
            prompt.value = ""
        answers.refresh()
        answering = [c for c in active if not waiting_calls([s.turn for s in c.turns])]
        tasks.extend(
            asyncio.create_task(generate(c, [s.turn for s in c.turns], tools)) for c in answering
        )
        prompt_hint()
        send_button.props("loading")
        stop_button.set_visibility(True)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            prompt_hint()
            tasks.clear()
            send_button.props(remove="loading")
            stop_button.set_visibility(False)

    def stop() -> None:
        for task in tasks:
            task.cancel()

    ui.context.client.on_delete(stop)  # a closed tab stops its answers, freeing the engine

    def clear() -> None:
        for column in columns:
            column.turns.clear()
        answers.refresh()
        prompt_hint()

    def prompt_hint() -> None:
        """The message box asks for a tool's result while a model waits for one."""
        waiting = [w[0] for c in columns if c.model and (w := waiting_calls(_turns(c)))]
        if waiting:
            prompt.props(f'label="The result of {waiting[0].function.name} (typed by you)"')
        else:
            prompt.props(remove="label")

    tray: ImageTray = ImageTray(
        settings, seeing, names, lambda: [c.model for c in columns if c.model]
    )

    with ui.row().classes("w-full items-end gap-2"):  # on a phone the buttons wrap below
        prompt = (
            ui.textarea(
                placeholder="Your message (Enter sends, Shift+Enter for a new line; drop or "
                "paste an image for a vision model)"
            )
            .classes("col-grow playground-prompt")
            .props("autogrow outlined")
        )
        prompt.on("keydown.enter.exact.prevent", lambda: send())
        ui.button(icon="add_photo_alternate", on_click=tray.pick).props("flat round").classes(
            "playground-attach"
        ).tooltip("Attach an image (or drop or paste one anywhere on the page): for vision models")
        send_button = ui.button("Send", icon="send", on_click=lambda: send()).classes(
            "playground-send"
        )
        stop_button = (
            ui.button("Stop", icon="stop", on_click=stop)
            .props("color=negative")
            .classes("playground-stop")
            .tooltip("End the answer here; what was written stays.")
        )
        stop_button.set_visibility(False)
        ui.button("Regenerate", icon="refresh", on_click=lambda: send(regenerate=True)).props(
            "outline"
        ).classes("playground-regenerate")
        ui.button("Clear", icon="delete_sweep", on_click=clear).props("flat").classes(
            "playground-clear"
        )


@dataclass
class Waiting:
    """What an answer says before its first token, with the seconds it has waited."""

    bubble: ui.markdown
    message: str
    since: float = field(default_factory=time.monotonic)

    def show(self) -> None:
        if "playground-status" in self.bubble.classes:
            waited = int(time.monotonic() - self.since)
            self.bubble.set_content(f"*{self.message}*" + (f" {waited} s" if waited else ""))


def _base_note(chosen: SamplingDefaults | None) -> None:
    """The warning beside a pre-trained base model: it continues text, it does not chat."""
    if chosen is not None and chosen.note:
        with ui.row().classes("w-full no-wrap items-start gap-2 text-body2 text-warning"):
            ui.icon("info")
            ui.label(chosen.note).classes("playground-base-note")


def _stats(done: Finished, first: float | None, last: float) -> str:
    """ "llama.cpp · 128 tokens · 71 tokens/s": the engine, the speed after the first token, and
    why llama.cpp did not answer for a fine-tune whose fast path is off."""
    stats = f"{done.engine} · {done.completion_tokens} tokens"
    if first is not None and last > first and done.completion_tokens > 1:
        stats += f" · {(done.completion_tokens - 1) / (last - first):.0f} tokens/s"
    if done.note:
        stats += f" · {done.note}"
    return stats


def _lines(text: str) -> str:
    """Markdown that keeps the answer's line breaks (a poem, a list without bullets)."""
    return text.replace("\n", "  \n")


def _turns(column: Column) -> list[ChatTurn]:
    return [said.turn for said in column.turns]


def _answer(text: str, calls: list[ToolCall]) -> ChatTurn:
    """The model's answer: its text, and the tools it called."""
    return ChatTurn(
        role="assistant", content=text.strip() if calls else text, tool_calls=calls or None
    )


def _shown(said: Said) -> str:
    """A message's bubble text: a tool's result with its tool, an answer with its calls."""
    turn = said.turn
    if turn.role == "tool":
        return result_markdown(turn)
    calls = calls_markdown(turn.tool_calls) if turn.tool_calls else ""
    return "  \n".join(piece for piece in (_lines(said.text), calls) if piece)


def _with_system(system: str | None, turns: list[ChatTurn]) -> list[ChatTurn]:
    if system and system.strip():
        return [ChatTurn(role="system", content=system.strip()), *turns]
    return turns


def _message(role: str, content: str, images: list[str] | None = None) -> ui.markdown:
    """One message bubble (the user's images above its text); assistant messages get a copy
    button."""
    mine = role in ("user", "tool")  # a tool's result is typed by the person
    if images:
        with ui.row().classes("w-full justify-end gap-1 playground-turn-images"):
            for image in images:
                ui.html(f'<img src="{image}" class="playground-turn-image" alt="your image">')
    with ui.row().classes(
        "w-full no-wrap items-start gap-1 " + ("justify-end" if mine else "justify-start")
    ):
        body = ui.markdown(_lines(content)).classes(
            "q-px-md q-py-sm rounded-borders text-body2 "
            + ("bg-primary text-white playground-user" if mine else "bg-grey-2 playground-answer")
        )
        if mine and not content:
            body.set_visibility(False)
        if not mine:
            ui.button(
                icon="content_copy",
                on_click=lambda: ui.clipboard.write(body.content.replace("  \n", "\n")),
            ).props("flat round dense size=sm").classes("playground-copy").tooltip("Copy")
    return body
