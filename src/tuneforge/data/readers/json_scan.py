"""A streaming scan of JSON structure: brackets and commas outside strings, with nesting depth.

It never recurses and never holds more than the record being cut out (`mark` … `cut`), so a
file nested 100,000 levels deep is refused at level `max_json_depth + 1`, and a list of a million
records is read one record at a time; each record's text is then parsed with `json.loads`, which
is safe once its depth is known. The scanner only finds structure: the text of each record is
validated by `json.loads`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import cast

from tuneforge.data.limits import DataFileError, ParseLimits, size_text

CHUNK_CHARS = 1 << 20
# Skip everything that is not structure, complete strings included, inside the regex engine
# (possessive, so nothing backtracks), then take the next structural character, or a quote that
# opens a string continuing beyond the text read so far. None: the text ran out first.
_NEXT = re.compile(r'(?:[^"\[\]{},]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+([\[\]{},"])?', re.DOTALL)
# The pattern matches at every position (perhaps emptily), so its match is never None.
_match_next = cast(Callable[[str, int], re.Match[str]], _NEXT.match)
_OPENERS = {"]": "[", "}": "{"}
CHECK_LINE = "Check the file around that line; a JSON validator shows the exact spot."


def too_deep(line: int, limits: ParseLimits) -> DataFileError:
    return DataFileError(
        f"The JSON is nested more than {limits.max_json_depth:,} levels deep (line {line:,}); "
        f"the limit is {limits.max_json_depth:,}. Flatten the records: a conversation needs "
        "about 5 levels."
    )


def within_depth(text: str, max_depth: int) -> bool:
    """Whether the JSON `text` nests at most `max_depth` levels (not whether it is valid)."""
    if text.count("[") + text.count("{") <= max_depth:
        return True
    depth = position = 0
    while (char := (match := _match_next(text, position)).group(1)) and char != '"':
        position = match.end()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif char in "]}":
            depth -= 1
    return True  # the end, or an unterminated string (json.loads reports it)


class JsonScanner:
    """Structural characters of JSON text read in chunks from `read`."""

    def __init__(self, read: Callable[[int], str], limits: ParseLimits) -> None:
        self._read = read
        self._limits = limits
        self._buf = ""
        self._pos = 0  # where scanning continues, in _buf
        self._mark: int | None = None  # start of the text being cut out, in _buf
        self._token_at = 0  # the last structural character, in _buf
        self._line = 1  # the line number at _buf[_line_at]
        self._line_at = 0
        self._stack: list[str] = []
        self._eof = False

    @property
    def depth(self) -> int:
        return len(self._stack)

    def next(self) -> str:
        """The next structural character, or "" at the end of the text."""
        return self._scan(None)

    def skip_to(self, depth: int) -> str:
        """Skip to the next "," at `depth` or to the bracket that closes `depth` (whichever
        comes first) and return it; "" at the end of the text. This is the hot loop of reading
        a list of records, so it runs in one method with local names."""
        return self._scan(depth)

    def _scan(self, depth: int | None) -> str:
        stack, limit, match = self._stack, self._limits.max_json_depth, _match_next
        while True:
            buf, pos = self._buf, self._pos
            while (char := (found := match(buf, pos)).group(1)) and char != '"':
                pos = found.end()
                if char in "[{":
                    stack.append(char)
                    if len(stack) > limit:
                        raise too_deep(self.line_at(found.start(1)), self._limits)
                elif char != "," and (not stack or stack.pop() != _OPENERS[char]):
                    raise self.malformed(f"an unexpected '{char}'", found.start(1))
                if depth is None or len(stack) < depth or (char == "," and len(stack) == depth):
                    self._pos, self._token_at = pos, found.start(1)
                    return char
            # The text ran out, or a string continues beyond it.
            self._pos = found.end() if char is None else found.start(1)
            if self._eof:
                if char:
                    raise self.incomplete("it ends inside a text string")
                return ""
            self._fill()

    def first_char(self) -> str:
        """The next character that is not whitespace, without consuming it ("" at the end)."""
        while True:
            rest = self._buf[self._pos :].lstrip()
            if rest or self._eof:
                return rest[:1]
            self._pos = len(self._buf)
            self._fill()

    def mark(self) -> None:
        """Start cutting out text right after the last structural character."""
        self._mark = self._pos

    def cut(self) -> tuple[str, int]:
        """The text from the mark up to the last structural character, and its first line."""
        assert self._mark is not None
        start, self._mark = self._mark, None
        return self._buf[start : self._token_at], self.line_at(start)

    def line_at(self, index: int) -> int:
        """The line number of _buf[index]; counting moves forward only, as reading does."""
        if index < self._line_at:
            return self._line - self._buf.count("\n", index, self._line_at)
        self._line += self._buf.count("\n", self._line_at, index)
        self._line_at = index
        return self._line

    def malformed(self, reason: str, index: int | None = None) -> DataFileError:
        line = self.line_at(self._pos if index is None else index)
        return DataFileError(f"The JSON is not valid: {reason} (line {line:,}). {CHECK_LINE}")

    def incomplete(self, reason: str = "it ends inside a list or object") -> DataFileError:
        return DataFileError(
            f"The JSON file is incomplete: {reason} (line {self.line_at(len(self._buf)):,}). It "
            "may have been cut off; export or download it again."
        )

    def _fill(self) -> None:
        """Drop the text already scanned (keeping any marked text) and read the next chunk."""
        keep = self._pos if self._mark is None else min(self._mark, self._pos)
        if keep:
            self.line_at(keep)
            self._buf = self._buf[keep:]
            self._pos -= keep
            self._token_at -= keep
            self._line_at -= keep
            if self._mark is not None:
                self._mark -= keep
        if len(self._buf) > self._limits.max_line_bytes:
            raise DataFileError(
                f"A record starting on line {self._line:,} is larger than "
                f"{size_text(self._limits.max_line_bytes)}, the limit for one record. Split long "
                "texts into several records."
            )
        chunk = self._read(CHUNK_CHARS)
        self._eof = not chunk
        self._buf += chunk
