"""Hostile documents: each is refused with a DataFileError that says why, within bounded memory
(Python's allocations traced), or, where harmless, read within the limits. Everything is generated
here and small on disk; the '1 GB image' is a highly compressible ZIP member."""

from __future__ import annotations

import io
import shutil
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from tests.data.test_documents import make_docx, make_pptx, numbered_pdf
from tuneforge.data.documents import DocumentLimits, extract
from tuneforge.data.limits import MIB, DataFileError

MEMORY_BOUND = 64 * MIB


@contextmanager
def bounded_memory(limit: int = MEMORY_BOUND) -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak Python memory {peak / MIB:.1f} MiB"


def refused(path: Path, name: str, phrase: str, limits: DocumentLimits | None = None) -> str:
    """Extraction fails with a DataFileError containing `phrase`, in bounded memory."""
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError) as caught:
            extract(path, name, *([limits] if limits else []))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert phrase.lower() in message.lower(), message
    assert name.split("/")[0] in message, message
    assert peak < MEMORY_BOUND, f"peak Python memory {peak / MIB:.1f} MiB"
    return message


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF made by hand from object bodies (object 1 is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"


def test_password_protected_pdf(tmp_path: Path) -> None:
    plain = numbered_pdf(tmp_path / "plain.pdf", 3)
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt("secret", algorithm="AES-128")
    writer.write(tmp_path / "locked.pdf")
    refused(tmp_path / "locked.pdf", "locked.pdf", "password-protected PDF")
    # 'no copying' protection with an empty user password opens and reads
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt("", owner_password="owner", algorithm="AES-128")
    writer.write(tmp_path / "restricted.pdf")
    [document] = extract(tmp_path / "restricted.pdf", "restricted.pdf")
    assert [b.page for b in document.blocks] == [1, 2, 3]


def test_pdf_that_claims_a_million_pages(tmp_path: Path) -> None:
    path = tmp_path / "million.pdf"
    path.write_bytes(raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>", PAGE]))
    refused(path, "million.pdf", "1,000,000 pages")


def test_pdf_page_tree_that_reuses_nodes_to_make_millions_of_pages(tmp_path: Path) -> None:
    # node k lists node k+1 twice: 2**21 pages from 23 objects, and a Count that lies
    objects = [CATALOG]
    objects += [
        b"<< /Type /Pages /Kids [%d 0 R %d 0 R] /Count 1 >>" % (k + 1, k + 1) for k in range(2, 23)
    ]
    objects.append(PAGE)
    path = tmp_path / "dag.pdf"
    path.write_bytes(raw_pdf(objects))
    refused(path, "dag.pdf", "points at the same pages more than once")
    # the same page listed 20,000 times in one Kids array
    kids = b" ".join([b"3 0 R"] * 20_000)
    path.write_bytes(raw_pdf([CATALOG, b"<< /Type /Pages /Kids [" + kids + b"] /Count 1 >>", PAGE]))
    refused(path, "dag.pdf", "20,000 pages or more")


def test_pdf_bookmarks_that_loop(tmp_path: Path) -> None:
    catalog = b"<< /Type /Catalog /Pages 2 0 R /Outlines 4 0 R >>"
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 7 0 R "
        b"/Resources << /Font << /F1 8 0 R >> >> >>"
    )
    content = b"BT /F1 12 Tf 72 720 Td (page 1) Tj ET"
    path = tmp_path / "loop.pdf"
    path.write_bytes(
        raw_pdf(
            [
                catalog,
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                page,
                b"<< /First 5 0 R >>",
                b"<< /Title (A) /Dest [3 0 R /Fit] /Next 6 0 R >>",
                b"<< /Title (B) /Dest [3 0 R /Fit] /Next 5 0 R /First 5 0 R >>",
                b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            ]
        )
    )
    [document] = extract(path, "loop.pdf")
    assert [(b.page, b.section, b.text) for b in document.blocks] == [(1, ("B",), "page 1")]


def test_pdf_with_a_deep_page_tree(tmp_path: Path) -> None:
    objects = [CATALOG]
    objects += [b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % (k + 1) for k in range(2, 202)]
    objects.append(PAGE)
    path = tmp_path / "deep.pdf"
    path.write_bytes(raw_pdf(objects))
    refused(path, "deep.pdf", "levels deep")


def test_pdf_with_a_deep_object_tree(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Nest " + deep + b" >>"
    path = tmp_path / "nested.pdf"
    path.write_bytes(raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page]))
    refused(path, "nested.pdf", "nests its PDF objects too deeply")


