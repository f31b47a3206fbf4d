"""Text with provenance from documents of every format, and chunks of it.

Documents are generated here with pypdf, python-docx and python-pptx (nothing binary is stored):
a PDF whose page N says "page N" checks that provenance follows the pages."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path

import docx
import pptx
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.models import models_cache_dir
from tuneforge.data.documents import (
    ChunkSettings,
    Document,
    char_counter,
    chunk_document,
    chunk_documents,
    extract,
    gemma_counter,
)
from tuneforge.data.documents.model import Block
from tuneforge.data.limits import DataFileError


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF with one page per item, each line of text written with Helvetica."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        ops = ["BT /F1 11 Tf 72 740 Td 14 TL"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    writer.write(path)
    return path


def numbered_pdf(path: Path, count: int) -> Path:
    return make_pdf(
        path,
        [
            [f"page {n}", f"This is the text of page {n} of the manual."]
            for n in range(1, count + 1)
        ],
    )


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Manual", 0)
    document.add_heading("Install", 1)
    document.add_paragraph("Run the installer.")
    document.add_heading("Linux", 2)
    document.add_paragraph("Use the package manager.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "name"
    table.cell(0, 1).text = "value"
    table.cell(1, 0).text = "port"
    table.cell(1, 1).text = "7860"
    document.add_heading("Use", 1)
    document.add_paragraph("Press start.")
    document.save(path)
    return path


def make_pptx(path: Path, slides: int = 3) -> Path:
    presentation = pptx.Presentation()
    for n in range(1, slides + 1):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = f"Title {n}"
        slide.placeholders[1].text = f"slide {n} body"
        if n == 2:
            slide.notes_slide.notes_text_frame.text = "Say this out loud."
    presentation.save(path)
    return path


HTML = """<!DOCTYPE html><html><head><title>T</title><style>p {color: red}</style>
<script>var secret = 1;</script></head><body><h1>Guide</h1><p>Intro &amp; more&nbsp;text.</p>
<h2>Setup</h2><p>Step one<br>Step two</p><ul><li>apples</li><li>pears</li></ul>
<table><tr><td>key</td><td>value</td></tr></table><h2>Use</h2><p>Go.</p></body></html>"""

MARKDOWN = """---
title: front matter is skipped
---
# Guide

Intro text.

## Setup
Step one.
Step two.

```
# a comment in code, not a heading
```

