"""`/playground`: chat with one model, or with two side by side, streamed.

Two columns answer the same user messages, each continuing its own conversation, so a
fine-tune and the model it started from can be compared turn by turn. Parameters default to
Gemma's recommended sampling; a seed makes answers repeatable. Nothing here reloads a model: the
inference server keeps them loaded between messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from nicegui import ui

from tuneforge.db.tables import User
from tuneforge.errors import DomainError
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.params import GenerationParams, Turn
from tuneforge.services import chat as service
from tuneforge.ui.backend import read, state
from tuneforge.ui.layout import heading, page
from tuneforge.ui.model_picker import ModelSelect, state_label

NONE = ""
REDRAW_SECONDS = 0.25  # the answer is redrawn at most this often while it streams
PARAMS = GenerationParams.model_fields


@dataclass
class Column:
    """One model's side of the conversation."""

    model: str
    turns: list[Turn] = field(default_factory=list)
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
    first = model if model in options else next(iter(options))
    second = compare if compare in options else NONE
    heading("Playground", "Chat with a model, or with two side by side to compare them.")
    columns = [Column(first), Column(second)]
    params: dict[str, float | int | None] = {
        name: PARAMS[name].default
        for name in ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty")
    }
    params["seed"] = None

    with ui.row().classes("w-full items-end gap-4"):
        blocked = unusable(models)
        ModelSelect(options, disabled=blocked, value=first, label="Model", with_input=True).classes(
            "col-grow playground-model-a"
        ).bind_value(columns[0], "model").on_value_change(lambda: answers.refresh())
        ModelSelect(
            {NONE: "(none)", **options},
            disabled=blocked,
            value=second,
            label="Compare with",
            with_input=True,
        ).classes("col-grow playground-model-b").bind_value(columns[1], "model").on_value_change(
            lambda: answers.refresh()
        )
    with ui.expansion("System prompt and sampling", icon="tune").classes("w-full"):
        system = (
            ui.textarea("System prompt", placeholder="Optional: how the model should behave.")
            .classes("w-full playground-system")
            .props("autogrow")
        )
        with ui.row().classes("w-full gap-4"):
            for name, step in (
                ("temperature", 0.05),
                ("top_p", 0.01),
                ("top_k", 1),
                ("max_new_tokens", 16),
                ("repetition_penalty", 0.05),
            ):
                info = PARAMS[name]
                ui.number(name.replace("_", " ").capitalize(), step=step).bind_value(
                    params, name
                ).classes(f"w-36 playground-{name.replace('_', '-')}").tooltip(
                    info.description or ""
                )
            ui.number("Seed", step=1, min=0).bind_value(params, "seed").classes(
                "w-36 playground-seed"
            ).tooltip("Same seed, same answer. Empty: a new answer each time.")

    @ui.refreshable
    def answers() -> None:
        shown = [c for c in columns if c.model]
        with ui.row().classes("w-full gap-4 items-stretch no-wrap"):
            for index, column in enumerate(shown):
                with ui.card().classes("col q-pa-md gap-2 playground-column"):
                    ui.label(options.get(column.model, column.model)).classes(
                        "text-subtitle2 text-grey-8"
                    )
                    column.stats_label = ui.label(column.stats).classes(
                        "text-caption text-grey-6 playground-stats"
                    )
                    column.box = ui.column().classes(f"w-full gap-2 playground-answers-{index}")
                    with column.box:
                        for turn in column.turns:
                            _message(turn.role, turn.content)
                        if not column.turns:
                            ui.label("Say something below to start.").classes(
                                "text-body2 text-grey-6 playground-empty"
                            )

    answers()

    async def generate(column: Column, user_turns: list[Turn]) -> None:
        assert column.box is not None
        with column.box:
            bubble = _message("assistant", "")
        text = ""
        try:
            values = {k: v for k, v in params.items() if v is not None}
            generation = GenerationParams.model_validate(values)
            _, request = await read(
                service.prepare,
                user,
                settings,
                column.model,
                generation,
                _with_system(system.value, user_turns),
            )
            first = shown = None
            async for event in state().inference.stream(request):
                if isinstance(event, Delta):
                    now = time.perf_counter()
                    first = first or now
                    text += event.text
                    if shown is None or now - shown >= REDRAW_SECONDS:  # not every token
                        bubble.set_content(_lines(text))
                        shown = now
                else:
                    bubble.set_content(_lines(text))
                    column.stats = _stats(event, first, time.perf_counter())
                    if column.stats_label is not None:
                        column.stats_label.set_text(column.stats)
        except (DomainError, ValueError) as exc:
            bubble.set_content(f"**Could not answer:** {getattr(exc, 'message', exc)}")
            bubble.classes("text-negative")
            return
        column.turns.append(Turn(role="assistant", content=text))
        if not text:
            bubble.set_content("*(an empty answer)*")

    async def send(regenerate: bool = False) -> None:
        message = prompt.value.strip()
        active = [c for c in columns if c.model]
        if regenerate:
            for column in active:
                if column.turns and column.turns[-1].role == "assistant":
                    column.turns.pop()
            if not active or not active[0].turns:
                return
        elif not message:
            return
        else:
            for column in active:
                column.turns.append(Turn(role="user", content=message))
            prompt.value = ""
        answers.refresh()
        send_button.props("loading")
        try:
            await asyncio.gather(*(generate(c, list(c.turns)) for c in active))
        finally:
            send_button.props(remove="loading")

    def clear() -> None:
        for column in columns:
            column.turns.clear()
        answers.refresh()

    with ui.row().classes("w-full items-end gap-2 no-wrap"):
        prompt = (
            ui.textarea(placeholder="Your message (Enter sends, Shift+Enter for a new line)")
            .classes("col-grow playground-prompt")
            .props("autogrow outlined")
        )
        prompt.on("keydown.enter.exact.prevent", lambda: send())
        send_button = ui.button("Send", icon="send", on_click=lambda: send()).classes(
            "playground-send"
        )
        ui.button("Regenerate", icon="refresh", on_click=lambda: send(regenerate=True)).props(
            "outline"
        ).classes("playground-regenerate")
        ui.button("Clear", icon="delete_sweep", on_click=clear).props("flat").classes(
            "playground-clear"
        )


