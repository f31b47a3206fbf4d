"""Reading any supported data file into a pyarrow Table, safely.

`read_table(path, filename)` sniffs the format from the content (then the name), reads it with
the limits of `ParseLimits` enforced while reading, and returns the table with warnings for the
user. Every problem with the file is a `DataFileError` (HTTP 422) whose message says what is
wrong and how to fix it. One module per format family:

- `sniff`: which format; `lines`: bounded lines; `columns`: names, types, sizes
- `delimited` (CSV, TSV), `jsonfile` + `json_scan` (JSON, JSON Lines), `text` (TXT),
  `parquet`, `archive` (safe ZIP access), `xlsx`, `zip_dataset` (images + metadata)

Column types: CSV, TSV and TXT give text columns; JSON, JSON Lines and .xlsx follow
`columns.RecordBuilder` (nested values stay nested; unreconcilable columns become JSON text,
flagged in the field metadata and decoded by `iter_rows`); Parquet keeps its own types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tuneforge.data.limits import DEFAULT_LIMITS, DataFileError, ParseLimits
from tuneforge.data.readers.archive import SafeZip
from tuneforge.data.readers.columns import JSON_TEXT_KEY, JSON_TEXT_METADATA, iter_rows
from tuneforge.data.readers.delimited import read_delimited
from tuneforge.data.readers.jsonfile import read_json, read_jsonl
from tuneforge.data.readers.parquet import read_parquet
from tuneforge.data.readers.sniff import Format, container_format, extension_warning, text_kind
from tuneforge.data.readers.text import read_text
from tuneforge.data.readers.xlsx import read_xlsx
from tuneforge.data.readers.zip_dataset import ArchiveImages, read_zip

__all__ = [
    "JSON_TEXT_KEY",
    "JSON_TEXT_METADATA",
    "ArchiveImages",
    "Format",
    "ReadResult",
    "iter_rows",
    "read_table",
]

_NO_ROWS: dict[str, str] = {
    "csv": "The file has a header row but no data rows. Add rows below the header.",
    "xlsx": "The sheet has a header row but no data rows. Add rows below the header.",
    "json": 'The JSON holds no records: its list is empty. Add records such as {"prompt": "…", '
    '"response": "…"}.',
    "parquet": "The Parquet file has no rows. Write it again with the data in it.",
}
_NO_ROWS["tsv"] = _NO_ROWS["csv"]


@dataclass
class ReadResult:
    table: pa.Table
    format: Format
    warnings: list[str] = field(default_factory=list)
    # For a ZIP dataset with images: reads them on demand; close it when done.
    images: ArchiveImages | None = None


def read_table(path: Path, filename: str, limits: ParseLimits = DEFAULT_LIMITS) -> ReadResult:
    """Read the file at `path`, uploaded under the name `filename` (only its extension is used,
    as a hint). Raises DataFileError when the file is unreadable or breaks a limit."""
    return _read(path, filename, limits, in_archive=False)


def _read(path: Path, filename: str, limits: ParseLimits, *, in_archive: bool) -> ReadResult:
    container = container_format(path)
    warnings: list[str] = []
    images = None
    format_: Format
    if container == "parquet":
        format_ = "parquet"
        table, notes = read_parquet(path, limits)
    elif container == "zip":
        if in_archive:
            raise DataFileError(
                f'The archive\'s metadata file "{filename}" is itself an archive. Use a CSV, '
                "JSON Lines or JSON file."
            )
        with SafeZip(path, limits) as archive:
            if archive.is_workbook:
                format_ = "xlsx"
                table, notes = read_xlsx(path, archive, limits)
            else:
                format_ = "zip"

                def read_member(member: Path, name: str) -> tuple[pa.Table, list[str]]:
                    result = _read(member, name, limits, in_archive=True)
                    return result.table, result.warnings

                table, notes, images = read_zip(archive, path, read_member)
    else:
        kind = text_kind(path, filename)
        format_ = kind.format
        if kind.encoding.warning:
            warnings.append(kind.encoding.warning)
        if kind.format in ("csv", "tsv"):
            table, notes = read_delimited(path, kind.encoding, kind.delimiter, limits)
        elif kind.format == "json":
            table, notes = read_json(path, kind.encoding, limits)
        elif kind.format == "jsonl":
            table, notes = read_jsonl(path, kind.encoding, limits)
        else:
            table, notes = read_text(path, kind.encoding, limits)
    if table.num_rows == 0:
        raise DataFileError(_NO_ROWS.get(format_, "The file holds no rows. Add some data."))
    mismatch = extension_warning(filename, format_)
    return ReadResult(
        table, format_, [*([mismatch] if mismatch else []), *warnings, *notes], images
    )
