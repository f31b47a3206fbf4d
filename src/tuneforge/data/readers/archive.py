"""ZIP archives (ZIP datasets and .xlsx workbooks) opened only within the limits.

Before anything is decompressed: the end-of-directory record bounds the member count and the
directory's size (so a forged directory of millions of entries is never loaded), every member
name must stay inside the archive, and the declared sizes bound each member, the total, and the
compression ratio (a ZIP bomb is refused from its directory alone). Reading then counts the bytes
actually produced and stops at the limit, whatever the directory claimed.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Generator
from pathlib import Path
from typing import Self

from tuneforge.data.limits import MIB, DataFileError, ParseLimits, size_text

# An entry of the central directory takes 46 bytes plus its name and extra fields; typical
# entries take under 150, so 512 per allowed member is generous and bounds the directory's memory.
DIRECTORY_BYTES_PER_MEMBER = 512
RATIO_CHECK_FROM = MIB  # smaller members may compress well (a page of spaces) and cost nothing
COPY_CHUNK = MIB
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_DRIVE = re.compile(r"^[A-Za-z]:")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


def damaged(reason: object) -> DataFileError:
    return DataFileError(
        f"The file looks like a ZIP archive (or .xlsx workbook) but is damaged: {reason}. "
        "Create the archive again and upload it."
    )


class Closing(ABC):
    """`with` support for anything that has a `close()`."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SafeZip(Closing):
    """A ZIP archive whose directory passed the limits. `members` maps each file's name (with
    "/" separators) to its entry; directories are left out."""

    def __init__(self, path: Path, limits: ParseLimits) -> None:
        self.limits = limits
        entries, directory_bytes = _directory_size(path)
        if entries > limits.max_archive_members:
            raise _too_many_members(entries, limits)
        if directory_bytes > limits.max_archive_members * DIRECTORY_BYTES_PER_MEMBER:
            raise DataFileError(
                f"The archive's list of files takes {size_text(directory_bytes)}, more than "
                f"{limits.max_archive_members:,} files can. Create the archive again."
            )
        try:
            self._zip = zipfile.ZipFile(path)
        except (*_READ_ERRORS, struct.error) as error:
            raise damaged(error) from None
        try:
            self.members = _checked_members(self._zip.infolist(), limits)
        except BaseException:
            self._zip.close()
            raise
        self._decompressed = 0
        self._sizes: dict[str, int] = {}

    def close(self) -> None:
        self._zip.close()

    @property
    def is_workbook(self) -> bool:
        """An Office Open XML spreadsheet (.xlsx) rather than a ZIP of data files."""
        return "[Content_Types].xml" in self.members and any(
            name.startswith("xl/") for name in self.members
        )

    def read(self, name: str, limit: int) -> bytes:
        """The member's bytes, refusing more than `limit` of them."""
        return b"".join(self.stream(name, limit))

    def extract(self, name: str, target: Path, limit: int) -> None:
        """Copy the member to `target`, refusing more than `limit` bytes."""
        with target.open("wb") as out:
            for chunk in self.stream(name, limit):
                out.write(chunk)

    def stream(self, name: str, limit: int) -> Generator[bytes, None, None]:
        """The member's bytes in chunks, counted as they are decompressed: more than `limit`, or
        more than the archive's total limit, is refused whatever the directory declared."""
        size = 0
        try:
            with self._zip.open(self.members[name]) as f:
                while chunk := f.read(COPY_CHUNK):
                    size += len(chunk)
                    self._produced(name, size)
                    if size > limit:
                        raise _member_too_large(name, size, limit)
                    yield chunk
        except _READ_ERRORS as error:
            raise damaged(f'"{name}" cannot be read ({error})') from None

    def _produced(self, name: str, size: int) -> None:
        """Count the bytes decompressed so far, each member once however often it is read."""
        grown = size - self._sizes.get(name, 0)
        if grown > 0:
            self._sizes[name] = size
            self._decompressed += grown
            if self._decompressed > self.limits.max_decompressed_bytes:
                raise _too_large_in_total(self.limits)


def _directory_size(path: Path) -> tuple[int, int]:
    """The member count and directory size that the end-of-directory record declares."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        tail_start = max(0, size - _EOCD.size - 0xFFFF)
        f.seek(tail_start)
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            raise damaged("its end-of-directory record is missing")
        fields = _EOCD.unpack_from(tail, at)
        entries, directory_bytes = fields[4], fields[5]
        if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF:
            return entries, directory_bytes
        locator_at = tail_start + at - _ZIP64_LOCATOR.size
        if locator_at < 0:
            raise damaged("its ZIP64 directory record is missing")
        f.seek(locator_at)
        signature, _, record_at, _ = _ZIP64_LOCATOR.unpack(f.read(_ZIP64_LOCATOR.size))
        f.seek(record_at)
        record = f.read(_ZIP64_EOCD.size)
        if signature != b"PK\x06\x07" or len(record) < _ZIP64_EOCD.size:
            raise damaged("its ZIP64 directory record is missing")
        fields = _ZIP64_EOCD.unpack(record)
        if fields[0] != b"PK\x06\x06":
            raise damaged("its ZIP64 directory record is missing")
        return fields[7], fields[8]


def _checked_members(
    infos: list[zipfile.ZipInfo], limits: ParseLimits
) -> dict[str, zipfile.ZipInfo]:
    if len(infos) > limits.max_archive_members:
        raise _too_many_members(len(infos), limits)
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or _DRIVE.match(name) or ".." in name.split("/"):
            raise DataFileError(
                f'The archive contains an unsafe path ("{info.filename}"): every path must stay '
                'inside the archive (no "..", no leading "/", no drive letter). Zip the folder '
                "again from inside it."
            )
        if info.is_dir():
            continue
        if name in members:
            raise DataFileError(f'The archive holds "{name}" twice. Remove one copy.')
        if info.flag_bits & 0x1:
            raise DataFileError(
                f'"{name}" in the archive is password-protected. Zip the files again without '
                "a password."
            )
        if info.file_size > limits.max_member_bytes:
            raise _member_too_large(name, info.file_size, limits.max_member_bytes)
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_CHECK_FROM and ratio > limits.max_compression_ratio:
            raise DataFileError(
                f'"{name}" in the archive expands {ratio:,.0f} times (from '
                f"{size_text(info.compress_size)} to {size_text(info.file_size)}), which is how "
                f"compression bombs look; the limit is {limits.max_compression_ratio:,.0f} times. "
                "Zip the files again with ordinary compression."
            )
        total += info.file_size
        if total > limits.max_decompressed_bytes:
            raise _too_large_in_total(limits)
        members[name] = info
    return members


def _too_many_members(count: int, limits: ParseLimits) -> DataFileError:
    return DataFileError(
        f"The archive holds {count:,} files; the limit is {limits.max_archive_members:,}. "
        "Split it into several archives."
    )


def _member_too_large(name: str, size: int, limit: int) -> DataFileError:
    return DataFileError(
        f'"{name}" in the archive expands to {size_text(size)} or more; the limit is '
        f"{size_text(limit)}."
    )


def _too_large_in_total(limits: ParseLimits) -> DataFileError:
    limit = size_text(limits.max_decompressed_bytes)
    return DataFileError(
        f"The archive's files expand to more than {limit} in total; the limit is {limit}. "
        "Split it into several archives."
    )
