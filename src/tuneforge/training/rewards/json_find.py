"""The JSON in a completion, as the JSON graders look for it: the whole completion (a Markdown
code fence around it allowed, see `evaluation/metrics/json_output.parse_json`) or, when text
surrounds it, the first fenced code block that parses, then the first `{...}` or `[...]`.
Every step is linear in the text, and only the first few openings are tried."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from tuneforge.evaluation.metrics.json_output import parse_json

FENCE = "```"
MAX_TRIES = 20  # fenced blocks and opening brackets tried before giving up


@dataclass(frozen=True)
class Found:
    """What the search found: `value` when `ok`, else `reason` says why there is none."""

    ok: bool
    value: Any = None
    reason: str = ""


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _decode(text: str, start: int = 0) -> Any:
    """The JSON value that begins at `start`; ValueError when none does."""
    try:
        return _DECODER.raw_decode(text, start)[0]
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _fenced_blocks(text: str) -> list[str]:
    """The contents of the text's first fenced code blocks, without their language line."""
    blocks: list[str] = []
    start = text.find(FENCE)
    while start >= 0 and len(blocks) < MAX_TRIES:
        end = text.find(FENCE, start + len(FENCE))
        if end < 0:
            break
        body = text[start + len(FENCE) : end]
        first_line, newline, rest = body.partition("\n")
        blocks.append(rest if newline and first_line.strip().isalpha() else body)
        start = text.find(FENCE, end + len(FENCE))
    return blocks


def _first_bracketed(text: str) -> Found | None:
    position, tries = 0, 0
    while tries < MAX_TRIES:
        openings = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not openings:
            return None
        start = min(openings)
        try:
            value = _decode(text, start)
        except ValueError:
            position, tries = start + 1, tries + 1
            continue
        return Found(True, value, "JSON found inside the text")
    return None


def find_json(text: str, *, whole: bool) -> Found:
    """The completion's JSON: with `whole`, only the whole text counts."""
    try:
        return Found(True, parse_json(text.strip()), "the whole completion is JSON")
    except ValueError as error:
        if whole:
            return Found(False, reason=f"the completion is not JSON ({error})")
    for block in _fenced_blocks(text):
        try:
            return Found(True, parse_json(block), "JSON in a code block")
        except ValueError:
            continue
    return _first_bracketed(text) or Found(False, reason="no JSON found in the completion")
