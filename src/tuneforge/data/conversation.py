"""The conversation shape every processed dataset uses: TRL's conversational format.

A message is `{"role": "system" | "user" | "assistant" | "tool", "content": [part, ...]}` where a
part is `{"type": "text", "text": "..."}` or `{"type": "image"}` (the image itself lives in the
row's `images` column, in order of appearance). Rows of a processed dataset hold, by processing
mode:

- `conversation`: `messages` (list of messages)
- `prompt_only`: `prompt` (list of messages, ending with a user turn) + the source's extra columns
- `preference`: `prompt` (list of messages ending with a user turn), `chosen` and `rejected`
  (one assistant message each)
- `feedback`: `prompt` (list of messages ending with a user turn), `completion` (one assistant
  message) and `label` (true: the completion is desirable)
- `language_modeling`: `text` (a string)

Tool calling (the `conversation` mode; `prompt_only` keeps the tools but no calls): an assistant
message may carry `tool_calls`, OpenAI's shape with the arguments as JSON text of an object,

    {"role": "assistant", "content": [],   # its text parts, often none
     "tool_calls": [{"type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}

and is followed by one `tool` message per result, each naming the tool it answers:

    {"role": "tool", "name": "get_weather", "content": [{"type": "text", "text": "{\"temp\": 15}"}]}

then by an assistant message again (several rounds of calls and results may come before the
final answer, an assistant message without calls). The record then also holds `tools`: JSON text
of a list of OpenAI tool definitions, `[{"type": "function", "function": {"name", "description",
"parameters"}}]`. Arguments and tools are JSON text, not nested objects, because Parquet would
give every row one struct type made of all rows' keys. A record without tools has no `tools` key
and its messages neither `tool_calls` nor `name`.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")


class Part(TypedDict):
    type: Literal["text", "image"]
    text: NotRequired[str]


class FunctionCall(TypedDict):
    name: str
    arguments: str  # JSON text of an object


class ToolCall(TypedDict):
    type: Literal["function"]
    function: FunctionCall


class Message(TypedDict):
    role: Role
    content: list[Part]
    tool_calls: NotRequired[list[ToolCall]]  # assistant messages that call tools
    name: NotRequired[str]  # tool messages: the tool whose result this is


def message(role: Role, text: str) -> Message:
    """A text-only message."""
    return {"role": role, "content": [{"type": "text", "text": text}]}


def text_of(msg: Message) -> str:
    """The message's text parts joined (images contribute nothing)."""
    return "".join(part.get("text", "") for part in msg["content"] if part["type"] == "text")


def calls_tools(msg: Message) -> bool:
    """Whether `msg` is an assistant message that calls tools."""
    return bool(msg.get("tool_calls"))


Problem = tuple[str, str]


def check_order(turns: list[Message], problems: list[Problem]) -> None:
    """Gemma's template wants an optional system turn, then user and assistant alternating; an
    assistant message that calls tools is followed by their results, then the assistant again."""
    if any(m["role"] == "tool" or calls_tools(m) for m in turns):
        found = _tool_order(turns[1:] if turns and turns[0]["role"] == "system" else turns)
        if found is not None:
            problems.append(found)
        return
    roles = [t["role"] for t in turns]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if "system" in roles:
        problems.append(("role_order", "a system turn after the first turn"))
    elif not roles or roles[0] != "user":
        problems.append(("role_order", "the conversation does not start with a user turn"))
    elif roles[::2].count("user") + roles[1::2].count("assistant") < len(roles):
        problems.append(("role_order", "two turns of the same role in a row"))


def _tool_order(turns: list[Message]) -> Problem | None:
    """The first order problem of a conversation with tool calls (after its system turn)."""
    if turns and turns[0]["role"] == "tool":
        return ("orphan_result", "a tool result opens the conversation, with no call before it")
    if not turns or turns[0]["role"] != "user":
        return ("role_order", "the conversation does not start with a user turn")
    previous: Message | None = None
    calls = waiting = 0  # the calls of the last assistant message, and how many await results
    for msg in turns:
        role, before = msg["role"], previous["role"] if previous else None
        if role == "system":
            return ("role_order", "a system turn after the first turn")
        if role == "tool":
            if before != "tool" and not (previous and calls_tools(previous)):
                return ("orphan_result", f"a tool result after a {before} turn, with no call")
            if waiting == 0:
                return ("extra_results", f"more tool results than the {calls} call(s) before")
            waiting -= 1
        elif previous is not None and calls_tools(previous):
            return ("role_order", "a tool call with no result after it")
        elif role == "user" and before == "tool":
            return ("role_order", "a user turn where the assistant should answer the results")
        elif role == before:
            return ("role_order", "two turns of the same role in a row")
        if role == "assistant":
            calls = waiting = len(msg.get("tool_calls", []))
        previous = msg
    return None
