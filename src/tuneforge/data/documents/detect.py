"""Which kind of document a file is, decided from its bytes alone, never from its name.

Binary formats by their magic bytes: `%PDF-` (within the first KiB, as readers allow) is a PDF;
`PK` is a ZIP, told apart by its parts (`word/document.xml` makes a DOCX, `ppt/presentation.xml`
a PPTX, anything else a ZIP of documents); common formats we cannot read are named in the error.
Text is HTML when it has the tags of a page, Markdown when it has Markdown headings or code
fences, and plain text otherwise. A name whose extension says something else is ignored (and
noted in the document's warnings): the content decides.
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal

from tuneforge.data.documents.model import FORMAT_NAMES, DocumentFormat
from tuneforge.data.limits import DataFileError

Kind = Literal["pdf", "zip", "text"]
HEAD_BYTES = 1024
READABLE = "PDF, DOCX, PPTX, HTML, Markdown, plain text, or a ZIP of those"
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Office file (.doc, .ppt, .xls) or a password-protected Office file; open it "
        "in its program and save it as .docx or .pptx without a password",
    ),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive; upload a ZIP instead"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive; upload a ZIP instead"),
    (b"Rar!", "a RAR archive; upload a ZIP instead"),
    (b"{\\rtf", "an RTF file; save it as .docx"),
)
_EXTENSIONS: dict[str, DocumentFormat] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "txt",
    ".text": "txt",
}
_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>/]", re.IGNORECASE)
_HTML_TAGS = re.compile(r"</(?:p|div|h[1-6]|li|ul|ol|table|td|section|article|span|a)>", re.I)
_MARKDOWN = re.compile(r"^(?:#{1,6}[ \t]+\S|```|~~~|\S[^\n]*\n(?:=+|-{3,})[ \t]*$)", re.MULTILINE)


def binary_kind(head: bytes) -> Kind:
    """'pdf', 'zip' or 'text' from the first bytes of a file; DataFileError for the binary
    formats we can name but not read."""
    if b"%PDF-" in head[:HEAD_BYTES]:
        return "pdf"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    for magic, what in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise DataFileError(f"The file is {what}, not a document we can read ({READABLE}).")
    return "text"


def text_format(text: str) -> Literal["html", "markdown", "txt"]:
    """The kind of a text document, from its first 64 KiB."""
    head = text[: 64 << 10]
    start = head.lstrip("\ufeff \t\r\n")
    if _HTML_START.search(head[:4096]) or (start.startswith("<") and _HTML_TAGS.search(head)):
        return "html"
    if _MARKDOWN.search(head):
        return "markdown"
    return "txt"


def claimed_format(name: str) -> DocumentFormat | None:
    """What the file's extension claims, if it names a document format."""
    return _EXTENSIONS.get(posixpath.splitext(name.lower())[1])


def mismatch_warning(name: str, found: DocumentFormat) -> str | None:
    """A note when the extension names another format than the content: the content wins."""
    claimed = claimed_format(name)
    if claimed is None or claimed == found:
        return None
    if {claimed, found} <= {"markdown", "txt"}:
        return None  # plain text is valid Markdown and the other way round
    return (
        f'"{name}" is named like {FORMAT_NAMES[claimed]} but holds {FORMAT_NAMES[found]}; it was '
        f"read as {FORMAT_NAMES[found]}."
    )
