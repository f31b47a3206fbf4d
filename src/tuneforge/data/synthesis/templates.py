"""Prompt templates that ask a model to write training examples from one chunk of a document,
and the reading of its replies.

There is one task per kind of example; each names the two fields of the JSON objects the model
writes, which are also the columns of the rows made (so the dataset maps with no input):

| task | the model writes | row columns |
| --- | --- | --- |
| `qa` | question/answer pairs about the passage | `question`, `answer` |
| `instructions` | instructions a user might give, with the response | `instruction`, `output` |
| `summaries` | requests to summarise part of it, with the summary | `instruction`, `output` |
| `reasoning` | questions needing a few steps, answered step by step | `question`, `answer` |

A template is text with fields in braces: `{text}` (the chunk, required), `{document}`,
`{section}`, `{pages}` and `{count}` (how many examples to ask for). Other braces are kept as
they are, so a template may show JSON. A reply is read leniently: JSON inside code fences or
prose, a list of objects, one object, objects one per line, or an object holding the list; keys
are matched without regard to case, with common synonyms.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from tuneforge.errors import InvalidInput

Task = Literal["qa", "instructions", "summaries", "reasoning"]
TASKS: tuple[Task, ...] = ("qa", "instructions", "summaries", "reasoning")
FIELDS = ("text", "document", "section", "pages", "count")
MAX_TEMPLATE_CHARS = 8000
MAX_REPLY_CHARS = 200_000  # of a reply, read at most (a runaway model's is cut)
MAX_JSON_STARTS = 500  # places in a reply where JSON is tried, at most
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

_RULES = (
    "Use only facts stated in the passage; do not add outside knowledge. Each {prompt} must "
    "make sense on its own, without seeing the passage (name the subject instead of saying "
    '"the passage" or "the text"). Reply with only a JSON list, without any other text:\n'
)

QA = (
    "You write question/answer pairs for training an assistant, from a passage of "
    '"{document}" (section: {section}; pages: {pages}).\n\n'
    "Passage:\n<<<\n{text}\n>>>\n\n"
    "Write {count} different questions that a reader of this document might ask and that the "
    "passage answers, each with a correct, complete answer in one to three sentences. "
    + _RULES.replace("{prompt}", "question")
    + '[{"question": "...?", "answer": "..."}]'
)
INSTRUCTIONS = (
    "You write instruction/response pairs for training an assistant, from a passage of "
    '"{document}" (section: {section}; pages: {pages}).\n\n'
    "Passage:\n<<<\n{text}\n>>>\n\n"
    "Write {count} different tasks a user of this document might ask an assistant to do (explain, "
    "list, compare, give the steps of, ...), each with the response a helpful expert would "
    "give, based on the passage. " + _RULES.replace("{prompt}", "instruction") + '[{"instruction": '
    '"...", "response": "..."}]'
)
SUMMARIES = (
    "You write summarisation examples for training an assistant, from a passage of "
    '"{document}" (section: {section}; pages: {pages}).\n\n'
    "Passage:\n<<<\n{text}\n>>>\n\n"
    "Write {count} requests to summarise what this document says about a topic of the passage "
    "(the whole passage, or one part of it), each with a faithful summary of two to five "
    "sentences that keeps the document's own terms, names and numbers. "
    + _RULES.replace("{prompt}", "request")
    + '[{"instruction": '
    '"Summarise what ... says about ...", "summary": "..."}]'
)
REASONING = (
    "You write reasoning examples for training an assistant, from a passage of "
    '"{document}" (section: {section}; pages: {pages}).\n\n'
    "Passage:\n<<<\n{text}\n>>>\n\n"
    "Write {count} different questions whose answer takes a few steps of reasoning over facts "
    "in the passage (combining facts, applying a rule, a calculation). For each, reason step "
    "by step, then give the final answer. "
    + _RULES.replace("{prompt}", "question")
    + '[{"question": "...?", "reasoning": "Step 1: ... Step 2: ...", "answer": "..."}]'
)


@dataclass(frozen=True)
class Shape:
    """What a task's examples hold: the row's prompt and answer columns, and the keys the
    model may write each under (the first is what the default template asks for)."""

    prompt: str
    answer: str
    prompt_keys: tuple[str, ...]
    answer_keys: tuple[str, ...]
    template: str
    asks_question: bool  # the prompt is a question (it should end with "?")


SHAPES: dict[Task, Shape] = {
    "qa": Shape(
        "question", "answer", ("question", "q", "prompt"), ("answer", "a", "response"), QA, True
    ),
    "instructions": Shape(
        "instruction",
        "output",
        ("instruction", "prompt", "task", "request", "question"),
        ("response", "output", "answer", "completion"),
        INSTRUCTIONS,
        False,
    ),
    "summaries": Shape(
        "instruction",
        "output",
        ("instruction", "request", "prompt", "question"),
        ("summary", "output", "response", "answer"),
        SUMMARIES,
        False,
    ),
    "reasoning": Shape(
        "question",
        "answer",
        ("question", "q", "prompt", "problem"),
        ("answer", "final_answer", "final answer", "response"),
        REASONING,
        True,
    ),
}
_REASONING_KEYS = ("reasoning", "steps", "explanation", "rationale", "thinking")
_LIST_KEYS = ("pairs", "examples", "items", "questions", "data", "results")


def check_template(template: str) -> str:
    """`template` if every field it names is known and it has `{text}`; `InvalidInput` saying
    what is wrong otherwise."""
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidInput(
            f"The template is {len(template):,} characters long; at most "
            f"{MAX_TEMPLATE_CHARS:,} are allowed.",
            {"fields": ["template"]},
        )
    named = _FIELD.findall(template)
    unknown = sorted({name for name in named if name not in FIELDS})
    if unknown:
        raise InvalidInput(
            f"The template names unknown field(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"the fields are {', '.join('{' + f + '}' for f in FIELDS)}.",
            {"fields": ["template"]},
        )
    if "text" not in named:
        raise InvalidInput(
            "The template must contain {text}, where the chunk's text goes; without it the "
            "model never sees the document.",
            {"fields": ["template"]},
        )
    return template


def render(template: str, values: dict[str, str]) -> str:
    """`template` with each known `{field}` replaced by its value (other braces kept)."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass(frozen=True)
