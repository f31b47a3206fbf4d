"""The samples of an evaluation: rows of a processed split, each split into what the model is
asked (the prompt, with the images it shows and the tools it may call) and what it should answer
(the reference), drawn reproducibly."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.data.conversation import Message, calls_tools, text_of
from tuneforge.evaluation.metrics.tool_calls import calls_of, calls_text
from tuneforge.models.tool_format import ToolDefinition, tools_of

TEXT_ONLY = frozenset({"perplexity", "preference"})
"""Suites that score a row's own texts, without its images: rows with images are left out."""


@dataclass(frozen=True)
class Sample:
    index: int  # the row's position in its split
    prompt: list[Message]  # the conversation the model continues
    reference: str | None  # the expected answer, when the row has one
    record: Mapping[str, Any]  # the whole row (perplexity scores its answers)
    images: tuple[bytes, ...] = ()  # the prompt's images, one per image part, in order
    tools: Sequence[ToolDefinition] | None = None  # the tools the prompt declares (the row's)
    calls: tuple[Mapping[str, Any], ...] = ()  # the reference's calls (the tool_calls suite)

    @property
    def question(self) -> str:
        """What a person reads as the prompt: the text of its last user turn."""
        return next((text_of(m) for m in reversed(self.prompt) if m["role"] == "user"), "")


def shown_text(msg: Message) -> str:
    """A message as the results show it: its text, then the tools it calls (`calls_text`; the
    names alone when a call's arguments are not a JSON object)."""
    text = text_of(msg) if msg["content"] else ""
    if not calls_tools(msg):
        return text
    try:
        calls = calls_text(calls_of(msg))
    except ValueError:
        calls = "; ".join(f"{call['function']['name']}(?)" for call in msg["tool_calls"])
    return " ".join(piece for piece in (text, calls) if piece)


def _messages(answer: Message | Sequence[Message]) -> list[Message]:
    return [answer] if isinstance(answer, Mapping) else list(answer)


def image_parts(messages: Sequence[Message]) -> int:
    """How many images the messages show (their image parts)."""
    return sum(p["type"] == "image" for m in messages for p in m["content"])


def _images(
    prompt: Sequence[Message], messages: Sequence[Message], record: Mapping[str, Any]
) -> tuple[bytes, ...] | None:
    """The images the prompt shows (the row's first ones, in order of appearance); None when
    the row's image parts and its `images` do not pair up (a row to leave out)."""
    images = [bytes(image) for image in record.get("images") or []]
    if image_parts(messages) != len(images):
        return None
    return tuple(images[: image_parts(prompt)])


def _tools(record: Mapping[str, Any]) -> tuple[bool, Sequence[ToolDefinition] | None]:
    """Whether the row's tools (its `tools` column, JSON text as processed) can be read, and
    the tools (None: the row declares none)."""
    try:
        return True, tools_of(record.get("tools"))
    except ValueError:
        return False, None


def to_sample(index: int, record: Mapping[str, Any]) -> Sample | None:
    """The row as a sample, or None when it has nothing to ask or score, image parts that its
    images do not match one for one, or tools that cannot be read.

    A conversation is asked everything before its last assistant turn, whose text is the
    reference; one that ends on a user turn is asked as it is, without a reference. A
    prompt-only row is asked its prompt, a preference row too, with its chosen answer as the
    reference. A plain-text row (language modelling) asks nothing: its text is the reference,
    which only perplexity scores. A prompt's images go with the sample, in order, and so do
    the row's tools (the prompt declares them).
    """
    if "messages" in record:
        messages: list[Message] = list(record["messages"])
        answered = bool(messages) and messages[-1]["role"] == "assistant"
        prompt = messages[:-1] if answered else messages
        reference = text_of(messages[-1]) if answered else None
    elif "prompt" in record:
        prompt = list(record["prompt"])
        answer = record.get("chosen")  # one assistant message (a list of one as processed)
        chosen: list[Message] = [] if answer is None else _messages(answer)
        reference = text_of(chosen[-1]) if chosen else None
        messages = [*prompt, *chosen]
    elif "text" in record:
        return Sample(index, [], str(record["text"]), record)
    else:
        return None
    images = _images(prompt, messages, record)
    readable, tools = _tools(record)
    if images is None or not readable:
        return None
    return Sample(index, prompt, reference, record, images, tools)


def tool_sample(index: int, record: Mapping[str, Any]) -> Sample | None:
    """The row as a sample of the tool_calls suite: a conversation that declares tools is asked
    everything before its **first assistant turn that calls tools**, and that turn (its text
    and its calls) is the reference; a conversation that calls none is asked as `to_sample`
    asks it, its last assistant turn (an answer in words) being the reference. None for any
    other row: one without tools, a prompt-only or preference row, a row `to_sample` refuses,
    or one whose calls are not well formed."""
    sample = to_sample(index, record)
    if sample is None or not sample.tools or "messages" not in record:
        return None
    messages: list[Message] = list(record["messages"])
    calling = next((i for i, m in enumerate(messages) if calls_tools(m)), None)
    if calling is None:
        return sample
    answer, prompt = messages[calling], messages[:calling]
    try:
        calls = tuple(calls_of(answer))
    except ValueError:
        return None
    images = _images(prompt, messages, record)
    if images is None:
        return None
    return Sample(index, prompt, shown_text(answer), record, images, sample.tools, calls)


def is_pair(record: Mapping[str, Any]) -> bool:
    """Whether the row is a preference pair: a prompt with a chosen and a rejected answer."""
    return record.get("chosen") is not None and record.get("rejected") is not None


def usable(sample: Sample, suite: str) -> bool:
    """Whether `suite` can use `sample`: perplexity needs a reference (the tokens it scores),
    `vibe` and `rewards` a prompt with a user turn (the graders read the row), `preference` a
    pair, `tool_calls` a prompt with tools and a reference, every other suite a prompt and a
    reference. Perplexity and preference score texts only: a row with images is not theirs."""
    askable = any(m["role"] == "user" for m in sample.prompt)
    if suite in TEXT_ONLY and sample.record.get("images"):
        return False
    if suite == "perplexity":
        return sample.reference is not None
    if suite == "preference":
        return askable and is_pair(sample.record)
    if suite == "tool_calls" and not sample.tools:
        return False
    return askable and (suite in ("vibe", "rewards") or sample.reference is not None)


def select_samples(
    records: Sequence[Mapping[str, Any]], suite: str, *, max_samples: int, seed: int
) -> tuple[list[Sample], int]:
    """At most `max_samples` samples of `records` that `suite` can use, a random draw seeded by
    `seed` when there are more, in the rows' order; and how many rows it cannot use at all."""
    make = tool_sample if suite == "tool_calls" else to_sample
    chosen = [
        sample
        for index, record in enumerate(records)
        if (sample := make(index, record)) is not None and usable(sample, suite)
    ]
    skipped = len(records) - len(chosen)
    if len(chosen) > max_samples:
        drawn = sorted(random.Random(seed).sample(range(len(chosen)), max_samples))  # noqa: S311
        chosen = [chosen[i] for i in drawn]
    return chosen, skipped
