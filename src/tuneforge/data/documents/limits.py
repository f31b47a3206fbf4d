"""How much one uploaded document (or ZIP of documents) may hold while its text is extracted.

Archive bounds (members, decompressed bytes, compression ratio) are the project's `ParseLimits`,
applied by the same `SafeZip` that opens ZIP datasets: a DOCX or PPTX is a ZIP too, so a ZIP bomb
dressed as a Word file is refused from its directory before anything is decompressed. The fields
here bound what is particular to documents: pages, blocks, text, nesting and time.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.data.limits import DEFAULT_LIMITS, MIB, DataFileError, ParseLimits


class DocumentLimits(BaseModel):
    """Bounds applied while extracting the text of documents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_file_bytes: int = Field(
        default=256 * MIB,
        gt=0,
        description="Largest document file (or ZIP of documents) accepted, and largest document "
        "inside a ZIP. A 1,000-page manual with pictures is about 50 MB.",
    )
    max_pages: int = Field(
        default=5_000,
        gt=0,
        description="Most pages in one PDF (or slides in one PPTX), counted from the page tree "
        "before any page is read, so a file that claims a million pages is refused at once.",
    )
    max_page_tree_depth: int = Field(
        default=32,
        gt=0,
        description="Deepest nesting of a PDF's page tree. Writers keep it to 3-6 levels; a deep "
        "tree only makes readers recurse.",
    )
    max_page_content_bytes: int = Field(
        default=4 * MIB,
        gt=0,
        description="Largest drawing instructions of one PDF page (its content streams and the "
        "forms it draws, decompressed). Pages of text take 2-100 KB; reading a page's text "
        "takes about 60 times its instructions in memory, so a larger page is skipped with a "
        "warning.",
    )
    max_page_operations: int = Field(
        default=1_000_000,
        gt=0,
        description="Most drawing operations read from one PDF page, counting those of forms it "
        "draws each time they are drawn (a small form drawn a million times is a small file "
        "that takes hours to read). A page of text has a few thousand; reading a million takes "
        "about 15 seconds. A busier page is skipped with a warning.",
    )
    max_blocks: int = Field(
        default=200_000,
        gt=0,
        description="Most blocks (paragraphs, headings, table rows, slide texts) in one document.",
    )
    max_text_chars: int = Field(
        default=32 * MIB,
        gt=0,
        description="Most characters of text extracted from one document (about 8M tokens, a "
        "few thousand pages); more is refused rather than kept in memory.",
    )
    max_part_bytes: int = Field(
        default=64 * MIB,
        gt=0,
        description="Largest XML part of a DOCX or PPTX that is parsed (the document body, one "
        "slide, the styles). Images and other media are never decompressed.",
    )
    max_documents: int = Field(
        default=1_000,
        gt=0,
        description="Most documents in one ZIP of documents.",
    )
    max_nesting: int = Field(
        default=2,
        ge=1,
        description="How deep ZIP archives may nest: 1 reads only documents given directly; 2 also "
        "reads documents in a ZIP; a ZIP inside that ZIP is refused.",
    )
    max_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Longest time spent extracting one upload (all its documents), checked between "
        "pages and parts.",
    )
    archive: ParseLimits = Field(
        default=DEFAULT_LIMITS,
        description="Bounds for the ZIP containers (ZIPs of documents, DOCX and PPTX packages): "
        "members, decompressed bytes, compression ratio.",
    )


DEFAULT_DOCUMENT_LIMITS = DocumentLimits()


class Deadline:
    """The moment extraction must stop, checked between pages and parts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() > self.end

    def check(self, name: str) -> None:
        if self.passed:
            raise DataFileError(
                f'Reading "{name}" took longer than {self.seconds:g} seconds, the limit. '
                "Split the document into smaller files."
            )
