"""Gemma's function-calling notation: tool declarations, calls and results as the model reads and
writes them, and calls parsed back out of generated text.

FunctionGemma (Gemma 3) and Gemma 4 write the same notation with their own markers:

    declaration:get_weather{description:<escape>Weather now<escape>,parameters:{properties:{
        city:{type:<escape>STRING<escape>}},required:[<escape>city<escape>],type:<escape>OBJECT<escape>}}
    call:get_weather{city:<escape>Paris<escape>}
    response:get_weather{value:<escape>15 degrees, sunny<escape>}

An object is `{key:value,...}` with its keys bare and sorted, a string is wrapped in the string
delimiter (`<escape>`; Gemma 4: `<|"|>`), a list is `[value,...]`, and numbers, `true`, `false`
and `null` are written as they are. In a declaration the JSON schema's `type` names are upper
case (`STRING`, `OBJECT`), as in Google's templates. A result is written as the text the tool
returned (`value:`), as Gemma 4's official template writes a string result. The Jinja macros
here write exactly what the Python functions write; `tuneforge.models.chat_template` builds the
chat templates from them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: A tool definition as OpenAI and transformers give it: `{"type": "function", "function":
#: {"name": ..., "description": ..., "parameters": {JSON schema}}}`.
ToolDefinition = Mapping[str, Any]


@dataclass(frozen=True)
class ToolMarkers:
    """One format's function-calling markers."""

    declaration: tuple[str, str]
    call: tuple[str, str]
    response: tuple[str, str]
    #: Wraps every string value.
    string: str
    #: The turn that holds the declarations (with the system prompt, if any).
    role: str


FUNCTION_GEMMA_MARKERS = ToolMarkers(
    declaration=("<start_function_declaration>", "<end_function_declaration>"),
    call=("<start_function_call>", "<end_function_call>"),
    response=("<start_function_response>", "<end_function_response>"),
    string="<escape>",
    role="developer",
)
GEMMA_4_MARKERS = ToolMarkers(
    declaration=("<|tool>", "<tool|>"),
    call=("<|tool_call>", "<tool_call|>"),
    response=("<|tool_response>", "<tool_response|>"),
    string='<|"|>',
    role="system",
)


def tools_of(value: Any) -> list[ToolDefinition] | None:
    """A record's tools: None, a list of definitions, or JSON text of one (as processed
    datasets store them)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("The tools are not JSON.") from None
    if not isinstance(value, list) or not all(isinstance(tool, Mapping) for tool in value):
        raise ValueError("The tools must be a list of tool definitions.")
    for tool in value:
        function_of(tool)
    return value or None


def format_value(value: Any, markers: ToolMarkers, *, declaration: bool, key: str = "") -> str:
    """`value` (JSON data) in the notation; in a `declaration`, `type` names go upper case."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.upper() if declaration and key == "type" else value
        return f"{markers.string}{text}{markers.string}"
    if isinstance(value, Mapping):
        items = (
            f"{k}:{format_value(v, markers, declaration=declaration, key=k)}"
            for k, v in sorted(value.items())
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence):
        items = (format_value(v, markers, declaration=declaration, key=key) for v in value)
        return "[" + ",".join(items) + "]"
    return str(value)


def function_of(tool: ToolDefinition) -> Mapping[str, Any]:
    """A tool definition's function (`{"name", "description", "parameters"}`), checked."""
    function = tool.get("function") if tool.get("type") == "function" else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError(
            'A tool must be {"type": "function", "function": {"name": ..., "parameters": ...}}.'
        )
    return function


def declaration(tool: ToolDefinition, markers: ToolMarkers) -> str:
    """One tool's declaration between the format's declaration markers."""
    function = function_of(tool)
    rest = {k: v for k, v in function.items() if k != "name"}
    body = format_value(rest, markers, declaration=True)
    return f"{markers.declaration[0]}declaration:{function['name']}{body}{markers.declaration[1]}"


def arguments_of(call: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """A tool call's (`{"function": {"name", "arguments"}}`) name and arguments, the arguments
    given as an object or as JSON text of one (as OpenAI sends them)."""
    function = call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError('A tool call must be {"function": {"name": ..., "arguments": ...}}.')
    arguments = function.get("arguments")
    if arguments is None or arguments == "":
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            raise ValueError(
                f"The arguments of the call to {function['name']} are not JSON."
            ) from None
    if not isinstance(arguments, Mapping):
        raise ValueError(f"The arguments of the call to {function['name']} are not an object.")
    return function["name"], arguments


def call_text(call: Mapping[str, Any], markers: ToolMarkers) -> str:
    """One tool call between the format's call markers."""
    name, arguments = arguments_of(call)
    body = format_value(arguments, markers, declaration=False)
    return f"{markers.call[0]}call:{name}{body}{markers.call[1]}"


def response_text(name: str, result: str, markers: ToolMarkers) -> str:
    """A tool's result, after the response marker the model wrote, up to its end marker."""
    return f"response:{name}{{value:{markers.string}{result}{markers.string}}}{markers.response[1]}"


def jinja_macros(markers: ToolMarkers) -> str:
    """Jinja macros `tool_value`, `tool_declaration` and `tool_call` that write what
    `format_value`, `declaration` and `call_text` write (arguments given as objects)."""
    string = markers.string.replace("'", "\\'")
    return (
        "{%- macro tool_value(value, decl, key) -%}"
        "{%- if value is none -%}null"
        "{%- elif value is boolean -%}{{ 'true' if value else 'false' }}"
        "{%- elif value is string -%}"
        f"{{{{ '{string}' + (value | upper if decl and key == 'type' else value) + '{string}' }}}}"
        "{%- elif value is mapping -%}{{ '{' }}"
        "{%- for k, v in value | dictsort(true) -%}"
        "{%- if not loop.first -%},{%- endif -%}{{ k }}:{{ tool_value(v, decl, k) }}"
        "{%- endfor -%}{{ '}' }}"
        "{%- elif value is iterable -%}["
        "{%- for v in value -%}"
        "{%- if not loop.first -%},{%- endif -%}{{ tool_value(v, decl, key) }}"
        "{%- endfor -%}]"
        "{%- else -%}{{ value }}"
        "{%- endif -%}"
        "{%- endmacro -%}"
        "{%- macro tool_declaration(tool) -%}"
        "{%- set function = tool['function'] -%}"
        f"{markers.declaration[0]}declaration:{{{{ function['name'] }}}}{{{{ '{{' }}}}"
        "{%- set ns = namespace(first=true) -%}"
        "{%- for k, v in function | dictsort(true) -%}{%- if k != 'name' -%}"
        "{%- if not ns.first -%},{%- endif -%}{%- set ns.first = false -%}"
        "{{ k }}:{{ tool_value(v, true, k) }}"
        "{%- endif -%}{%- endfor -%}"
        f"{{{{ '}}' }}}}{markers.declaration[1]}"
        "{%- endmacro -%}"
        "{%- macro tool_call(call) -%}"
        f"{markers.call[0]}call:{{{{ call['function']['name'] }}}}"
        "{{ tool_value(call['function']['arguments'] or {}, false, '') }}"
        f"{markers.call[1]}"
        "{%- endmacro -%}"
    )


class CallSyntaxError(ValueError):
    """Generated text that is not a well-formed call."""


def parse_calls(text: str, markers: ToolMarkers) -> tuple[str, list[dict[str, Any]]]:
    """The text before the first call and the calls a model wrote (`[{"name", "arguments"}]`,
    the arguments as an object). Raises CallSyntaxError when a call is cut off or malformed."""
    opening, closing = markers.call
    start = text.find(opening)
    if start < 0:
        return text, []
    content, calls, rest = text[:start], [], text[start:]
    while rest.startswith(opening):
        end = rest.find(closing)
        if end < 0:
            raise CallSyntaxError("A tool call is not closed.")
        body = rest[len(opening) : end]
        if not body.startswith("call:") or "{" not in body:
            raise CallSyntaxError(f"Not a tool call: {body[:80]!r}.")
        name, _, arguments = body[len("call:") :].partition("{")
        parsed, position = _Reader("{" + arguments, markers.string).value(0)
        if position != len(arguments) + 1 or not isinstance(parsed, dict):
            raise CallSyntaxError(f"The arguments of the call to {name} are malformed.")
        calls.append({"name": name.strip(), "arguments": parsed})
        rest = rest[end + len(closing) :].lstrip()
    return content, calls


def split_answer(text: str, markers: ToolMarkers) -> tuple[str, list[dict[str, Any]]]:
    """An answer's text and its calls (`parse_calls`); a malformed call stays text."""
    try:
        return parse_calls(text, markers)
    except CallSyntaxError:
        return text, []


def openai_tool_calls(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Parsed calls in OpenAI's shape: each with a new id and its arguments as JSON text."""
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": call["name"],
                "arguments": json.dumps(call["arguments"], ensure_ascii=False),
            },
        }
        for call in calls
    ]


