"""The processing config's mapping: how one source row becomes a Gemma conversation.

A mapping has a processing `mode` (what training needs) and a `layout` (how the source stores
turns): a column of OpenAI/TRL `messages`, a column of ShareGPT `conversations`, Alpaca columns,
or `fields`, where each role comes from a column or a template over columns. `RowMapper.map`
turns a row into the processed record and lists every problem it found instead of stopping at the
first. Preference answers and feedback completions come from their own columns whatever the
layout (a text, one turn, or a list of turns), or, with `implicit_prompt`, from two whole
conversations that share their prompt turns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.data.conversation import Message, Part, Role, message, text_of
from tuneforge.data.image_refs import (
    ImageResolver,
    RowImages,
    inline_reference,
    place_images,
    pooled,
    row_image,
)
from tuneforge.data.images import ImageFacts
from tuneforge.data.pairs import (
    Problems,
    filled,
    parse_label,
    prompt_ends_with_user,
    same_answer,
    split_pair,
)
from tuneforge.data.templates import Template, parse_template
from tuneforge.errors import InvalidInput

Mode = Literal["conversation", "prompt_only", "preference", "feedback", "language_modeling"]
Layout = Literal["messages", "sharegpt", "alpaca", "fields"]

# The fields that take their text from a column or a template (`FieldSource`).
SOURCE_FIELDS = ("system", "user", "assistant", "chosen", "rejected", "completion", "label", "text")
# What each mode reads in the `fields` layout, besides an optional system field.
FIELDS_NEEDED: dict[str, tuple[str, ...]] = {
    "conversation": ("user", "assistant"),
    "prompt_only": ("user",),
    "preference": ("user", "chosen", "rejected"),
    "feedback": ("user", "completion", "label"),
    "language_modeling": ("text",),
}
# What each mode reads besides the turns column in the messages/sharegpt layouts.
TURNS_NEEDED: dict[str, tuple[str, ...]] = {
    "preference": ("chosen", "rejected"),
    "feedback": ("label",),
}

ROLE_NAMES: dict[str, Role] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
}


class FieldSource(BaseModel):
    """Where one part of the conversation comes from: a column, or a template over columns."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, description="Take the text from this column.")
    template: str | None = Field(
        default=None, description="Build the text from columns, e.g. `Classify: {review}`."
    )

    @model_validator(mode="after")
    def _one(self) -> FieldSource:
        if (self.column is None) == (self.template is None):
            raise ValueError("give either a column or a template")
        return self


