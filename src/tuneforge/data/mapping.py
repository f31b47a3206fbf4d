"""The processing config's mapping: how one source row becomes a Gemma conversation.

A mapping has a processing `mode` (what training needs) and a `layout` (how the source stores
turns): a column of OpenAI/TRL `messages`, a column of ShareGPT `conversations`, Alpaca columns,
or `fields`, where each role comes from a column or a template over columns. `RowMapper.map`
turns a row into the processed record and lists every problem it found instead of stopping at the
first. Preference answers and feedback completions come from their own columns whatever the
layout (a text, one turn, or a list of turns), or, with `implicit_prompt`, from two whole
conversations that share their prompt turns. Tool calls and their results are read by
`tuneforge.data.tool_calls`; the settings themselves are `tuneforge.data.mapping_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.conversation import Message, Part, Role, check_order, message, text_of
from tuneforge.data.image_refs import (
    ImageResolver,
    RowImages,
    inline_reference,
    place_images,
    pooled,
    row_image,
)
from tuneforge.data.images import ImageFacts
from tuneforge.data.mapping_spec import (
    FIELDS_NEEDED,
    SOURCE_FIELDS,
    TURNS_NEEDED,
    FieldSource,
    Layout,
    MappingSpec,
    Mode,
)
from tuneforge.data.pairs import (
    Problems,
    filled,
    parse_label,
    prompt_ends_with_user,
    same_answer,
    split_pair,
)
from tuneforge.data.templates import Template, parse_template
from tuneforge.data.tool_calls import (
    TURN_KINDS,
    RowTools,
    check_calls,
    ends_unanswered,
    has_calls,
    parse_tools,
    tools_text,
)
from tuneforge.errors import InvalidInput

__all__ = [  # the mapping's settings live in mapping_spec; callers import them from here too
    "FIELDS_NEEDED",
    "SOURCE_FIELDS",
    "TURNS_NEEDED",
    "FieldSource",
    "Layout",
    "MappingSpec",
    "Mode",
    "RowMapper",
    "RowResult",
]

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
        self._tools = RowTools()  # the row's calls and results while its turns are read
        if spec.tools_column is not None and spec.tools_column not in columns:
            raise InvalidInput(
                f"The tools column {spec.tools_column!r} does not exist.", {"columns": columns}
            )
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
            name = str(turn.get(role_key, "")).lower()
            role = ROLE_NAMES.get(name)
            if role is None and name in TURN_KINDS:
                self._tools.turn(TURN_KINDS[name], turn, text_key, turns, problems)
                continue
            if role is None:
                problems.append(("unknown_role", f"unknown role {turn.get(role_key)!r}"))
                continue
            content = turn.get(text_key)
            if role == "assistant" and has_calls(turn):
                if isinstance(content, list):
                    content = self._parts(content, problems)
                turns.append(self._tools.assistant(turn, content, problems))
                continue
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
        self._tools.clear()
        spec = self.spec
        tools = parse_tools(row.get(spec.tools_column), problems) if spec.tools_column else []
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
        return self._record(row, turns, sides, images, tools, problems)

    def _record(
        self,
        row: Mapping[str, Any],
        turns: list[Message],
        sides: tuple[list[Message], list[Message]] | None,
        images: RowImages,
        tools: list[dict[str, Any]],
        problems: list[tuple[str, str]],
    ) -> RowResult:
        self._tools.finish(turns)
        check_order(turns, problems)
        check_calls(turns, tools, problems)
        mode = self.spec.mode
        if self._tools.seen and mode != "conversation":
            problems.append(
                ("tool_calls_unsupported", "tool calls are trained in the conversation mode")
            )
        record: dict[str, Any]
        if mode == "language_modeling":
            record = {"text": "\n\n".join(text_of(t) for t in turns)}
        elif mode == "conversation":
            if ends_unanswered(turns):
                problems.append(("unanswered_call", "the conversation ends on a tool call or "
                                 "result, with no answer after it"))  # fmt: skip
            elif not turns or turns[-1]["role"] != "assistant":
                problems.append(("role_order", "the conversation does not end with an answer"))
            elif not text_of(turns[-1]).strip():
                problems.append(("empty_assistant", "the answer is empty"))
            record = {"messages": turns}
        elif mode == "prompt_only":
            while turns and turns[-1]["role"] == "assistant":
                turns.pop()
            left_out = {"prompt", "images", self.spec.messages_column, self.spec.image_column}
            left_out.add(self.spec.tools_column)
            extras = {k: v for k, v in row.items() if k not in left_out}
            record = {**extras, "prompt": turns}
        elif mode == "feedback":
            record = self._feedback(row, turns, problems)
        else:
            record = self._pair(row, turns, sides, problems)
        if tools:
            record["tools"] = tools_text(tools)
        if images.data:
            record["images"] = images.data
        return RowResult(None if problems else record, problems, images.facts)
