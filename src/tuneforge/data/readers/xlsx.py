"""Excel workbooks (.xlsx): the first sheet with data, its first non-empty row as the header.

openpyxl reads in read-only mode (the sheet is streamed) and never evaluates formulas. A formula
cell gives its saved result, or the formula text when the file holds no result (files written
by scripts), with a warning either way; telling formula cells apart takes a second, lock-step
read of the sheet, done only when a scan of the sheet's XML finds formulas. Dates and times
become ISO 8601 text; other values go through `RecordBuilder`'s typing rules.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa

from tuneforge.data.limits import DataFileError, ParseLimits, size_text
from tuneforge.data.readers.archive import SafeZip
from tuneforge.data.readers.columns import ColumnNames, RecordBuilder, too_many_columns

EXCEL_MAX_ROWS = 1_048_576  # a row number beyond this (or a gap that long) is a forged sheet
_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")
_WORKSHEET = re.compile(r"xl/worksheets/[^/]+\.xml")
_ROOT_ELEMENT = re.compile(rb"<[^?!]")
_FIX = "Open it in Excel or LibreOffice and save it again as .xlsx, or export it as CSV."


def read_xlsx(path: Path, archive: SafeZip, limits: ParseLimits) -> tuple[pa.Table, list[str]]:
    _check_parts(archive, limits)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except Exception as error:  # openpyxl raises many kinds on a damaged file
        raise DataFileError(f"The spreadsheet cannot be read ({error}). {_FIX}") from None
    try:
        return _read_book(path, book, archive, limits)
    except DataFileError:
        raise
    except Exception as error:
        raise DataFileError(f"The spreadsheet cannot be read ({error}). {_FIX}") from None
    finally:
        book.close()


def _check_parts(archive: SafeZip, limits: ParseLimits) -> None:
    """openpyxl loads every part but the worksheets whole: bound those. No part may declare a
    document type: Excel never writes one, and its entities can expand a small file enormously."""
    for name, info in archive.members.items():
        if not _WORKSHEET.fullmatch(name) and info.file_size > limits.max_spreadsheet_parts_bytes:
            raise DataFileError(
                f'The workbook\'s part "{name}" is {size_text(info.file_size)}; the limit is '
                f"{size_text(limits.max_spreadsheet_parts_bytes)}. {_FIX}"
            )
        if name.endswith((".xml", ".rels")) and _declares_doctype(archive, name, limits):
            raise DataFileError(
                f'The workbook\'s part "{name}" holds a document type declaration, which Excel '
                f"never writes and which can hide an entity-expansion attack. {_FIX}"
            )


def _declares_doctype(archive: SafeZip, name: str, limits: ParseLimits) -> bool:
    """Whether the part's prolog (before its first element) declares a document type."""
    chunks = archive.stream(name, limits.max_member_bytes)
    head = next(chunks, b"")
    chunks.close()
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # legal XML, never Excel's
        head = head.decode("utf-16", "ignore").encode()
    root = _ROOT_ELEMENT.search(head)
    return b"<!DOCTYPE" in (head if root is None else head[: root.start()])


def _read_book(
    path: Path, book: Any, archive: SafeZip, limits: ParseLimits
) -> tuple[pa.Table, list[str]]:
    warnings: list[str] = []
    for sheet in book.worksheets:
        sheet.reset_dimensions()  # a forged dimension would pad every row to 16,384 columns
        rows = _numbered(sheet.iter_rows(values_only=True))
        header = next((row for row in rows if _filled(row[1])), None)
        if header is None:
            continue
        if len(book.worksheets) > 1:
            others = ", ".join(f'"{s.title}"' for s in book.worksheets if s is not sheet)
            warnings.append(
                f'Read the sheet "{sheet.title}"; the other sheets were ignored: {others}.'
            )
        if _has_formulas(archive, sheet._worksheet_path.lstrip("/"), limits):
            formulas = openpyxl.load_workbook(
                path, read_only=True, data_only=False, keep_links=False
            )
            try:
                formula_sheet = formulas[sheet.title]
                formula_sheet.reset_dimensions()
                table, notes = _read_sheet(header, rows, limits, formula_sheet.iter_rows())
            finally:
                formulas.close()
        else:
            table, notes = _read_sheet(header, rows, limits, None)
        return table, warnings + notes
    raise DataFileError(f"The workbook's sheets are all empty. {_FIX}")


