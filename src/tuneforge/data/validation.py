"""The validation report: every problem over all rows, with counts and the first examples."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Hashable
from typing import Any, Literal

from pydantic import BaseModel, Field

EXAMPLES = 5
PREVIEW_CHARS = 200
DESCRIPTIONS = {
    "missing_field": "A field the mapping needs is missing.",
    "empty_field": "A field is empty or only whitespace.",
    "non_text": "A value that should be text is something else (a list, an object, ...).",
    "unknown_role": "A turn has a role that is not system, user or assistant, nor a tool call "
    "or result.",
    "role_order": "Turns are out of order: Gemma wants a user turn first, then user and "
    "assistant taking turns.",
    "empty_assistant": "An answer (assistant turn) is empty.",
    "empty_answer": "A preference answer or a feedback completion is empty (the detail says "
    "which side).",
    "missing_answer": "A preference answer or a feedback completion is missing (the detail says "
    "which side).",
    "identical_answers": "The chosen and rejected answers are the same once whitespace is "
    "normalised: the pair teaches nothing.",
    "prompt_mismatch": "The chosen and rejected conversations do not share their prompt turns.",
    "bad_label": "A feedback label is not one of true/false, 1/0, yes/no, good/bad, thumbs "
    "up/down.",
    "image_missing": "An image cannot be found (not in the upload, no value, or fewer images "
    "than <image> places in the text).",
    "image_surplus": "A row has more images than places for them (<image> in the text or image "
    "parts in the turns).",
    "image_url": "An image is given as a URL; the server never fetches URLs.",
    "image_undecodable": "An image cannot be decoded (truncated or corrupt).",
    "image_too_large": "An image is larger than the limits (bytes, or pixels read from its "
    "header).",
    "image_type": "A file that is not a PNG, JPEG, GIF, WebP, BMP or TIFF image (SVG is refused).",
    "bad_tools": "The tools column is not a list of tool definitions (each with a name and, "
    "optionally, a description and a JSON schema of its parameters), as a list or JSON text.",
    "bad_tool_call": "A tool call cannot be read: it is not JSON, or it names no tool.",
    "undefined_tool": "A call names a tool that is not among the row's tools.",
    "bad_arguments": "A call's arguments are not JSON, or not a JSON object.",
    "arguments_schema": "A call's arguments do not match the JSON schema of the tool's "
    "parameters (a required argument missing, a wrong type, ...).",
    "orphan_result": "A tool result (observation) with no call before it.",
    "extra_results": "More tool results than there were calls before them.",
    "unanswered_call": "The conversation ends on a tool call or a tool result, with no answer "
    "from the assistant after it.",
    "tool_calls_unsupported": "Tool calls are trained in the conversation mode; other modes "
    "cannot hold them (prompt_only keeps the tools column).",
    "too_long": "An example is longer than the maximum length in Gemma tokens.",
    "duplicate": "An exact duplicate of an earlier example.",
    "duplicate_normalised": "A duplicate of an earlier example once case and spaces are ignored.",
}
DUPLICATES = ("duplicate", "duplicate_normalised")


class ProblemExample(BaseModel):
    row: int = Field(description="The row number in the source (0-based).")
    detail: str = Field(description="What is wrong in this row.")
    value: str = Field(description="The start of the row, to find it.")


class Problem(BaseModel):
    code: str = Field(description="Which check found it.")
    description: str = Field(description="What the problem means.")
    count: int = Field(description="How many rows have it.")
    examples: list[ProblemExample] = Field(description="The first rows that have it.")


class ValidationReport(BaseModel):
    rows_in: int = Field(description="Rows read from the source (after sampling).")
    rows_out: int = Field(description="Rows kept in the processed dataset.")
    dropped: int = Field(description="Rows left out because of a problem.")
    policy: Literal["drop", "fail"] = Field(description="What happens to rows with problems.")
    problems: list[Problem] = Field(description="Each problem found, most frequent first.")

    @property
    def ok(self) -> bool:
        return not self.problems


def _binary_digest(value: Any) -> str:
    """Bytes (an image) as a short digest, anything else as its repr."""
    if isinstance(value, bytes | bytearray):
        return "bytes:" + hashlib.blake2b(value, digest_size=16).hexdigest()
    return repr(value)


def _binary_size(value: Any) -> str:
    """Bytes (an image) as their size, never their content; anything else as its repr."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value):,} bytes>"
    return repr(value)[:PREVIEW_CHARS]


