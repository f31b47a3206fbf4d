"""Recognising the common dataset formats, so most uploads need no mapping at all.

`guess_mapping` looks at the column names and a few rows and proposes a `MappingSpec`: exactly the
right one for the formats below, and a best guess (to confirm) for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.data.mapping import FieldSource, MappingSpec

PROMPT_NAMES = (
    "prompt",
    "question",
    "input",
    "query",
    "instruction",
    "source",
    "text",
    "review",
    "sentence",
    "context",
    "user",
    "human",
)
ANSWER_NAMES = (
    "completion",
    "answer",
    "output",
    "response",
    "target",
    "label",
    "reply",
    "assistant",
    "summary",
    "gpt",
)
IMAGE_NAMES = ("image", "images", "image_path", "file_name", "filename", "path")


@dataclass(frozen=True)
class Guess:
    format: str  # messages | sharegpt | alpaca | preference | prompt_completion | ... | custom
    mapping: MappingSpec | None
    sure: bool  # a recognised format; False: a best guess for the user to confirm
    reason: str


def _col(name: str) -> FieldSource:
    return FieldSource(column=name)


def _turn_list(rows: Sequence[Mapping[str, Any]], column: str, keys: tuple[str, str]) -> bool:
    """Whether `column` holds lists of dicts with the given role/text keys in the sample."""
    seen = False
    for row in rows:
        value = row.get(column)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
            isinstance(t, dict) and keys[0] in t and keys[1] in t for t in value
        ):
            return False
        seen = True
    return seen


def _first(columns: Sequence[str], names: Sequence[str], taken: set[str]) -> str | None:
    lowered = {c.lower(): c for c in columns if c not in taken}
    return next((lowered[n] for n in names if n in lowered), None)


def guess_mapping(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Guess:
    """Recognise the format from `columns` and a sample of `rows`."""
    cols = set(columns)
    image = _first(columns, IMAGE_NAMES, set())
    for name in ("messages", "conversations", "conversation", "chat"):
        if name in cols and _turn_list(rows, name, ("role", "content")):
            return Guess(
                "messages",
                MappingSpec(layout="messages", messages_column=name, image_column=image),
                True,
                f"`{name}` holds role/content turns (OpenAI/TRL format)",
            )
        if name in cols and _turn_list(rows, name, ("from", "value")):
            return Guess(
                "sharegpt",
                MappingSpec(layout="sharegpt", messages_column=name, image_column=image),
                True,
                f"`{name}` holds from/value turns (ShareGPT format)",
            )
    if {"prompt", "chosen", "rejected"} <= cols:
        return Guess(
            "preference",
            MappingSpec(
                mode="preference",
                user=_col("prompt"),
                chosen=_col("chosen"),
                rejected=_col("rejected"),
                system=_col("system") if "system" in cols else None,
                image_column=image,
            ),
            True,
            "prompt/chosen/rejected columns (preference pairs)",
        )
    if {"instruction", "output"} <= cols:
        return Guess(
            "alpaca",
            MappingSpec(layout="alpaca", image_column=image),
            True,
            "instruction/input/output columns (Alpaca format)",
        )
    for user, answer, name in (
        ("prompt", "completion", "prompt_completion"),
        ("question", "answer", "question_answer"),
    ):
        if {user, answer} <= cols:
            return Guess(
                name,
                MappingSpec(
                    user=_col(user),
                    assistant=_col(answer),
                    system=_col("system") if "system" in cols else None,
                    image_column=image,
                ),
                True,
                f"{user}/{answer} columns",
            )
    if "prompt" in cols and not (cols & set(ANSWER_NAMES)):
        return Guess(
            "prompt_only",
            MappingSpec(mode="prompt_only", user=_col("prompt"), image_column=image),
            True,
            "a prompt column and no answers (prompts for GRPO)",
        )
    if "text" in cols and not (cols & set(ANSWER_NAMES)):
        return Guess(
            "text",
            MappingSpec(mode="language_modeling", text=_col("text")),
            True,
            "a text column (plain text for language modelling)",
        )
    return _best_guess(columns, rows, image)


def _best_guess(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], image: str | None
) -> Guess:
    texts = [c for c in columns if c != image and any(isinstance(r.get(c), str) for r in rows)]
    taken = {image} if image else set()
    user = _first(texts, PROMPT_NAMES, taken)
    answer = _first(texts, ANSWER_NAMES, taken | {user} if user else taken)
    rest = [c for c in texts if c not in {user, answer}]
    user = user or (rest.pop(0) if rest else None)
    answer = answer or (rest.pop(0) if rest else None)
    if user is None or answer is None:
        return Guess(
            "custom",
            None,
            False,
            "no pair of text columns to use as prompt and answer; map them by hand",
        )
    return Guess(
        "custom",
        MappingSpec(user=_col(user), assistant=_col(answer), image_column=image),
        False,
        f"a guess: `{user}` as the prompt, `{answer}` as the answer; check it",
    )
