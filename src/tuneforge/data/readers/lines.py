"""Lines of a text file, each bounded before it is held in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from tuneforge.data.limits import DataFileError, ParseLimits, size_text


def bounded_lines(f: TextIO, limits: ParseLimits) -> Iterator[str]:
    """The lines of `f` with their endings; a line over `max_line_bytes` is refused after
    reading at most that many characters of it."""
    cap = limits.max_line_bytes
    number = 0
    while line := f.readline(cap + 2):
        number += 1
        # A character is at least one byte: count bytes only when the characters might exceed.
        if len(line) > cap // 4 and len(line.rstrip("\r\n").encode("utf-8")) > cap:
            raise line_too_long(number, limits)
        yield line


def line_too_long(number: int, limits: ParseLimits) -> DataFileError:
    return DataFileError(
        f"Line {number:,} is longer than {size_text(limits.max_line_bytes)}, the limit for one "
        f"row. A single value may hold at most {size_text(limits.max_cell_bytes)}; split long "
        "texts into several rows."
    )
