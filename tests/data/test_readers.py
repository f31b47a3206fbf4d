"""read_table: every supported format reads correctly, every hostile file meets its expected
outcome quickly, and memory stays bounded for large and hostile inputs."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.data.hostile import CASE_NAMES, PNG, HostileCase, hostile_corpus
from tuneforge.data.encoding import decode
from tuneforge.data.limits import DataFileError, ParseLimits, size_text
from tuneforge.data.readers import JSON_TEXT_KEY, ReadResult, iter_rows, read_table
from tuneforge.errors import InvalidInput

MIB = 1 << 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HostileCase]:
    return {case.name: case for case in hostile_corpus(tmp_path_factory.mktemp("hostile"))}


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, bytes | str], Path]:
    def write(name: str, data: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return write


def read(path: Path, limits: ParseLimits | None = None) -> ReadResult:
    return read_table(path, path.name, limits) if limits else read_table(path, path.name)


def rows(result: ReadResult) -> list[dict[str, Any]]:
    return [row for batch in iter_rows(result.table) for row in batch]


# --- the hostile corpus --------------------------------------------------------------------------


def test_corpus_covers_the_required_cases() -> None:
    required = {
        "json_truncated", "json_mixed_types", "csv_10000_columns", "csv_50mb_cell", "zip_dotdot",
        "zip_absolute_path", "zip_bomb_10gb", "zip_nested", "parquet_named_csv",
        "csv_named_parquet", "binary_noise", "empty", "whitespace_only", "json_deep_lists",
        "csv_formulas", "txt_giant_line", "csv_header_only", "csv_short_rows", "nul_byte",
        "utf16_without_bom", "invalid_utf8", "json_scalar", "json_object_without_list",
        "json_list_of_numbers", "jsonl_bad_line", "xlsx_formulas", "xlsx_corrupt_zip",
        "parquet_2000_columns", "csv_duplicate_columns", "csv_long_column_name",
        "zip_without_metadata", "zip_missing_image", "zip_two_metadata", "gzip_renamed",
    }  # fmt: skip
    assert required <= set(CASE_NAMES)
    assert len(CASE_NAMES) >= 30


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_case(corpus: dict[str, HostileCase], name: str) -> None:
    case = corpus[name]
    started = time.perf_counter()
    if case.outcome == "error":
        with pytest.raises(DataFileError) as raised:
            read_table(case.path, case.filename)
        assert isinstance(raised.value, InvalidInput)  # → HTTP 422
        assert case.phrase.lower() in raised.value.message.lower(), raised.value.message
    else:
        result = read_table(case.path, case.filename)
        assert result.table.num_rows > 0
        if case.outcome == "warning":
            assert any(case.phrase.lower() in w.lower() for w in result.warnings), result.warnings
    # Bounded parsing ends in seconds (reading up to a million rows takes ~3 s alone, more on a
    # busy CI machine); unbounded parsing of these files would take minutes or never end.
    assert time.perf_counter() - started < 15


_MEASURE = textwrap.dedent(
    """
    import json, re, sys
    from pathlib import Path
    from tuneforge.data.limits import DataFileError
    from tuneforge.data.readers import read_table

    def peak():
        # VmHWM belongs to this process's memory map; ru_maxrss would include the parent's
        # peak, which Linux carries across fork and exec.
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

    read_table(Path(sys.argv[1]), "warmup.csv")  # imports and first-use allocations
    before = peak()
    for name in sys.argv[2:]:
        path = Path(name)
        try:
            outcome = read_table(path, path.name).table.num_rows
        except DataFileError as error:
            outcome = error.message
    print(json.dumps({"growth": peak() - before, "outcome": outcome}))
    """
)


LINUX_ONLY = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)"
)


def _peak_growth(warmup: Path, *paths: Path) -> dict[str, Any]:
    """Peak RSS growth of a fresh process while it reads `paths` (after reading `warmup`)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(warmup), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@LINUX_ONLY
