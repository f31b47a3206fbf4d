"""Parquet: checked against the limits from its footer (columns, rows, declared uncompressed size,
nesting) before any data is read, then read a batch at a time with every value's size checked.
Types are kept as written, nested ones included."""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tuneforge.data.limits import MIB, DataFileError, ParseLimits, size_text
from tuneforge.data.readers.columns import (
    ColumnNames,
    check_cells,
    too_many_columns,
    too_many_rows,
)

BATCH_ROWS = 4096
# The footer describes every column of every row group: 64 MiB is thousands of columns times
# thousands of row groups, and it is parsed whole.
MAX_FOOTER_BYTES = 64 * MIB
_FIX = "Write it again (for example with pandas' to_parquet) or upload a CSV or JSON Lines file."


def read_parquet(path: Path, limits: ParseLimits) -> tuple[pa.Table, list[str]]:
    _check_footer(path)
    try:
        with pq.ParquetFile(path) as parquet:
            schema = _checked_schema(parquet, limits)
            batches, count = [], 0
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                check_cells(batch, count, limits)
                batches.append(batch)
                count += batch.num_rows
    except (pa.ArrowException, OSError) as error:
        raise DataFileError(f"The Parquet file is damaged: {error}. {_FIX}") from None
    names = ColumnNames(limits)
    renamed = [names.add(name) for name in schema.names]
    table = pa.Table.from_batches(batches, schema).rename_columns(renamed)
    return table, names.warnings()


def _check_footer(path: Path) -> None:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size < 12:
            raise DataFileError(f"The Parquet file is damaged: it is only {size} bytes. {_FIX}")
        f.seek(size - 8)
        length, magic = struct.unpack("<I4s", f.read(8))
    if magic != b"PAR1" or length > size - 12:
        raise DataFileError(f"The Parquet file is damaged: its footer is missing. {_FIX}")
    if length > MAX_FOOTER_BYTES:
        raise DataFileError(
            f"The Parquet file's footer is {size_text(length)}; the limit is "
            f"{size_text(MAX_FOOTER_BYTES)}. Write it with fewer columns or row groups."
        )


def _checked_schema(parquet: pq.ParquetFile, limits: ParseLimits) -> pa.Schema:
    schema: pa.Schema = parquet.schema_arrow
    metadata = parquet.metadata
    if len(schema) > limits.max_columns:
        raise too_many_columns(len(schema), limits)
    if metadata.num_rows > limits.max_rows:
        raise too_many_rows(limits)
    declared = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if declared > limits.max_decompressed_bytes:
        raise DataFileError(
            f"The Parquet file's data takes {size_text(declared)} uncompressed; the limit is "
            f"{size_text(limits.max_decompressed_bytes)}. Split it into smaller files."
        )
    for field in schema:
        if _depth(field.type) > limits.max_json_depth:
            raise DataFileError(
                f'Column "{field.name}" is nested more than {limits.max_json_depth:,} levels '
                "deep, the limit. Flatten it."
            )
    return schema


def _depth(type_: pa.DataType) -> int:
    """Nesting depth of a type, counted without recursion."""
    deepest = 0
    pending = [(type_, 0)]
    while pending:
        current, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((current.field(i).type, depth + 1) for i in range(current.num_fields))
    return deepest
