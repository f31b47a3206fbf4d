"""CSV and TSV: a header row, then one row per record; every value is text.

Python's `csv` module parses a stream of bounded lines (so quoted values may span lines), rows are
turned into Arrow string columns a batch at a time, and each batch is checked for oversized values
and for cells a spreadsheet would run as formulas. Values are never altered: empty stays "", and
a row shorter than the header is padded with nulls (with a warning).
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tuneforge.data.encoding import TextEncoding
from tuneforge.data.limits import DataFileError, ParseLimits, size_text
from tuneforge.data.readers.columns import (
    BATCH_BYTES,
    BATCH_CELLS,
    ColumnNames,
    check_cells,
    too_many_columns,
    too_many_rows,
)
from tuneforge.data.readers.lines import bounded_lines

# What a spreadsheet would run as a formula (OWASP "CSV injection"): =, @, or a sign followed by
# anything but a plain number ("-2+3+cmd|..." is flagged; "-1", "+1 555", "- item" are not).
FORMULA_PATTERN = r"^[=@]|^[+-][0-9.]*[^0-9.eE\s]"
_field_limit_lock = threading.Lock()


def read_delimited(
    path: Path, encoding: TextEncoding, delimiter: str, limits: ParseLimits
) -> tuple[pa.Table, list[str]]:
    _allow_fields(limits.max_cell_bytes)
    with encoding.open(path) as f:
        reader = csv.reader(bounded_lines(f, limits), delimiter=delimiter)
        parser = _Parser(limits)
        try:
            parser.parse(reader, lambda: reader.line_num)
        except csv.Error as error:
            if "field larger than field limit" in str(error):
                raise DataFileError(
                    f"Line {reader.line_num:,}: a value is larger than "
                    f"{size_text(limits.max_cell_bytes)}, the limit. If the text really is that "
                    'long, split it into several rows; if not, a quote (") is probably not '
                    "closed before this line."
                ) from None
            raise DataFileError(
                f"Line {reader.line_num:,} is not valid CSV ({error}). Check the quotes on "
                "that line."
            ) from None
        return parser.finish()


def _allow_fields(size: int) -> None:
    """The csv module's field limit is process-wide: only ever raise it, so concurrent readers
    with different limits stay safe (each checks its own limit on the parsed values)."""
    with _field_limit_lock:
        csv.field_size_limit(max(csv.field_size_limit(), size))


class _Parser:
    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        self._names: list[str] = []
        self._rows: list[Sequence[str | None]] = []
        self._chunks: list[pa.RecordBatch] = []
        self._count = 0
        self._short = 0
        self._first_short = 0
        self._formulas = 0
        self._first_formula = ""
        self._warnings: list[str] = []

    def parse(self, reader: Iterator[list[str]], line: Callable[[], int]) -> None:
        """The header (the first non-blank row), then every row; the loop is the hot path."""
        for row in reader:
            if row:
                self._header(row)
                break
        width, rows = len(self._names), self._rows
        batch_rows = max(1, BATCH_CELLS // max(width, 1))
        room = self._limits.max_rows
        chars = 0
        for row in reader:
            chars += sum(map(len, row))
            values: Sequence[str | None] = row
            if len(row) != width:
                if not row:
                    continue  # a blank line
                values = self._fit(row, width, line())
            rows.append(values)
            if len(rows) > room:
                raise too_many_rows(self._limits)
            if len(rows) >= batch_rows or chars >= BATCH_BYTES:
                self._flush()
                room, chars = self._limits.max_rows - self._count, 0

    def _fit(self, row: list[str], width: int, line: int) -> Sequence[str | None]:
        """A row of the header's width: extra empty values dropped, missing ones null."""
        if len(row) > width:
            if any(row[width:]):
                raise DataFileError(
                    f"Line {line:,} has {len(row):,} values but the header names {width:,} "
                    "columns. Put quotes around values that contain the delimiter, or add the "
                    "missing column names to the header."
                )
            return row[:width]
        self._short += 1
        self._first_short = self._first_short or line
        return [*row, *[None] * (width - len(row))]

    def _header(self, row: list[str]) -> None:
        if len(row) > self._limits.max_columns:
            raise too_many_columns(len(row), self._limits)
        names = ColumnNames(self._limits)
        self._names = [names.add(value) for value in row]
        self._warnings.extend(names.warnings())

    def _flush(self) -> None:
        if not self._rows:
            return
        # One list per column (pa.array is fast on lists, and slow on the tuples zip makes).
        rows = self._rows
        columns = [
            pa.array(list(map(itemgetter(i), rows)), pa.string()) for i in range(len(self._names))
        ]
        batch = pa.RecordBatch.from_arrays(columns, names=self._names)
        check_cells(batch, self._count, self._limits)
        self._count_formulas(batch)
        self._chunks.append(batch)
        self._count += batch.num_rows
        self._rows.clear()

    def _count_formulas(self, batch: pa.RecordBatch) -> None:
        for name, column in zip(self._names, batch.columns, strict=True):
            found = pc.match_substring_regex(column, FORMULA_PATTERN)
            count = pc.sum(found).as_py() or 0
            if count and not self._formulas:
                row = self._count + pc.index(found, True).as_py() + 1
                self._first_formula = f'row {row:,}, column "{name}"'
            self._formulas += count

    def finish(self) -> tuple[pa.Table, list[str]]:
        self._flush()
        schema = pa.schema([(name, pa.string()) for name in self._names])
        table = pa.Table.from_batches(self._chunks, schema)
        if self._short:
            self._warnings.append(
                f"{self._short:,} rows have fewer values than the header (the first on line "
                f"{self._first_short:,}); the missing values are empty."
            )
        if self._formulas:
            self._warnings.append(
                f"{self._formulas:,} cells start with =, +, - or @ (the first: "
                f"{self._first_formula}). They are kept as plain text and never run, but a "
                "spreadsheet opening an export of this data could run them as formulas."
            )
        return table, self._warnings
