"""Recognising the common dataset formats, so most uploads need no mapping at all.

`guess_mapping` looks at the column names and a few rows and proposes a `MappingSpec`: exactly the
right one for the formats below, and a best guess (to confirm) for anything else. Preference
pairs come first (their prompt often sits in a turns column that alone would read as a chat),
then unpaired feedback (a completion with a desirable/undesirable label), then chats (prompts
only when every conversation ends with the user's turn), then the column layouts. A column
named `tools` (or `functions`) holding tool definitions becomes the tools column of a chat or
prompt-only mapping, so function-calling sets (OpenAI `tool_calls`, ShareGPT `function_call` and
`observation` turns) need no mapping either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.data.mapping import FieldSource, Layout, MappingSpec
from tuneforge.data.pairs import parse_label
from tuneforge.data.tool_calls import CALL_KEYS, parse_tools

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
IMAGE_NAMES = (
    "image",
    "images",
    "image_path",
    "image_file",
    "img",
    "picture",
    "photo",
    "file_name",
    "filename",
    "path",
)
# An image dataset's one text column: what the model should say about each image.
CAPTION_NAMES = ("caption", "text", "description", "alt_text", "title", "sentence")
CLASS_NAMES = ("label", "class", "category", "answer", "name", "colour", "color", "shape")
CAPTION_PROMPT = "Describe this image."
CLASS_PROMPT = "What is in this image?"
IMAGE_FILE = re.compile(r"(?i)\.(png|jpe?g|gif|webp|bmp|tiff?|svg)$")
TURN_COLUMNS = ("messages", "conversations", "conversation", "chat")
PAIR_COLUMNS = (  # (better, worse); response_j/response_k as in StackExchange preference dumps
    ("chosen", "rejected"),
    ("chosen_response", "rejected_response"),
    ("response_j", "response_k"),
)
PAIR_PROMPTS = ("prompt", "question", "instruction", "input", "query")
LABEL_NAMES = ("label", "desirable", "feedback")
LABELS_READABLE = 0.9  # the share of sampled labels that must read as desirable or not
COMPLETION_NAMES = ("completion", "response", "output", "answer")
# Columns a prompt-only dataset keeps for graders to compare completions with.
REFERENCE_NAMES = ("answer", "solution", "label", "schema", "reference", "ground_truth", "target")
SFT_ANSWERS = frozenset(ANSWER_NAMES) - frozenset(REFERENCE_NAMES)
TURN_KEYS: dict[Layout, tuple[str, str]] = {
    "messages": ("role", "content"),
    "sharegpt": ("from", "value"),
}
USER_ROLES = frozenset({"user", "human"})
TOOLS_NAMES = ("tools", "functions")
TOOLS_MODES = frozenset({"conversation", "prompt_only"})


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
            isinstance(t, dict) and keys[0] in t and (keys[1] in t or _calls(t)) for t in value
        ):
            return False
        seen = True
    return seen


def _calls(turn: Mapping[str, Any]) -> bool:
    """Whether an OpenAI turn calls tools (its content may then be left out)."""
    return any(turn.get(key) for key in CALL_KEYS)


def _turn_style(rows: Sequence[Mapping[str, Any]], column: str) -> Layout | None:
    """`messages` or `sharegpt` when `column` holds lists of such turns in the sample."""
    return next(
        (style for style, keys in TURN_KEYS.items() if _turn_list(rows, column, keys)), None
    )


def _turns(value: Any) -> list[dict[str, Any]]:
    """`value` as a list of turns: a list as it is, one turn as a list of it."""
    if isinstance(value, dict):
        return [value]
    return value if isinstance(value, list) else []


def _role(turn: Any) -> str:
    return str(turn.get("role", turn.get("from", ""))).lower() if isinstance(turn, dict) else ""


def _sampled(rows: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    return [row[column] for row in rows if row.get(column) is not None]


def _answer_form(rows: Sequence[Mapping[str, Any]], column: str) -> str | None:
    """How a preference column holds its answers in the sample: `text`, `turns` (one turn or a
    list of turns) or `conversation` (turns with the user's among them); None for anything else."""
    values = _sampled(rows, column)
    if values and all(isinstance(v, str) for v in values):
        return "text"
    turns = [_turns(v) for v in values]
    if not values or not all(t and all(_role(turn) for turn in t) for t in turns):
        return None
    if all(any(_role(turn) in USER_ROLES for turn in t) for t in turns):
        return "conversation"
    return "turns"


def _ends_with(rows: Sequence[Mapping[str, Any]], column: str, user: bool) -> bool:
    """Whether every sampled conversation in `column` ends with a user turn (`user`) or not."""
    values = _sampled(rows, column)
    return bool(values) and all(
        bool(v) and (_role(v[-1]) in USER_ROLES) == user for v in map(_turns, values)
    )


def _first(columns: Sequence[str], names: Sequence[str], taken: set[str]) -> str | None:
    lowered = {c.lower(): c for c in columns if c not in taken}
    return next((lowered[n] for n in names if n in lowered), None)


def _prompt(columns: Sequence[str], taken: set[str]) -> tuple[FieldSource, str] | None:
    """The prompt's source among `columns` (not `taken`) and its name: a prompt-like column, or
    Alpaca's instruction with its input below it."""
    prompt = _first(columns, PAIR_PROMPTS, taken)
    extra = _first(columns, ("input",), taken | ({prompt} if prompt else set()))
    if prompt is None:
        return None
    if prompt.lower() == "instruction" and extra is not None:
        return FieldSource(template=f"{{{prompt}}}\n\n{{{extra}}}"), f"`{prompt}` and `{extra}`"
    return _col(prompt), f"`{prompt}`"


def _system(columns: Sequence[str]) -> FieldSource | None:
    column = _first(columns, ("system",), set())
    return _col(column) if column else None


def _preference(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], image: str | None
) -> Guess | None:
    """Preference pairs: a chosen and a rejected column, with the prompt in a turns column, a
    prompt column, or (implicit prompt) inside both sides' conversations."""
    for chosen_name, rejected_name in PAIR_COLUMNS:
        chosen = _first(columns, (chosen_name,), set())
        rejected = _first(columns, (rejected_name,), set())
        if chosen and rejected:
            return _pair(columns, rows, image, chosen, rejected)
    return None


