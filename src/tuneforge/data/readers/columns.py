"""Columns of a table: names made usable, Python values made into consistent Arrow types, sizes
checked.

Types, for records read from JSON, JSON Lines and spreadsheets (CSV and TXT are all text):

- a column of one scalar kind keeps it: text → string, true/false → bool, integers → int64,
  numbers with a fraction → float64 (integers and floats together → float64);
- a column mixing kinds of scalars (numbers and text, say) becomes text, each value written as
  JSON writes it (`1`, `2.5`, `true`), with a warning;
- lists and objects stay nested Arrow data (list, struct) when Arrow can give them one type; a
  struct holds the union of the keys seen, so `to_pylist()` gives missing keys as None;
- a column that mixes nested values with anything else, or whose nested values have no common
  type (a `content` that is sometimes a string and sometimes a list of parts), becomes JSON text
  in *every* row, with a warning; its field carries `JSON_TEXT_METADATA`, and `iter_rows()`
  decodes it.

Records are converted a batch at a time; batches disagreeing about a column's type are reconciled
at the end by the same rules, converting only the batches that need it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from tuneforge.data.limits import DataFileError, ParseLimits, size_text

JSON_TEXT_KEY = b"tuneforge.encoding"
JSON_TEXT_METADATA = {JSON_TEXT_KEY: b"json"}
BATCH_CELLS = 1 << 16
BATCH_BYTES = 16 << 20
_NESTED = frozenset({list, dict})
_SCALARS = {str: "text", bool: "bool", int: "int", float: "float"}
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


def too_many_rows(limits: ParseLimits) -> DataFileError:
    return DataFileError(
        f"The file has more than {limits.max_rows:,} rows; the limit is {limits.max_rows:,}. "
        "Split it into smaller files or keep a sample."
    )


def too_many_columns(count: int, limits: ParseLimits, *, exact: bool = True) -> DataFileError:
    amount = f"{count:,}" if exact else f"more than {limits.max_columns:,}"
    return DataFileError(
        f"The file has {amount} columns; the limit is {limits.max_columns:,}. "
        "Keep only the columns you need."
    )


def value_too_large(where: str, size: int, limit: int) -> DataFileError:
    return DataFileError(
        f"{where}: a value is {size_text(size)}; the limit is {size_text(limit)}. "
        "Shorten it or split it into several rows."
    )


@dataclass
class ColumnNames:
    """Gives every column a usable, unique name: surrounding spaces trimmed, blanks named
    `column_<n>`, repeats suffixed `_2`, `_3`; an overlong name is refused."""

    limits: ParseLimits
    _taken: set[str] = field(default_factory=set)
    _renamed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, raw: Any) -> str:
        position = len(self._taken) + 1
        if position > self.limits.max_columns:
            raise too_many_columns(position, self.limits, exact=False)
        name = "" if raw is None else str(raw).strip()
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_column_name_bytes:
            raise DataFileError(
                f"Column {position:,}'s name is {size:,} bytes long; the limit is "
                f"{self.limits.max_column_name_bytes:,}. The first row must be a header of short "
                "column names (such as prompt,response), not data."
            )
        unique = name or f"column_{position}"
        suffix = 2
        while unique in self._taken:
            unique, suffix = f"{name}_{suffix}", suffix + 1
        if unique != name:
            self._renamed.append((name, unique))
        self._taken.add(unique)
        return unique

    def warnings(self) -> list[str]:
        if not self._renamed:
            return []
        shown = ", ".join(f'"{old}" → "{new}"' for old, new in self._renamed[:5])
        more = f" and {len(self._renamed) - 5:,} more" if len(self._renamed) > 5 else ""
        return [
            "Some column names were missing or repeated, so those columns were renamed: "
            f"{shown}{more}."
        ]


class _Chunk(NamedTuple):
    kind: str  # null | text | bool | int | float | nested | json
    array: pa.Array
    mixed: bool = False  # this batch mixed kinds of scalars


@dataclass
class _Column:
    name: str
    chunks: list[_Chunk]

    def finish(self) -> tuple[pa.Field, pa.ChunkedArray, str | None]:
        kinds = {chunk.kind for chunk in self.chunks} - {"null"}
        mixed = any(chunk.mixed for chunk in self.chunks)
        if kinds == {"nested"}:
            unified = _unify_nested([c.array.type for c in self.chunks if c.kind == "nested"])
            if unified is not None:
                return self._assemble(unified, lambda c: c.array.cast(unified), None)
            kinds.add("json")
        if kinds & {"nested", "json"}:
            note = (
                f'Column "{self.name}" mixes lists or objects with other kinds of values, so '
                "each of its values is kept as JSON text."
            )
            metadata = JSON_TEXT_METADATA

            def convert(chunk: _Chunk) -> pa.Array:
                if chunk.kind == "json":
                    return chunk.array
                return _json_array(chunk.array.to_pylist())

            return self._assemble(pa.string(), convert, note, metadata)
        if len(kinds) > 1 and kinds <= {"int", "float"}:
            return self._assemble(pa.float64(), lambda c: c.array.cast(pa.float64()), None)
        if len(kinds) > 1 or mixed:
            note = (
                f'Column "{self.name}" mixes numbers, true/false and text, so all its values '
                "were read as text."
            )

            def as_text(chunk: _Chunk) -> pa.Array:
                if chunk.kind == "text":
                    return chunk.array
                return _text_array(chunk.array.to_pylist())

            return self._assemble(pa.string(), as_text, note)
        kind_type = next((c.array.type for c in self.chunks if c.kind != "null"), pa.null())
        return self._assemble(kind_type, lambda c: c.array, None)

    def _assemble(
        self,
        type_: pa.DataType,
        convert: Callable[[_Chunk], pa.Array],
        note: str | None,
        metadata: dict[bytes, bytes] | None = None,
    ) -> tuple[pa.Field, pa.ChunkedArray, str | None]:
        arrays = [
            pa.nulls(len(c.array), type_) if c.kind == "null" else convert(c) for c in self.chunks
        ]
        return pa.field(self.name, type_, metadata=metadata), pa.chunked_array(arrays, type_), note


class RecordBuilder:
    """Collects records (mappings of field → value) into a table, one batch at a time.

    Fields may differ between records: the columns are the union, in order of first appearance,
    and a record without a field gets None there.
    """

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        self._names = ColumnNames(limits)
        self._columns: dict[str, _Column] = {}
        self._batch: list[Mapping[str, Any]] = []
        self._batch_bytes = 0
        self._flushed = 0

    @property
    def rows(self) -> int:
        return self._flushed + len(self._batch)

    def add(self, record: Mapping[str, Any], nbytes: int = 0) -> None:
        """Add one record; `nbytes` (its source size, if known) helps bound the batch's memory."""
        if self.rows >= self._limits.max_rows:
            raise too_many_rows(self._limits)
        if not self._columns.keys() >= record.keys():
            for key in record:
                if key not in self._columns:
                    leading = [_Chunk("null", pa.nulls(self._flushed))] if self._flushed else []
                    self._columns[key] = _Column(self._names.add(key), leading)
        self._batch.append(record)
        self._batch_bytes += nbytes
        if len(self._batch) * len(self._columns) >= BATCH_CELLS or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def finish(self) -> tuple[pa.Table, list[str]]:
        self._flush()
        fields, arrays, warnings = [], [], self._names.warnings()
        for column in self._columns.values():
            field_, array, note = column.finish()
            fields.append(field_)
            arrays.append(array)
            if note:
                warnings.append(note)
        if self.rows and not fields:
            raise DataFileError(
                "The records have no fields: each one is an empty object. Give every record "
                'named fields, such as {"prompt": "…", "response": "…"}.'
            )
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), warnings

    def _flush(self) -> None:
        if not self._batch:
            return
        for key, column in self._columns.items():
            column.chunks.append(_convert(list(map(methodcaller("get", key), self._batch))))
        self._flushed += len(self._batch)
        self._batch, self._batch_bytes = [], 0


