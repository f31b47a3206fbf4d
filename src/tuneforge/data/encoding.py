"""Which text encoding a file uses, decided from its bytes; binary files are refused.

The rules, in order: a byte-order mark wins (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); text with a NUL
in every other byte is UTF-16 without a mark (with a warning); valid UTF-8 is UTF-8; anything else
is Windows-1252, the encoding Excel uses on Western Windows machines, with bytes that cp1252 leaves
undefined read as Latin-1 (with a warning naming the encoding). A NUL byte outside UTF-16, or a
sample that is mostly control characters, means the file is not text at all.

`detect` streams the whole file once (about 1 GB/s) so that an invalid byte or a NUL near the end
is found before parsing starts, and holds one chunk in memory at a time.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from tuneforge.data.limits import DataFileError

CHUNK_BYTES = 1 << 20
SAMPLE_BYTES = 64 << 10  # decoded prefix checked for control characters
MAX_CONTROL_RATIO = 0.05  # text has next to none; random bytes have about 13%
MIN_CONTROLS = 4  # a stray byte or two in a tiny file is not proof of a binary one
LATIN1_FALLBACK = "tuneforge.latin1"

_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 controls other than tab, newlines and form feed; DEL; C1 controls (never produced by
# cp1252 except through the Latin-1 fallback, and never meant in UTF-8 text).
_CONTROL = dict.fromkeys(
    [c for c in range(0x20) if chr(c) not in "\t\n\r\f\v"] + list(range(0x7F, 0xA0))
)
NOT_TEXT_FIX = "Save it as UTF-8 text (CSV, JSON Lines or TXT) and upload it again."


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error(LATIN1_FALLBACK, _latin1_fallback)


@dataclass(frozen=True)
class TextEncoding:
    """How to decode a file: a Python codec, its error handler, and what the user should know."""

    codec: str
    errors: str = "strict"
    warning: str | None = None

    def open(self, path: Path) -> TextIO:
        """The file as text; `newline=""` keeps line endings for the CSV parser."""
        return path.open(encoding=self.codec, errors=self.errors, newline="")


def detect(path: Path) -> TextEncoding:
    """The encoding of the file at `path`, or DataFileError if it is not text."""
    with path.open("rb") as f:
        return _detect(iter(partial(f.read, CHUNK_BYTES), b""))


def decode(data: bytes) -> tuple[str, str | None]:
    """`data` as text and a warning when the encoding had to be guessed."""
    encoding = _detect(iter([data]))
    return data.decode(encoding.codec, encoding.errors), encoding.warning


def _detect(chunks: Iterator[bytes]) -> TextEncoding:
    head = next(chunks, b"")
    for bom, codec in _BOMS:
        if head.startswith(bom):
            encoding = TextEncoding(codec)
            return _check_decodes(encoding, head, chunks)
    utf16 = _utf16_without_bom(head)
    if utf16:
        warning = (
            f"The file has no byte-order mark but looks like {utf16.upper()}, so it was read as "
            f"{utf16.upper()}. If the text looks wrong, save the file as UTF-8."
        )
        return _check_decodes(TextEncoding(utf16, warning=warning), head, chunks)
    invalid_at = _first_invalid_utf8(head, chunks)
    if invalid_at is None:
        encoding = TextEncoding("utf-8")
    else:
        encoding = TextEncoding(
            "cp1252",
            LATIN1_FALLBACK,
            f"The file is not valid UTF-8 (the first invalid byte is at offset {invalid_at:,}), "
            "so it was read as Windows-1252 (cp1252). If accented letters look wrong, save the "
            "file as UTF-8 and upload it again.",
        )
    # The fallback handler decodes every byte (a character cut at the sample's end included).
    _check_controls(head[:SAMPLE_BYTES].decode(encoding.codec, LATIN1_FALLBACK))
    return encoding


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' or 'utf-16-be' when ASCII-range text shows a NUL in every other byte."""
    sample = head[:4096]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) >= 0.4 * len(odd) and even.count(0) <= 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.4 * len(even) and odd.count(0) <= 0.05 * len(odd):
        return "utf-16-be"
    return None


def _first_invalid_utf8(head: bytes, rest: Iterable[bytes]) -> int | None:
    """Offset of the first byte that is not UTF-8 (None if all is), refusing NUL bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    invalid_at: int | None = None
    offset = 0
    for chunk in _prepend(head, rest):
        nul = chunk.find(0)
        if nul >= 0:
            raise _not_text(f"it contains a NUL byte at offset {offset + nul:,}")
        if invalid_at is None:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                invalid_at = offset + error.start
        offset += len(chunk)
    if invalid_at is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            invalid_at = offset - len(decoder.getstate()[0])
    return invalid_at


def _check_decodes(encoding: TextEncoding, head: bytes, rest: Iterable[bytes]) -> TextEncoding:
    """Decode everything once: a file that claims UTF-16/32 must be valid and free of NULs."""
    decoder = codecs.getincrementaldecoder(encoding.codec)()
    sample = ""
    try:
        for chunk in _prepend(head, rest):
            text = decoder.decode(chunk)
            if "\x00" in text:
                raise _not_text("it contains NUL characters")
            if len(sample) < SAMPLE_BYTES:
                sample += text[: SAMPLE_BYTES - len(sample)]
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        name = encoding.codec.upper().removesuffix("-SIG")
        raise DataFileError(
            f"The file looks like {name} but is not valid {name} ({error.reason}). "
            "Save it as UTF-8 and upload it again."
        ) from None
    _check_controls(sample)
    return encoding


def _check_controls(sample: str) -> None:
    controls = len(sample) - len(sample.translate(_CONTROL))
    if controls >= MIN_CONTROLS and controls > MAX_CONTROL_RATIO * len(sample):
        share = controls / len(sample)
        raise _not_text(f"{share:.0%} of its first characters are control characters")


def _not_text(reason: str) -> DataFileError:
    return DataFileError(f"This does not look like a text file: {reason}. {NOT_TEXT_FIX}")


def _prepend(head: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest
