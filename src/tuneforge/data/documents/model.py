"""What extraction produces: documents made of blocks of text, each with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tuneforge.data.documents.limits import DocumentLimits
from tuneforge.data.limits import DataFileError

DocumentFormat = Literal["pdf", "docx", "pptx", "html", "markdown", "txt"]
FORMAT_NAMES: dict[DocumentFormat, str] = {
    "pdf": "PDF",
    "docx": "Word (.docx)",
    "pptx": "PowerPoint (.pptx)",
    "html": "HTML",
    "markdown": "Markdown",
    "txt": "plain text",
}
SECTION_SEPARATOR = " > "


@dataclass(frozen=True, slots=True)
class Block:
    """One piece of a document's text: a paragraph, a heading, a table row, a page of a PDF or
    the text of a slide shape.

    `page` is the 1-based PDF page or PPTX slide (None for formats without pages); `section` is
    the path of headings above the block (DOCX, HTML, Markdown; a slide's title in PPTX), empty
    when there is none. `heading` marks a block that is itself a heading."""

    document: str
    page: int | None
    section: tuple[str, ...]
    text: str
    heading: bool = False

    @property
    def section_path(self) -> str:
        """The heading path as one string: 'Setup > Linux'."""
        return SECTION_SEPARATOR.join(self.section)

    def as_dict(self) -> dict[str, object]:
        return {
            "document": self.document,
            "page": self.page,
            "section": self.section_path or None,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Document:
    """One document's text. `name` is its upload name (for a document inside a ZIP, the ZIP's
    name, '/', and its path there); `sha256` is the hash of its bytes, which gives its chunks
    stable ids; `pages` counts PDF pages or PPTX slides (None for other formats)."""

    name: str
    format: DocumentFormat
    sha256: str
    blocks: list[Block]
    pages: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return sum(len(block.text) for block in self.blocks)


class Collector:
    """Blocks of one document, counted against the limits as they come."""

    def __init__(self, name: str, limits: DocumentLimits) -> None:
        self.name = name
        self.limits = limits
        self.blocks: list[Block] = []
        self.chars = 0

    def add(self, page: int | None, section: tuple[str, ...], text: str, heading: bool) -> None:
        text = text.strip()
        if not text:
            return
        self.chars += len(text)
        if self.chars > self.limits.max_text_chars:
            raise too_much_text(self.name, self.limits)
        if len(self.blocks) >= self.limits.max_blocks:
            raise DataFileError(
                f'"{self.name}" has more than {self.limits.max_blocks:,} paragraphs, the limit for '
                "one document. Split it into smaller documents."
            )
        self.blocks.append(Block(self.name, page, section, text, heading))


def too_much_text(name: str, limits: DocumentLimits) -> DataFileError:
    return DataFileError(
        f'"{name}" holds more than {limits.max_text_chars:,} characters of text, the limit for '
        "one document. Split it into smaller documents."
    )
