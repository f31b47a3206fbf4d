"""A corpus of malformed and hostile data files, generated at test time (nothing large is stored).

`hostile_corpus(directory)` writes every case into `directory/<case name>/<file name>` and returns
them with the outcome each must have when read (or uploaded):

- `error`: refused with a DataFileError (HTTP 422) whose message contains `phrase`;
- `warning`: read, with a warning containing `phrase`;
- `reads`: read without failing (the file is odd but harmless).

Phrases are matched case-insensitively. The largest files are 50 MB; writing the whole corpus
takes a few seconds. The API-level tests reuse it to check the server's answers and its memory.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq

Outcome = Literal["error", "warning", "reads"]
MIB = 1 << 20
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)  # an image header is enough: readers never decode


@dataclass(frozen=True)
class HostileCase:
    name: str
    path: Path
    outcome: Outcome
    phrase: str
    description: str

    @property
    def filename(self) -> str:
        """The name the file is uploaded under."""
        return self.path.name


@dataclass(frozen=True)
class _Spec:
    name: str
    filename: str
    outcome: Outcome
    phrase: str
    description: str
    write: Callable[[Path], None]


_SPECS: list[_Spec] = []


def hostile_corpus(directory: Path) -> list[HostileCase]:
    """Write every case under `directory` and return them."""
    cases = []
    for spec in _SPECS:
        path = directory / spec.name / spec.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        spec.write(path)
        cases.append(HostileCase(spec.name, path, spec.outcome, spec.phrase, spec.description))
    return cases


def case(
    name: str, filename: str, outcome: Outcome, phrase: str, description: str
) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def register(write: Callable[[Path], None]) -> Callable[[Path], None]:
        _SPECS.append(_Spec(name, filename, outcome, phrase, description, write))
        return write

    return register


def _bytes(
    name: str,
    filename: str,
    outcome: Outcome,
    phrase: str,
    description: str,
    data: bytes | Callable[[], bytes],
) -> None:
    """A case whose file holds `data` (a function making it, for large files: nothing large is
    built before the corpus is written)."""

    def write(path: Path) -> None:
        path.write_bytes(data() if callable(data) else data)

    case(name, filename, outcome, phrase, description)(write)


def _text(
    name: str,
    filename: str,
    outcome: Outcome,
    phrase: str,
    description: str,
    text: str | Callable[[], str],
) -> None:
    _bytes(
        name,
        filename,
        outcome,
        phrase,
        description,
        lambda: (text() if callable(text) else text).encode(),
    )


# --- not text at all ---------------------------------------------------------------------------

_bytes("empty", "data.csv", "error", "empty", "a zero-byte file", b"")
_text("whitespace_only", "data.txt", "error", "empty", "spaces, tabs and newlines", " \n\t\n  \r\n")
_bytes(
    "binary_noise",
    "data.csv",
    "error",
    "does not look like a text file",
    "64 KiB of random bytes",
    b"\x00" + random.Random(7).randbytes(64 * 1024),
)
_bytes(
    "control_characters",
    "data.txt",
    "error",
    "does not look like a text file",
    "text made mostly of control characters, without NUL bytes",
    bytes(range(1, 9)) * 2000 + b"some text\n",
)
_text(
    "nul_byte",
    "data.csv",
    "error",
    "NUL byte",
    "a CSV with one NUL byte in a value",
    "a,b\n1,x\x00y\n",
)
_bytes(
    "gzip_renamed",
    "data.csv",
    "error",
    "gzip",
    "a gzip-compressed CSV named .csv",
    gzip.compress(b"prompt,response\nhi,there\n"),
)
_bytes("pdf_renamed", "data.json", "error", "PDF", "a PDF named .json", b"%PDF-1.7\n%\xe2\xe3\n")
_bytes(
    "xls_renamed",
    "data.xlsx",
    "error",
    "old-style Excel",
    "an old binary .xls (OLE2) named .xlsx",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
)

# --- encodings ---------------------------------------------------------------------------------

_bytes(
    "invalid_utf8",
    "data.csv",
    "warning",
    "cp1252",
    "Windows-1252 text (not valid UTF-8)",
    "prompt,response\ncafé,crème brûlée\n".encode("cp1252"),
)
_bytes(
    "utf16_without_bom",
    "data.csv",
    "warning",
    "UTF-16",
    "UTF-16-LE text without a byte-order mark",
    "prompt,response\nhello,world\n".encode("utf-16-le"),
)
_bytes(
    "utf16_bom_invalid",
    "data.csv",
    "error",
    "not valid UTF-16",
    "a UTF-16 byte-order mark followed by an unpaired surrogate",
    b"\xff\xfea\x00,\x00b\x00\n\x00\x00\xd8x\x00",
)

# --- JSON --------------------------------------------------------------------------------------

_text(
    "json_truncated",
    "data.json",
    "error",
    "incomplete",
    "a JSON list cut off mid-record",
    '[{"prompt": "hi", "response": "there"}, {"prompt": "cut',
)
_text(
    "json_truncated_object",
    "data.json",
    "error",
    "incomplete",
    "a JSON list cut off between records",
    '[{"prompt": "hi", "response": "there"},\n {"prompt": "x"}',
)
_text("json_scalar", "data.json", "error", "single number", "the JSON value 42", "42")
_text(
    "json_object_without_list",
    "data.json",
    "error",
    "holds no list of records",
    "a JSON object with no list inside",
    '{"prompt": "hi", "response": "there"}',
)
_text(
    "json_list_of_numbers",
    "data.json",
    "error",
    "not an object",
    "a JSON list of numbers",
    "[1, 2, 3]",
)
_text(
    "json_mixed_list",
    "data.json",
    "error",
    "record 2",
    "a JSON list of an object and a string",
    '[{"a": 1}, "two"]',
)
_text(
    "json_two_lists",
    "data.json",
    "error",
    "several lists",
    "an object holding two lists of records",
    json.dumps({"train": [{"a": 1}], "test": [{"a": 2}]}),
)
_text(
    "json_trailing_data",
    "data.json",
    "error",
    "more data after",
    "a JSON list followed by more text",
    '[{"a": 1}] [{"a": 2}]',
)
_text("json_empty_list", "data.json", "error", "no records", "an empty JSON list", "[]")
_text(
    "json_deep_lists",
    "data.json",
    "error",
    "nested more than 64",
    "lists nested 100,000 levels deep",
    "[" * 100_000 + "]" * 100_000,
)
_text(
    "json_deep_objects",
    "data.json",
    "error",
    "nested more than 64",
    "a record whose objects nest 100,000 levels deep",
    '[{"a": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001 + "]",
)
_text(
    "jsonl_deep_line",
    "data.jsonl",
    "error",
    "nested more than 64",
    "a JSON Lines file whose second line nests 100,000 levels",
    '{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
)
_text(
    "jsonl_bad_line",
    "data.jsonl",
    "error",
    "line 3",
    "JSON Lines with an invalid third line",
    '{"a": 1}\n{"a": 2}\n{"a": 3,,}\n{"a": 4}\n',
)
_text(
    "jsonl_list_line",
    "data.jsonl",
    "error",
    "line 2 is a list",
    "JSON Lines whose second line is a list",
    '{"a": 1}\n[1, 2]\n',
)
_text(
    "json_mixed_types",
    "data.json",
    "warning",
    "mixes numbers",
    "a column holding numbers, text and true/false",
    json.dumps([{"x": 1, "y": "a"}, {"x": "two", "y": "b"}, {"x": True, "y": "c"}]),
)
_text(
    "json_mixed_nested",
    "data.jsonl",
    "warning",
    "JSON text",
    "a `content` that is text in one record and a list in another",
    '{"content": "hi"}\n{"content": [{"type": "text", "text": "hi"}]}\n',
)
_text(
    "jsonl_10000_keys",
    "data.jsonl",
    "error",
    "more than 1,000 columns",
    "a record with 10,000 fields",
    json.dumps({f"k{i}": i for i in range(10_000)}) + "\n",
)
_text(
    "jsonl_too_long_line",
    "data.jsonl",
    "error",
    "longer than 8 MiB",
    "a 20 MB JSON Lines record",
    lambda: '{"text": "' + "x" * (20 * MIB) + '"}\n',
)
_text(
    "json_huge_string",
    "data.json",
    "error",
    "larger than 8 MiB",
    "a JSON record holding a 20 MB string",
    lambda: '[{"text": "' + "x" * (20 * MIB) + '"}]',
)
_text(
    "json_long_value",
    "data.json",
    "error",
    "the limit is 1 MiB",
    "a JSON record holding a 2 MB string",
    lambda: '[{"text": "' + "x" * (2 * MIB) + '"}]',
)
_text(
    "txt_named_json_lines",
    "data.txt",
    "warning",
    "JSON Lines",
    "JSON Lines saved as .txt",
    '{"a": 1}\n{"a": 2}\n',
)

# --- CSV and TXT -------------------------------------------------------------------------------

_text(
    "csv_10000_columns",
    "data.csv",
    "error",
    "10,000 columns",
    "a CSV header of 10,000 columns",
    ",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join("1" * 10_000) + "\n",
)
_text(
    "csv_header_only",
    "data.csv",
    "error",
    "no data rows",
    "a header and nothing else",
    "prompt,response\n",
)
_text(
    "csv_formulas",
    "data.csv",
    "warning",
    "formulas",
    "cells that a spreadsheet would run",
    'prompt,response\n"=HYPERLINK(""http://evil"",""x"")",+cmd|calc\n@SUM(1),-2+3\nok,-1\n',
)
_text(
    "csv_short_rows",
    "data.csv",
    "warning",
    "fewer values",
    "rows shorter than the header",
    "a,b,c\n1,2,3\n4,5\n6\n",
)
_text(
    "csv_long_row",
    "data.csv",
    "error",
    "has 4 values but the header names 2",
    "a row longer than the header",
    "a,b\n1,2\n3,4,5,6\n",
)
_text(
    "csv_duplicate_columns",
    "data.csv",
    "warning",
    "renamed",
    "two columns with the same name",
    "text,text\nx,y\n",
)
_text(
    "csv_long_column_name",
    "data.csv",
    "error",
    "name is 5,000 bytes",
    "a 5,000-character column name (a data row taken as the header)",
    "x" * 5000 + ",b\n1,2\n",
)
_text(
    "csv_unclosed_quote",
    "data.csv",
    "error",
    "not closed",
    "a quote that is never closed, swallowing 2 MB of lines",
    lambda: 'a,b\n"x,1\n' + "more,text\n" * 200_000,
)
_text(
    "csv_long_value",
    "data.csv",
    "error",
    "larger than 1 MiB",
    "a 2 MB value on one line",
    lambda: "text\n" + "x" * (2 * MIB) + "\n",
)
_text(
    "csv_too_many_rows",
    "data.csv",
    "error",
    "1,000,000 rows",
    "1,000,001 rows",
    lambda: "text\n" + "x\n" * 1_000_001,
)


@case("csv_50mb_cell", "data.csv", "error", "longer than 8 MiB", "a 50 MB value on one line")
def _csv_50mb_cell(path: Path) -> None:
    with path.open("w") as f:
        f.write("prompt,response\nhi,")
        for _ in range(50):
            f.write("y" * MIB)
        f.write("\n")


@case(
    "csv_50mb_quoted_cell",
    "data.csv",
    "error",
    "larger than 1 MiB",
    "a 50 MB quoted value spread over 50,000 lines",
)
def _csv_50mb_quoted_cell(path: Path) -> None:
    line = "z" * 1023 + "\n"
    with path.open("w") as f:
        f.write('prompt,response\nhi,"')
        for _ in range(50):
            f.write(line * 1024)
        f.write('"\n')


@case("txt_giant_line", "data.txt", "error", "longer than 8 MiB", "a 50 MB line without newline")
def _txt_giant_line(path: Path) -> None:
    with path.open("w") as f:
        for _ in range(50):
            f.write("w" * MIB)


# --- extensions that lie -----------------------------------------------------------------------


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


_bytes(
    "parquet_named_csv",
    "data.csv",
    "warning",
    "Parquet",
    "a Parquet file named .csv",
    _parquet_bytes(pa.table({"prompt": ["hi"], "response": ["there"]})),
)
_text(
    "csv_named_parquet",
    "data.parquet",
    "warning",
    "CSV",
    "a CSV file named .parquet",
    "prompt,response\nhi,there\n",
)

# --- Parquet -----------------------------------------------------------------------------------

_bytes(
    "parquet_2000_columns",
    "data.parquet",
    "error",
    "2,000 columns",
    "2,000 columns",
    _parquet_bytes(pa.table({f"c{i}": [i] for i in range(2000)})),
)
_bytes(
    "parquet_truncated",
    "data.parquet",
    "error",
    "damaged",
    "the first half of a Parquet file",
    _parquet_bytes(pa.table({"text": [f"hello {i}" for i in range(1000)]}))[:3000],
)


@case("parquet_too_many_rows", "data.parquet", "error", "1,000,000 rows", "1,000,001 rows")
def _parquet_rows(path: Path) -> None:
    pq.write_table(pa.table({"n": pa.array(range(1_000_001), pa.int64())}), path)


# --- Excel -------------------------------------------------------------------------------------


def _workbook(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _rewrite(archive: bytes, edits: dict[str, Callable[[bytes], bytes]]) -> bytes:
    """A copy of a ZIP with some members' contents changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, edits.get(info.filename, lambda d: d)(data))
    return out.getvalue()


