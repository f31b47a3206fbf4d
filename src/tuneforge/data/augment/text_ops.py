"""Word-level text methods (after EDA, Wei & Zou 2019): swap, delete, and, with a synonym
source, replace and insert.

A text is cut into words and everything else; only words move or change. Control tokens
(`<start_of_image>`, `<|turn>`, anything in angle brackets), code in backticks, URLs, e-mail
addresses and `{placeholders}` are never words, so they come out exactly as they went in, and so
do the spaces and punctuation between words (a swapped word takes the other's place).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SynonymSource = Callable[[str], Sequence[str]]

_PROTECTED = (
    r"```.*?```"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|<[^<>\s]{1,60}>"  # control tokens and tags
    r"|\{[^{}\n]{0,200}\}"  # placeholders, JSON-ish fragments
    r"|[a-zA-Z][a-zA-Z0-9+.-]*://\S+"  # URLs
    r"|\S+@\S+\.\w+"  # e-mail addresses
)
_TOKENS = re.compile(
    rf"(?P<protected>{_PROTECTED})|(?P<word>[^\W\d_]+(?:['\u2019-][^\W\d_]+)*)", re.S
)

#: Words never replaced by a synonym nor chosen to be inserted (EDA's list, shortened).
STOP_WORDS = frozenset(
    """\
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()  # noqa: SIM905
)


@dataclass
class Words:
    """A text cut into pieces; `words` are the positions of the pieces that are words."""

    pieces: list[str]
    words: list[int]

    @classmethod
    def of(cls, text: str) -> Words:
        pieces: list[str] = []
        words: list[int] = []
        last = 0
        for match in _TOKENS.finditer(text):
            if match.start() > last:
                pieces.append(text[last : match.start()])
            if match.group("word") is not None:
                words.append(len(pieces))
            pieces.append(match.group(0))
            last = match.end()
        if last < len(text):
            pieces.append(text[last:])
        return cls(pieces, words)

    def text(self) -> str:
        return "".join(self.pieces)


def _count(rate: float, words: int) -> int:
    return max(1, round(rate * words))


def swap(text: str, rate: float, rng: random.Random) -> str:
    """Swap two random words, `rate` times per word (at least once); needs two words."""
    cut = Words.of(text)
    if len(cut.words) < 2:
        return text
    for _ in range(_count(rate, len(cut.words))):
        a, b = rng.sample(cut.words, 2)
        cut.pieces[a], cut.pieces[b] = cut.pieces[b], cut.pieces[a]
    return cut.text()


def delete(text: str, rate: float, rng: random.Random) -> str:
    """Delete each word with probability `rate` (with the space before it, or after it at the
    start); at least one word is deleted and at least one is kept."""
    cut = Words.of(text)
    if len(cut.words) < 2:
        return text
    doomed = {i for i in cut.words if rng.random() < rate} or {rng.choice(cut.words)}
    if len(doomed) == len(cut.words):
        doomed.discard(rng.choice(cut.words))
    for i in sorted(doomed, reverse=True):
        cut.pieces[i] = ""
        if i > 0 and cut.pieces[i - 1].endswith(" "):
            cut.pieces[i - 1] = cut.pieces[i - 1][:-1]
        elif i + 1 < len(cut.pieces) and cut.pieces[i + 1].startswith(" "):
            cut.pieces[i + 1] = cut.pieces[i + 1][1:]
    return cut.text()


def _candidates(cut: Words, synonyms: SynonymSource) -> list[tuple[int, Sequence[str]]]:
    found = []
    for i in cut.words:
        word = cut.pieces[i]
        if word.lower() in STOP_WORDS or len(word) < 2:
            continue
        options = synonyms(word)
        if options:
            found.append((i, options))
    return found


def _cased(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def replace(text: str, rate: float, rng: random.Random, synonyms: SynonymSource) -> str:
    """Replace `rate` of the words (at least one) that have synonyms with one of them, in the
    replaced word's case."""
    cut = Words.of(text)
    candidates = _candidates(cut, synonyms)
    if not candidates:
        return text
    chosen = rng.sample(candidates, min(len(candidates), _count(rate, len(cut.words))))
    for i, options in chosen:
        cut.pieces[i] = _cased(rng.choice(list(options)), cut.pieces[i])
    return cut.text()


def insert(text: str, rate: float, rng: random.Random, synonyms: SynonymSource) -> str:
    """Insert a synonym of a random word (one that has synonyms) before a random word, `rate`
    times per word (at least once)."""
    cut = Words.of(text)
    candidates = _candidates(cut, synonyms)
    if not candidates:
        return text
    for _ in range(_count(rate, len(cut.words))):
        _, options = rng.choice(candidates)
        new = rng.choice(list(options))
        at = rng.choice(cut.words)
        cut.pieces[at] = f"{new} {cut.pieces[at]}"
    return cut.text()