Use
---
Go.
"""


def test_pdf_blocks_name_their_pages(tmp_path: Path) -> None:
    [document] = extract(numbered_pdf(tmp_path / "manual.pdf", 12), "manual.pdf")
    assert document.format == "pdf"
    assert document.pages == 12
    assert len(document.blocks) == 12
    for block in document.blocks:
        assert block.document == "manual.pdf"
        assert block.text.splitlines()[0] == f"page {block.page}"
        assert block.section == ()
    assert len(document.sha256) == 64


def test_pdf_bookmarks_give_pages_their_sections(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=numbered_pdf(tmp_path / "plain.pdf", 6))
    first = writer.add_outline_item(title="Install", page_number=0)
    writer.add_outline_item(title="Linux", page_number=2, parent=first)
    writer.add_outline_item(title="Use", page_number=4)
    writer.write(tmp_path / "marked.pdf")
    [document] = extract(tmp_path / "marked.pdf", "marked.pdf")
    assert [(b.page, b.section) for b in document.blocks] == [
        (1, ("Install",)),
        (2, ("Install",)),
        (3, ("Install", "Linux")),
        (4, ("Install", "Linux")),
        (5, ("Use",)),
        (6, ("Use",)),
    ]
    chunks = chunk_document(document, ChunkSettings(max_tokens=512, overlap_tokens=0))
    assert [(c.section, c.pages) for c in chunks] == [
        (("Install",), (1, 2)),
        (("Install", "Linux"), (3, 4)),
        (("Use",), (5, 6)),
    ]


def test_chunks_of_a_pdf_name_the_pages_they_hold(tmp_path: Path) -> None:
    [document] = extract(numbered_pdf(tmp_path / "manual.pdf", 30), "manual.pdf")
    chunks = chunk_document(document, ChunkSettings(max_tokens=64, overlap_tokens=0))
    assert len(chunks) > 5
    seen: list[int] = []
    for chunk in chunks:
        assert chunk.tokens <= 64
        said = [
            int(line.split()[1]) for line in chunk.text.splitlines() if line.startswith("page ")
        ]
        assert said == list(chunk.pages)  # each page the chunk names is in its text, in order
        seen.extend(said)
    assert seen == list(range(1, 31))  # every page once, in order, without overlap
    split = chunk_document(document, ChunkSettings(max_tokens=512, split_pages=True))
    assert [c.pages for c in split] == [(n,) for n in range(1, 31)]


def test_docx_sections_follow_headings_and_tables_are_kept(tmp_path: Path) -> None:
    [document] = extract(make_docx(tmp_path / "manual.docx"), "manual.docx")
    assert document.format == "docx"
    got = [(block.section, block.text, block.heading) for block in document.blocks]
    assert got == [
        (("Manual",), "Manual", True),
        (("Manual", "Install"), "Install", True),
        (("Manual", "Install"), "Run the installer.", False),
        (("Manual", "Install", "Linux"), "Linux", True),
        (("Manual", "Install", "Linux"), "Use the package manager.", False),
        (("Manual", "Install", "Linux"), "name | value", False),
        (("Manual", "Install", "Linux"), "port | 7860", False),
        (("Manual", "Use"), "Use", True),
        (("Manual", "Use"), "Press start.", False),
    ]
    assert all(block.page is None for block in document.blocks)


def test_pptx_blocks_name_their_slide_and_its_title(tmp_path: Path) -> None:
    [document] = extract(make_pptx(tmp_path / "deck.pptx", 4), "deck.pptx")
    assert document.format == "pptx"
    assert document.pages == 4
    bodies = [b for b in document.blocks if not b.heading]
    assert [(b.page, b.section, b.text) for b in bodies] == [
        (1, ("Title 1",), "slide 1 body"),
        (2, ("Title 2",), "slide 2 body"),
        (2, ("Title 2",), "Say this out loud."),  # the speaker notes
        (3, ("Title 3",), "slide 3 body"),
        (4, ("Title 4",), "slide 4 body"),
    ]


def test_html_headings_blocks_and_entities(tmp_path: Path) -> None:
    path = tmp_path / "guide.html"
    path.write_text(HTML, encoding="utf-8")
    [document] = extract(path, "guide.html")
    assert document.format == "html"
    got = [(b.section, b.text) for b in document.blocks]
    assert got == [
        (("Guide",), "Guide"),
        (("Guide",), "Intro & more text."),
        (("Guide", "Setup"), "Setup"),
        (("Guide", "Setup"), "Step one\nStep two"),
        (("Guide", "Setup"), "apples"),
        (("Guide", "Setup"), "pears"),
        (("Guide", "Setup"), "key | value"),
        (("Guide", "Use"), "Use"),
        (("Guide", "Use"), "Go."),
    ]
    assert "secret" not in "".join(b.text for b in document.blocks)


def test_html_without_end_tags(tmp_path: Path) -> None:
    path = tmp_path / "old.html"
    path.write_text(
        "<html><head><title>Old page</title><meta charset=utf-8><body><h1>News<p>First"
        "<p>Second<h2>More</h2>Third",
        encoding="utf-8",
    )
    [document] = extract(path, "old.html")
    assert [(b.section, b.text) for b in document.blocks] == [
        (("News",), "News"),
        (("News",), "First"),
        (("News",), "Second"),
        (("News", "More"), "More"),
        (("News", "More"), "Third"),
    ]


def test_markdown_headings_outside_code_make_sections(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    [document] = extract(path, "guide.md")
    assert document.format == "markdown"
    got = [(b.section, b.text) for b in document.blocks]
    assert got == [
        (("Guide",), "Guide"),
        (("Guide",), "Intro text."),
        (("Guide", "Setup"), "Setup"),
        (("Guide", "Setup"), "Step one.\nStep two."),
        (("Guide", "Setup"), "```\n# a comment in code, not a heading\n```"),
        (("Guide", "Use"), "Use"),
        (("Guide", "Use"), "Go."),
    ]


def test_plain_text_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph\nstill first.\n\n\nSecond one.\n", encoding="utf-8")
    [document] = extract(path, "notes.txt")
    assert document.format == "txt"
    assert [b.text for b in document.blocks] == ["First paragraph\nstill first.", "Second one."]
    assert document.warnings == []


def test_text_in_other_encodings(tmp_path: Path) -> None:
    path = tmp_path / "old.txt"
    path.write_bytes("Caf\u00e9 cr\u00e8me\n\nna\u00efve".encode("cp1252"))
    [document] = extract(path, "old.txt")
    assert [b.text for b in document.blocks] == ["Caf\u00e9 cr\u00e8me", "na\u00efve"]
    assert "Windows-1252" in document.warnings[0]
    path.write_bytes("# Titre\n\n\u00c9t\u00e9".encode("utf-16"))
    [document] = extract(path, "notes.md")
    assert [(b.section, b.text) for b in document.blocks][-1] == (("Titre",), "\u00c9t\u00e9")


def test_zip_of_documents_names_each_member(tmp_path: Path) -> None:
    numbered_pdf(tmp_path / "a.pdf", 2)
    make_docx(tmp_path / "b.docx")
    archive = tmp_path / "docs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(tmp_path / "a.pdf", "manuals/a.pdf")
        z.write(tmp_path / "b.docx", "b.docx")
        z.writestr("notes.md", "# Notes\n\nRemember this.\n")
        z.writestr("__MACOSX/._notes.md", b"\x00\x05\x16\x07")
    documents = extract(archive, "docs.zip")
    assert [(d.name, d.format) for d in documents] == [
        ("docs.zip/b.docx", "docx"),
        ("docs.zip/manuals/a.pdf", "pdf"),
        ("docs.zip/notes.md", "markdown"),
    ]
    assert documents[1].blocks[1].page == 2
    assert documents[1].blocks[1].document == "docs.zip/manuals/a.pdf"
    chunks = chunk_documents(documents)
    assert {c.document for c in chunks} == {d.name for d in documents}


def test_a_name_that_lies_is_ignored(tmp_path: Path) -> None:
    pdf = numbered_pdf(tmp_path / "x", 2).rename(tmp_path / "report.txt")
    [document] = extract(pdf, "report.txt")
    assert document.format == "pdf"
    assert document.blocks[0].page == 1
    assert "named like plain text but holds PDF" in document.warnings[0]
    html = tmp_path / "page.pdf"
    html.write_text(HTML, encoding="utf-8")
    [document] = extract(html, "page.pdf")
    assert document.format == "html"
    assert "named like PDF but holds HTML" in document.warnings[0]


def test_a_pdf_without_text_says_it_needs_ocr(tmp_path: Path) -> None:
    [document] = extract(make_pdf(tmp_path / "scan.pdf", [[], []]), "scan.pdf")
    assert document.blocks == []
    assert "OCR" in document.warnings[0]


def _document(blocks: list[Block]) -> Document:
    return Document("doc.md", "markdown", "0" * 64, blocks)


def test_chunks_never_cross_sections_and_stay_within_the_budget() -> None:
    words = " ".join(f"word{i}." for i in range(400))
    document = _document(
        [
            Block("doc.md", None, ("A",), "A", True),
            Block("doc.md", None, ("A",), words),
            Block("doc.md", None, ("A", "B"), "B", True),
            Block("doc.md", None, ("A", "B"), "short text"),
        ]
    )
    chunks = chunk_document(document, ChunkSettings(max_tokens=64, overlap_tokens=16))
    assert chunks[-1].section == ("A", "B")
    assert chunks[-1].text == "B\n\nshort text"
    counter = char_counter()
    for chunk in chunks:
        assert chunk.tokens <= 64
        assert counter([chunk.text])[0] <= 64
        assert "short text" not in chunk.text or chunk.section == ("A", "B")
    first = [c for c in chunks if c.section == ("A",)]
    assert len(first) > 3
    # every word is in some chunk, and each chunk after the first repeats the end of the one before
    joined = " ".join(c.text for c in first)
    assert all(f"word{i}." in joined for i in range(400))
    for before, after in itertools.pairwise(first):
        assert after.text.split()[0] in before.text
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_a_word_longer_than_the_budget_is_cut() -> None:
    document = _document([Block("doc.md", None, (), "x" * 5000)])
    chunks = chunk_document(document, ChunkSettings(max_tokens=100, overlap_tokens=0))
    assert "".join(c.text for c in chunks) == "x" * 5000
    assert all(c.tokens <= 100 for c in chunks)


def test_chunk_ids_are_stable_and_depend_on_document_and_settings(tmp_path: Path) -> None:
    [document] = extract(numbered_pdf(tmp_path / "m.pdf", 10), "m.pdf")
    settings = ChunkSettings(max_tokens=64, overlap_tokens=8)
    first = [c.id for c in chunk_document(document, settings)]
    [again] = extract(tmp_path / "m.pdf", "m.pdf")
    assert [c.id for c in chunk_document(again, settings)] == first
    assert len(set(first)) == len(first)
    other = chunk_document(document, ChunkSettings(max_tokens=128, overlap_tokens=8))
    assert not {c.id for c in other} & set(first)


def test_overlap_must_fit_in_half_the_budget() -> None:
    with pytest.raises(ValueError, match="at most half"):
        ChunkSettings(max_tokens=100, overlap_tokens=60)


def test_gemma_counter_counts_real_tokens() -> None:
    counter = gemma_counter(models_cache_dir())
    text = "The quick brown fox jumps over the lazy dog."
    assert counter([text, ""]) == [10, 0]
    document = _document([Block("doc.md", None, (), " ".join([text] * 100))])
    chunks = chunk_document(document, ChunkSettings(max_tokens=64, overlap_tokens=0), counter)
    assert all(counter([c.text])[0] <= 64 for c in chunks)


def test_refuses_what_is_not_a_document(tmp_path: Path) -> None:
    png = tmp_path / "photo.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataFileError, match="PNG image"):
        extract(png, "photo.pdf")