_bytes(
    "xlsx_formulas",
    "data.xlsx",
    "warning",
    "formula text",
    "formulas without saved results (as scripts write them)",
    _workbook([["question", "answer"], ["1+1?", "=1+1"], ["2+2?", "=SUM(2,2)"]]),
)
_bytes(
    "xlsx_corrupt_zip",
    "data.xlsx",
    "error",
    "damaged",
    "ZIP magic followed by noise",
    b"PK\x03\x04" + random.Random(3).randbytes(4096),
)
_bytes(
    "xlsx_row_gap",
    "data.xlsx",
    "error",
    "1,048,576 rows",
    "a forged sheet whose second row is numbered 2,000,000,000",
    _rewrite(
        _workbook([["a"], [1]]),
        {
            "xl/worksheets/sheet1.xml": lambda d: d.replace(b'r="2"', b'r="2000000000"').replace(
                b'r="A2"', b'r="A2000000000"'
            )
        },
    ),
)
_LAUGHS = (
    b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        b'<!ENTITY %c "%s">' % (ord("b") + i, (b"&%c;" % (ord("a") + i)) * 10) for i in range(9)
    )
    + b"]>"
)


@case(
    "xlsx_billion_laughs",
    "data.xlsx",
    "error",
    "document type declaration",
    "a sheet whose cell expands nested entities ten billion times",
)
def _xlsx_laughs(path: Path) -> None:
    def explode(sheet: bytes) -> bytes:
        return _LAUGHS + sheet.replace(b"placeholder", b"&j;")

    book = _workbook([["text"], ["placeholder"]])
    path.write_bytes(_rewrite(book, {"xl/worksheets/sheet1.xml": explode}))