def test_hostile_files_are_refused_in_bounded_memory(
    corpus: dict[str, HostileCase], write: Callable[[str, bytes | str], Path]
) -> None:
    big = [
        "csv_50mb_cell", "csv_50mb_quoted_cell", "txt_giant_line", "json_huge_string",
        "jsonl_too_long_line", "json_deep_lists", "zip_bomb_ratio", "zip_bomb_10gb",
        "zip_overlapping_bomb", "zip_lying_size", "xlsx_billion_laughs", "csv_unclosed_quote",
    ]  # fmt: skip
    measured = _peak_growth(write("w.csv", "a\n1\n"), *(corpus[name].path for name in big))
    # The largest of these files is 50 MB and several expand to gigabytes; reading one record
    # (at most 8 MiB of text, a few copies while parsing) is all any of them may cost.
    assert measured["growth"] < 64 * MIB, size_text(measured["growth"])


@LINUX_ONLY
def test_a_100mb_csv_reads_in_bounded_memory(
    tmp_path: Path, write: Callable[[str, bytes | str], Path]
) -> None:
    block = "".join(
        f"Question {i}: what is the answer to this rather long prompt?,"
        f'"Answer {i}: a fairly long sentence, quoted to hold a comma, and more words."\n'
        for i in range(1000)
    )
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("prompt,response\n")
        while f.tell() < 100 * MIB:
            f.write(block)
    started = time.perf_counter()
    measured = _peak_growth(write("w.csv", "a\n1\n"), path)
    assert isinstance(measured["outcome"], int) and measured["outcome"] > 500_000, measured
    # The table itself is ~100 MB of Arrow strings; parsing adds one batch of Python strings.
    assert measured["growth"] < 300 * MIB, size_text(measured["growth"])
    assert time.perf_counter() - started < 30


# --- every format -----------------------------------------------------------------------------


def test_csv(write: Callable[[str, bytes | str], Path]) -> None:
    result = read(write("d.csv", 'prompt,response,note\nhi,"two\nlines",\n"a, b",x,y\n'))
    assert result.format == "csv"
    assert result.warnings == []
    assert result.table.schema.types == [pa.string()] * 3
    assert rows(result) == [
        {"prompt": "hi", "response": "two\nlines", "note": ""},
        {"prompt": "a, b", "response": "x", "note": "y"},
    ]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("semicolons.csv", "a;b\n1;2\n"),
        ("pipes.txt.csv", "a|b\n1|2\n"),
        ("tabs.tsv", "a\tb\n1\t2\n"),
        ("no_extension", "a\tb\n1\t2\n"),
        ("bom.csv", "\ufeffa,b\n1,2\n"),
        ("crlf.csv", "a,b\r\n1,2\r\n"),
    ],
)
def test_delimiters_and_line_endings(
    write: Callable[[str, bytes | str], Path], name: str, data: str
) -> None:
    result = read(write(name, data))
    assert result.format in ("csv", "tsv")
    assert rows(result) == [{"a": "1", "b": "2"}]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-8-sig"])
def test_encodings_with_byte_order_marks(
    write: Callable[[str, bytes | str], Path], codec: str
) -> None:
    text = "prompt,response\ncafé,naïve ☕\n"
    data = text.encode(codec)
    if codec in ("utf-16-be", "utf-16-le"):
        data = "\ufeff".encode(codec) + data
    result = read(write("d.csv", data))
    assert rows(result) == [{"prompt": "café", "response": "naïve ☕"}]
    assert result.warnings == []


def test_decode() -> None:
    assert decode("héllo".encode()) == ("héllo", None)
    assert decode(b"\xef\xbb\xbfhi") == ("hi", None)
    assert decode("hi".encode("utf-16")) == ("hi", None)
    text, warning = decode(b"caf\xe9 \x81")  # 0x81 is undefined in cp1252: Latin-1 fallback
    assert text == "café \x81"
    assert warning is not None and "cp1252" in warning
    text, warning = decode("hello world".encode("utf-16-be"))
    assert text == "hello world"
    assert warning is not None and "UTF-16-BE" in warning
    with pytest.raises(DataFileError, match="does not look like a text file"):
        decode(b"abc\x00def")


