"""Plain text: one example per line or, when blank lines separate paragraphs, one per block.

The result has a single column, `text`. Line endings are removed and lines of a block are joined
with "\\n"; leading and trailing blank lines never count as separators. Deciding between lines
and blocks takes a first pass that usually stops at the first paragraph break.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from tuneforge.data.encoding import TextEncoding
from tuneforge.data.limits import ParseLimits
from tuneforge.data.readers.columns import (
    BATCH_BYTES,
    BATCH_CELLS,
    check_cells,
    too_many_rows,
    value_too_large,
)
from tuneforge.data.readers.lines import bounded_lines

COLUMN = "text"


def read_text(
    path: Path, encoding: TextEncoding, limits: ParseLimits
) -> tuple[pa.Table, list[str]]:
    with encoding.open(path) as f:
        in_blocks = _has_paragraphs(bounded_lines(f, limits))
    with encoding.open(path) as f:
        lines = (line.rstrip("\r\n") for line in bounded_lines(f, limits))
        examples = _blocks(lines, limits) if in_blocks else (line for line in lines if line.strip())
        batches = list(_batches(examples, limits))
    schema = pa.schema([(COLUMN, pa.string())])
    return pa.Table.from_batches(batches, schema), []


def _has_paragraphs(lines: Iterable[str]) -> bool:
    """True when a blank line stands between two non-blank ones."""
    seen_text = seen_break = False
    for line in lines:
        if not line.strip():
            seen_break = seen_text
        elif seen_break:
            return True
        else:
            seen_text = True
    return False


def _blocks(lines: Iterable[str], limits: ParseLimits) -> Iterator[str]:
    block: list[str] = []
    size = start = 0
    for number, line in enumerate(lines, 1):
        if line.strip():
            start = start if block else number
            block.append(line)
            size += len(line) + 1
            if size > limits.max_cell_bytes:  # characters; bytes are checked per batch
                where = f"The paragraph starting on line {start:,}"
                raise value_too_large(where, size, limits.max_cell_bytes)
        elif block:
            yield "\n".join(block)
            block, size = [], 0
    if block:
        yield "\n".join(block)


def _batches(examples: Iterable[str], limits: ParseLimits) -> Iterator[pa.RecordBatch]:
    batch: list[str] = []
    count = chars = 0
    for example in examples:
        if count + len(batch) >= limits.max_rows:
            raise too_many_rows(limits)
        batch.append(example)
        chars += len(example)
        if len(batch) >= BATCH_CELLS or chars >= BATCH_BYTES:
            yield _checked(batch, count, limits)
            count += len(batch)
            batch, chars = [], 0
    if batch:
        yield _checked(batch, count, limits)


def _checked(examples: list[str], first_row: int, limits: ParseLimits) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_arrays([pa.array(examples, pa.string())], names=[COLUMN])
    check_cells(batch, first_row, limits)
    return batch
