"""A ZIP archive assembled on the fly from files, byte for byte the same every time.

Members are stored, not compressed (model weights do not compress), and every header is known
before a byte of data is read, so the archive has a size up front and any byte range of it can be
produced on its own: a download gets a Content-Length and can resume with HTTP Range requests,
and the ZIP is never written anywhere. ZIP64 records appear only where a size or offset needs
them.
"""

from __future__ import annotations

import bisect
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 1024 * 1024
ZIP64_LIMIT = 0xFFFFFFFF  # a 32-bit field holding this value means "see the ZIP64 record"
_MAX_ENTRIES = 0xFFFF
_UTF8_FLAG = 0x0800
_VERSION = 20  # 2.0: stored members in folders
_VERSION_ZIP64 = 45  # 4.5: ZIP64 extensions
_MADE_BY_UNIX = 3 << 8  # so unzip applies the permissions in the external attributes
_FILE_MODE = 0o100644 << 16
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_BYTE_RANGE = re.compile(r"(?P<first>[0-9]*)-(?P<last>[0-9]*)")


@dataclass(frozen=True)
class ZipEntry:
    """One member: its name in the archive (a relative POSIX path), size and CRC-32."""

    name: str
    size: int
    crc32: int


class RangeNotSatisfiable(Exception):
    """A Range header that cannot be served (answer 416 with ``Content-Range: bytes */size``)."""

    def __init__(self, header: str, size: int) -> None:
        super().__init__(f"range {header!r} cannot be served from {size} bytes")
        self.size = size


def crc32_file(path: Path | str) -> int:
    """The CRC-32 of a file, read in chunks."""
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


def _dos_time(when: datetime) -> tuple[int, int]:
    if when.year < 1980:
        raise ValueError("ZIP timestamps start in 1980")
    date = (when.year - 1980) << 9 | when.month << 5 | when.day
    return when.hour << 11 | when.minute << 5 | when.second // 2, date