def _pair(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    image: str | None,
    chosen: str,
    rejected: str,
) -> Guess | None:
    """The pair in columns `chosen`/`rejected`, if their answers take a form we read."""
    forms = {_answer_form(rows, chosen), _answer_form(rows, rejected)}
    if None in forms:
        return None
    sides = f"`{chosen}`/`{rejected}` hold the answers"
    for name in TURN_COLUMNS:
        style = _turn_style(rows, name) if name in columns else None
        if style is not None and forms <= {"text", "turns"}:
            return Guess(
                "preference",
                MappingSpec(
                    mode="preference",
                    layout=style,
                    messages_column=name,
                    chosen=_col(chosen),
                    rejected=_col(rejected),
                    image_column=image,
                ),
                True,
                f"preference pairs: `{name}` holds the prompt's {'/'.join(TURN_KEYS[style])} "
                f"turns, {sides}",
            )
    prompt = _prompt(columns, {chosen, rejected})
    if prompt is not None and forms <= {"text", "turns"}:
        return Guess(
            "preference",
            MappingSpec(
                mode="preference",
                user=prompt[0],
                chosen=_col(chosen),
                rejected=_col(rejected),
                system=_system(columns),
                image_column=image,
            ),
            True,
            f"preference pairs: the prompt comes from {prompt[1]}, {sides}",
        )
    if forms == {"conversation"}:
        return Guess(
            "preference",
            MappingSpec(
                mode="preference",
                implicit_prompt=True,
                chosen=_col(chosen),
                rejected=_col(rejected),
                image_column=image,
            ),
            True,
            f"preference pairs with an implicit prompt: `{chosen}` and `{rejected}` each hold "
            "a whole conversation; the prompt is the turns they share",
        )
    return None


def _feedback(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], image: str | None
) -> Guess | None:
    """Unpaired feedback: a completion and a label that reads as desirable or undesirable."""
    label = _first(columns, LABEL_NAMES, set())
    values = _sampled(rows, label) if label else []
    readable = sum(parse_label(v) is not None for v in values)
    if label is None or not values or readable < LABELS_READABLE * len(values):
        return None
    said = f"`{label}` says whether it is desirable (feedback for KTO)"
    prompt = _prompt(columns, {label})
    taken = {label} | ({prompt[0].column} if prompt and prompt[0].column else set())
    completion = _first(columns, COMPLETION_NAMES, taken)
    for name in TURN_COLUMNS:
        style = _turn_style(rows, name) if name in columns else None
        answered = style is not None and _ends_with(rows, name, user=False)
        uses = None if answered else completion  # a completion column, else the last turn
        if style is None or not (answered or uses):
            continue
        where = f"`{uses}` the completion" if uses else "their last turn the completion"
        return Guess(
            "feedback",
            MappingSpec(
                mode="feedback",
                layout=style,
                messages_column=name,
                completion=_col(uses) if uses else None,
                label=_col(label),
                image_column=image,
            ),
            True,
            f"`{name}` holds the conversations, {where}, {said}",
        )
    if prompt is None or completion is None:
        return None
    return Guess(
        "feedback",
        MappingSpec(
            mode="feedback",
            user=prompt[0],
            completion=_col(completion),
            label=_col(label),
            system=_system(columns),
            image_column=image,
        ),
        True,
        f"the prompt comes from {prompt[1]}, `{completion}` is the completion, {said}",
    )


