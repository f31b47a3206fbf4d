"""JSON (a list of objects, or an object holding one such list) and JSON Lines (one object per
line). Records are parsed one at a time, depth-checked before `json.loads`, and collected by
`RecordBuilder`, which keeps nested values (such as `messages`) nested."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from tuneforge.data.encoding import TextEncoding
from tuneforge.data.limits import DataFileError, ParseLimits, inline_image
from tuneforge.data.readers.columns import RecordBuilder, value_too_large
from tuneforge.data.readers.json_scan import CHECK_LINE, JsonScanner, too_deep, within_depth
from tuneforge.data.readers.lines import bounded_lines

_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*+")\s*:\s*', re.DOTALL)
_KINDS = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    list: "a list",
    type(None): "null",
}
_FIRST_CHAR_KINDS = {'"': "string", "t": "true", "f": "false", "n": "null"}
EXAMPLE = '{"prompt": "…", "response": "…"}'


def read_jsonl(
    path: Path, encoding: TextEncoding, limits: ParseLimits
) -> tuple[pa.Table, list[str]]:
    builder = RecordBuilder(limits)
    with encoding.open(path) as f:
        for number, line in enumerate(bounded_lines(f, limits), 1):
            if line.strip():
                where = f"Line {number:,}"
                if not within_depth(line, limits.max_json_depth):
                    raise too_deep(number, limits)
                builder.add(
                    _parse(line, where, number, limits, "Each line must hold one JSON object."),
                    len(line),
                )
    return builder.finish()


def read_json(
    path: Path, encoding: TextEncoding, limits: ParseLimits
) -> tuple[pa.Table, list[str]]:
    builder = RecordBuilder(limits)
    warnings: list[str] = []
    with encoding.open(path) as f:
        scanner = JsonScanner(f.read, limits)
        for number, (text, line) in enumerate(_records(scanner, warnings), 1):
            blank = len(text) - len(text.lstrip())
            first_line = line + text.count("\n", 0, blank)
            where = f"Record {number:,} (line {first_line:,})"
            builder.add(_parse(text, where, line, limits, CHECK_LINE), len(text))
        if scanner.first_char():
            raise scanner.malformed(
                "there is more data after the end of the JSON value. If the file holds one "
                "JSON object per line, name it .jsonl"
            )
    table, notes = builder.finish()
    return table, warnings + notes


def _records(scanner: JsonScanner, warnings: list[str]) -> Iterator[tuple[str, int]]:
    """The text and first line of each record: the elements of the top-level list, or of the
    one list of objects inside a top-level object."""
    first = scanner.first_char()
    if first not in ("[", "{"):
        kind = _FIRST_CHAR_KINDS.get(first, "number")
        raise DataFileError(
            f"The JSON file holds a single {kind}, not a list of records. Expected a list of "
            f"objects such as [{EXAMPLE}]."
        )
    scanner.next()
    if first == "[":
        yield from _elements(scanner)
    else:
        yield from _wrapped(scanner, warnings)


def _elements(scanner: JsonScanner) -> Iterator[tuple[str, int]]:
    """The elements of the list just opened, as text."""
    depth = scanner.depth
    scanner.mark()
    count = 0
    while char := scanner.skip_to(depth):
        text, line = scanner.cut()
        if char == ",":
            count += 1
            yield text, line
            scanner.mark()
        else:  # the list's closing bracket
            if count or text.strip():
                yield text, line
            return
    raise scanner.incomplete()


def _wrapped(scanner: JsonScanner, warnings: list[str]) -> Iterator[tuple[str, int]]:
    """The records of a top-level object's one member that is a list of objects."""
    records_key: str | None = None
    ignored: list[str] = []
    scanner.mark()
    while True:
        char = scanner.next()
        if not char:
            raise scanner.incomplete()
        if char == "[" and scanner.depth == 2:
            key = _member_key(scanner)
            elements = _elements(scanner)
            first = next(elements, None)
            if first is not None and first[0].lstrip().startswith("{"):
                if records_key is not None:
                    raise DataFileError(
                        f'The JSON object holds several lists of records ("{records_key}" and '
                        f'"{key}"). Keep one list per file, or upload them as separate files.'
                    )
                records_key = key
                yield first
                yield from elements
            else:
                ignored.append(key)
                for _ in elements:
                    pass
            scanner.mark()
        elif (char == "," and scanner.depth == 1) or scanner.depth == 0:
            member, line = scanner.cut()
            if member.strip():
                ignored.extend(_parse_member(member, line))
            if scanner.depth == 0:
                break
            scanner.mark()
    if records_key is None:
        keys = f" (its keys: {', '.join(ignored[:10])})" if ignored else ""
        raise DataFileError(
            f"The JSON object holds no list of records{keys}. Expected a list of objects such "
            f'as [{EXAMPLE}], or an object holding one, such as {{"data": [{EXAMPLE}]}}.'
        )
    if ignored:
        warnings.append(
            f'Read the records under "{records_key}"; the other keys were ignored: '
            f"{', '.join(ignored[:10])}."
        )


def _member_key(scanner: JsonScanner) -> str:
    text, line = scanner.cut()
    match = _KEY.fullmatch(text)
    if match is None:
        raise DataFileError(
            f"The JSON is not valid: expected a key before the list on line {line:,}. {CHECK_LINE}"
        )
    key: str = json.loads(match.group(1))
    return key


def _parse_member(text: str, line: int) -> list[str]:
    """The key of a member that holds no list (it is ignored), after checking its syntax."""
    try:
        member = json.loads("{" + text + "}")
    except json.JSONDecodeError as error:
        raise DataFileError(
            f"The JSON is not valid: {error.msg} (line {line + error.lineno - 1:,}). {CHECK_LINE}"
        ) from None
    return list(member)


def _parse(text: str, where: str, line: int, limits: ParseLimits, fix: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFileError(
            f"{where} is not valid JSON: {error.msg} (line {line + error.lineno - 1:,}, "
            f"column {error.colno:,}). {fix}"
        ) from None
    if not isinstance(record, dict):
        kind = _KINDS.get(type(record), "a value")
        raise DataFileError(
            f"{where} is {kind}, not an object with named fields. Each record must look "
            f"like {EXAMPLE}."
        )
    if len(text) > limits.max_cell_bytes:  # only then can one of its strings be too long
        size = _longest_string(record, limits)
        if size > limits.max_cell_bytes:
            raise value_too_large(where, size, limits.max_cell_bytes)
    return record


def _longest_string(value: Any, limits: ParseLimits) -> int:
    """UTF-8 size of the longest string anywhere in `value` (keys included), without recursion;
    an image's data: URL within the image limit counts as nothing (it is an image, not text)."""
    longest = 0
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str) and not inline_image(current, limits):
            longest = max(longest, len(current.encode("utf-8", "surrogatepass")))
        elif isinstance(current, dict):
            pending.extend(current)
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return longest