class _Reader:
    """Reads one value of the notation."""

    def __init__(self, text: str, string: str) -> None:
        self.text, self.string = text, string

    def value(self, at: int) -> tuple[Any, int]:
        text = self.text
        if text.startswith(self.string, at):
            end = text.find(self.string, at + len(self.string))
            if end < 0:
                raise CallSyntaxError("A string is not closed.")
            return text[at + len(self.string) : end], end + len(self.string)
        if text.startswith("{", at):
            return self._object(at + 1)
        if text.startswith("[", at):
            return self._list(at + 1)
        end = at
        while end < len(text) and text[end] not in ",}]":
            end += 1
        return _scalar(text[at:end].strip()), end

    def _object(self, at: int) -> tuple[dict[str, Any], int]:
        found: dict[str, Any] = {}
        if self.text.startswith("}", at):
            return found, at + 1
        while True:
            colon = self.text.find(":", at)
            if colon < 0:
                raise CallSyntaxError("An object key has no value.")
            key = self.text[at:colon].strip()
            found[key], at = self.value(colon + 1)
            if self.text.startswith(",", at):
                at += 1
            elif self.text.startswith("}", at):
                return found, at + 1
            else:
                raise CallSyntaxError("An object is not closed.")

    def _list(self, at: int) -> tuple[list[Any], int]:
        found: list[Any] = []
        if self.text.startswith("]", at):
            return found, at + 1
        while True:
            item, at = self.value(at)
            found.append(item)
            if self.text.startswith(",", at):
                at += 1
            elif self.text.startswith("]", at):
                return found, at + 1
            else:
                raise CallSyntaxError("A list is not closed.")


def _scalar(word: str) -> Any:
    """A bare value: a number, true, false or null; anything else stays text."""
    if word in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[word]
    try:
        return json.loads(word)
    except json.JSONDecodeError:
        return word


class CallStream:
    """Splits a streamed answer into the text to show as it comes and the calls at its end:
    text is passed on until a call marker begins (a piece that may be its start is held
    back), and what follows is parsed when the answer ends."""

    def __init__(self, markers: ToolMarkers) -> None:
        self.markers = markers
        self.held = ""
        self.calling = False

    def feed(self, text: str) -> str:
        """The part of `text` (after what was held back) that is surely not a call."""
        self.held += text
        if self.calling:
            return ""
        opening = self.markers.call[0]
        at = self.held.find(opening)
        if at >= 0:
            self.calling = True
        else:
            at = len(self.held) - _partial_marker(self.held, opening)
        shown, self.held = self.held[:at], self.held[at:]
        return shown

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """The text left to show and the calls: a malformed call is shown as text."""
        if not self.calling:
            return self.held, []
        return split_answer(self.held, self.markers)


def _partial_marker(text: str, marker: str) -> int:
    """The length of the longest end of `text` that begins `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
