"""Text of a PDF, page by page, with pypdf.

Before any page is read, the page tree is walked without recursion: more pages than the limit,
a tree deeper than the limit, or a node that appears twice (a tree that claims a million pages
by pointing at the same node again and again) is refused. pypdf bounds what one stream may
decompress to (75 MB); a deep nest of objects that makes its parser recurse is refused with a
reason. A password-protected PDF is read when it opens with an empty password (the common
'no copying' protection) and refused otherwise. Bookmarks (the outline) give pages their
sections.
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path
from typing import Any

from tuneforge.data.documents.limits import Deadline, DocumentLimits
from tuneforge.data.documents.model import Block, too_much_text
from tuneforge.data.limits import DataFileError, size_text

MAX_TITLE_CHARS = 200
CHUNK_BYTES = 1 << 20
OPERATIONS_PER_CHECK = 10_000
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def read_pdf(
    path: Path, name: str, limits: DocumentLimits, deadline: Deadline
) -> tuple[list[Block], int, list[str]]:
    """The blocks (one per non-empty page), the page count and warnings (pages skipped) of the
    PDF at `path`."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged-but-readable files are common
    try:
        with path.open("rb") as f:
            reader = PdfReader(f, strict=False)
            if reader.is_encrypted and not _opens_without_password(reader):
                raise DataFileError(
                    f'"{name}" is a password-protected PDF. Open it, save a copy without a '
                    "password, and upload that."
                )
            _check_page_tree(reader, name, limits, deadline)
            count = len(reader.pages)  # pypdf's own walk, safe once the tree passed ours
            if count > limits.max_pages:
                raise _too_many_pages(name, count, limits)
            sections = _outline_sections(reader, count, limits)
            blocks: list[Block] = []
            warnings: list[str] = []
            chars = 0
            for number in range(1, count + 1):
                deadline.check(name)
                page = reader.pages[number - 1]
                size = _content_bytes(page, limits.max_page_content_bytes)
                if size > limits.max_page_content_bytes:
                    limit = size_text(limits.max_page_content_bytes)
                    warnings.append(
                        f'Page {number} of "{name}" was skipped: its drawing instructions take '
                        f"more than {limit}, more than a page of text needs."
                    )
                    continue
                try:
                    text = tidy(_page_text(page, name, limits, deadline))
                except _TooManyOperations:
                    deadline.check(name)
                    warnings.append(
                        f'Page {number} of "{name}" was skipped: it draws more than '
                        f"{limits.max_page_operations:,} operations (forms drawn again and "
                        "again), more than a page of text needs."
                    )
                    continue
                chars += len(text)
                if chars > limits.max_text_chars:
                    raise too_much_text(name, limits)
                if text:
                    blocks.append(Block(name, number, sections[number - 1], text))
            return blocks, count, warnings
    except DataFileError:
        raise
    except RecursionError:
        raise _too_deep(name) from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as error:
        if isinstance(error.__cause__, RecursionError | MemoryError):
            raise _too_deep(name) from None
        raise DataFileError(
            f'"{name}" is a damaged PDF ({type(error).__name__}: {error}). Print it to a new PDF '
            "and upload that."
        ) from None


def tidy(text: str) -> str:
    """Text with runs of spaces collapsed and at most one blank line between paragraphs."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _outline_sections(reader: Any, count: int, limits: DocumentLimits) -> list[tuple[str, ...]]:
    """Each page's section from the PDF's bookmarks (outline): the path of the last bookmark
    that points at that page or an earlier one; empty paths without bookmarks.

    The outline is walked without recursion, each item once (a loop of /Next links ends the
    walk), at most `max_blocks` items and `max_page_tree_depth` levels; bookmarks that point
    at named destinations or elsewhere are skipped."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    numbers = {
        page.indirect_reference.idnum: number
        for number, page in enumerate(reader.pages, start=1)
        if page.indirect_reference is not None
    }
    starts: list[tuple[int, tuple[str, ...]]] = []
    outlines = reader.trailer["/Root"].get_object().get("/Outlines")
    outlines = outlines.get_object() if outlines is not None else None
    stack: list[tuple[Any, tuple[str, ...]]] = []
    if isinstance(outlines, DictionaryObject) and "/First" in outlines:
        stack.append((outlines.raw_get("/First"), ()))
    seen: set[int] = set()
    while stack and len(seen) < limits.max_blocks:
        ref, parent = stack.pop()
        if not isinstance(ref, IndirectObject) or ref.idnum in seen:
            continue
        seen.add(ref.idnum)
        item = ref.get_object()
        if not isinstance(item, DictionaryObject):
            continue
        title = " ".join(str(item.get("/Title", "")).split())[:MAX_TITLE_CHARS]
        path = (*parent, title) if title else parent
        destination = _resolved(item.get("/Dest"))
        action = _resolved(item.get("/A"))
        go_to = isinstance(action, DictionaryObject) and _resolved(action.get("/S")) == "/GoTo"
        if destination is None and go_to:
            destination = _resolved(action.get("/D"))
        if isinstance(destination, ArrayObject) and destination and title:
            target = list.__getitem__(destination, 0)  # the page's reference, unresolved
            if isinstance(target, IndirectObject) and target.idnum in numbers:
                starts.append((numbers[target.idnum], path))
        if "/Next" in item:
            stack.append((item.raw_get("/Next"), parent))
        if "/First" in item and len(path) < limits.max_page_tree_depth:
            stack.append((item.raw_get("/First"), path))
    sections: list[tuple[str, ...]] = [()] * count
    current: tuple[str, ...] = ()
    starts.sort(key=lambda start: start[0])  # stable: bookmarks on one page keep their order
    at = 0
    for number in range(1, count + 1):
        while at < len(starts) and starts[at][0] <= number:
            current = starts[at][1]
            at += 1
        sections[number - 1] = current
    return sections