def _read_sheet(
    header: tuple[int, Sequence[Any]],
    rows: Iterator[tuple[int, Sequence[Any]]],
    limits: ParseLimits,
    formula_rows: Iterator[Sequence[Any]] | None,
) -> tuple[pa.Table, list[str]]:
    number, cells = header
    width = len(cells)
    while width and cells[width - 1] is None:
        width -= 1
    if width > limits.max_columns:
        raise too_many_columns(width, limits)
    names = ColumnNames(limits)
    columns = [names.add(_plain(value)) for value in cells[:width]]
    builder = RecordBuilder(limits)
    formulas = _Formulas()
    if formula_rows is not None:
        for _ in range(number):  # the formula reader starts at the sheet's first row
            next(formula_rows, None)
    outside = 0
    for _, values in rows:
        if formula_rows is not None:
            values = formulas.merge(values, next(formula_rows, ()))
        if not _filled(values):
            continue
        outside += sum(value is not None for value in values[width:])
        builder.add({name: _plain(value) for name, value in zip(columns, values, strict=False)})
    table, notes = builder.finish()
    notes = names.warnings() + notes + formulas.warnings()
    if outside:
        notes.append(
            f"{outside:,} cells to the right of the last named column were ignored; give "
            "their column a name in the header row to keep them."
        )
    return table, notes


class _Formulas:
    """Chooses each formula cell's saved result, or its formula text, and counts them."""

    def __init__(self) -> None:
        self.saved = 0
        self.text: list[str] = []

    def merge(self, values: Sequence[Any], cells: Sequence[Any]) -> list[Any]:
        merged = list(values)
        for index, cell in enumerate(cells):
            if getattr(cell, "data_type", None) != "f":
                continue
            saved = merged[index] if index < len(merged) else None
            if saved is not None:
                self.saved += 1
                continue
            formula = str(getattr(cell.value, "text", cell.value))
            self.text.append(formula)
            merged.extend([None] * (index + 1 - len(merged)))
            merged[index] = formula
        return merged

    def warnings(self) -> list[str]:
        notes = []
        if self.saved:
            notes.append(
                f"{self.saved:,} cells hold formulas; their results as last saved were read "
                "(formulas are never run)."
            )
        if self.text:
            notes.append(
                f"{len(self.text):,} formula cells have no saved result, so their formula text "
                f'was read instead (such as "{self.text[0]}"). Open the file in Excel or '
                "LibreOffice and save it to store the results."
            )
        return notes


def _numbered(rows: Iterator[Sequence[Any]]) -> Iterator[tuple[int, Sequence[Any]]]:
    for number, row in enumerate(rows, 1):
        if number > EXCEL_MAX_ROWS:
            raise DataFileError(
                f"The sheet has more than {EXCEL_MAX_ROWS:,} rows, which Excel never writes: "
                f"the file is damaged or forged. {_FIX}"
            )
        yield number, row


def _has_formulas(archive: SafeZip, member: str, limits: ParseLimits) -> bool:
    if member not in archive.members:
        return True  # cannot scan: take the careful, lock-step read
    tail = b""
    for chunk in archive.stream(member, limits.max_member_bytes):
        if _FORMULA_TAG.search(tail + chunk):
            return True
        tail = chunk[-16:]
    return False


def _filled(values: Sequence[Any]) -> bool:
    return any(value is not None and value != "" for value in values)


def _plain(value: Any) -> Any:
    """Dates and times as ISO 8601 text; everything else as it is."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value
