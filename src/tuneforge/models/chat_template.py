"""Gemma's chat template, as code and as the equivalent Jinja string.

A conversation renders as

    <bos><start_of_turn>user
    {system}

    {user}<end_of_turn>
    <start_of_turn>model
    {answer}<end_of_turn>

Gemma has no system role: the system prompt is folded into the first user turn. The assistant
speaks as `model`. Each text part is stripped of surrounding whitespace and an image part becomes
`<start_of_image>`, as in Google's official Gemma 3 template (the processor later expands it into
the image's soft tokens). The GGUF of Gemma 3 270M carries no template, so `GEMMA_CHAT_TEMPLATE`
is attached to tokenizers saved for training and export; a test checks that transformers renders
it byte for byte like `render`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BOS = "<bos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
START_OF_IMAGE = "<start_of_image>"
GENERATION_PROMPT = f"{START_OF_TURN}model\n"

#: A message: `{"role": ..., "content": [part, ...] | str}` (see `tuneforge.data.conversation`).
ChatMessage = Mapping[str, Any]

GEMMA_CHAT_TEMPLATE = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{ content | trim }}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}<start_of_image>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}"
    "{%- else -%}{{ raise_exception('Unknown content part type: ' + part['type']) }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = render_content(messages[0]['content']) + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- if not loop_messages -%}"
    "{{ raise_exception('The conversation has no user message.') }}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] != ('user' if loop.index0 % 2 == 0 else 'assistant') -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ render_content(message['content']) }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def render_content(content: str | Sequence[Mapping[str, Any]]) -> str:
    """A message's content as Gemma sees it: stripped texts, images as `<start_of_image>`."""
    if isinstance(content, str):
        return content.strip()
    pieces = []
    for part in content:
        if part["type"] == "image":
            pieces.append(START_OF_IMAGE)
        elif part["type"] == "text":
            pieces.append(part["text"].strip())
        else:
            raise ValueError(f"Unknown content part type {part['type']!r}.")
    return "".join(pieces)


def _turns(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """`(gemma_role, text)` per turn, the system prompt folded in, the role order checked."""
    prefix, offset = "", 0
    if messages and messages[0]["role"] == "system":
        prefix, offset = render_content(messages[0]["content"]) + "\n\n", 1
    turns = []
    for index, msg in enumerate(messages[offset:]):
        expected = "user" if index % 2 == 0 else "assistant"
        if msg["role"] != expected:
            raise ValueError(
                f"Message {index + offset + 1} has role {msg['role']!r} where Gemma expects "
                f"{expected!r}: after an optional system message, a conversation starts with a "
                "user turn and then user and assistant take turns."
            )
        text = render_content(msg["content"])
        turns.append(
            ("model" if expected == "assistant" else "user", prefix + text if index == 0 else text)
        )
    if not turns:
        raise ValueError("The conversation has no user message.")
    return turns


def render(
    messages: Sequence[ChatMessage], *, add_generation_prompt: bool = False, bos: bool = True
) -> str:
    """The conversation in Gemma's chat format; raises ValueError when roles are out of order."""
    pieces = [BOS] if bos else []
    pieces += [f"{START_OF_TURN}{role}\n{text}{END_OF_TURN}\n" for role, text in _turns(messages)]
    if add_generation_prompt:
        pieces.append(GENERATION_PROMPT)
    return "".join(pieces)


def prompt_and_answer(messages: Sequence[ChatMessage], *, bos: bool = True) -> tuple[str, str]:
    """The rendered prompt (up to and including the final `<start_of_turn>model\\n`) and the
    final assistant answer (its text and `<end_of_turn>\\n`). Their concatenation is
    `render(messages)`; training with loss on answers puts loss on the second part only."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("The conversation must end with an assistant message to have an answer.")
    prompt = render(messages[:-1], add_generation_prompt=True, bos=bos)
    answer = f"{render_content(messages[-1]['content'])}{END_OF_TURN}\n"
    return prompt, answer