def _stats(done: Finished, first: float | None, last: float) -> str:
    """ "llama.cpp · 128 tokens · 71 tokens/s": the engine, and the speed after the first token."""
    stats = f"{done.engine} · {done.completion_tokens} tokens"
    if first is not None and last > first and done.completion_tokens > 1:
        stats += f" · {(done.completion_tokens - 1) / (last - first):.0f} tokens/s"
    return stats


def _lines(text: str) -> str:
    """Markdown that keeps the answer's line breaks (a poem, a list without bullets)."""
    return text.replace("\n", "  \n")


def _with_system(system: str | None, turns: list[Turn]) -> list[Turn]:
    if system and system.strip():
        return [Turn(role="system", content=system.strip()), *turns]
    return turns


def _message(role: str, content: str) -> ui.markdown:
    """One message bubble; assistant messages get a copy button."""
    mine = role == "user"
    with ui.row().classes(
        "w-full no-wrap items-start gap-1 " + ("justify-end" if mine else "justify-start")
    ):
        body = ui.markdown(_lines(content)).classes(
            "q-px-md q-py-sm rounded-borders text-body2 "
            + ("bg-primary text-white playground-user" if mine else "bg-grey-2 playground-answer")
        )
        if not mine:
            ui.button(
                icon="content_copy",
                on_click=lambda: ui.clipboard.write(body.content.replace("  \n", "\n")),
            ).props("flat round dense size=sm").classes("playground-copy").tooltip("Copy")
    return body
