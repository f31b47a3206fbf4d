"""The conversation shape every processed dataset uses: TRL's conversational format.

A message is `{"role": "system" | "user" | "assistant", "content": [part, ...]}` where a part is
`{"type": "text", "text": "..."}` or `{"type": "image"}` (the image itself lives in the row's
`images` column, in order of appearance). Rows of a processed dataset hold, by processing mode:

- `conversation`: `messages` (list of messages)
- `prompt_only`: `prompt` (list of messages, ending with a user turn) + the source's extra columns
- `preference`: `prompt` (list of messages ending with a user turn), `chosen` and `rejected`
  (one assistant message each)
- `feedback`: `prompt` (list of messages ending with a user turn), `completion` (one assistant
  message) and `label` (true: the completion is desirable)
- `language_modeling`: `text` (a string)
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


class Part(TypedDict):
    type: Literal["text", "image"]
    text: NotRequired[str]


class Message(TypedDict):
    role: Role
    content: list[Part]


def message(role: Role, text: str) -> Message:
    """A text-only message."""
    return {"role": role, "content": [{"type": "text", "text": text}]}


def text_of(msg: Message) -> str:
    """The message's text parts joined (images contribute nothing)."""
    return "".join(part.get("text", "") for part in msg["content"] if part["type"] == "text")
