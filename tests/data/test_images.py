"""`inspect_image` and `thumbnail`: accepted formats, refusals by code, and bombs refused from the
header without decoding."""

from __future__ import annotations

import base64
import io
import resource
import struct
import zlib

import pytest
from PIL import Image

from tuneforge.data.images import ImageRejected, inspect_image, sniff_format, thumbnail
from tuneforge.data.limits import DEFAULT_LIMITS, ParseLimits

LIMITS = {
    "max_bytes": DEFAULT_LIMITS.max_image_bytes,
    "max_pixels": DEFAULT_LIMITS.max_image_pixels,
}


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode != "P" else 1).save(out, fmt)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(bytes(1 << 16), 9)  # a sliver of the rows it declares
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("PNG", "PNG"),
        ("JPEG", "JPEG"),
        ("GIF", "GIF"),
        ("WEBP", "WEBP"),
        ("BMP", "BMP"),
        ("TIFF", "TIFF"),
    ],
)
def test_accepted_formats(fmt: str, name: str) -> None:
    data = encoded(fmt)
    facts = inspect_image(data, **LIMITS)
    assert (facts.format, facts.width, facts.height, facts.bytes) == (name, 40, 30, len(data))
    assert facts.pixels == 1200
    assert sniff_format(data) == name


def test_svg_and_other_files_are_refused_by_type() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/></svg>'
    with pytest.raises(ImageRejected) as refused:
        inspect_image(svg, **LIMITS)
    assert refused.value.code == "image_type" and "SVG" in refused.value.message
    for data in (b"%PDF-1.7 ...", b"hello, world", b"", "<svg></svg>".encode("utf-16")):
        with pytest.raises(ImageRejected) as refused:
            inspect_image(data, **LIMITS)
        assert refused.value.code == "image_type"
        assert "PNG, JPEG, GIF, WebP, BMP or TIFF" in refused.value.message


def test_the_format_comes_from_the_bytes_not_a_claimed_format() -> None:
    # a JPEG's magic bytes with a PNG after them is read as a JPEG, and does not open
    with pytest.raises(ImageRejected) as refused:
        inspect_image(b"\xff\xd8\xff" + encoded("PNG"), **LIMITS)
    assert refused.value.code == "image_undecodable"


def test_too_many_bytes_is_refused_before_looking() -> None:
    data = encoded("PNG")
    with pytest.raises(ImageRejected) as refused:
        inspect_image(data, max_bytes=len(data) - 1, max_pixels=10**9)
    assert refused.value.code == "image_too_large" and "the limit is" in refused.value.message
    assert inspect_image(data, max_bytes=len(data), max_pixels=1200).pixels == 1200


def test_too_many_pixels_is_refused_from_the_header() -> None:
    with pytest.raises(ImageRejected) as refused:
        inspect_image(encoded("PNG", (41, 30)), max_bytes=10**6, max_pixels=1200)
    assert refused.value.code == "image_too_large"
    assert "41 x 30 pixels" in refused.value.message


@pytest.mark.parametrize("side", [10_000, 20_000, 100_000])
def test_a_decompression_bomb_is_refused_without_decoding(side: int) -> None:
    bomb = png_declaring(side, side)
    assert len(bomb) < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageRejected) as refused:
        inspect_image(bomb, **LIMITS)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert refused.value.code == "image_too_large"
    declared = f"{side:,} x {side:,} pixels" if side * side < 2 * 89_478_485 else "MP"
    assert declared in refused.value.message and "the limit is 50 MP" in refused.value.message
    assert grown_kib < 20 * 1024  # decoding it would take 1.2 GB (20k) or 30 GB (100k)


def test_truncated_and_corrupt_images_are_undecodable() -> None:
    jpeg = encoded("JPEG", (400, 300))
    png = encoded("PNG", (400, 300))
    for data in (jpeg[: len(jpeg) // 2], png[: len(png) // 2], png[:40]):
        with pytest.raises(ImageRejected) as refused:
            inspect_image(data, **LIMITS)
        assert refused.value.code == "image_undecodable", data[:4]
    header_only = png_declaring(400, 300)  # too few rows for what it declares
    with pytest.raises(ImageRejected) as refused:
        inspect_image(header_only, **LIMITS)
    assert refused.value.code == "image_undecodable"


def test_the_rejection_is_an_invalid_input_with_its_code() -> None:
    from tuneforge.errors import InvalidInput

    error = ImageRejected("image_type", "no")
    assert isinstance(error, InvalidInput) and error.code == "image_type" and error.message == "no"


def test_limits_document_the_pixel_limit() -> None:
    assert ParseLimits().max_image_pixels == 50_000_000
    assert "decompression bomb" in ParseLimits.model_fields["max_image_pixels"].description


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
def test_thumbnail_is_a_small_jpeg_data_url(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    url = thumbnail(encoded(fmt, (800, 400), mode), size=160)
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))) as small:
        assert small.format == "JPEG" and small.size == (160, 80)
        assert small.mode == "RGB"


def test_thumbnail_keeps_the_colour_and_shows_transparency_on_white() -> None:
    url = thumbnail(encoded("PNG", (300, 300)), size=64)
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as small:
        r, g, b = small.convert("RGB").getpixel((32, 32))
        assert r > 200 and g < 60 and b < 60
    clear = io.BytesIO()
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(clear, "PNG")
    with Image.open(
        io.BytesIO(base64.b64decode(thumbnail(clear.getvalue()).split(",", 1)[1]))
    ) as small:
        assert min(small.convert("RGB").getpixel((25, 25))) > 240


def test_thumbnail_refuses_what_inspect_refuses() -> None:
    with pytest.raises(ImageRejected):
        thumbnail(png_declaring(20_000, 20_000))