_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=_binary_digest)
_PREVIEW = json.JSONEncoder(ensure_ascii=False, default=_binary_size)


def normalised_text(text: str) -> str:
    """`text` lower-cased, trimmed, and every run of whitespace made one space."""
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text.lower()  # its only whitespace is single spaces between words: the usual case
    return " ".join(text.lower().split())


def _normalised(value: Any) -> Any:
    """The value with every text normalised (`normalised_text`)."""
    if isinstance(value, str):
        return normalised_text(value)
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def _digest(value: Any) -> bytes:
    return hashlib.blake2b(_CANONICAL.encode(value).encode(), digest_size=16).digest()


def duplicate_keys(value: Any) -> tuple[bytes, bytes]:
    """Keys under which `value` (a record, or part of one) is the same as another: exactly, and
    once case and spaces are ignored. Equal keys mean equal canonical JSON."""
    return _digest(value), _digest(_normalised(value))


class ReportBuilder:
    """Collects problems row by row; also finds exact and normalised duplicates."""

    def __init__(self, policy: Literal["drop", "fail"], drop_duplicates: bool) -> None:
        self.policy = policy
        self.drop_duplicates = drop_duplicates
        self.rows_in = 0
        self.rows_out = 0
        self._counts: dict[str, int] = defaultdict(int)
        self._examples: dict[str, list[ProblemExample]] = defaultdict(list)
        self._seen: set[Hashable] = set()
        self._seen_normalised: set[Hashable] = set()

    def duplicate_problems(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        """Whether `record` repeats an earlier one (remembering it otherwise)."""
        return self.duplicate_of(*duplicate_keys(record))

    def duplicate_of(self, exact: Hashable, loose: Hashable) -> list[tuple[str, str]]:
        """Whether a record with these keys (see `duplicate_keys`) repeats an earlier one
        (remembering it otherwise). One run must key all its records the same way."""
        if exact in self._seen:
            return [("duplicate", "the same as an earlier row")]
        self._seen.add(exact)
        if loose in self._seen_normalised:
            return [("duplicate_normalised", "the same as an earlier row but for case/spaces")]
        self._seen_normalised.add(loose)
        return []

    def wants_example(self, problems: list[tuple[str, str]]) -> bool:
        """Whether `add` would keep one of these problems as an example (and so show the row)."""
        return any(len(self._examples.get(code, ())) < EXAMPLES for code, _ in problems)

    def add(self, row: int, problems: list[tuple[str, str]], preview: Any) -> bool:
        """Record a row's problems; returns whether the row is kept. `preview` (the row) is
        only shown when `wants_example(problems)`."""
        self.rows_in += 1
        for code, detail in problems:
            self._counts[code] += 1
            if len(self._examples[code]) < EXAMPLES:
                shown = preview if isinstance(preview, str) else _PREVIEW.encode(preview)
                self._examples[code].append(
                    ProblemExample(row=row, detail=detail, value=shown[:PREVIEW_CHARS])
                )
        blocking = [c for c, _ in problems if c not in DUPLICATES or self.drop_duplicates]
        kept = not blocking
        self.rows_out += kept
        return kept

    def finish(self) -> ValidationReport:
        problems = [
            Problem(
                code=code,
                description=DESCRIPTIONS.get(code, code),
                count=count,
                examples=self._examples[code],
            )
            for code, count in sorted(self._counts.items(), key=lambda item: -item[1])
        ]
        return ValidationReport(
            rows_in=self.rows_in,
            rows_out=self.rows_out,
            dropped=self.rows_in - self.rows_out,
            policy=self.policy,
            problems=problems,
        )
