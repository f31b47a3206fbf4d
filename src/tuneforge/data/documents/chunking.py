"""Chunks of documents for generating training data: split by structure, then by a token budget,
with overlap, each keeping its provenance and a stable id.

1. **Structure first.** A chunk never spans two documents or two sections (heading paths); with
   `split_pages` it never spans two pages or slides either. Within a section, whole blocks
   (paragraphs, table rows, PDF pages) are packed in order while they fit the budget.
2. **Then the budget.** A block larger than the budget is cut at blank lines, then at line
   breaks, then after sentences, then between words, and only as a last resort inside a word,
   so every chunk holds at most `max_tokens` tokens.
3. **Overlap.** Each chunk after the first in a section starts with the last pieces of the one
   before it, up to `overlap_tokens`, so a fact cut at a boundary is whole in one of them.

Tokens are counted with a `TokenCounter`: the real Gemma tokenizer (`gemma_counter`, what the
synthesis job uses, the same the dataset statistics count with) or an estimate of 4 characters
per token (`char_counter`, the default when no tokenizer is at hand: English text averages 4-5
characters per Gemma token, so the estimate errs on the side of smaller chunks). A chunk's
`tokens` is the sum of its pieces' counts plus one per join.

A chunk's `id` is a hash of its document's name and bytes, the chunking settings, the counter
and its position: the same upload chunked again gives the same ids, so a resumed job skips the
chunks it finished.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from tuneforge.data.documents.model import SECTION_SEPARATOR, Document
from tuneforge.strict_numbers import Integer

BLOCK_JOINER = "\n\n"
CHARS_PER_TOKEN = 4.0
# Where an oversized piece is cut, coarsest first; each cut keeps the separator with the piece
# before it, so joining the pieces gives the text back.
_CUTS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"(?<=[.!?;:])\s+"),
    re.compile(r"\s+"),
)


class ChunkSettings(BaseModel):
    """How documents are cut into chunks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: Integer = Field(
        default=512,
        ge=32,
        le=32_768,
        description="Most tokens in one chunk. A chunk is what the model sees to write one set of "
        "questions or instructions: 300-1,000 tokens (a page or two) gives it enough context "
        "without mixing many topics.",
    )
    overlap_tokens: Integer = Field(
        default=64,
        ge=0,
        description="Tokens of the previous chunk repeated at the start of the next one in the "
        "same section, so a fact cut at a boundary appears whole in one chunk. At most half "
        "of `max_tokens`.",
    )
    split_pages: StrictBool = Field(
        default=False,
        description="Start a new chunk at every page (PDF) or slide (PPTX), so each chunk names "
        "exactly one page. Off: short pages and slides are packed together and the chunk "
        "names all of them.",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> Self:
        if self.overlap_tokens * 2 > self.max_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) must be at most half of max_tokens "
                f"({self.max_tokens})."
            )
        return self


class TokenCounter:
    """Counts tokens of many texts at once. `name` goes into chunk ids."""

    def __init__(self, name: str, count: Callable[[list[str]], list[int]]) -> None:
        self.name = name
        self._count = count

    def __call__(self, texts: list[str]) -> list[int]:
        return self._count(texts) if texts else []