def _convert(values: list[Any]) -> _Chunk:
    """One batch of a column's values as an Arrow array, by the rules in the module doc."""
    types = set(map(type, values))
    types.discard(type(None))
    if not types:
        return _Chunk("null", pa.nulls(len(values)))
    if types <= _NESTED:
        try:
            array = pa.array(values)
        except _ARROW_ERRORS:
            return _Chunk("json", _json_array(values))
        if _storable(array.type):
            return _Chunk("nested", array)
        return _Chunk("json", _json_array(values))
    if types & _NESTED:
        return _Chunk("json", _json_array(values))
    kinds = {_SCALARS.get(t, "other") for t in types}
    arrow_type = {
        frozenset({"text"}): pa.string(),
        frozenset({"bool"}): pa.bool_(),
        frozenset({"int"}): pa.int64(),
        frozenset({"float"}): pa.float64(),
        frozenset({"int", "float"}): pa.float64(),
    }.get(frozenset(kinds))
    if arrow_type is not None:
        try:
            kind = "float" if arrow_type == pa.float64() else kinds.pop()
            return _Chunk(kind, pa.array(values, arrow_type))
        except _ARROW_ERRORS:  # an integer beyond 64 bits
            pass
    return _Chunk("text", _text_array(values), mixed=True)


def _unify_nested(types: list[pa.DataType]) -> pa.DataType | None:
    """One type all these nested types cast to (structs gain each other's fields), or None."""
    if len(set(types)) == 1:
        return types[0]
    try:
        schema = pa.unify_schemas(
            [pa.schema([("value", t)]) for t in types], promote_options="permissive"
        )
    except _ARROW_ERRORS:
        return None
    unified = schema.field("value").type
    return unified if _storable(unified) else None