class _TooManyOperations(BaseException):  # pypdf catches Exception around forms
    pass


def _page_text(page: Any, name: str, limits: DocumentLimits, deadline: Deadline) -> str:
    """The page's text, stopping after `max_page_operations` drawing operations (counted inside
    the forms it draws too, however often) or at the deadline. The stop is a BaseException
    because pypdf catches every Exception around the forms it draws."""
    operations = 0

    def count(*_: Any) -> None:
        nonlocal operations
        operations += 1
        checked = operations % OPERATIONS_PER_CHECK == 0
        if checked and (deadline.passed or operations > limits.max_page_operations):
            raise _TooManyOperations

    return str(page.extract_text(visitor_operand_before=count))


def _content_bytes(page: Any, budget: int) -> int:
    """Decompressed size of the page's content streams and of the forms its resources name,
    counted only up to just past `budget`, a chunk at a time."""
    from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

    streams: list[Any] = []
    contents = _resolved(page.get("/Contents"))
    if isinstance(contents, ArrayObject):
        streams.extend(_resolved(item) for item in contents)
    elif contents is not None:
        streams.append(contents)
    resources = _resolved(page.get("/Resources"))
    xobjects = resources.get("/XObject") if isinstance(resources, DictionaryObject) else None
    forms = _resolved(xobjects)
    if isinstance(forms, DictionaryObject):
        for value in forms.values():
            form = _resolved(value)
            if isinstance(form, StreamObject) and form.get("/Subtype") == "/Form":
                streams.append(form)
    size = 0
    for stream in streams:
        if isinstance(stream, StreamObject):
            size += _stream_bytes(stream, budget - size)
            if size > budget:
                break
    return size


def _stream_bytes(stream: Any, budget: int) -> int:
    """The decompressed size of one stream, up to just past `budget`. Flate streams (nearly all
    content) are inflated here a chunk at a time; others through pypdf, within its limit."""
    filters = _resolved(stream.get("/Filter"))
    if isinstance(filters, list) and len(filters) == 1:
        filters = _resolved(filters[0])
    raw = getattr(stream, "_data", None)  # pypdf keeps an encoded stream's bytes here
    if filters != "/FlateDecode" or not isinstance(raw, bytes):
        return len(stream.get_data())
    inflater = zlib.decompressobj()
    size = 0
    try:
        while raw and size <= budget:
            size += len(inflater.decompress(raw, CHUNK_BYTES))
            raw = inflater.unconsumed_tail
    except zlib.error:
        return len(stream.get_data())  # damaged: pypdf's recovery decides
    return size


def _resolved(value: Any) -> Any:
    return value.get_object() if value is not None else None


def _too_deep(name: str) -> DataFileError:
    return DataFileError(
        f'"{name}" nests its PDF objects too deeply to be read safely. Print it to a new PDF '
        "and upload that."
    )


def _opens_without_password(reader: Any) -> bool:
    try:
        return bool(reader.decrypt(""))
    except Exception:  # an unsupported cipher is as good as a password
        return False


def _check_page_tree(reader: Any, name: str, limits: DocumentLimits, deadline: Deadline) -> None:
    """Walk the page tree (iteratively) and count its pages within the limits."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    root = reader.trailer["/Root"].get_object()
    pages = root.get("/Pages")
    if pages is None:
        raise DataFileError(f'"{name}" is a PDF without pages.')
    declared = pages.get_object().get("/Count")
    if isinstance(declared, int) and declared > limits.max_pages:
        raise _too_many_pages(name, declared, limits)
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, int]] = [(pages, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, IndirectObject):
            key = (node.idnum, node.generation)
            if key in seen:
                raise DataFileError(
                    f'"{name}" has a page tree that points at the same pages more than once, '
                    "which is how a small PDF pretends to hold millions of pages. Print it to a "
                    "new PDF and upload that."
                )
            seen.add(key)
            node = node.get_object()
        if not isinstance(node, DictionaryObject):
            continue
        if depth > limits.max_page_tree_depth:
            raise DataFileError(
                f'"{name}" nests its page tree more than {limits.max_page_tree_depth} levels '
                "deep. Print it to a new PDF and upload that."
            )
        kids = node.get("/Kids")
        if node.get("/Type") == "/Page" or kids is None:
            count += 1
            if count > limits.max_pages:
                raise _too_many_pages(name, count, limits)
            continue
        kids = kids.get_object()
        if isinstance(kids, ArrayObject):
            if len(kids) > limits.max_pages:
                raise _too_many_pages(name, len(kids), limits)
            stack.extend((kid, depth + 1) for kid in reversed(kids))
        if len(seen) % 1024 == 0:
            deadline.check(name)


def _too_many_pages(name: str, count: int, limits: DocumentLimits) -> DataFileError:
    return DataFileError(
        f'"{name}" has {count:,} pages or more; the limit is {limits.max_pages:,}. Split it into '
        "smaller PDFs."
    )