def _repack(source: Path, target: Path, replace: dict[str, bytes], level: int = 6) -> Path:
    """A copy of an Office file with some parts replaced or added."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename not in replace:
                new.writestr(info.filename, old.read(info.filename))
        for name, data in replace.items():
            new.writestr(name, data, compresslevel=level)
    return target


def test_docx_zip_bomb(tmp_path: Path) -> None:
    source = make_docx(tmp_path / "a.docx")
    body = b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    bomb = body + b" " * (200 * MIB) + b"</w:document>"
    path = _repack(source, tmp_path / "bomb.docx", {"word/document.xml": bomb})
    assert path.stat().st_size < 1 * MIB
    refused(path, "bomb.docx", "compression bombs")
    # under the ratio but over the part limit: refused while decompressing, not after
    paragraphs = b"".join(
        b"<w:p><w:r><w:t>paragraph %d %x</w:t></w:r></w:p>" % (i, i * 2654435761 % 2**32)
        for i in range(30_000)
    )
    ordinary = body + b"<w:body>" + paragraphs + b"</w:body></w:document>"
    path = _repack(source, tmp_path / "large.docx", {"word/document.xml": ordinary})
    refused(path, "large.docx", "the limit is 1 MiB", DocumentLimits(max_part_bytes=1 * MIB))


def test_pptx_with_a_1_gb_embedded_image(tmp_path: Path) -> None:
    source = make_pptx(tmp_path / "a.pptx")
    path = tmp_path / "huge.pptx"
    shutil.copy(source, path)
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z,
        z.open("ppt/media/image99.png", "w", force_zip64=True) as member,
    ):
        block = bytes(16 * MIB)
        for _ in range(64):  # 1 GiB of zeros, a few MB on disk
            member.write(block)
    assert path.stat().st_size < 8 * MIB
    refused(path, "huge.pptx", "1 GiB")


def test_pptx_media_is_never_decompressed(tmp_path: Path) -> None:
    source = make_pptx(tmp_path / "a.pptx")
    picture = bytes(range(256)) * (40 * 4096)  # 40 MiB of a pattern, far below the bomb ratio
    path = _repack(source, tmp_path / "pictures.pptx", {"ppt/media/big.bin": picture}, level=0)
    with bounded_memory(8 * MIB):
        [document] = extract(path, "pictures.pptx")
    assert document.pages == 3


def test_office_part_with_a_doctype(tmp_path: Path) -> None:
    source = make_docx(tmp_path / "a.docx")
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p></w:body></w:document>"
    )
    path = _repack(source, tmp_path / "laughs.docx", {"word/document.xml": laughs})
    refused(path, "laughs.docx", "declares a DOCTYPE or entities")


def test_html_with_entity_expansion(tmp_path: Path) -> None:
    path = tmp_path / "laughs.html"
    entities = "".join(
        f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    )
    path.write_text(
        f'<?xml version="1.0"?><!DOCTYPE html [<!ENTITY l0 "lol">{entities}]>'
        "<html><body><p>&l9;</p></body></html>",
        encoding="utf-8",
    )
    refused(path, "laughs.html", "declares its own entities")


def test_html_with_a_huge_number_of_entities_reads_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "many.html"
    path.write_text("<html><body><p>" + "&amp;&lt;&#x41;" * 300_000 + "</p></body></html>")
    start = time.monotonic()
    with bounded_memory():
        [document] = extract(path, "many.html")
    assert time.monotonic() - start < 20  # linear: a quadratic reader takes minutes
    assert document.blocks[0].text == "&<A" * 300_000  # never longer than the file


@pytest.mark.parametrize(
    ("content", "name", "phrase"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "photo.docx", "PNG image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "report.docx", "password-protected"),
        (bytes(range(256)) * 8, "data.pdf", "binary data"),
        (b"\x1f\x8b\x08\x00" + bytes(32), "notes.md", "gzip"),
    ],
)
def test_a_file_whose_extension_lies_about_a_format_we_cannot_read(
    tmp_path: Path, content: bytes, name: str, phrase: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    refused(path, name, phrase)


def test_a_spreadsheet_named_like_a_document(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["a", "b"])
    book.save(tmp_path / "sheet.docx")
    refused(tmp_path / "sheet.docx", "sheet.docx", "Excel workbook")


def test_zip_inside_a_zip_inside_a_zip(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.txt", "hello")
    middle = io.BytesIO()
    with zipfile.ZipFile(middle, "w") as z:
        z.writestr("inner.zip", inner.getvalue())
    path = tmp_path / "outer.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("middle.zip", middle.getvalue())
    refused(path, "outer.zip", "ZIP inside a ZIP")
    path.write_bytes(middle.getvalue())  # one level is fine
    # a ZIP of one ZIP of one text: the text is read, named by its path
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.txt", "hello")
    [document] = extract(path, "outer.zip")
    assert document.name == "outer.zip/a.txt"


def test_limits_on_pages_text_documents_and_time(tmp_path: Path) -> None:
    refused(make_pptx(tmp_path / "d.pptx", 3), "d.pptx", "3 slides", DocumentLimits(max_pages=2))
    pdf = numbered_pdf(tmp_path / "m.pdf", 3)
    refused(pdf, "m.pdf", "3 pages or more", DocumentLimits(max_pages=2))
    refused(pdf, "m.pdf", "characters of text", DocumentLimits(max_text_chars=40))
    refused(pdf, "m.pdf", "took longer", DocumentLimits(max_seconds=1e-9))
    refused(pdf, "m.pdf", "the limit for one document", DocumentLimits(max_file_bytes=100))
    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(["paragraph"] * 50))
    refused(text, "t.txt", "characters of text", DocumentLimits(max_text_chars=100))
    refused(text, "t.txt", "characters of text", DocumentLimits(max_text_chars=500))
    refused(text, "t.txt", "more than 10 paragraphs", DocumentLimits(max_blocks=10))
    archive = tmp_path / "docs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(3):
            z.writestr(f"{i}.txt", "hello")
    refused(archive, "docs.zip", "the limit is 2 documents", DocumentLimits(max_documents=2))


def test_pdf_stream_that_decompresses_to_hundreds_of_megabytes(tmp_path: Path) -> None:
    data = zlib.compress(b"0" * (200 * MIB), 9)
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>"
    path = tmp_path / "stream.pdf"
    path.write_bytes(raw_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page, stream]))
    assert path.stat().st_size < 1 * MIB
    with bounded_memory(100 * MIB):
        try:
            [document] = extract(path, "stream.pdf")
        except DataFileError as error:
            assert "stream.pdf" in str(error)
        else:
            assert document.blocks == []
            assert "drawing instructions take more than 4 MiB" in document.warnings[0]


def test_pdf_page_with_millions_of_drawing_instructions_is_skipped(tmp_path: Path) -> None:
    # 7 MB of tiny text operations compress to a few KB; reading their text would take GBs
    content = b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj\n" * 1_000_000 + b"ET"
    data = zlib.compress(content, 9)
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    small = b"BT /F1 12 Tf 72 720 Td (page 2) Tj ET"
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
        b"/Resources << /Font << /F1 7 0 R >> >> >>"
    )
    path = tmp_path / "busy.pdf"
    path.write_bytes(
        raw_pdf(
            [
                CATALOG,
                b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>",
                page % 5,
                page % 6,
                stream,
                b"<< /Length %d >>\nstream\n" % len(small) + small + b"\nendstream",
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            ]
        )
    )
    with bounded_memory():
        [document] = extract(path, "busy.pdf")
    assert [(b.page, b.text) for b in document.blocks] == [(2, "page 2")]
    assert 'Page 1 of "busy.pdf" was skipped' in document.warnings[0]
    assert "more than 4 MiB" in document.warnings[0]


def test_pdf_page_that_draws_a_form_again_and_again_is_skipped(tmp_path: Path) -> None:
    # 7 KB of instructions drawing a 1,000-operation form 1,000 times: a million operations
    content = b"BT /F1 12 Tf 72 720 Td ET " + b"/X0 Do\n" * 1_000
    form = b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj\n" * 1_000 + b"ET"
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /X0 6 0 R >> >> >>"
    )
    path = tmp_path / "forms.pdf"
    path.write_bytes(
        raw_pdf(
            [
                CATALOG,
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                page,
                b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                b"/Resources << /Font << /F1 5 0 R >> >> /Length %d >>\nstream\n"
                % len(form)
                + form
                + b"\nendstream",
            ]
        )
    )
    start = time.monotonic()
    [document] = extract(path, "forms.pdf", DocumentLimits(max_page_operations=50_000))
    assert time.monotonic() - start < 20  # linear: a quadratic reader takes minutes
    assert document.blocks == []
    assert "draws more than 50,000 operations" in document.warnings[0]
    refused(path, "forms.pdf", "took longer", DocumentLimits(max_seconds=0.2))