class MappingSpec(BaseModel):
    """How rows become conversations. Formats we recognise get this filled in automatically."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(
        default="conversation",
        description=(
            "`conversation`: prompts and answers for supervised fine-tuning; `prompt_only`: "
            "prompts for GRPO (other columns are kept for graders); `preference`: a prompt with "
            "a chosen and a rejected answer (DPO, ORPO, KTO); `feedback`: a prompt with one "
            "completion labelled desirable or not (KTO); `language_modeling`: plain text."
        ),
    )
    layout: Layout = Field(
        default="fields",
        description=(
            "How the source stores turns: `messages` (OpenAI/TRL role/content list), `sharegpt` "
            "(from/value list), `alpaca` (instruction/input/output), or `fields` (one column or "
            "template per role)."
        ),
    )
    messages_column: str | None = Field(
        default=None,
        description=(
            "The column holding the turns (layouts messages/sharegpt). For preference data it "
            "holds the prompt, ending with the user's turn; for feedback data, the prompt and, "
            "unless a completion field is given, the completion as its last turn."
        ),
    )
    system: FieldSource | None = Field(default=None, description="The system prompt, per row.")
    system_prompt: str | None = Field(
        default=None, description="One system prompt for every row (when no system field)."
    )
    user: FieldSource | None = Field(default=None, description="The user's turn (the prompt).")
    assistant: FieldSource | None = Field(
        default=None, description="The assistant's turn (the answer to learn)."
    )
    chosen: FieldSource | None = Field(
        default=None,
        description=(
            "The preferred answer (preference): a text, one turn, or a list of turns whose last "
            "assistant turn is the answer."
        ),
    )
    rejected: FieldSource | None = Field(
        default=None, description="The worse answer (preference), in the same forms as chosen."
    )
    implicit_prompt: bool = Field(
        default=False,
        exclude_if=lambda on: not on,  # stored mappings name it only when it is on
        description=(
            "Preference, fields layout: chosen and rejected each hold a whole conversation (the "
            "same prompt turns, then the answer). The prompt is the turns they share; each "
            "answer is its conversation's last turn. Leave user empty."
        ),
    )
    completion: FieldSource | None = Field(
        default=None,
        description=(
            "The completion the label judges (feedback): a text, one turn, or a list of turns. "
            "In the messages/sharegpt layouts it may be left empty: the conversation's last "
            "turn is then the completion."
        ),
    )
    label: FieldSource | None = Field(
        default=None,
        description=(
            "Whether the completion is desirable (feedback): true/false, 1/0, yes/no, good/bad, "
            "thumbs up/down. Any other value is a row problem."
        ),
    )
    text: FieldSource | None = Field(default=None, description="The text (language modelling).")
    image_column: str | None = Field(
        default=None,
        description=(
            "A column with the row's image, or a list of its images: each a path inside the "
            "uploaded ZIP, a data: URL or base64 text, bytes, or a Parquet/HF image "
            "`{bytes, path}`. The n-th `<image>` in the text (or image part without its own "
            "image) takes the n-th image; with none, the images open the first user turn. URLs "
            "are never fetched."
        ),
    )

    @model_validator(mode="after")
    def _complete(self) -> MappingSpec:
        if self.layout in ("messages", "sharegpt") and not self.messages_column:
            raise ValueError(f"the {self.layout} layout needs messages_column")
        if self.implicit_prompt and (self.mode, self.layout) != ("preference", "fields"):
            raise ValueError("implicit_prompt is for the preference mode in the fields layout")
        if self.implicit_prompt and self.user is not None:
            raise ValueError("with implicit_prompt the prompt comes from chosen and rejected")
        needed = TURNS_NEEDED.get(self.mode, ())
        if self.layout == "fields":
            needed = FIELDS_NEEDED[self.mode]
            if self.implicit_prompt:
                needed = ("chosen", "rejected")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"mode {self.mode} needs {', '.join(missing)}")
        return self


@dataclass
class RowResult:
    """A mapped row: the processed record (None when unusable) and the problems found."""

    record: dict[str, Any] | None
    problems: list[tuple[str, str]] = field(default_factory=list)
    images: list[ImageFacts] = field(default_factory=list)  # the record's images, in order


class RowMapper:
    """A mapping compiled against a table's columns (templates parsed once)."""

    def __init__(self, spec: MappingSpec, columns: list[str], images: ImageResolver | None = None):
        self.spec = spec
        self.columns = columns
        self.images = images
        self._inline: dict[int, Any] = {}  # image parts that carry their own image, by id
        self.fields: dict[str, Template | str] = {}
        for name in SOURCE_FIELDS:
            source: FieldSource | None = getattr(spec, name)
            if source is None:
                continue
            if source.column is not None:
                if source.column not in columns:
                    raise InvalidInput(
                        f"The {name} column {source.column!r} does not exist.", {"columns": columns}
                    )
                self.fields[name] = source.column
            else:
                assert source.template is not None
                self.fields[name] = parse_template(source.template, columns)

    # -- values --------------------------------------------------------------------------------
    def _value(self, row: Mapping[str, Any], name: str, problems: list[tuple[str, str]]) -> Any:
        source = self.fields.get(name)
        if source is None:
            return None
        if isinstance(source, Template):
            return source.render(row)
        value = row.get(source)
        if value is None:
            problems.append(("missing_field", f"{name} ({source}) is missing"))
        return value

    def _text(self, value: Any, what: str, problems: list[tuple[str, str]]) -> str | None:
        if value is None:
            return None
        if type(value) is str:
            text = value
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            problems.append(("non_text", f"{what} is {type(value).__name__}, not text"))
            return None
        else:
            text = str(value)
        if not text or text.isspace():
            problems.append(("empty_field", f"{what} is empty"))
            return None
        return text

    def _images(
        self, row: Mapping[str, Any], turns: list[Message], problems: Problems
    ) -> RowImages:
        column = self.spec.image_column
        pool = pooled(row.get(column)) if column is not None else []
        return place_images(
            turns,
            self._inline,
            pool,
            column,
            lambda value, where, found: row_image(value, where, self.images, found),
            problems,
        )

    # -- turns ---------------------------------------------------------------------------------
    def _turns_from_list(self, value: Any, problems: list[tuple[str, str]]) -> list[Message]:
        if not isinstance(value, list):
            problems.append(("non_text", "the turns column does not hold a list of turns"))
            return []
        preferred = ("from", "value") if self.spec.layout == "sharegpt" else ("role", "content")
        turns: list[Message] = []
        for turn in value:
            if not isinstance(turn, dict):
                problems.append(("non_text", "a turn is not an object"))
                continue
            other = ("role", "content") if preferred[0] == "from" else ("from", "value")
            role_key, text_key = (
                other if other[0] in turn and preferred[0] not in turn else preferred
            )
            role = ROLE_NAMES.get(str(turn.get(role_key, "")).lower())
            if role is None:
                problems.append(("unknown_role", f"unknown role {turn.get(role_key)!r}"))
                continue
            content = turn.get(text_key)
            if isinstance(content, list):
                parts = self._parts(content, problems)
                if parts is not None:
                    turns.append({"role": role, "content": parts})
                continue
            text = self._text(content, f"a {role} turn", problems)
            turns.append(message(role, text or ""))
        return turns

    def _parts(self, content: list[Any], problems: list[tuple[str, str]]) -> list[Part] | None:
        parts: list[Part] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif isinstance(part, dict) and inline_reference(part)[0]:
                image: Part = {"type": "image"}
                reference = inline_reference(part)[1]
                if reference is not None:
                    self._inline[id(image)] = reference
                parts.append(image)
            else:
                problems.append(("non_text", f"unknown content part {str(part)[:60]}"))
                return None
        return parts

    def _alpaca(self, row: Mapping[str, Any], problems: list[tuple[str, str]]) -> list[Message]:
        turns: list[Message] = []
        system = self._text(row.get("system"), "system", []) if row.get("system") else None
        if system:
            turns.append(message("system", system))
        for pair in row.get("history") or []:
            if isinstance(pair, list | tuple) and len(pair) == 2:
                turns += [message("user", str(pair[0])), message("assistant", str(pair[1]))]
        instruction = self._text(row.get("instruction"), "instruction", problems)
        extra = row.get("input")
        prompt = f"{instruction}\n\n{extra}" if instruction and extra else instruction
        turns.append(message("user", prompt or ""))
        output = self._text(row.get("output"), "output", problems)
        turns.append(message("assistant", output or ""))
        return turns

    def _fields(
        self, row: Mapping[str, Any], problems: list[tuple[str, str]], answer: str | None
    ) -> list[Message]:
        turns: list[Message] = []
        system = self._text(self._value(row, "system", problems), "system", problems)
        if system:
            turns.append(message("system", system))
        prompt = self._value(row, "user", problems)
        if isinstance(prompt, list):  # a conversational prompt already
            turns += self._turns_from_list(prompt, problems)
        else:
            turns.append(message("user", self._text(prompt, "user", problems) or ""))
        if answer is not None:
            value = self._value(row, answer, problems)
            turns += self._answer(value, answer, problems)
        return turns

    def _answer(self, value: Any, what: str, problems: list[tuple[str, str]]) -> list[Message]:
        if isinstance(value, list):
            return [t for t in self._turns_from_list(value, problems) if t["role"] == "assistant"]
        return [message("assistant", self._text(value, what, problems) or "")]

    # -- preference and feedback answers -------------------------------------------------------
    def _raw(self, row: Mapping[str, Any], name: str) -> Any:
        source = self.fields.get(name)
        if isinstance(source, Template):
            return source.render(row)
        return None if source is None else row.get(source)

    def _side(self, row: Mapping[str, Any], name: str, problems: Problems) -> list[Message]:
        """The answer in field `name` (chosen, rejected, completion) as one assistant message:
        a text, one turn or a list of turns (its last assistant turn); none, with the problem,
        when it is missing, empty or not text."""
        value = self._raw(row, name)
        if isinstance(value, dict):
            value = [value]
        if value is None or value == []:
            problems.append(("missing_answer", f"the {name} answer is missing"))
            return []
        if isinstance(value, list):
            found: Problems = []
            turns = [t for t in self._turns_from_list(value, found) if t["role"] == "assistant"]
            problems += [problem for problem in found if problem[0] != "empty_field"]
            if not turns:
                problems.append(("missing_answer", f"the {name} side has no assistant turn"))
                return []
            return filled(turns[-1:], name, problems)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            problems.append(("non_text", f"{name} is {type(value).__name__}, not text"))
            return []
        return filled([message("assistant", str(value))], name, problems)

    def _conversation(self, row: Mapping[str, Any], name: str, problems: Problems) -> list[Message]:
        """The whole conversation in field `name` (implicit prompt)."""
        value = self._raw(row, name)
        if value is None or value == []:
            problems.append(("missing_answer", f"the {name} conversation is missing"))
            return []
        if not isinstance(value, list):
            problems.append(("non_text", f"{name} does not hold a conversation (a list of turns)"))
            return []
        found: Problems = []
        turns = self._turns_from_list(value, found)
        if turns and turns[-1]["role"] == "assistant" and found and found[-1][0] == "empty_field":
            found.pop()  # the blank answer: `filled` names its side
        problems += found
        return turns

    def _pair(
        self,
        row: Mapping[str, Any],
        turns: list[Message],
        sides: tuple[list[Message], list[Message]] | None,
        problems: Problems,
    ) -> dict[str, Any]:
        prompt_ends_with_user(turns, problems)
        if sides is None:
            sides = self._side(row, "chosen", problems), self._side(row, "rejected", problems)
        else:
            sides = filled(sides[0], "chosen", problems), filled(sides[1], "rejected", problems)
        chosen, rejected = sides
        if chosen and rejected and same_answer(chosen[0], rejected[0]):
            problems.append(("identical_answers", "the chosen and rejected answers are the same"))
        return {"prompt": turns, "chosen": chosen, "rejected": rejected}

    def _feedback(
        self, row: Mapping[str, Any], turns: list[Message], problems: Problems
    ) -> dict[str, Any]:
        if self.spec.completion is not None:
            completion = self._side(row, "completion", problems)
        elif turns and turns[-1]["role"] == "assistant":  # the conversation's last turn
            completion = filled([turns.pop()], "completion", problems)
        else:
            completion = []
            problems.append(("missing_answer", "the conversation does not end with a completion"))
        prompt_ends_with_user(turns, problems)
        value = self._raw(row, "label")
        label = parse_label(value)
        if label is None:
            problems.append(
                (
                    "bad_label",
                    f"the label {str(value)[:40]!r} is not one of true/false, 1/0, good/bad",
                )
            )
        return {"prompt": turns, "completion": completion, "label": label}

    def map(self, row: Mapping[str, Any]) -> RowResult:
        problems: list[tuple[str, str]] = []
        self._inline.clear()
        spec = self.spec
        if spec.mode == "language_modeling" and spec.layout == "fields":
            text = self._text(self._value(row, "text", problems), "text", problems)
            return RowResult({"text": text} if text else None, problems)
        sides = None
        if spec.layout in ("messages", "sharegpt"):
            assert spec.messages_column is not None
            turns = self._turns_from_list(row.get(spec.messages_column), problems)
        elif spec.layout == "alpaca":
            turns = self._alpaca(row, problems)
        elif spec.implicit_prompt:
            chosen = self._conversation(row, "chosen", problems)
            rejected = self._conversation(row, "rejected", problems)
            turns, *answers = split_pair(chosen, rejected, problems)
            sides = (answers[0], answers[1])
        else:
            turns = self._fields(
                row, problems, "assistant" if spec.mode == "conversation" else None
            )
        if spec.system_prompt and not (turns and turns[0]["role"] == "system"):
            turns.insert(0, message("system", spec.system_prompt))
        images = self._images(row, turns, problems)
        self._inline.clear()
        return self._record(row, turns, sides, images, problems)

    def _record(
        self,
        row: Mapping[str, Any],
        turns: list[Message],
        sides: tuple[list[Message], list[Message]] | None,
        images: RowImages,
        problems: list[tuple[str, str]],
    ) -> RowResult:
        check_order(turns, problems)
        mode = self.spec.mode
        record: dict[str, Any]
        if mode == "language_modeling":
            record = {"text": "\n\n".join(text_of(t) for t in turns)}
        elif mode == "conversation":
            if not turns or turns[-1]["role"] != "assistant":
                problems.append(("role_order", "the conversation does not end with an answer"))
            elif not text_of(turns[-1]).strip():
                problems.append(("empty_assistant", "the answer is empty"))
            record = {"messages": turns}
        elif mode == "prompt_only":
            while turns and turns[-1]["role"] == "assistant":
                turns.pop()
            left_out = {"prompt", "images", self.spec.messages_column, self.spec.image_column}
            extras = {k: v for k, v in row.items() if k not in left_out}
            record = {**extras, "prompt": turns}
        elif mode == "feedback":
            record = self._feedback(row, turns, problems)
        else:
            record = self._pair(row, turns, sides, problems)
        if images.data:
            record["images"] = images.data
        return RowResult(None if problems else record, problems, images.facts)


def check_order(turns: list[Message], problems: list[tuple[str, str]]) -> None:
    """Gemma's template wants an optional system turn, then user and assistant alternating."""
    roles = [t["role"] for t in turns]
    if roles and roles[0] == "system":
        roles = roles[1:]
    if "system" in roles:
        problems.append(("role_order", "a system turn after the first turn"))
    elif not roles or roles[0] != "user":
        problems.append(("role_order", "the conversation does not start with a user turn"))
    elif roles[::2].count("user") + roles[1::2].count("assistant") < len(roles):
        problems.append(("role_order", "two turns of the same role in a row"))
