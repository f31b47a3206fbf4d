"""Synonyms from a local WordNet 3.0 (Debian's `wordnet-base`: `/usr/share/wordnet`).

A small reader of WordNet's own database files, no network and no download: `index.<pos>` is
sorted, so a lemma is found by a binary search over the memory-mapped file, and each of its
first senses is one line of `data.<pos>` at the byte offset the index gives. Memory stays
bounded: the files are mapped, not loaded, and lookups are cached up to `CACHE_WORDS`.

The directory is `$WNSEARCHDIR` (WordNet's own variable) or `/usr/share/wordnet`.
"""

from __future__ import annotations

import mmap
import os
import re
from functools import lru_cache
from pathlib import Path

from tuneforge.errors import InvalidInput

DEFAULT_DIR = Path("/usr/share/wordnet")
POS = ("noun", "verb", "adj", "adv")
#: Senses of a word whose synonyms are used: WordNet lists the most frequent senses first.
SENSES = 3
CACHE_WORDS = 50_000
LONGEST_WORD = 60
_MARKER = re.compile(r"\([a-z]+\)$")  # an adjective's position marker, e.g. `(a)`


def wordnet_dir() -> Path:
    return Path(os.environ.get("WNSEARCHDIR") or DEFAULT_DIR)


def missing_message(directory: Path) -> str:
    return (
        f"Synonym replacement and insertion need WordNet's data files, and {directory} has "
        "none. Install them on the server: `apt-get install wordnet-base` on Debian or Ubuntu "
        "(files in /usr/share/wordnet), or set WNSEARCHDIR to a directory holding WordNet "
        "3.0's index.noun, data.noun, ... files. Swap, delete and the image methods need "
        "nothing."
    )


def _lines_at(data: mmap.mmap, start: int) -> tuple[int, int]:
    """The line containing byte `start`: its first byte and its end (the newline)."""
    first = data.rfind(b"\n", 0, start) + 1
    end = data.find(b"\n", first)
    return first, len(data) if end == -1 else end


def _find(index: mmap.mmap, key: bytes) -> bytes | None:
    """The index line of lemma `key`, by binary search (the licence header lines, which start
    with two spaces, sort before every lemma)."""
    low, high = 0, len(index)
    while low < high:
        first, end = _lines_at(index, (low + high) // 2)
        line = index[first:end]
        lemma = b"" if line.startswith(b"  ") else line.split(b" ", 1)[0]
        if lemma == key:
            return line
        if lemma < key:
            low = end + 1
        else:
            high = first
    return None


class WordNet:
    """Synonyms of English words from WordNet's database files in `directory`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or wordnet_dir()
        self._maps: dict[str, tuple[mmap.mmap, mmap.mmap]] = {}
        for pos in POS:
            index, data = self.directory / f"index.{pos}", self.directory / f"data.{pos}"
            if not (index.is_file() and data.is_file()):
                raise InvalidInput(missing_message(self.directory))
            with index.open("rb") as i, data.open("rb") as d:
                self._maps[pos] = (
                    mmap.mmap(i.fileno(), 0, access=mmap.ACCESS_READ),
                    mmap.mmap(d.fileno(), 0, access=mmap.ACCESS_READ),
                )
        self.synonyms = lru_cache(maxsize=CACHE_WORDS)(self._synonyms)

    def _synonyms(self, word: str) -> tuple[str, ...]:
        """The synonyms of `word` (lower-cased lemma) in its first senses of every part of
        speech, most frequent sense first, without the word itself; multi-word ones with
        spaces."""
        key = word.lower().replace(" ", "_")
        if not key or len(key) > LONGEST_WORD or not key.isascii():
            return ()
        found: dict[str, None] = {}
        for index, data in self._maps.values():
            line = _find(index, key.encode())
            if line is None:
                continue
            fields = line.split()
            pointers = int(fields[3])
            senses = int(fields[2])
            offsets = fields[4 + pointers + 2 :][:senses][:SENSES]
            for offset in offsets:
                first, end = _lines_at(data, int(offset))
                synset = data[first:end].split()
                count = int(synset[3], 16)
                for lemma in synset[4 : 4 + 2 * count : 2]:
                    text = _MARKER.sub("", lemma.decode()).replace("_", " ")
                    if text.lower() != word.lower():
                        found.setdefault(text, None)
        return tuple(found)


@lru_cache(maxsize=1)
def wordnet() -> WordNet:
    """The server's WordNet (opened once per process); `InvalidInput` naming what to install
    when it is missing."""
    return WordNet()


def check_wordnet() -> None:
    """Refuse now, with what to install, when WordNet is missing."""
    wordnet()