class Reply:
    """What was read from one reply: the (prompt, answer) pairs, and how many objects were
    found that were not usable pairs (a missing or empty field, not text)."""

    pairs: list[tuple[str, str]]
    unusable: int
    found_json: bool  # the reply held JSON objects at all


def parse_reply(text: str, task: Task) -> Reply:
    """The pairs in a model's reply for `task` (see the module's docstring for what is read)."""
    shape = SHAPES[task]
    objects, found = _objects(text[:MAX_REPLY_CHARS])
    pairs: list[tuple[str, str]] = []
    unusable = 0
    for item in objects:
        pair = _pair(item, shape)
        if pair is None:
            unusable += 1
        else:
            pairs.append(pair)
    return Reply(pairs, unusable, found)


def _objects(text: str) -> tuple[list[Any], bool]:
    """The JSON objects in `text`: every JSON value that starts at a `[` or `{` and is not
    inside an earlier one (a list that does not parse is read object by object), flattened;
    and whether there was any."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position, tries = 0, 0
    while tries < MAX_JSON_STARTS:
        starts = [i for i in (text.find("[", position), text.find("{", position)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        values.append(value)
        position = end
    items: list[Any] = []
    for value in values:
        items.extend(_items(value))
    return items, bool(items)


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for element in value for item in _items(element)]
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in _LIST_KEYS:
            if isinstance(lowered.get(key), list):
                return _items(lowered[key])
        return [value]
    return []  # a number or a string in the prose ("[1]") is no example


def _pair(item: Any, shape: Shape) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    lowered = {str(k).strip().lower(): v for k, v in item.items()}
    prompt = _first_text(lowered, shape.prompt_keys)
    answer = _first_text(lowered, shape.answer_keys)
    steps = _first_text(lowered, _REASONING_KEYS)
    if steps and answer and shape is SHAPES["reasoning"]:
        answer = f"{steps}\n\nAnswer: {answer}"
    elif steps and not answer:
        answer = steps
    if not prompt or not answer:
        return None
    return prompt, answer


def _first_text(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = item.get(key)
        if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            value = "\n".join(str(v) for v in value)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value).strip()
            if text:
                return text
    return ""
