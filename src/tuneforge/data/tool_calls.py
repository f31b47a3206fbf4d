"""Tool calling in datasets: the tools column, calls and results read from a row's turns, and the
checks a conversation with calls must pass.

Accepted, in the turns column:

- OpenAI/TRL `messages`: an assistant message's `tool_calls` (`[{"id", "type": "function",
  "function": {"name", "arguments"}}]`, the arguments JSON text or an object) or legacy
  `function_call` (`{"name", "arguments"}`); results as `tool` messages (`tool_call_id`, `name`,
  content as text, text parts, or an object) or legacy `function` messages.
- ShareGPT `conversations`: a `function_call` (or `tool_call`) turn whose value is JSON text of
  `{"name", "arguments"}` or of a list of them (parallel calls); results as `observation` (or
  `tool`, `function_response`, `tool_response`) turns. A call turn becomes an assistant message
  with the calls and no text; right after an assistant turn (a `gpt` turn, or another call turn)
  its calls join that message instead, so a `gpt` text before a call is the call's own text.

Each result is named after its tool: its own `name`, else the call its `tool_call_id` names, else
the calls before it in order. Arguments become canonical JSON text of an object; the tools
column (a list, or JSON text of one; OpenAI's wrapped definitions or ShareGPT's bare `{name,
description, parameters}`) becomes JSON text of wrapped definitions. Nulls inside calls and
tools given as nested data (not JSON text) are dropped: Parquet and JSON readers give every row's
objects the keys of all rows, as nulls.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Literal

from jsonschema import SchemaError, validators
from jsonschema.exceptions import best_match

from tuneforge.data.conversation import Message, Part, ToolCall, calls_tools

Problems = list[tuple[str, str]]
Tool = dict[str, Any]  # {"type": "function", "function": {"name", "description", "parameters"}}
TurnKind = Literal["call", "result"]
# ShareGPT `from` (and OpenAI `role`) names of the turns that call tools or give their results.
TURN_KINDS: dict[str, TurnKind] = {
    "function_call": "call",
    "tool_call": "call",
    "tool_calls": "call",
    "observation": "result",
    "tool": "result",
    "function": "result",
    "function_response": "result",
    "tool_response": "result",
}
CALL_KEYS = ("tool_calls", "function_call")  # keys of an assistant turn that calls tools
DETAIL_CHARS = 80


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return repr(text[:DETAIL_CHARS] + ("…" if len(text) > DETAIL_CHARS else ""))


def without_nulls(value: Any) -> Any:
    """`value` with every null-valued key of every object in it dropped (list items stay)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


# -- the tools column ---------------------------------------------------------------------------
def parse_tools(value: Any, problems: Problems) -> list[Tool]:
    """The tool definitions in a tools cell, wrapped; none for an empty cell (null, blank text,
    an empty list), and none with `bad_tools` when it is malformed."""
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            problems.append(("bad_tools", f"the tools are not JSON ({exc.msg}): {_shown(value)}"))
            return []
    else:
        value = without_nulls(value)  # read as nested data: nulls may be other rows' keys
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        problems.append(
            ("bad_tools", f"the tools are {type(value).__name__}, not a list of definitions")
        )
        return []
    tools: list[Tool] = []
    for index, item in enumerate(value, 1):
        definition = _definition(item, index, problems)
        if definition is None:
            return []
        name = definition["function"]["name"]
        if any(tool["function"]["name"] == name for tool in tools):
            problems.append(("bad_tools", f"two tools are called {name!r}"))
            return []
        tools.append(definition)
    return tools


def _definition(item: Any, index: int, problems: Problems) -> Tool | None:
    """One tool definition, wrapped and checked, or None with `bad_tools`."""
    where = f"tool {index}"
    if not isinstance(item, dict):
        problems.append(("bad_tools", f"{where} is {type(item).__name__}, not an object"))
        return None
    inner = item.get("function")
    function: dict[str, Any] = inner if isinstance(inner, dict) else item
    kind = item.get("type", "function")
    name = function.get("name")
    if kind != "function":
        problems.append(("bad_tools", f"{where} is of type {kind!r}; only functions are tools"))
        return None
    if not isinstance(name, str) or not name.strip():
        problems.append(("bad_tools", f"{where} has no name: {_shown(item)}"))
        return None
    description, parameters = function.get("description"), function.get("parameters")
    if description is not None and not isinstance(description, str):
        problems.append(("bad_tools", f"the description of {name!r} is not text"))
        return None
    if parameters is not None:
        if not isinstance(parameters, dict):
            problems.append(("bad_tools", f"the parameters of {name!r} are not a JSON schema"))
            return None
        error = _schema_error(json.dumps(parameters, sort_keys=True, ensure_ascii=False))
        if error is not None:
            problems.append(
                ("bad_tools", f"the parameters of {name!r} are not a valid JSON schema: {error}")
            )
            return None
    first = {k: function[k] for k in ("name", "description", "parameters") if k in function}
    rest = {k: v for k, v in function.items() if k not in first and k != "type"}
    return {"type": "function", "function": {**first, **rest}}