def _storable(type_: pa.DataType) -> bool:
    """Parquet stores every nested type except a struct without fields (from `{}` values)."""
    pending = [type_]
    while pending:
        current = pending.pop()
        if pa.types.is_struct(current):
            if current.num_fields == 0:
                return False
            pending.extend(current.field(i).type for i in range(current.num_fields))
        elif pa.types.is_list(current) or pa.types.is_large_list(current):
            pending.append(current.value_type)
    return True


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return str(value)


def _text_array(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _json_array(values: list[Any]) -> pa.Array:
    return pa.array(
        [None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string()
    )


def check_cells(batch: pa.RecordBatch, first_row: int, limits: ParseLimits) -> None:
    """Refuse any text longer than `max_cell_bytes` (binary: `max_image_bytes`), at any depth."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        for array, top in _leaves(column):
            is_text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
            if not (
                is_text or pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)
            ):
                continue
            limit = limits.max_cell_bytes if is_text else limits.max_image_bytes
            lengths = pc.binary_length(array)
            longest = pc.max(lengths).as_py()
            if longest is None or longest <= limit:
                continue
            if is_text and _inline_images(array, lengths, limit, limits):
                continue
            where = f'Column "{name}"'
            if top:
                row = first_row + pc.index(pc.greater(lengths, limit), True).as_py() + 1
                where = f'Row {row:,}, column "{name}"'
            raise value_too_large(where, longest, limit)


def _inline_images(array: pa.Array, lengths: pa.Array, limit: int, limits: ParseLimits) -> bool:
    """Whether every text longer than `limit` is an image's base64 `data:` URL within the image
    limit (base64 takes 4 bytes per 3): such a text is an image, bounded by `max_image_bytes`."""
    long = array.filter(pc.greater(lengths, limit))
    images = pc.starts_with(long, "data:image/")
    longest = pc.max(pc.binary_length(long)).as_py()
    return bool(pc.all(images).as_py()) and longest <= limits.max_data_url_bytes


def _leaves(column: pa.Array) -> Iterator[tuple[pa.Array, bool]]:
    """The column and every array nested in it; True marks the top level (one value per row)."""
    pending: list[tuple[pa.Array, bool]] = [(column, True)]
    while pending:
        array, top = pending.pop()
        yield array, top
        if isinstance(array, pa.StructArray):
            pending.extend((child, False) for child in array.flatten())
        elif isinstance(array, pa.MapArray):  # before lists: a map is a list that cannot flatten
            pending.extend([(array.keys, False), (array.items, False)])
        elif isinstance(array, pa.ListArray | pa.LargeListArray | pa.FixedSizeListArray):
            pending.append((array.flatten(), False))
        elif isinstance(array, pa.DictionaryArray):  # e.g. a pandas category column
            pending.append((array.dictionary, False))


def iter_rows(table: pa.Table, batch_size: int = 1024) -> Iterator[list[dict[str, Any]]]:
    """The table's rows as Python dicts, a batch at a time, with JSON-text columns decoded."""
    encoded = [
        f.name for f in table.schema if f.metadata and f.metadata.get(JSON_TEXT_KEY) == b"json"
    ]
    for batch in table.to_batches(max_chunksize=batch_size):
        records = batch.to_pylist()
        for record in records:
            for name in encoded:
                if record[name] is not None:
                    record[name] = json.loads(record[name])
        yield records
