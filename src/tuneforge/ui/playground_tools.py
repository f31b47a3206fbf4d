"""The Playground's tools: definitions the model may call, its calls shown, their results typed.

The person pastes tool definitions (OpenAI's JSON: a list of `{"type": "function", "function":
{name, description, parameters}}`) into the Tools box; they are checked as the API checks them
and sent with every message. When a model calls tools, its bubble shows each call (the tool and
its arguments) and the message box asks for the result of the first call still unanswered: what
the person types goes to the model as that tool's result, and once every call has its result
the model answers on. A column whose model answered in words takes the same text as the
person's next message.
"""

from __future__ import annotations

import html
import json

from nicegui import ui
from pydantic import TypeAdapter, ValidationError

from tuneforge.inference.params import MAX_TOOLS, Tool, ToolCall
from tuneforge.schemas.chat import ChatTurn

EXAMPLE = """[{"type": "function", "function": {"name": "get_weather",
  "description": "The weather now in a city.",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                 "required": ["city"]}}}]"""
_TOOLS = TypeAdapter(list[Tool])


def parse_tools(text: str) -> list[Tool] | None:
    """The tools in `text` (None when it is blank); ValueError says what is wrong."""
    if not text.strip():
        return None
    try:
        tools = _TOOLS.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"The tools are not valid: {first['msg']} (at {where or 'the top'})."
        raise ValueError(message) from None
    if len(tools) > MAX_TOOLS:
        raise ValueError(f"At most {MAX_TOOLS} tools can be offered.")
    return tools or None


def waiting_calls(turns: list[ChatTurn]) -> list[ToolCall]:
    """The calls of the conversation's last assistant message that have no result yet."""
    answered = 0
    for turn in reversed(turns):
        if turn.role == "tool":
            answered += 1
        elif turn.role == "assistant" and turn.tool_calls:
            return turn.tool_calls[answered:]
        else:
            return []
    return []


def result_turn(call: ToolCall, text: str) -> ChatTurn:
    """What the person typed, as the result of `call`."""
    return ChatTurn(role="tool", name=call.function.name, content=text)


def calls_markdown(calls: list[ToolCall]) -> str:
    """Each call as a line: the tool's name and its arguments."""
    return "  \n".join(
        f"Calls **{html.escape(call.function.name)}**`({_arguments(call)})`" for call in calls
    )


def _arguments(call: ToolCall) -> str:
    return json.dumps(json.loads(call.function.arguments), ensure_ascii=False).replace("`", "'")


def result_markdown(turn: ChatTurn) -> str:
    """A tool's result as its bubble shows it."""
    text = turn.content if isinstance(turn.content, str) else ""
    return f"**{html.escape(turn.name or 'tool')}** returned: {text}"


class ToolBox:
    """The Tools box: a JSON editor of definitions, with the error of the last check."""

    def __init__(self) -> None:
        with ui.expansion("Tools the model may call", icon="build").classes("w-full"):
            ui.label(
                "OpenAI's tool definitions as JSON. A model fine-tuned on tool-calling data "
                "answers with calls; type each tool's result in the message box."
            ).classes("text-body2 text-grey-7")
            self.editor = (
                ui.textarea(placeholder=EXAMPLE)
                .classes("w-full playground-tools")
                .props("autogrow outlined input-style='font-family: monospace'")
            )
            self.error = ui.label("").classes("text-negative text-body2 playground-tools-error")

    def tools(self) -> list[Tool] | None:
        """The tools offered now; ValueError (also shown under the box) when they are wrong."""
        try:
            tools = parse_tools(self.editor.value or "")
        except ValueError as exc:
            self.error.set_text(str(exc))
            raise
        self.error.set_text("")
        return tools