@functools.lru_cache(maxsize=1024)
def _schema_error(schema: str) -> str | None:
    """What makes `schema` (JSON text) an invalid JSON schema, or None; datasets repeat their
    tools row after row, so each schema is checked once."""
    parsed = json.loads(schema)
    try:
        validators.validator_for(parsed).check_schema(parsed)
    except SchemaError as exc:
        return str(exc.message)[:DETAIL_CHARS]
    return None


def tools_text(tools: list[Tool]) -> str:
    """The tools as the record stores them: JSON text of the wrapped definitions."""
    return json.dumps(tools, ensure_ascii=False)


# -- calls --------------------------------------------------------------------------------------
def arguments_text(value: Any, name: str, problems: Problems) -> str | None:
    """A call's arguments (JSON text or an object; none: no arguments) as canonical JSON text of
    an object, or None with `bad_arguments`."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            problems.append(
                ("bad_arguments", f"the arguments of {name!r} are not JSON: {_shown(value)}")
            )
            return None
    else:
        parsed = value
    if not isinstance(parsed, dict):
        problems.append(
            ("bad_arguments", f"the arguments of {name!r} are {_json_kind(parsed)}, not an object")
        )
        return None
    return json.dumps(parsed, ensure_ascii=False)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    return "null" if value is None else f"the {type(value).__name__} {value!r}"[:DETAIL_CHARS]


def _call(value: Any, problems: Problems) -> tuple[ToolCall, str | None] | None:
    """One call, `{"id", "type", "function": {"name", "arguments"}}` or `{"name", "arguments"}`,
    with its id (if any), or None with the problem."""
    if not isinstance(value, dict):
        problems.append(("bad_tool_call", f"a tool call is not an object: {_shown(value)}"))
        return None
    inner = value.get("function")
    function: dict[str, Any] = inner if isinstance(inner, dict) else value
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(("bad_tool_call", f"a tool call names no tool: {_shown(value)}"))
        return None
    raw = function.get("arguments")
    raw = function.get("parameters") if raw is None else raw
    arguments = arguments_text(raw, name, problems)
    if arguments is None:  # reported; the call stays, so its result is not reported too
        arguments = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    call_id = value.get("id")
    call: ToolCall = {"type": "function", "function": {"name": name, "arguments": arguments}}
    return call, call_id if isinstance(call_id, str) and call_id else None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class RowTools:
    """One row's tool parts while its turns are read: each call's id and each result's
    `tool_call_id`, kept aside (the record has neither) until `finish` names the results."""

    def __init__(self) -> None:
        self.seen = False  # the row has a call or a result
        self._call_ids: dict[int, str] = {}
        self._result_ids: dict[int, str] = {}

    def clear(self) -> None:
        self.seen = False
        self._call_ids.clear()
        self._result_ids.clear()

    def _calls(self, values: list[Any], problems: Problems) -> list[ToolCall]:
        self.seen = True
        calls: list[ToolCall] = []
        for value in values:
            found = _call(value, problems)
            if found is not None:
                calls.append(found[0])
                if found[1] is not None:
                    self._call_ids[id(found[0])] = found[1]
        return calls

    def assistant(self, turn: Mapping[str, Any], content: Any, problems: Problems) -> Message:
        """An OpenAI assistant turn that calls tools (`tool_calls`, or legacy `function_call`),
        with its `content` (text, parts read by the caller, or none)."""
        parts: list[Part] = content if isinstance(content, list) else []
        if isinstance(content, str | int | float) and str(content).strip():
            parts = [{"type": "text", "text": str(content)}]
        msg: Message = {"role": "assistant", "content": parts}
        values = [v for key in CALL_KEYS if turn.get(key) is not None for v in _listed(turn[key])]
        values = without_nulls(values)  # nested data: nulls may be other rows' keys
        calls = self._calls(values, problems)
        if calls:
            msg["tool_calls"] = calls
        return msg

    def turn(
        self,
        kind: TurnKind,
        turn: Mapping[str, Any],
        key: str,
        turns: list[Message],
        problems: Problems,
    ) -> None:
        """Read a call turn (its calls join the assistant message just before it, or make a new
        one) or a result turn (a tool message) onto `turns`."""
        value = turn.get(key)
        if kind == "result":
            turns.append(self._result(turn, value, problems))
            return
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                self.seen = True
                problems.append(("bad_tool_call", f"a tool call is not JSON: {_shown(value)}"))
                return
        else:
            value = without_nulls(value)  # nested data: nulls may be other rows' keys
        calls = self._calls(_listed(value), problems)
        if not calls:
            return
        if turns and turns[-1]["role"] == "assistant":
            turns[-1].setdefault("tool_calls", []).extend(calls)
        else:
            turns.append({"role": "assistant", "content": [], "tool_calls": calls})

    def _result(self, turn: Mapping[str, Any], value: Any, problems: Problems) -> Message:
        self.seen = True
        if isinstance(value, list) and all(isinstance(p, dict) and "type" in p for p in value):
            if any(p["type"] != "text" or not isinstance(p.get("text"), str) for p in value):
                problems.append(("non_text", "a tool result has a part that is not text"))
            text = "".join(str(p.get("text") or "") for p in value)
        elif isinstance(value, str):
            text = value
        elif value is None:
            text = ""
        else:
            text = json.dumps(value, ensure_ascii=False)
        part: Part = {"type": "text", "text": text}
        msg: Message = {"role": "tool", "content": [part]}
        name, call_id = turn.get("name"), turn.get("tool_call_id")
        if isinstance(name, str) and name.strip():
            msg["name"] = name
        if isinstance(call_id, str) and call_id:
            self._result_ids[id(msg)] = call_id
        return msg

    def finish(self, turns: list[Message]) -> None:
        """Name each result after its tool: its own name, else the call its `tool_call_id`
        names, else the calls before it in order (results with no call stay unnamed: the order
        check reports them)."""
        calls: list[ToolCall] = []
        position = 0
        for msg in turns:
            if msg["role"] == "assistant":
                calls, position = msg.get("tool_calls", []), 0
            elif msg["role"] != "tool":
                calls = []
            else:
                wanted = self._result_ids.get(id(msg))
                by_id = [c for c in calls if wanted and self._call_ids.get(id(c)) == wanted]
                if "name" not in msg and (by_id or position < len(calls)):
                    msg["name"] = (by_id or calls[position:])[0]["function"]["name"]
                position += 1
        self._call_ids.clear()
        self._result_ids.clear()


def has_calls(turn: Mapping[str, Any]) -> bool:
    """Whether an OpenAI turn carries calls (`tool_calls` or `function_call`, not empty)."""
    return any(turn.get(key) not in (None, [], "") for key in CALL_KEYS)


# -- checks -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> Any:
    parsed = json.loads(schema)
    return validators.validator_for(parsed)(parsed)


def check_calls(turns: list[Message], tools: list[Tool], problems: Problems) -> None:
    """With tools, every call must name one of them (`undefined_tool`) with arguments that
    match its parameters' schema (`arguments_schema`)."""
    if not tools:
        return
    defined = {tool["function"]["name"]: tool["function"] for tool in tools}
    for msg in turns:
        for call in msg.get("tool_calls", []):
            name = call["function"]["name"]
            function = defined.get(name)
            if function is None:
                problems.append(
                    ("undefined_tool", f"a call to {name!r}, which is not among the row's tools "
                     f"({', '.join(sorted(defined))})")
                )  # fmt: skip
                continue
            if "parameters" not in function:
                continue
            schema = json.dumps(function["parameters"], sort_keys=True, ensure_ascii=False)
            try:
                arguments = json.loads(call["function"]["arguments"])
            except json.JSONDecodeError:
                continue  # reported as bad_arguments
            if not isinstance(arguments, dict):
                continue
            error = best_match(_validator(schema).iter_errors(arguments))
            if error is not None:
                where = "/".join(map(str, error.absolute_path))
                problems.append(
                    ("arguments_schema", f"the arguments of {name!r} do not match its "
                     f"parameters{f' at {where}' if where else ''}: {error.message[:DETAIL_CHARS]}")
                )  # fmt: skip


def ends_unanswered(turns: list[Message]) -> bool:
    """Whether the conversation ends on a call or a result instead of an answer."""
    return bool(turns) and (turns[-1]["role"] == "tool" or calls_tools(turns[-1]))
