"""Text of Word (.docx) and PowerPoint (.pptx) files, read from their XML parts.

A DOCX or PPTX is a ZIP of XML parts. The package is opened with the project's `SafeZip`, so a
ZIP bomb is refused from its directory; only the XML parts that hold text are decompressed (each
within `max_part_bytes`), never images or other media, so a presentation with a huge embedded
picture costs nothing to read. XML is parsed without DTDs, entities or network access, and a part
that declares a DOCTYPE (which Office never writes) is refused.

DOCX: paragraphs and table rows in body order; Word's heading styles ('Heading 1'..., 'Title',
or any style or paragraph with an outline level) make the section path. PPTX: slides in the
presentation's order; each text shape, table row and the speaker notes are blocks on the slide's
page, and the slide's title is their section.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import Any

from tuneforge.data.documents.limits import Deadline, DocumentLimits
from tuneforge.data.documents.model import Block, Collector
from tuneforge.data.limits import DataFileError
from tuneforge.data.readers.archive import SafeZip

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_HEADING_NAME = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_OUTLINE_LEVELS = frozenset("012345678")  # 9 means body text
_DECLARATIONS = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def parse_part(archive: SafeZip, part: str, name: str, limits: DocumentLimits) -> Any:
    """The XML element tree of one part, parsed safely."""
    from lxml import etree

    if part not in archive.members:
        raise DataFileError(f'"{name}" is missing its part "{part}"; save the file again.')
    data = archive.read(part, limits.max_part_bytes)
    if _DECLARATIONS.search(data[: 64 << 10]):
        raise DataFileError(
            f'"{name}" declares a DOCTYPE or entities in "{part}", which Office files never do '
            "and which can expand a small file into gigabytes. Save the file again from Word or "
            "PowerPoint."
        )
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise DataFileError(f'"{name}" has a damaged part "{part}" ({error}).') from None


def read_docx(
    archive: SafeZip, name: str, limits: DocumentLimits, deadline: Deadline
) -> list[Block]:
    levels = _heading_styles(archive, name, limits)
    body = parse_part(archive, "word/document.xml", name, limits).find(f"{W}body")
    out = Collector(name, limits)
    if body is None:
        return out.blocks
    path: list[tuple[int, str]] = []
    for index, element in enumerate(_body_items(body)):
        if index % 1024 == 0:
            deadline.check(name)
        if element.tag == f"{W}tbl":
            for row in element.iter(f"{W}tr"):
                cells = [_text(cell) for cell in row.iter(f"{W}tc")]
                out.add(None, tuple(t for _, t in path), " | ".join(c for c in cells if c), False)
            continue
        text = _text(element)
        level = _paragraph_level(element, levels)
        if level is not None and text.strip():
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, " ".join(text.split())))
        out.add(None, tuple(t for _, t in path), text, level is not None)
    return out.blocks


def _body_items(body: Any) -> Iterator[Any]:
    """Paragraphs and tables of the body in order, looking inside content controls."""
    for child in body:
        if child.tag in (f"{W}p", f"{W}tbl"):
            yield child
        elif child.tag == f"{W}sdt":
            content = child.find(f"{W}sdtContent")
            if content is not None:
                yield from (c for c in content if c.tag in (f"{W}p", f"{W}tbl"))


def _text(element: Any) -> str:
    parts: list[str] = []
    for node in element.iter(f"{W}t", f"{W}tab", f"{W}br", f"{W}cr", f"{W}p"):
        if node.tag == f"{W}t":
            parts.append(node.text or "")
        elif node.tag == f"{W}tab":
            parts.append("\t")
        elif node.tag != f"{W}p" or (node is not element and parts):
            parts.append("\n")  # a line break, or a paragraph inside a table cell
    return "".join(parts)


def _heading_styles(archive: SafeZip, name: str, limits: DocumentLimits) -> dict[str, int]:
    """Heading level of each paragraph style id: 'Title' is 0, 'Heading N' is N, and a style
    with an outline level v is v + 1."""
    if "word/styles.xml" not in archive.members:
        return {}
    levels: dict[str, int] = {}
    for style in parse_part(archive, "word/styles.xml", name, limits).iter(f"{W}style"):
        style_id = style.get(f"{W}styleId")
        name_element = style.find(f"{W}name")
        style_name = (name_element.get(f"{W}val") if name_element is not None else "") or ""
        outline = style.find(f"{W}pPr/{W}outlineLvl")
        if not style_id:
            continue
        if style_name.lower() == "title":
            levels[style_id] = 0
        elif match := _HEADING_NAME.match(style_name.strip()):
            levels[style_id] = int(match.group(1))
        elif outline is not None and (value := outline.get(f"{W}val", "")) in _OUTLINE_LEVELS:
            levels[style_id] = int(value) + 1
    return levels


def _paragraph_level(paragraph: Any, levels: dict[str, int]) -> int | None:
    if paragraph.tag != f"{W}p":
        return None
    outline = paragraph.find(f"{W}pPr/{W}outlineLvl")
    if outline is not None and (value := outline.get(f"{W}val", "")) in _OUTLINE_LEVELS:
        return int(value) + 1
    style = paragraph.find(f"{W}pPr/{W}pStyle")
    return levels.get(style.get(f"{W}val", "")) if style is not None else None


def read_pptx(
    archive: SafeZip, name: str, limits: DocumentLimits, deadline: Deadline
) -> tuple[list[Block], int]:
    slides = _slide_parts(archive, name, limits)
    if len(slides) > limits.max_pages:
        raise DataFileError(
            f'"{name}" has {len(slides):,} slides; the limit is {limits.max_pages:,}. Split the '
            "presentation."
        )
    out = Collector(name, limits)
    for number, part in enumerate(slides, start=1):
        deadline.check(name)
        slide = parse_part(archive, part, name, limits)
        title = ""
        shapes: list[tuple[bool, str]] = []
        for shape in slide.iter(f"{P}sp"):
            text = "\n".join(_drawing_text(p) for p in shape.iter(f"{A}p")).strip()
            placeholder = shape.find(f"{P}nvSpPr/{P}nvPr/{P}ph")
            is_title = placeholder is not None and placeholder.get("type") in ("title", "ctrTitle")
            if is_title and text and not title:
                title = " ".join(text.split())
            shapes.append((is_title, text))
        section = (title,) if title else ()
        for is_title, text in shapes:
            out.add(number, section, text, is_title)
        for row in slide.iter(f"{A}tr"):
            cells = ["\n".join(map(_drawing_text, cell.iter(f"{A}p"))).strip() for cell in row]
            out.add(number, section, " | ".join(c for c in cells if c), False)
        notes = _notes_part(archive, part, name, limits)
        if notes is not None:
            for shape in parse_part(archive, notes, name, limits).iter(f"{P}sp"):
                placeholder = shape.find(f"{P}nvSpPr/{P}nvPr/{P}ph")
                if placeholder is not None and placeholder.get("type") == "body":
                    text = "\n".join(_drawing_text(p) for p in shape.iter(f"{A}p"))
                    out.add(number, section, text, False)
    return out.blocks, len(slides)


def _notes_part(archive: SafeZip, slide: str, name: str, limits: DocumentLimits) -> str | None:
    """The part of the slide's speaker notes, if it has any."""
    folder, file = posixpath.split(slide)
    rels = posixpath.join(folder, "_rels", f"{file}.rels")
    if rels not in archive.members:
        return None
    for rel in parse_part(archive, rels, name, limits).iter(f"{REL}Relationship"):
        if rel.get("Type", "").endswith("/notesSlide"):
            target = posixpath.normpath(posixpath.join(folder, rel.get("Target", "")))
            return target if target in archive.members else None
    return None


def _drawing_text(paragraph: Any) -> str:
    return "".join(
        (node.text or "") if node.tag == f"{A}t" else "\n"
        for node in paragraph.iter(f"{A}t", f"{A}br")
    )


def _slide_parts(archive: SafeZip, name: str, limits: DocumentLimits) -> list[str]:
    """The slides' part names in the presentation's order."""
    presentation = parse_part(archive, "ppt/presentation.xml", name, limits)
    rels_part = "ppt/_rels/presentation.xml.rels"
    targets: dict[str, str] = {}
    if rels_part in archive.members:
        for rel in parse_part(archive, rels_part, name, limits).iter(f"{REL}Relationship"):
            target = rel.get("Target", "")
            part = posixpath.normpath(
                target.lstrip("/") if target.startswith("/") else posixpath.join("ppt", target)
            )
            targets[rel.get("Id", "")] = part
    slides: list[str] = []
    for slide_id in presentation.iter(f"{P}sldId"):
        slide = targets.get(slide_id.get(f"{R}id", ""))
        if slide is None or slide not in archive.members:
            raise DataFileError(f'"{name}" lists a slide that is missing; save the file again.')
        slides.append(slide)
        if len(slides) > limits.max_pages:
            break
    return slides
