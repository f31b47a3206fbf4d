"""Text with provenance from one uploaded file: a document, or a ZIP of documents.

`extract(path, name)` decides the format from the bytes (see `detect`), reads it within the
limits (see `DocumentLimits`) and returns one `Document` per document, each a list of blocks
naming its document, page and section. Anything it cannot read safely is a `DataFileError` whose
message says why and what to do; the whole upload shares one time limit.
"""

from __future__ import annotations

import hashlib
import posixpath
import tempfile
from pathlib import Path

from tuneforge.data.documents.detect import (
    HEAD_BYTES,
    READABLE,
    binary_kind,
    mismatch_warning,
    text_format,
)
from tuneforge.data.documents.limits import DEFAULT_DOCUMENT_LIMITS, Deadline, DocumentLimits
from tuneforge.data.documents.markup import read_html, read_markdown, read_text
from tuneforge.data.documents.model import Block, Document, DocumentFormat, too_much_text
from tuneforge.data.documents.ooxml import read_docx, read_pptx
from tuneforge.data.documents.pdf import read_pdf
from tuneforge.data.encoding import decode
from tuneforge.data.limits import DataFileError, size_text
from tuneforge.data.readers.archive import SafeZip

_IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
HASH_CHUNK = 1 << 20


def extract(
    path: Path, name: str, limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS
) -> list[Document]:
    """The documents in the file at `path`, uploaded as `name` (a ZIP gives one per member)."""
    return _extract(Path(path), name, limits, Deadline(limits.max_seconds), depth=1)


def _extract(
    path: Path, name: str, limits: DocumentLimits, deadline: Deadline, depth: int
) -> list[Document]:
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise DataFileError(
            f'"{name}" takes {size_text(size)}; the limit for one document is '
            f"{size_text(limits.max_file_bytes)}. Split it into smaller files."
        )
    if size == 0:
        raise DataFileError(f'"{name}" is empty.')
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    try:
        kind = binary_kind(head)
    except DataFileError as error:
        raise DataFileError(f'"{name}": {error}') from None
    sha256 = _sha256(path)
    pages: int | None = None
    warnings: list[str] = []
    fmt: DocumentFormat
    if kind == "pdf":
        fmt = "pdf"
        blocks, pages, warnings = read_pdf(path, name, limits, deadline)
    elif kind == "zip":
        try:
            fmt, blocks, pages, inner = _read_package(path, name, limits, deadline, depth)
        except DataFileError as error:
            raise _named(error, name) from None
        if inner is not None:
            return inner
    else:
        if (
            size > 4 * limits.max_text_chars
        ):  # more characters than the limit, whatever the encoding
            raise too_much_text(name, limits)
        try:
            text, encoding_warning = decode(path.read_bytes())
        except DataFileError:
            raise DataFileError(
                f'"{name}" is not a document TuneForge can read: it is binary data, not {READABLE}.'
            ) from None
        if len(text) > limits.max_text_chars:
            raise too_much_text(name, limits)
        fmt = text_format(text)
        if fmt == "html":
            blocks = read_html(text, name, limits, deadline)
        else:
            blocks = (read_markdown if fmt == "markdown" else read_text)(text, name, limits)
    if mismatch := mismatch_warning(name, fmt):
        warnings.insert(0, mismatch)
    if kind == "text" and encoding_warning:
        warnings.append(encoding_warning)
    if not blocks:
        warnings.append(_no_text(name, fmt))
    return [Document(name, fmt, sha256, blocks, pages, warnings)]


def _read_package(
    path: Path, name: str, limits: DocumentLimits, deadline: Deadline, depth: int
) -> tuple[DocumentFormat, list[Block], int | None, list[Document] | None]:
    """A DOCX or PPTX (format, blocks, slides, None), or a ZIP of documents (its documents
    last)."""
    with SafeZip(path, limits.archive) as archive:
        if "word/document.xml" in archive.members:
            return "docx", read_docx(archive, name, limits, deadline), None, None
        if "ppt/presentation.xml" in archive.members:
            blocks, pages = read_pptx(archive, name, limits, deadline)
            return "pptx", blocks, pages, None
        if archive.is_workbook:
            raise DataFileError(
                f'"{name}" is an Excel workbook, not a document. Upload it as a dataset.'
            )
        if "mimetype" in archive.members and "content.xml" in archive.members:
            raise DataFileError(
                f'"{name}" is an OpenDocument file (LibreOffice, EPUB); save it as .docx, '
                ".pptx or PDF."
            )
        return "txt", [], None, _extract_zip(archive, name, limits, deadline, depth)


def _named(error: DataFileError, name: str) -> DataFileError:
    """The error, saying which upload it is about when it does not already."""
    message = str(error)
    return error if f'"{name}' in message else DataFileError(f'"{name}": {message}')


def _extract_zip(
    archive: SafeZip, name: str, limits: DocumentLimits, deadline: Deadline, depth: int
) -> list[Document]:
    if depth >= limits.max_nesting:
        raise DataFileError(
            f'"{name}" is a ZIP inside a ZIP; archives may nest {limits.max_nesting - 1} '
            "level(s) deep. Unpack the inner archive and zip the documents again."
        )
    members = [m for m in sorted(archive.members) if not _ignored(m)]
    if len(members) > limits.max_documents:
        raise DataFileError(
            f'"{name}" holds {len(members):,} files; the limit is {limits.max_documents:,} '
            "documents per upload. Split it into several archives."
        )
    if not members:
        raise DataFileError(f'"{name}" is a ZIP archive with no documents in it.')
    documents: list[Document] = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-documents-") as tmp:
        for index, member in enumerate(members):
            deadline.check(name)
            target = Path(tmp) / f"member-{index}"
            archive.extract(member, target, limits.max_file_bytes)
            inner = f"{name}/{member}"
            documents.extend(_extract(target, inner, limits, deadline, depth + 1))
            target.unlink()
    return documents


def _ignored(member: str) -> bool:
    """System files that archivers add: macOS resource forks, Finder and Explorer metadata."""
    parts = member.split("/")
    return parts[0] == "__MACOSX" or posixpath.basename(member).lower() in _IGNORED_NAMES


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _no_text(name: str, fmt: DocumentFormat) -> str:
    if fmt == "pdf":
        return (
            f'"{name}" has no text that can be extracted: it is probably scanned pages (images). '
            "Run it through OCR first."
        )
    return f'"{name}" has no text.'


def all_blocks(documents: list[Document]) -> list[Block]:
    """Every block of every document, in order."""
    return [block for document in documents for block in document.blocks]


__all__ = ["READABLE", "all_blocks", "extract"]