# --- ZIP archives --------------------------------------------------------------------------------


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


_META = b"image,caption\nimages/cat.png,a cat\n"
_bytes(
    "zip_dotdot",
    "data.zip",
    "error",
    "unsafe path",
    'a member named "../evil.csv"',
    _zip({"../evil.csv": _META, "images/cat.png": PNG}),
)
_bytes(
    "zip_absolute_path",
    "data.zip",
    "error",
    "unsafe path",
    'a member named "/etc/cron.csv"',
    _zip({"/etc/cron.csv": _META, "images/cat.png": PNG}),
)
_bytes(
    "zip_drive_letter",
    "data.zip",
    "error",
    "unsafe path",
    'a member named "C:\\evil.csv"',
    _zip({"C:\\evil.csv": _META, "images/cat.png": PNG}),
)
_bytes(
    "zip_nested",
    "data.zip",
    "error",
    "another archive",
    "a ZIP inside the ZIP",
    _zip({"meta.csv": _META, "images/cat.png": PNG, "more.zip": _zip({"a.csv": _META})}),
)
_bytes(
    "zip_without_metadata",
    "data.zip",
    "error",
    "no metadata file",
    "images only",
    _zip({"images/cat.png": PNG, "images/dog.png": PNG}),
)
_bytes(
    "zip_two_metadata",
    "data.zip",
    "error",
    "2 metadata files",
    "a CSV and a JSON Lines file beside the images",
    _zip({"a.csv": _META, "b.jsonl": b'{"image": "images/cat.png"}\n', "images/cat.png": PNG}),
)
_bytes(
    "zip_missing_image",
    "data.zip",
    "warning",
    "not in the archive",
    "metadata naming an image the archive lacks (beside one it has): rows get image_missing",
    _zip({"meta.csv": _META + b"images/dog.png,a dog\n", "images/cat.png": PNG}),
)
_bytes(
    "zip_metadata_is_zip",
    "data.zip",
    "error",
    "itself an archive",
    "a metadata file that is really another ZIP",
    _zip({"meta.csv": _zip({"meta.csv": _META}), "images/cat.png": PNG}),
)
_bytes(
    "zip_large_image",
    "data.zip",
    "error",
    "the limit is 20 MiB",
    "a 21 MiB image",
    lambda: _zip(
        {"meta.csv": b"image\nbig.png\n", "big.png": PNG + bytes(21 * MIB)}, zipfile.ZIP_STORED
    ),
)