def test_json_list_keeps_types_and_nesting(write: Callable[[str, bytes | str], Path]) -> None:
    records = [
        {
            "messages": [
                {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello."},
            ],
            "score": 1,
            "weight": 0.5,
            "ok": True,
        },
        {"messages": [{"role": "user", "content": "Yo"}], "score": 2, "weight": 1, "ok": None},
    ]
    result = read(write("d.json", json.dumps(records, indent=2)))
    assert result.format == "json"
    assert result.warnings == []
    schema = result.table.schema
    assert pa.types.is_list(schema.field("messages").type)
    assert schema.field("score").type == pa.int64()
    assert schema.field("weight").type == pa.float64()
    assert schema.field("ok").type == pa.bool_()
    assert rows(result)[0]["messages"] == records[0]["messages"]
    assert rows(result)[1]["weight"] == 1.0


def test_json_object_holding_a_list(write: Callable[[str, bytes | str], Path]) -> None:
    data = {"version": "1.0", "meta": {"n": [1, 2]}, "data": [{"text": "a"}, {"text": "b"}]}
    result = read(write("d.json", json.dumps(data)))
    assert rows(result) == [{"text": "a"}, {"text": "b"}]
    assert any('records under "data"' in w and "version, meta" in w for w in result.warnings)


def test_json_records_across_chunk_boundaries(write: Callable[[str, bytes | str], Path]) -> None:
    """Strings holding quotes, brackets and escapes, cut anywhere by the 1 MiB reads."""
    tricky = 'a "quoted" [bracket] {brace}, comma \\ backslash \u00e9 \\"[ ' * 20
    records = [{"i": i, "text": tricky + str(i), "nested": {"list": [i, [i]]}} for i in range(4000)]
    result = read(write("d.json", json.dumps({"data": records})))
    assert rows(result) == records


def test_jsonl_union_of_fields(write: Callable[[str, bytes | str], Path]) -> None:
    data = '{"a": 1}\n\n{"b": "x"}\n   \n{"a": 3, "b": "y"}\n'
    result = read(write("d.jsonl", data))
    assert result.format == "jsonl"
    assert rows(result) == [{"a": 1, "b": None}, {"a": None, "b": "x"}, {"a": 3, "b": "y"}]


def test_mixed_nested_values_become_json_text(write: Callable[[str, bytes | str], Path]) -> None:
    parts = [{"type": "text", "text": "Hi"}]
    records = [
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"messages": [{"role": "user", "content": parts}]},
    ]
    result = read(write("d.jsonl", "\n".join(map(json.dumps, records))))
    field = result.table.schema.field("messages")
    assert field.type == pa.string()
    assert field.metadata == {JSON_TEXT_KEY: b"json"}
    assert rows(result) == records  # decoded back by iter_rows
    assert any("JSON text" in w for w in result.warnings)


def test_types_are_reconciled_across_batches(write: Callable[[str, bytes | str], Path]) -> None:
    lines = [json.dumps({"n": i, "m": {"a": i}}) for i in range(70_000)]
    lines.append(json.dumps({"n": "many", "m": {"a": 0, "b": "new field"}}))
    result = read(write("d.jsonl", "\n".join(lines)))
    assert result.table.schema.field("n").type == pa.string()
    assert result.table.column("n")[0].as_py() == "0"
    assert result.table.column("n")[-1].as_py() == "many"
    assert result.table.column("m")[0].as_py() == {"a": 0, "b": None}
    assert result.table.column("m")[-1].as_py() == {"a": 0, "b": "new field"}
    assert any('Column "n" mixes numbers' in w for w in result.warnings)


def test_ints_and_floats_in_different_batches(write: Callable[[str, bytes | str], Path]) -> None:
    lines = [json.dumps({"x": i}) for i in range(70_000)] + [json.dumps({"x": 0.5})]
    result = read(write("d.jsonl", "\n".join(lines)))
    assert result.table.schema.field("x").type == pa.float64()
    assert result.warnings == []


def test_txt_lines_and_blocks(write: Callable[[str, bytes | str], Path]) -> None:
    lines = read(write("lines.txt", "\n\nfirst line\nsecond line\n\n\n"))
    assert lines.format == "txt"
    assert rows(lines) == [{"text": "first line"}, {"text": "second line"}]
    blocks = read(write("blocks.txt", "para one\r\nstill one\r\n\r\n\r\npara two\r\n"))
    assert rows(blocks) == [{"text": "para one\nstill one"}, {"text": "para two"}]


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "messages": [[{"role": "user", "content": "hi"}]],
            "n": pa.array([7], pa.int32()),
            "image": [{"bytes": PNG, "path": "a.png"}],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    result = read(tmp_path / "d.parquet")
    assert result.format == "parquet"
    assert result.table.equals(table)


