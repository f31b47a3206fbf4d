"""What preference and feedback rows need beyond turns: labels read strictly, answers compared,
and the prompt two whole conversations share.

A feedback label says whether a completion is desirable. It is read strictly: booleans, 1/0 and
the words below (any case, spaces and underscores alike); anything else is no label at all, so a
typo never flips a row's meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.data.conversation import Message, text_of

DESIRABLE = frozenset({"true", "1", "yes", "good", "desirable", "thumbs up", "up", "+1", "👍"})
UNDESIRABLE = frozenset(
    {"false", "0", "no", "bad", "undesirable", "thumbs down", "down", "-1", "👎"}
)
Problems = list[tuple[str, str]]


def parse_label(value: Any) -> bool | None:
    """The label `value` as True (desirable) or False (undesirable); None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return True if value == 1 else False if value in (0, -1) else None
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in ("+1", "-1"):
            word = " ".join(word.replace("_", " ").replace("-", " ").split())
        if word in DESIRABLE:
            return True
        if word in UNDESIRABLE:
            return False
    return None


def spaced(text: str) -> str:
    """`text` with every run of whitespace made one space, trimmed (case kept)."""
    return " ".join(text.split())


def same_answer(chosen: Message, rejected: Message) -> bool:
    """Whether two answers say the same once whitespace is normalised."""
    return spaced(text_of(chosen)) == spaced(text_of(rejected))


def _said(turns: Sequence[Message]) -> list[tuple[str, str]]:
    return [(turn["role"], spaced(text_of(turn))) for turn in turns]


def split_pair(
    chosen: list[Message], rejected: list[Message], problems: Problems
) -> tuple[list[Message], list[Message], list[Message]]:
    """The prompt and the two answers of a pair whose sides are whole conversations: each
    answer is its side's last turn (an assistant turn) and the prompt the turns before it, which
    both sides must share (`prompt_mismatch` otherwise)."""
    ended = [bool(side) and side[-1]["role"] == "assistant" for side in (chosen, rejected)]
    for name, side, done in (("chosen", chosen, ended[0]), ("rejected", rejected, ended[1])):
        if side and not done:
            problems.append(
                ("missing_answer", f"the {name} conversation does not end with an answer")
            )
    if all(ended) and _said(chosen[:-1]) != _said(rejected[:-1]):
        problems.append(
            ("prompt_mismatch", "the chosen and rejected conversations start with different turns")
        )
    # The prompt is an answered side's turns before its answer (else, reported above, all there is).
    prompt = chosen[:-1] if ended[0] else rejected[:-1] if ended[1] else chosen or rejected
    return prompt, chosen[-1:] if ended[0] else [], rejected[-1:] if ended[1] else []


def filled(answer: list[Message], name: str, problems: Problems) -> list[Message]:
    """`answer` (one assistant message, or none), or none with `empty_answer` when it is blank."""
    if answer and not text_of(answer[0]).strip():
        problems.append(("empty_answer", f"the {name} answer is empty"))
        return []
    return answer


def prompt_ends_with_user(turns: list[Message], problems: Problems) -> None:
    if turns and turns[-1]["role"] != "user":
        problems.append(("role_order", "the prompt does not end with a user turn"))