@case(
    "zip_bomb_ratio",
    "data.zip",
    "error",
    "compression bombs",
    "100 MB of zeros deflated to 100 KB, beside a real metadata file",
)
def _zip_bomb_ratio(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.csv", _META)
        archive.writestr("images/cat.png", PNG)
        with archive.open("zeros.csv", "w") as member:
            for _ in range(100):
                member.write(bytes(MIB))


# Hand-made archives: a directory that lies about sizes or counts cannot be written by zipfile.


@dataclass(frozen=True)
class _Raw:
    name: str
    data: bytes  # as stored
    size: int  # declared uncompressed size
    crc: int = 0
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0


def _raw_zip(members: list[_Raw], *, count: int | None = None, aliases: int = 0) -> bytes:
    """A ZIP written by hand. `aliases` more directory entries point at the first member's data
    (overlapping entries, as in the smallest zip bombs); `count` overrides the member count that
    the end record declares (a ZIP64 end record when it does not fit 16 bits)."""
    out, starts = bytearray(), []
    for member in members:
        starts.append(len(out))
        out += _header(b"PK\x03\x04", member) + member.data
    entries = list(zip(members, starts, strict=True))
    entries += [(replace(members[0], name=f"alias/{i}.png"), starts[0]) for i in range(aliases)]
    directory = b"".join(_header(b"PK\x01\x02", member, offset) for member, offset in entries)
    declared = len(entries) if count is None else count
    short = min(declared, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, len(directory), len(out), 0)
    if declared >= 0xFFFF:
        zip64 = struct.pack(
            "<4sQ2H2L4Q",
            b"PK\x06\x06",
            44,
            45,
            45,
            0,
            0,
            declared,
            declared,
            len(directory),
            len(out),
        )
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(out) + len(directory), 1)
        end = zip64 + locator + end
    return bytes(out + directory + end)


