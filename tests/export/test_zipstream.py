"""The streamed ZIP: readers accept it, every byte range matches the whole, and Range parsing."""

from __future__ import annotations

import io
import itertools
import random
import shutil
import subprocess
import zipfile
import zlib
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from tuneforge.export.zipstream import (
    CHUNK_SIZE,
    RangeNotSatisfiable,
    ZipEntry,
    ZipLayout,
    crc32_file,
    parse_range,
)

MIB = 1024 * 1024


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    rng = random.Random(7)
    contents = {
        "adapter_config.json": b'{"r": 16}',
        "empty.txt": b"",
        "weights/model.safetensors": rng.randbytes(2 * MIB + 123),  # crosses chunk boundaries
        "tokenizer/tokenizer.json": rng.randbytes(5000),
        "Modèle ✓.txt": b"non-ASCII names are flagged UTF-8",
    }
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return contents


def layout_of(root: Path, names: list[str], **options: object) -> ZipLayout:
    entries = [ZipEntry(n, (root / n).stat().st_size, crc32_file(root / n)) for n in names]
    return ZipLayout(entries, **options)  # type: ignore[arg-type]


def build(layout: ZipLayout, root: Path, start: int = 0, end: int | None = None) -> bytes:
    def open_entry(name: str) -> BinaryIO:
        return (root / name).open("rb")

    chunks = list(layout.chunks(open_entry, start, end))
    assert all(0 < len(c) <= CHUNK_SIZE for c in chunks)
    return b"".join(chunks)


def check_archive(data: bytes, files: dict[str, bytes]) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == list(files)
    for name, content in files.items():
        info = archive.getinfo(name)
        assert info.compress_type == zipfile.ZIP_STORED
        assert zlib.crc32(content) == info.CRC
        assert archive.read(name) == content
    return archive


@pytest.mark.parametrize("threshold", [0xFFFFFFFF, 100], ids=["zip32", "zip64"])
def test_archive_is_valid(tmp_path: Path, files: dict[str, bytes], threshold: int) -> None:
    layout = layout_of(tmp_path, list(files), zip64_threshold=threshold)
    data = build(layout, tmp_path)
    assert len(data) == layout.size
    archive = check_archive(data, files)
    stamps = {info.date_time for info in archive.infolist()}
    assert stamps == {(1980, 1, 1, 0, 0, 0)}
    assert all(info.flag_bits & 0x800 for info in archive.infolist())
    has_zip64_end = b"PK\x06\x06" in data[-200:]
    assert has_zip64_end == (threshold == 100)
    if shutil.which("unzip"):
        path = tmp_path / "out.zip"
        path.write_bytes(data)
        result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No errors detected" in result.stdout


def test_same_input_same_bytes_and_given_timestamp(tmp_path: Path, files: dict[str, bytes]) -> None:
    names = list(files)
    assert build(layout_of(tmp_path, names), tmp_path) == build(
        layout_of(tmp_path, names), tmp_path
    )
    stamped = build(
        layout_of(tmp_path, names, timestamp=datetime(2024, 5, 17, 13, 45, 30)), tmp_path
    )
    info = zipfile.ZipFile(io.BytesIO(stamped)).infolist()[0]
    assert info.date_time == (2024, 5, 17, 13, 45, 30)


@pytest.mark.parametrize("threshold", [0xFFFFFFFF, 100], ids=["zip32", "zip64"])
def test_ranges_are_slices_of_the_whole(
    tmp_path: Path, files: dict[str, bytes], threshold: int
) -> None:
    layout = layout_of(tmp_path, list(files), zip64_threshold=threshold)
    whole = build(layout, tmp_path)
    rng = random.Random(11)
    cuts = [0, 1, layout.size - 1, layout.size, CHUNK_SIZE, CHUNK_SIZE + 1]
    cuts += [rng.randrange(layout.size + 1) for _ in range(40)]
    pairs = [(min(a, b), max(a, b)) for a, b in zip(cuts, reversed(cuts), strict=True)]
    pairs += [(0, layout.size), (5, 5), (layout.size, layout.size)]
    for start, end in pairs:
        assert build(layout, tmp_path, start, end) == whole[start:end], (start, end)
    # A download resumed at arbitrary points reassembles into the same archive.
    points = sorted({0, layout.size, *(rng.randrange(layout.size) for _ in range(6))})
    pieces = [build(layout, tmp_path, a, b) for a, b in itertools.pairwise(points)]
    assert b"".join(pieces) == whole


def test_only_overlapping_members_are_read(tmp_path: Path, files: dict[str, bytes]) -> None:
    layout = layout_of(tmp_path, list(files))
    whole = build(layout, tmp_path)
    opened: list[tuple[str, int]] = []

    class Recording(io.FileIO):
        def seek(self, offset: int, whence: int = 0) -> int:
            opened.append((Path(self.name).relative_to(tmp_path).as_posix(), offset))
            return super().seek(offset, whence)

    # From 1000 bytes before the end of the weights into the tokenizer's first bytes.
    start = whole.index(b"tokenizer/tokenizer.json") - 30 - 1000
    data = b"".join(layout.chunks(lambda n: Recording(tmp_path / n), start, start + 1200))
    assert data == whole[start : start + 1200]
    weights = len(files["weights/model.safetensors"])
    assert opened == [
        ("weights/model.safetensors", weights - 1000),
        ("tokenizer/tokenizer.json", 0),
    ]


def test_a_shrunken_file_is_an_error_not_a_corrupt_archive(
    tmp_path: Path, files: dict[str, bytes]
) -> None:
    layout = layout_of(tmp_path, list(files))
    (tmp_path / "weights/model.safetensors").write_bytes(b"short")
    with pytest.raises(EOFError, match="shorter"):
        build(layout, tmp_path)


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "a/../b", "a//b", "a\\b", "dir/", "./x", "nul\x00"]
)
def test_bad_member_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="member name"):
        ZipLayout([ZipEntry(name, 0, 0)])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="member name"):
        ZipLayout([ZipEntry("a", 0, 0), ZipEntry("a", 0, 0)])


def test_empty_archive() -> None:
    layout = ZipLayout([])
    data = b"".join(layout.chunks(lambda name: pytest.fail(name)))
    assert len(data) == layout.size == 22
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 100)),
        ("bytes=10-", (10, 1000)),
        ("bytes=990-5000", (990, 1000)),  # an end past the size is clamped
        ("bytes=999-999", (999, 1000)),
        ("bytes=-100", (900, 1000)),
        ("bytes=-5000", (0, 1000)),  # a suffix longer than the body is the whole body
        (" bytes = 5-9 ", (5, 10)),
        ("BYTES=5-9", (5, 10)),
        ("items=0-5", None),  # a unit we do not know is ignored (RFC 9110)
        ("bytes=0-1,5-9", None),  # several ranges: the whole body
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",
        "bytes=5000-6000",
        "bytes=-0",
        "bytes=9-5",
        "bytes=-",
        "bytes=a-b",
        "bytes=",
        "bytes=5",
        "bytes=²-3",
        "bytes=1-2-3",
    ],
)
def test_parse_range_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, 1000)
    assert caught.value.size == 1000


def test_nothing_is_satisfiable_in_an_empty_body() -> None:
    for header in ("bytes=0-", "bytes=-1"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, 0)
