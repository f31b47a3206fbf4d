"""The samples of an evaluation: rows of a processed split, each split into what the model is
asked (the prompt, with the images it shows) and what it should answer (the reference), drawn
reproducibly."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.data.conversation import Message, text_of

TEXT_ONLY = frozenset({"perplexity", "preference"})
"""Suites that score a row's own texts, without its images: rows with images are left out."""


@dataclass(frozen=True)
class Sample:
    index: int  # the row's position in its split
    prompt: list[Message]  # the conversation the model continues
    reference: str | None  # the expected answer, when the row has one
    record: Mapping[str, Any]  # the whole row (perplexity scores its answers)
    images: tuple[bytes, ...] = ()  # the prompt's images, one per image part, in order

    @property
    def question(self) -> str:
        """What a person reads as the prompt: the text of its last user turn."""
        return next((text_of(m) for m in reversed(self.prompt) if m["role"] == "user"), "")


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


def to_sample(index: int, record: Mapping[str, Any]) -> Sample | None:
    """The row as a sample, or None when it has nothing to ask or score, or image parts that
    its images do not match one for one.

    A conversation is asked everything before its last assistant turn, whose text is the
    reference; one that ends on a user turn is asked as it is, without a reference. A
    prompt-only row is asked its prompt, a preference row too, with its chosen answer as the
    reference. A plain-text row (language modelling) asks nothing: its text is the reference,
    which only perplexity scores. A prompt's images go with the sample, in order.
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
    if images is None:
        return None
    return Sample(index, prompt, reference, record, images)


def is_pair(record: Mapping[str, Any]) -> bool:
    """Whether the row is a preference pair: a prompt with a chosen and a rejected answer."""
    return record.get("chosen") is not None and record.get("rejected") is not None


def usable(sample: Sample, suite: str) -> bool:
    """Whether `suite` can use `sample`: perplexity needs a reference (the tokens it scores),
    `vibe` and `rewards` a prompt with a user turn (the graders read the row), `preference` a
    pair, every other suite a prompt and a reference. Perplexity and preference score texts
    only: a row with images is not theirs."""
    askable = any(m["role"] == "user" for m in sample.prompt)
    if suite in TEXT_ONLY and sample.record.get("images"):
        return False
    if suite == "perplexity":
        return sample.reference is not None
    if suite == "preference":
        return askable and is_pair(sample.record)
    return askable and (suite in ("vibe", "rewards") or sample.reference is not None)


def select_samples(
    records: Sequence[Mapping[str, Any]], suite: str, *, max_samples: int, seed: int
) -> tuple[list[Sample], int]:
    """At most `max_samples` samples of `records` that `suite` can use, a random draw seeded by
    `seed` when there are more, in the rows' order; and how many rows it cannot use at all."""
    chosen = [
        sample
        for index, record in enumerate(records)
        if (sample := to_sample(index, record)) is not None and usable(sample, suite)
    ]
    skipped = len(records) - len(chosen)
    if len(chosen) > max_samples:
        drawn = sorted(random.Random(seed).sample(range(len(chosen)), max_samples))  # noqa: S311
        chosen = [chosen[i] for i in drawn]
    return chosen, skipped