def _header(signature: bytes, member: _Raw, offset: int | None = None) -> bytes:
    """A local header (offset None) or a central directory entry, with ZIP64 sizes if needed."""
    name = member.name.encode()
    big = member.size >= 0xFFFFFFFF
    extra = struct.pack("<HHQQ", 1, 16, member.size, len(member.data)) if big else b""
    sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (len(member.data), member.size)
    common = (member.flags, member.method, 0, 0x21, member.crc, *sizes, len(name), len(extra))
    if offset is None:
        fields = struct.pack("<4s2B4HL2L2H", signature, 45, 0, *common)
    else:
        fields = struct.pack(
            "<4s4B4HL2L5H2L", signature, 45, 3, 45, 0, *common, 0, 0, 0, 0o644 << 16, offset
        )
    return fields + name + extra


def _deflated_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream of that many MiB of zeros, built from one repeated flushed block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + compressor.flush(zlib.Z_FINISH)


@case(
    "zip_bomb_10gb",
    "data.zip",
    "error",
    "expands to 10 GiB",
    "10 GB of zeros deflated into 10 MB, declared in a ZIP64 directory",
)
def _zip_bomb_10gb(path: Path) -> None:
    path.write_bytes(
        _raw_zip(
            [
                _Raw("meta.csv", _META, len(_META), zlib.crc32(_META), zipfile.ZIP_STORED),
                _Raw("zeros.png", _deflated_zeros(10 * 1024), 10 * 1024 * MIB),
            ]
        )
    )


@case(
    "zip_overlapping_bomb",
    "data.zip",
    "error",
    "in total",
    "5,000 directory entries sharing one stored 1 MiB member (5 GB declared in total)",
)
def _zip_overlap(path: Path) -> None:
    block = bytes(MIB)
    image = _Raw("images/0.png", block, MIB, zlib.crc32(block), zipfile.ZIP_STORED)
    path.write_bytes(_raw_zip([image], aliases=4999))


@case(
    "zip_member_count",
    "data.zip",
    "error",
    "10,000,000 files",
    "an end record declaring 10,000,000 members",
)
def _zip_member_count(path: Path) -> None:
    path.write_bytes(
        _raw_zip(
            [_Raw("meta.csv", _META, len(_META), zlib.crc32(_META), zipfile.ZIP_STORED)],
            count=10_000_000,
        )
    )


@case("zip_encrypted", "data.zip", "error", "password-protected", "a member flagged as encrypted")
def _zip_encrypted(path: Path) -> None:
    path.write_bytes(
        _raw_zip(
            [_Raw("meta.csv", _META, len(_META), zlib.crc32(_META), zipfile.ZIP_STORED, flags=1)]
        )
    )


@case(
    "zip_lying_size",
    "data.zip",
    "reads",
    "",
    "a metadata member declaring 1,000 bytes whose data inflates to 50 MB (only 1,000 are read)",
)
def _zip_lying_size(path: Path) -> None:
    text = b"text\n" + b"x" * (50 * MIB)
    declared = text[:1000]
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(text) + compressor.flush()
    path.write_bytes(_raw_zip([_Raw("meta.csv", data, len(declared), zlib.crc32(declared))]))


CASE_NAMES = [spec.name for spec in _SPECS]
assert len(set(CASE_NAMES)) == len(CASE_NAMES), "case names must be unique"
assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in CASE_NAMES)
