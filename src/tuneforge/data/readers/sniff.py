"""Which format a file holds, from its content first and its name second.

Magic bytes decide binary formats (Parquet's `PAR1`, ZIP's `PK`; an .xlsx is a ZIP told apart
later by its parts) and name the common formats we cannot read (gzip, PDF, old .xls…). Text is
JSON or JSON Lines when it looks like it, whatever its name; otherwise the extension decides, and
without a telling extension a consistent delimiter makes it CSV/TSV and its absence TXT. A name
that disagrees with the content earns a warning, not an error.
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneforge.data.encoding import TextEncoding, detect
from tuneforge.data.limits import DataFileError
from tuneforge.data.readers.json_scan import within_depth

Format = Literal["csv", "tsv", "json", "jsonl", "parquet", "xlsx", "txt", "zip"]
SAMPLE_CHARS = 64 << 10
DELIMITERS = ",\t;|"
SNIFF_DEPTH = 64  # deeper first lines are not taken for JSON Lines here; the reader says why
FORMAT_NAMES: dict[Format, str] = {
    "csv": "CSV",
    "tsv": "TSV (tab-separated)",
    "json": "JSON",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "xlsx": "Excel (.xlsx)",
    "txt": "plain text",
    "zip": "ZIP",
}
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".txt": "txt",
    ".zip": "zip",
}
_FAMILY = {"tsv": "csv", "jsonl": "json"}
_READABLE = "TuneForge reads CSV, TSV, JSON, JSON Lines, Parquet, Excel (.xlsx), TXT and ZIP files."
_UNPACK = "Decompress it first (for example with 7-Zip or gunzip), or zip it instead."
_IMAGES = "To train on images, upload a ZIP holding the images and a metadata file naming them."
_UNSUPPORTED: tuple[tuple[re.Pattern[bytes], str, str], ...] = tuple(
    (re.compile(magic, re.DOTALL), what, fix)
    for magic, what, fix in (
        (rb"\x1f\x8b", "gzip-compressed", _UNPACK),
        (rb"BZh[1-9]1AY&SY", "bzip2-compressed", _UNPACK),
        (rb"\xfd7zXZ\x00", "xz-compressed", _UNPACK),
        (rb"\x28\xb5\x2f\xfd", "zstd-compressed", _UNPACK),
        (rb"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "Use a ZIP archive instead."),
        (rb"Rar!\x1a\x07", "a RAR archive", "Use a ZIP archive instead."),
        (
            rb"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "an old-style Excel (.xls) or Office file",
            "Open it in Excel or LibreOffice and save it as .xlsx or CSV.",
        ),
        (rb"%PDF-", "a PDF document", "Export the data as CSV, JSON Lines or TXT."),
        (rb"SQLite format 3\x00", "an SQLite database", "Export the table as CSV or Parquet."),
        (rb"\x89PNG\r\n\x1a\n", "a PNG image", _IMAGES),
        (rb"\xff\xd8\xff", "a JPEG image", _IMAGES),
        (rb"GIF8[79]a", "a GIF image", _IMAGES),
    )
)


@dataclass(frozen=True)
class TextKind:
    format: Format
    encoding: TextEncoding
    delimiter: str = ","


def container_format(path: Path) -> Literal["parquet", "zip"] | None:
    """'parquet' or 'zip' from the magic bytes, None for text; known other formats are refused."""
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise DataFileError(
            "The file is empty (0 bytes). Check that you picked the right file and that it was "
            "saved."
        )
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    for magic, what, fix in _UNSUPPORTED:
        if magic.match(head):
            raise DataFileError(f"The file is {what}. {_READABLE} {fix}")
    return None


def text_kind(path: Path, filename: str) -> TextKind:
    """The format of a text file (refusing binary ones, see `encoding.detect`)."""
    encoding = detect(path)
    with encoding.open(path) as f:
        sample = _sample(f.read)
    extension = suffix(filename)
    json_format = _json_format(sample, extension)
    if json_format:
        return TextKind(json_format, encoding)
    claimed = EXTENSIONS.get(extension)
    if claimed == "tsv":
        return TextKind("tsv", encoding, "\t")
    if claimed == "txt":
        return TextKind("txt", encoding)
    delimiter = sniff_delimiter(sample) or ("," if claimed == "csv" else None)
    if delimiter is None:
        return TextKind("txt", encoding)
    return TextKind("tsv" if delimiter == "\t" else "csv", encoding, delimiter)


def extension_warning(filename: str, actual: Format) -> str | None:
    """A warning when the file's name promises another kind of content than it holds."""
    extension = suffix(filename)
    claimed = EXTENSIONS.get(extension)
    if claimed is None or _FAMILY.get(claimed, claimed) == _FAMILY.get(actual, actual):
        return None
    name = FORMAT_NAMES[actual]
    return f"The file is named {extension} but holds {name} data, so it was read as {name}."


def suffix(filename: str) -> str:
    return posixpath.splitext(filename.replace("\\", "/"))[1].lower()


def sniff_delimiter(sample: str) -> str | None:
    """The delimiter that splits most of the first lines into the header's number of fields
    (at least 2)."""
    lines = sample.splitlines()[:30]
    if len(lines) > 1 and len(sample) >= SAMPLE_CHARS:
        lines.pop()  # probably cut short
    best, best_score = None, (0.0, 0)
    for delimiter in DELIMITERS:
        widths = [len(row) for row in csv.reader(lines, delimiter=delimiter) if row]
        if not widths or widths[0] < 2:
            continue
        share = sum(width == widths[0] for width in widths) / len(widths)
        if share > 0.5 and (share, widths[0]) > best_score:
            best, best_score = delimiter, (share, widths[0])
    return best


def _sample(read: Callable[[int], str]) -> str:
    """Up to SAMPLE_CHARS of text from the first character that is not whitespace."""
    while chunk := read(SAMPLE_CHARS):
        start = chunk.lstrip()
        if start:
            return start + read(SAMPLE_CHARS - len(start))
    raise DataFileError(
        "The file is empty: it holds only whitespace. Check that you picked the right file."
    )


def _json_format(sample: str, extension: str) -> Format | None:
    """'json' or 'jsonl' when the text looks like JSON, else None."""
    first, after = sample[:1], sample[1:].lstrip()[:1]
    claimed = EXTENSIONS.get(extension)
    if claimed in ("json", "jsonl") and first not in ("[", "{") and _is_json(sample):
        return "json"  # a single value: the reader says why that is not a dataset
    if first == "[":
        return "json" if claimed in ("json", "jsonl") or after in ("{", "]") else None
    if first != "{":
        return None
    lines = [line for line in sample.splitlines()[:50] if line.strip()][:2]
    one_object_per_line = _is_object(lines[0]) and (
        len(lines) == 1 or lines[1].lstrip().startswith("{")
    )
    if claimed == "jsonl" or (one_object_per_line and len(lines) == 2):
        return "jsonl"
    if claimed == "json":
        return "json"
    if one_object_per_line:
        return "jsonl"
    return "json" if after in ('"', "}") else None


def _is_object(line: str) -> bool:
    return _is_json(line) and line.lstrip().startswith("{")


def _is_json(text: str) -> bool:
    if not within_depth(text, SNIFF_DEPTH):
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