def _check_names(entries: Sequence[ZipEntry]) -> None:
    seen: set[str] = set()
    for entry in entries:
        parts = entry.name.split("/")
        if (
            entry.name in seen
            or "\\" in entry.name
            or "\x00" in entry.name
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ValueError(f"not a usable archive member name: {entry.name!r}")
        if entry.size < 0 or not 0 <= entry.crc32 <= 0xFFFFFFFF:
            raise ValueError(f"invalid size or CRC for {entry.name!r}")
        seen.add(entry.name)


class ZipLayout:
    """The byte layout of a stored ZIP of `entries`, in their order.

    The archive is a list of segments: header bytes (built here) and member data (read from the
    caller's files only when a requested range covers them).
    """

    def __init__(
        self,
        entries: Sequence[ZipEntry],
        *,
        timestamp: datetime = datetime(1980, 1, 1),  # ZIP times have no zone
        zip64_threshold: int = ZIP64_LIMIT,
    ) -> None:
        _check_names(entries)
        self.entries = list(entries)
        self._threshold = zip64_threshold
        self._time, self._date = _dos_time(timestamp)
        self._starts: list[int] = []
        self._segments: list[bytes | ZipEntry] = []
        central: list[bytes] = []
        offset = 0
        for entry in self.entries:
            local = self._local_header(entry)
            central.append(self._central_header(entry, offset))
            self._add(offset, local)
            self._add(offset + len(local), entry)
            offset += len(local) + entry.size
        directory = b"".join(central)
        tail = directory + self._end_records(offset, len(directory))
        self._add(offset, tail)
        self.size = offset + len(tail)

    def _add(self, start: int, segment: bytes | ZipEntry) -> None:
        self._starts.append(start)
        self._segments.append(segment)

    def _big(self, value: int) -> bool:
        return value >= self._threshold

    def _local_header(self, entry: ZipEntry) -> bytes:
        name = entry.name.encode()
        extra = b""
        size32 = entry.size
        if self._big(entry.size):  # the local ZIP64 field carries both sizes
            extra = struct.pack("<HHQQ", 1, 16, entry.size, entry.size)
            size32 = ZIP64_LIMIT
        version = _VERSION_ZIP64 if extra else _VERSION
        fields = (0x04034B50, version, _UTF8_FLAG, 0, self._time, self._date, entry.crc32)
        return _LOCAL.pack(*fields, size32, size32, len(name), len(extra)) + name + extra

    def _central_header(self, entry: ZipEntry, offset: int) -> bytes:
        name = entry.name.encode()
        # The central ZIP64 field holds only the values whose 32-bit slot says 0xFFFFFFFF.
        values = [v for v in (entry.size, entry.size, offset) if self._big(v)]
        extra = struct.pack(f"<HH{len(values)}Q", 1, 8 * len(values), *values) if values else b""
        size32 = ZIP64_LIMIT if self._big(entry.size) else entry.size
        offset32 = ZIP64_LIMIT if self._big(offset) else offset
        version = _VERSION_ZIP64 if extra else _VERSION
        return (
            _CENTRAL.pack(
                0x02014B50,
                _MADE_BY_UNIX | version,
                version,
                _UTF8_FLAG,
                0,  # stored
                self._time,
                self._date,
                entry.crc32,
                size32,
                size32,
                len(name),
                len(extra),
                0,  # comment length
                0,  # disk number
                0,  # internal attributes
                _FILE_MODE,
                offset32,
            )
            + name
            + extra
        )

    def _end_records(self, offset: int, length: int) -> bytes:
        count = len(self.entries)
        zip64 = count >= _MAX_ENTRIES or self._big(offset) or self._big(length)
        if not zip64:
            return _END.pack(0x06054B50, 0, 0, count, count, length, offset, 0)
        end64_offset = offset + length
        return (
            _END64.pack(
                0x06064B50,
                _END64.size - 12,  # the record's size, not counting its first 12 bytes
                _MADE_BY_UNIX | _VERSION_ZIP64,
                _VERSION_ZIP64,
                0,
                0,
                count,
                count,
                length,
                offset,
            )
            + _LOCATOR64.pack(0x07064B50, 0, end64_offset, 1)
            + _END.pack(
                0x06054B50,
                0,
                0,
                min(count, _MAX_ENTRIES),
                min(count, _MAX_ENTRIES),
                ZIP64_LIMIT if self._big(length) else length,
                ZIP64_LIMIT if self._big(offset) else offset,
                0,
            )
        )

    def chunks(
        self, open_entry: Callable[[str], BinaryIO], start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Yield exactly the bytes [start, end) of the archive, in chunks of at most 1 MiB.

        `open_entry(name)` opens a member's data for reading; it is called only for members that
        overlap the range, and the file is read only from the first byte needed.
        """
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range [{start}, {end}) is outside the archive's {self.size} bytes")
        index = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while start < end:
            segment, seg_start = self._segments[index], self._starts[index]
            seg_end = min(end, self._starts[index + 1] if index + 1 < len(self._starts) else end)
            if isinstance(segment, bytes):
                for at in range(start, seg_end, CHUNK_SIZE):
                    yield segment[at - seg_start : min(at + CHUNK_SIZE, seg_end) - seg_start]
            elif seg_end > start:
                yield from _read_range(open_entry, segment, start - seg_start, seg_end - start)
            start = seg_end
            index += 1


def _read_range(
    open_entry: Callable[[str], BinaryIO], entry: ZipEntry, offset: int, length: int
) -> Iterator[bytes]:
    with open_entry(entry.name) as f:
        f.seek(offset)
        while length:
            data = f.read(min(length, CHUNK_SIZE))
            if not data:
                raise EOFError(f"{entry.name} is shorter than the {entry.size} bytes expected")
            length -= len(data)
            yield data


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The half-open byte range [start, end) asked for by an HTTP ``Range`` header, or None to
    serve the whole body (no header, a unit other than bytes, or several ranges: serving the
    whole is what RFC 9110 allows and spares a multipart/byteranges reply).

    Raises RangeNotSatisfiable for a malformed bytes range or one that starts past the end.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _BYTE_RANGE.fullmatch(spec.strip())
    if match is None or match["first"] + match["last"] == "":
        raise RangeNotSatisfiable(header, size)
    first, last = match["first"], match["last"]
    if not first:  # a suffix: the last n bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header, size)
        return max(size - int(last), 0), size
    start = int(first)
    stop = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header, size)
    return start, stop