def _chat(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], image: str | None
) -> Guess | None:
    """A turns column: chats to learn from, or prompts when every one ends with the user."""
    for name in TURN_COLUMNS:
        style = _turn_style(rows, name) if name in columns else None
        if style is None:
            continue
        keys = "role/content turns (OpenAI/TRL format)"
        if style == "sharegpt":
            keys = "from/value turns (ShareGPT format)"
        if _ends_with(rows, name, user=True) and not set(columns) & SFT_ANSWERS:
            kept = [c for c in columns if c not in {name, image}]
            return Guess(
                "prompt_only",
                MappingSpec(
                    mode="prompt_only",
                    layout=style,
                    messages_column=name,
                    image_column=image,
                ),
                True,
                f"`{name}` holds {keys} ending with the user's turn: prompts for GRPO"
                + (f"; kept for graders: {', '.join(kept)}" if kept else ""),
            )
        return Guess(
            style,
            MappingSpec(layout=style, messages_column=name, image_column=image),
            True,
            f"`{name}` holds {keys}",
        )
    return None


def _holds_images(values: list[Any]) -> bool:
    """Whether sampled values are images: bytes, `{bytes, path}` structs, image file names or
    data: URLs (or lists of them)."""
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    if not flat:
        return False
    for value in flat:
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, bytes | bytearray):
            continue
        if not isinstance(value, str):
            return False
        if not (IMAGE_FILE.search(value) or value.startswith("data:image/")):
            return False
    return True


def image_column(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The column holding each row's image(s): by its name, else by its values."""
    named = _first(columns, IMAGE_NAMES, set())
    if named is not None:
        return named
    return next((c for c in columns if _holds_images(_sampled(rows, c))), None)


def _described(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], image: str
) -> Guess | None:
    """Images with one column saying what each shows: a caption to write or a class to name."""
    texts = [c for c in columns if c != image]
    for names, prompt, kind in (
        (CAPTION_NAMES, CAPTION_PROMPT, "image_caption"),
        (CLASS_NAMES, CLASS_PROMPT, "image_label"),
    ):
        column = _first(texts, names, set())
        if column is None or not _sampled(rows, column):
            continue
        what = "a caption" if kind == "image_caption" else "the answer (a label)"
        return Guess(
            kind,
            MappingSpec(
                user=FieldSource(template=prompt),
                assistant=_col(column),
                system=_system(columns),
                image_column=image,
            ),
            True,
            f"images in `{image}` with {what} in `{column}`: the user shows the image and asks "
            f'"{prompt}" (change the prompt to suit), the model answers with `{column}`',
        )
    return None


def tools_column(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The column named `tools` (or `functions`) when every sampled value reads as tool
    definitions (a list, or JSON text of one; empty ones too, as rows further on may define
    some)."""
    name = _first(columns, TOOLS_NAMES, set())
    if name is None:
        return None
    problems: list[tuple[str, str]] = []
    values = _sampled(rows, name)
    for value in values:
        parse_tools(value, problems)
    return name if values and not problems else None


def guess_mapping(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Guess:
    """Recognise the format from `columns` and a sample of `rows`; a chat or prompt-only
    mapping takes a tools column when there is one."""
    guess = _guess(columns, rows)
    tools = tools_column(columns, rows)
    if tools is None or guess.mapping is None or guess.mapping.mode not in TOOLS_MODES:
        return guess
    return Guess(
        guess.format,
        guess.mapping.model_copy(update={"tools_column": tools}),
        guess.sure,
        f"{guess.reason}; `{tools}` holds the tools they may call",
    )


def _guess(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Guess:
    cols = set(columns)
    image = image_column(columns, rows)
    for recognise in (_preference, _feedback, _chat):
        guess = recognise(columns, rows, image)
        if guess is not None:
            return guess
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
    described = _described(columns, rows, image) if image is not None else None
    if described is not None and not cols & {"prompt", "question", "instruction", "query"}:
        return described
    if "prompt" in cols and not (cols & SFT_ANSWERS):
        kept = [c for c in columns if c not in {"prompt", image}]
        return Guess(
            "prompt_only",
            MappingSpec(mode="prompt_only", user=_col("prompt"), image_column=image),
            True,
            "a prompt column and no answers (prompts for GRPO)"
            + (f"; kept for graders: {', '.join(kept)}" if kept else ""),
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