def char_counter(chars_per_token: float = CHARS_PER_TOKEN) -> TokenCounter:
    """An estimate: one token per `chars_per_token` characters, rounded up."""
    return TokenCounter(
        f"chars/{chars_per_token:g}",
        lambda texts: [-int(-len(text) // chars_per_token) for text in texts],
    )


def gemma_counter(cache_dir: Path) -> TokenCounter:
    """Exact counts with the real Gemma 3 tokenizer (loaded once per process)."""
    from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer

    tokenizer = gemma_tokenizer(cache_dir)
    return TokenCounter("gemma3", lambda texts: count_tokens(texts, tokenizer))


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one document, ready to be turned into training data. `index` counts the
    document's chunks from 0; `pages` are the PDF pages or slides it covers (empty for formats
    without pages); `section` is its heading path."""

    id: str
    document: str
    index: int
    pages: tuple[int, ...]
    section: tuple[str, ...]
    text: str
    tokens: int

    @property
    def section_path(self) -> str:
        return SECTION_SEPARATOR.join(self.section)

    def as_dict(self) -> dict[str, object]:
        return {
            "chunk_id": self.id,
            "document": self.document,
            "chunk_index": self.index,
            "pages": list(self.pages),
            "section": self.section_path or None,
            "text": self.text,
            "tokens": self.tokens,
        }


@dataclass(slots=True)
class _Piece:
    text: str
    joiner: str  # what goes between the previous piece and this one
    page: int | None
    tokens: int = 0
    level: int = 0  # the first separator in _CUTS that may still cut it


def chunk_documents(
    documents: Iterable[Document],
    settings: ChunkSettings | None = None,
    counter: TokenCounter | None = None,
) -> list[Chunk]:
    """The chunks of every document, in order."""
    settings = settings or ChunkSettings()
    counter = counter or char_counter()
    return [c for document in documents for c in chunk_document(document, settings, counter)]


def chunk_document(
    document: Document,
    settings: ChunkSettings | None = None,
    counter: TokenCounter | None = None,
) -> list[Chunk]:
    """The chunks of one document, in order."""
    settings = settings or ChunkSettings()
    counter = counter or char_counter()
    groups: list[tuple[tuple[str, ...], list[_Piece]]] = []
    for block in document.blocks:
        key_page = block.page if settings.split_pages else None
        if (
            not groups
            or groups[-1][0] != block.section
            or (settings.split_pages and groups[-1][1] and groups[-1][1][-1].page != key_page)
        ):
            groups.append((block.section, []))
        groups[-1][1].append(_Piece(block.text, BLOCK_JOINER, block.page))
    every = [piece for _, pieces in groups for piece in pieces]
    for piece, n in zip(every, counter([p.text for p in every]), strict=True):
        piece.tokens = n
    prefix = _id_prefix(document, settings, counter)
    chunks: list[Chunk] = []
    for section, pieces in groups:
        fitted = _fit(pieces, settings.max_tokens, counter)
        for text, pages, tokens in _pack(fitted, settings):
            index = len(chunks)
            chunk_id = hashlib.sha256(f"{prefix}\0{index}".encode()).hexdigest()[:32]
            chunks.append(Chunk(chunk_id, document.name, index, pages, section, text, tokens))
    return chunks


def _id_prefix(document: Document, settings: ChunkSettings, counter: TokenCounter) -> str:
    return json.dumps(
        [document.name, document.sha256, settings.model_dump(mode="json"), counter.name]
    )


def _fit(pieces: list[_Piece], budget: int, counter: TokenCounter) -> list[_Piece]:
    """The pieces with every one larger than `budget` (the join before it counted) cut smaller.

    Each pass cuts every oversized piece at its next finer separator and counts all the new parts
    in one call, so a document costs a handful of counter calls however many pieces it has."""
    limit = budget - 1
    while True:
        big = {i for i, p in enumerate(pieces) if p.tokens > limit and len(p.text) > 1}
        if not big:
            return pieces
        out: list[_Piece] = []
        new: list[_Piece] = []
        for i, piece in enumerate(pieces):
            if i not in big:
                out.append(piece)
                continue
            texts, level = _split(piece, limit)
            parts = [
                _Piece(text, piece.joiner if k == 0 else "", piece.page, 0, level)
                for k, text in enumerate(texts)
            ]
            out.extend(parts)
            new.extend(parts)
        for part, n in zip(new, counter([p.text for p in new]), strict=True):
            part.tokens = n
        pieces = out


def _split(piece: _Piece, limit: int) -> tuple[list[str], int]:
    """The piece's text cut at the first separator, from its level on, that cuts it at all, and
    the level its parts continue from; past the last separator, cut by characters at about half
    the size that would fit."""
    level = piece.level
    while level < len(_CUTS):
        texts = _split_keeping(piece.text, _CUTS[level])
        level += 1
        if len(texts) > 1:
            return texts, level
    width = max(1, len(piece.text) * limit // max(piece.tokens, 1) // 2)
    return [piece.text[i : i + width] for i in range(0, len(piece.text), width)], level


def _split_keeping(text: str, cut: re.Pattern[str]) -> list[str]:
    """`text` cut after each match of `cut`, the separator kept at the end of the piece."""
    pieces: list[str] = []
    start = 0
    for match in cut.finditer(text):
        if match.end() > start and match.start() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces or [text]


def _pack(
    pieces: Sequence[_Piece], settings: ChunkSettings
) -> list[tuple[str, tuple[int, ...], int]]:
    """Greedy packing of pieces into chunks within the budget, each chunk after the first
    starting with the previous chunk's last pieces up to the overlap."""
    chunks: list[tuple[str, tuple[int, ...], int]] = []
    current: list[_Piece] = []
    size = 0
    fresh = False  # whether `current` holds a piece not yet emitted in a chunk

    def emit() -> None:
        text = _joined(current)
        if text.strip():
            pages = tuple(sorted({p.page for p in current if p.page is not None}))
            chunks.append((text.strip(), pages, size))

    for piece in pieces:
        cost = piece.tokens + (1 if current else 0)
        if current and size + cost > settings.max_tokens:
            if fresh:
                emit()
            current, size = _overlap(current, settings.overlap_tokens)
            while current and size + piece.tokens + 1 > settings.max_tokens:
                size -= current.pop(0).tokens + (1 if current else 0)
            cost = piece.tokens + (1 if current else 0)
        current.append(piece)
        size += cost
        fresh = True
    if current and fresh:
        emit()
    return chunks


def _overlap(previous: list[_Piece], budget: int) -> tuple[list[_Piece], int]:
    """The last pieces of `previous` whose tokens (joins counted) fit in `budget`."""
    kept: list[_Piece] = []
    size = 0
    for piece in reversed(previous):
        cost = piece.tokens + (1 if kept else 0)
        if size + cost > budget:
            break
        kept.insert(0, piece)
        size += cost
    return kept, size


def _joined(pieces: Sequence[_Piece]) -> str:
    return "".join((p.joiner if i else "") + p.text for i, p in enumerate(pieces))
