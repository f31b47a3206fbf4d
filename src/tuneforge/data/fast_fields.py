"""The `fields` layout mapped a column at a time: the records, problems and rendered texts that
`RowMapper` gives, without a Python dict per row.

In the `fields` layout each role's text comes from a column or a template over columns. A row is
*clean* when every text its mode reads is there and not blank; a clean row's record, rendered
prompt and answer and duplicate keys follow from those texts alone, so they are built column by
column. Every other row goes through `RowMapper.map`, which says what is wrong with it. The
output columns are Arrow arrays of exactly the type `pa.Table.from_pylist` infers from the
records. `FieldsMapper.compile` declines (processing then maps row by row) for anything else:
another layout, images, a role column holding something other than text or numbers, feedback
data, pairs with an implicit prompt, or prompt-only data with a column that processing would read
as part of the record. A pair whose answers are the same is not clean either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa

from tuneforge.data.images import ImageFacts
from tuneforge.data.mapping import FIELDS_NEEDED, RowMapper
from tuneforge.data.pairs import spaced
from tuneforge.data.readers import JSON_TEXT_KEY, iter_rows
from tuneforge.data.templates import Template
from tuneforge.data.validation import duplicate_keys, normalised_text
from tuneforge.models.chat_template import BOS, END_OF_TURN, GENERATION_PROMPT, START_OF_TURN

Problems = list[tuple[str, str]]
PART = pa.struct([("type", pa.string()), ("text", pa.string())])
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.list_(PART))])
CHUNK_CHARS = 1 << 28  # characters per output array: at most 1 GiB of UTF-8, inside Arrow's 2 GiB
PROMPT_START = f"{BOS}{START_OF_TURN}user\n"
PROMPT_END = f"{END_OF_TURN}\n{GENERATION_PROMPT}"
ANSWER_END = f"{END_OF_TURN}\n"
READS = {  # the fields each mode reads, besides an optional system field
    mode: fields for mode, fields in FIELDS_NEEDED.items() if mode != "feedback"
}
TURNS = {"conversation": 2, "prompt_only": 1, "preference": 2, "language_modeling": 1}
RECORD_KEYS = {"messages", "chosen", "rejected"}  # columns a prompt-only record must not carry


@dataclass
class Mapped:
    """A batch of rows, mapped: each row's problems and, for the rows that make a record (`ok`,
    in order), the rendered prompt and answer (a pair's chosen one) and, for pairs only, the
    rejected answer, the turns, the duplicate keys (exact, loose) and the record's output
    columns (in the form the mapper's `table` reads)."""

    problems: list[Problems]
    ok: list[int]
    prompts: list[str]
    answers: list[str]
    rejected: list[str]  # empty unless the rows are preference pairs
    turns: list[int]
    keys: list[tuple[Hashable, Hashable]]
    records: dict[str, list[Any]]
    preview: Callable[[int], Any]
    # For the rows in `ok`, when they have images: each one's facts and a digest of its bytes.
    images: list[list[ImageFacts]] = field(default_factory=list)
    image_keys: list[str] = field(default_factory=list)


def records(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as dicts, with columns the reader kept as JSON text decoded."""
    return [row for batch in iter_rows(table, max(table.num_rows, 1)) for row in batch]


def _json_text(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(JSON_TEXT_KEY) == b"json"


def column_values(table: pa.Table, name: str) -> list[Any]:
    """One column's values as `records` gives them."""
    values: list[Any] = table.column(name).to_pylist()
    if _json_text(table.schema.field(name)):
        return [None if value is None else json.loads(value) for value in values]
    return values


def _plain_text(field: pa.Field) -> bool:
    """Whether a column holds text (or nothing) that `records` gives as it is."""
    kind = field.type
    textual = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
    return textual and not _json_text(field)


def _scalar(field: pa.Field) -> bool:
    """Whether a column holds only what a role's column may take as it is: text, numbers, nulls."""
    kind = field.type
    return _plain_text(field) or pa.types.is_integer(kind) or kind in (pa.float32(), pa.float64())


def _select(values: list[Any], rows: list[int]) -> list[Any]:
    return [values[i] for i in rows]


def _usable(text: str | None) -> bool:
    return text is not None and text != "" and not text.isspace()


class FieldsMapper:
    """`RowMapper` for the `fields` layout without images, a batch of columns at a time."""

    batch_rows = 8_192  # rows mapped at a time

    def __init__(self, mapper: RowMapper, sources: dict[str, Template | str], extras: list[str]):
        self.mapper = mapper
        self.mode = mapper.spec.mode
        self.sources = sources
        self.extras = extras
        self.system_prompt = mapper.spec.system_prompt  # when there is no system field

    @classmethod
    def compile(cls, mapper: RowMapper, schema: pa.Schema) -> FieldsMapper | None:
        """The column-wise mapper for `mapper`'s mapping over tables of `schema`, or None when
        only the row-by-row one applies."""
        spec = mapper.spec
        if (
            spec.layout != "fields"
            or spec.image_column is not None
            or spec.mode == "feedback"
            or spec.implicit_prompt
            or len(set(schema.names)) < len(schema.names)
            or (spec.mode == "prompt_only" and not RECORD_KEYS.isdisjoint(schema.names))
        ):
            return None
        names = list(READS[spec.mode])
        if spec.mode != "language_modeling" and spec.system is not None:
            names.insert(0, "system")
        sources = {name: mapper.fields[name] for name in names}
        columns = [source for source in sources.values() if isinstance(source, str)]
        if not all(_scalar(schema.field(column)) for column in columns):
            return None
        extras = [n for n in schema.names if n not in {"prompt", "images"}]
        return cls(mapper, sources, extras if spec.mode == "prompt_only" else [])

    def map(self, part: pa.Table) -> Mapped:
        """Map the rows of `part`: clean ones column-wise, the others with `RowMapper.map`."""
        texts = {name: _texts(part, source) for name, source in self.sources.items()}
        usable = [[_usable(text) for text in column] for column in texts.values()]
        clean = [all(flags) for flags in zip(*usable, strict=True)]
        if self.mode == "preference":  # the same answer twice is a problem the row mapper names
            pairs = zip(texts["chosen"], texts["rejected"], strict=True)
            clean = [
                whole and spaced(cast(str, chosen)) != spaced(cast(str, rejected))
                for whole, (chosen, rejected) in zip(clean, pairs, strict=True)
            ]
        problems: list[Problems] = [[] for _ in clean]
        ok = [i for i, whole in enumerate(clean) if whole]
        if len(ok) < len(clean):
            unclean = [i for i, whole in enumerate(clean) if not whole]
            for i, row in zip(
                unclean, records(part.take(pa.array(unclean, pa.int64()))), strict=True
            ):
                problems[i] = self.mapper.map(row).problems  # missing or blank: never a record
            texts = {name: _select(column, ok) for name, column in texts.items()}
        fields = cast(dict[str, list[str]], texts)
        prompts, answers, rejected = self._rendered(fields, len(ok))
        exact: list[tuple[Any, ...]] = list(zip(*fields.values(), strict=True))
        loose: list[tuple[Any, ...]] = list(
            zip(*([normalised_text(t) for t in column] for column in fields.values()), strict=True)
        )
        record_columns: dict[str, list[Any]] = {f"role {name}": fields[name] for name in fields}
        if self.extras:
            values = [_select(column_values(part, name), ok) for name in self.extras]
            keys = [
                duplicate_keys(dict(zip(self.extras, row, strict=True)))
                for row in zip(*values, strict=True)
            ]
            exact = [(*key, extra) for key, (extra, _) in zip(exact, keys, strict=True)]
            loose = [(*key, extra) for key, (_, extra) in zip(loose, keys, strict=True)]
            record_columns |= {f"column {n}": v for n, v in zip(self.extras, values, strict=True)}
        return Mapped(
            problems=problems,
            ok=ok,
            prompts=prompts,
            answers=answers,
            rejected=rejected,
            turns=[TURNS[self.mode]] * len(ok),
            keys=list(zip(exact, loose, strict=True)),
            records=record_columns,
            preview=lambda i: records(part.slice(i, 1))[0],
        )

    def _rendered(
        self, fields: dict[str, list[str]], count: int
    ) -> tuple[list[str], list[str], list[str]]:
        """The prompts, answers and rejected answers (pairs only) Gemma's chat template renders
        (`rendered_texts`)."""
        if self.mode == "language_modeling":
            return [""] * count, fields["text"], []
        if "system" in fields:
            prompts = [
                f"{PROMPT_START}{system.strip()}\n\n{user.strip()}{PROMPT_END}"
                for system, user in zip(fields["system"], fields["user"], strict=True)
            ]
        else:
            start = PROMPT_START + (
                f"{self.system_prompt.strip()}\n\n" if self.system_prompt else ""
            )
            prompts = [f"{start}{user.strip()}{PROMPT_END}" for user in fields["user"]]
        if self.mode == "conversation":
            return prompts, [f"{answer.strip()}{ANSWER_END}" for answer in fields["assistant"]], []
        if self.mode == "prompt_only":
            return prompts, [""] * count, []
        return (
            prompts,
            [f"{chosen.strip()}{ANSWER_END}" for chosen in fields["chosen"]],
            [f"{rejected.strip()}{ANSWER_END}" for rejected in fields["rejected"]],
        )

    def table(self, records: dict[str, list[Any]]) -> pa.Table:
        """The output table of kept records (`Mapped.records`, concatenated and selected)."""
        if self.mode == "language_modeling":
            return pa.table({"text": pa.array(records["role text"], pa.string())})
        count = len(records["role user"])
        prompt = [("user", records["role user"])]
        if "role system" in records:
            prompt.insert(0, ("system", records["role system"]))
        elif self.system_prompt:
            prompt.insert(0, ("system", [self.system_prompt] * count))
        if self.mode == "conversation":
            return pa.table(
                {"messages": _messages([*prompt, ("assistant", records["role assistant"])])}
            )
        if self.mode == "prompt_only":
            columns = [records[f"column {name}"] for name in self.extras]
            return pa.Table.from_arrays([*columns, _messages(prompt)], [*self.extras, "prompt"])
        return pa.table(
            {
                "prompt": _messages(prompt),
                "chosen": _messages([("assistant", records["role chosen"])]),
                "rejected": _messages([("assistant", records["role rejected"])]),
            }
        )


def _texts(part: pa.Table, source: Template | str) -> list[str | None]:
    """A field's text per row, as `RowMapper` reads it: a column's text or number (None when
    missing), or a template rendered with missing values as empty text."""
    if isinstance(source, str):
        values = column_values(part, source)
        if _plain_text(part.schema.field(source)):
            return values
        return [None if value is None else str(value) for value in values]
    if not source.columns:
        return [source.render({})] * part.num_rows
    form = "".join(
        literal.replace("{", "{{").replace("}", "}}") + ("" if name is None else "{}")
        for literal, name in source.pieces
    )
    columns = [
        ["" if value is None else str(value) for value in column_values(part, name)]
        for name in source.columns
    ]
    return [form.format(*row) for row in zip(*columns, strict=True)]


def _messages(turns: Sequence[tuple[str, Sequence[str]]]) -> pa.ChunkedArray:
    """Conversations of one text message per turn, each turn a role and its text per row, typed
    as `pa.array` infers it from `message(role, text)` dicts."""
    roles = [role for role, _ in turns]
    rows = list(zip(*(texts for _, texts in turns), strict=True))
    size = sum(sum(map(len, texts)) for _, texts in turns)
    runs = [range(len(rows))] if size <= CHUNK_CHARS else _runs(rows)
    chunks = [_message_chunk(roles, rows[run.start : run.stop]) for run in runs]
    return pa.chunked_array(chunks, pa.list_(MESSAGE))


def _message_chunk(roles: list[str], rows: Sequence[tuple[str, ...]]) -> pa.Array:
    turns = len(roles)
    count = turns * len(rows)
    texts = pa.array([text for row in rows for text in row], pa.string())
    parts = pa.StructArray.from_arrays([pa.repeat("text", count), texts], fields=list(PART))
    content = pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32)), parts)
    role = pa.array(roles * len(rows), pa.string())
    messages = pa.StructArray.from_arrays([role, content], fields=list(MESSAGE))
    offsets = pa.array(np.arange(0, count + 1, turns, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, messages)


def _runs(rows: Sequence[Sequence[str]]) -> list[range]:
    """Runs of rows whose texts fit one Arrow string array."""
    runs, start, size = [], 0, 0
    for i, length in enumerate(sum(map(len, row)) for row in rows):
        if size + length > CHUNK_CHARS and i > start:
            runs.append(range(start, i))
            start, size = i, 0
        size += length
    runs.append(range(start, len(rows)))
    return runs