def _xlsx(sheets: dict[str, list[list[Any]]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, cells in sheets.items():
        sheet = book.create_sheet(title)
        for row in cells:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _with_saved_results(workbook: bytes, results: dict[str, str]) -> bytes:
    """Store results for formula cells, as Excel does when it saves."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            for cell, value in results.items():
                data = re.sub(
                    # `<v/>` or `<v></v>`, as the XML library openpyxl writes with makes it
                    rb'(<c r="%s"[^>]*>)(<f>[^<]*</f>)(?:<v ?/>|<v></v>)' % cell.encode(),
                    rb"\1\2<v>%s</v>" % value.encode(),
                    data,
                )
            target.writestr(info, data)
    return out.getvalue()


def test_xlsx(write: Callable[[str, bytes | str], Path]) -> None:
    book = _xlsx(
        {
            "Empty": [],
            "Data": [
                [None],
                ["question", "answer", "when", "n"],
                ["1+1?", "=1+1", datetime(2024, 5, 1, 12, 30), 3],
                [None, None, None, None],
                ["2+2?", "four", None, 4.5, "stray"],
            ],
            "Notes": [["ignored"]],
        }
    )
    result = read(write("d.xlsx", _with_saved_results(book, {"B3": "2"})))
    assert result.format == "xlsx"
    assert rows(result) == [
        {"question": "1+1?", "answer": "2", "when": "2024-05-01T12:30:00", "n": 3.0},
        {"question": "2+2?", "answer": "four", "when": None, "n": 4.5},
    ]
    warnings = " ".join(result.warnings)
    assert 'Read the sheet "Data"' in warnings and '"Notes"' in warnings
    assert "results as last saved were read" in warnings
    assert "1 cells to the right" in warnings
    assert 'Column "answer" mixes numbers' in warnings


def test_zip_of_images(tmp_path: Path) -> None:
    metadata = [
        {"image": "img/cat.png", "images": ["img/cat.png", "data/img/dog.png"], "caption": "x"},
        {"image": "./img/dog.png", "images": [], "caption": "y"},
    ]
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data/meta.jsonl", "\n".join(map(json.dumps, metadata)))
        z.writestr("data/img/cat.png", PNG + b"cat")
        z.writestr("data/img/dog.png", PNG + b"dog")
        z.writestr("data/img/unused.png", PNG)
        z.writestr("__MACOSX/data/._meta.jsonl", b"\x00junk")
        z.writestr("README.md", "hello")
    result = read(archive)
    assert result.format == "zip"
    assert rows(result) == metadata
    images = result.images
    assert images is not None
    with images:
        assert images.columns == ("image", "images")
        assert images.get("img/cat.png") == PNG + b"cat"
        assert images.get("./img/dog.png") == PNG + b"dog"
        assert images.get("data/img/dog.png") == PNG + b"dog"
        assert images.get("img/none.png") is None
        assert images.get("../data/img/cat.png") is None
    warnings = " ".join(result.warnings)
    assert "1 of the archive's 3 images are not named in the metadata (such as \"data/img/" in (
        warnings.replace(" and will not be used", "")
    )
    assert "README.md" in warnings


def test_zip_holding_only_a_table(tmp_path: Path) -> None:
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("train.csv", "prompt,response\nhi,there\n")
    result = read(archive)
    assert (result.format, result.images, rows(result)) == (
        "zip",
        None,
        [{"prompt": "hi", "response": "there"}],
    )


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "name", "data", "phrase"),
    [
        (ParseLimits(max_rows=2), "d.csv", "a\n1\n2\n3\n", "more than 2 rows"),
        (ParseLimits(max_rows=2), "d.jsonl", '{"a":1}\n{"a":1}\n{"a":1}\n', "more than 2 rows"),
        (ParseLimits(max_rows=2), "d.txt", "a\nb\nc\n", "more than 2 rows"),
        (ParseLimits(max_columns=2), "d.csv", "a,b,c\n1,2,3\n", "3 columns; the limit is 2"),
        (ParseLimits(max_cell_bytes=10), "d.csv", "a\n" + "é" * 6 + "\n", "the limit is 10 bytes"),
        (
            ParseLimits(max_cell_bytes=10),
            "d.json",
            json.dumps([{"m": [{"content": "x" * 11}]}]),
            "is 11 bytes; the limit is 10 bytes",
        ),
        (ParseLimits(max_json_depth=3), "d.json", '[{"a": [[1]]}]', "more than 3 levels"),
        (ParseLimits(max_json_depth=3), "d.jsonl", '{"a": [[[1]]]}\n', "more than 3 levels"),
        (ParseLimits(max_line_bytes=100), "d.txt", "x" * 101 + "\n", "longer than 100 bytes"),
        (ParseLimits(max_column_name_bytes=3), "d.csv", "abcd\n1\n", "the limit is 3"),
    ],
)
def test_custom_limits(
    write: Callable[[str, bytes | str], Path],
    limits: ParseLimits,
    name: str,
    data: str,
    phrase: str,
) -> None:
    with pytest.raises(DataFileError, match=re.escape(phrase)):
        read(write(name, data), limits)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _parquet_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


_IMAGES = {"meta.csv": b"image\na.png\nb.png\n", "a.png": PNG, "b.png": PNG}


@pytest.mark.parametrize(
    ("limits", "name", "data", "phrase"),
    [
        (ParseLimits(max_archive_members=2), "d.zip", _zip_bytes(_IMAGES), "3 files"),
        (ParseLimits(max_decompressed_bytes=100), "d.zip", _zip_bytes(_IMAGES), "in total"),
        (ParseLimits(max_image_bytes=10), "d.zip", _zip_bytes(_IMAGES), '"a.png" is 72 bytes'),
        (
            ParseLimits(max_member_bytes=10),
            "d.zip",
            _zip_bytes({"meta.csv": b"text\n" + b"x" * 20 + b"\n"}),
            "expands to 26 bytes",
        ),
        (
            ParseLimits(max_spreadsheet_parts_bytes=100),
            "d.xlsx",
            _xlsx({"S": [["a"], [1]]}),
            "the limit is 100 bytes",
        ),
        (
            ParseLimits(max_cell_bytes=5),
            "d.parquet",
            _parquet_bytes(pa.table({"m": [[{"content": "abcdef"}]]})),
            'Column "m": a value is 6 bytes',
        ),
        (
            ParseLimits(max_cell_bytes=5),
            "d.parquet",
            _parquet_bytes(pa.table({"c": pa.array(["a", "abcdef"]).dictionary_encode()})),
            "a value is 6 bytes",
        ),
        (
            ParseLimits(max_cell_bytes=5),
            "d.parquet",
            _parquet_bytes(pa.table({"t": ["a", "abcdef"]})),
            'Row 2, column "t"',
        ),
        (
            ParseLimits(max_json_depth=1),
            "d.parquet",
            _parquet_bytes(pa.table({"n": [[[1]]]})),
            'Column "n" is nested more than 1 levels',
        ),
    ],
)
def test_custom_limits_on_binary_formats(
    write: Callable[[str, bytes | str], Path],
    limits: ParseLimits,
    name: str,
    data: bytes,
    phrase: str,
) -> None:
    with pytest.raises(DataFileError, match=re.escape(phrase)):
        read(write(name, data), limits)


def test_zip_naming_images_it_lacks(write: Callable[[str, bytes | str], Path]) -> None:
    with pytest.raises(DataFileError, match=re.escape('"pics/a.png", which is not in the archive')):
        read(write("d.zip", _zip_bytes({"meta.csv": b"image\npics/a.png\n"})))


def test_size_text() -> None:
    assert [size_text(n) for n in (5, 1024, 1536, MIB, 2.5 * MIB, 150 * MIB, 10 << 30)] == [
        "5 bytes",
        "1 KiB",
        "1.5 KiB",
        "1 MiB",
        "2.5 MiB",
        "150 MiB",
        "10 GiB",
    ]
