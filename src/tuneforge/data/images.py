"""Images people give us (dataset rows, chat turns): checked before anything decodes them.

`inspect_image(data, max_bytes=..., max_pixels=...)` is the one door every image from a user goes
through. It decides in this order, so a hostile file costs almost nothing:

1. the size in bytes (`image_too_large`);
2. the format, from the file's first bytes, never its name: PNG, JPEG, GIF, WebP, BMP and TIFF
   are accepted; SVG (which can reference other files and URLs) and anything else is refused
   (`image_type`);
3. width x height from the header alone (Pillow's lazy open, its own decompression-bomb guard
   on), refused above `max_pixels` (`image_too_large`) before a pixel is decoded;
4. a full decode (a JPEG at 1/8 scale, which still reads every byte of it), so a truncated or
   corrupt file is refused (`image_undecodable`) here rather than in training.

`thumbnail(data)` makes the small JPEG `data:` URL that previews show. Pillow is imported when
an image is looked at, never by `import tuneforge`.
"""

from __future__ import annotations

import base64
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from tuneforge.data.limits import DEFAULT_LIMITS, size_text
from tuneforge.errors import InvalidInput

ImageFormat = Literal["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]
ACCEPTED = "PNG, JPEG, GIF, WebP, BMP or TIFF"
ImageCode = Literal["image_undecodable", "image_too_large", "image_type"]
THUMBNAIL_QUALITY = 80


@dataclass(frozen=True)
class ImageFacts:
    """What the header of an accepted image says."""

    format: ImageFormat
    width: int
    height: int
    bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ImageRejected(InvalidInput):
    """An image that is refused; `code` says which check refused it (HTTP 422 with that code)."""

    def __init__(self, code: ImageCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def sniff_format(data: bytes) -> ImageFormat | None:
    """The raster format that `data` starts like, from its magic bytes; None for anything else."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<") and (b"<svg" in head or head.startswith(b"<?xml"))


def _refuse_type(data: bytes) -> ImageRejected:
    if _looks_like_svg(data):
        return ImageRejected(
            "image_type",
            "SVG images are refused: they are programs that can reference other files and "
            f"URLs, and Gemma reads pixels. Export the picture as PNG (accepted: {ACCEPTED}).",
        )
    return ImageRejected("image_type", f"This is not an image in an accepted format ({ACCEPTED}).")


def inspect_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageFacts:
    """Check `data` (an encoded image) and return its facts; raise `ImageRejected` otherwise.
    Reads the header before deciding anything else: a decompression bomb is refused without
    decoding it."""
    if len(data) > max_bytes:
        raise ImageRejected(
            "image_too_large",
            f"The image is {size_text(len(data))}; the limit is {size_text(max_bytes)}. "
            "Resize it (Gemma sees 896x896 pixels).",
        )
    kind = sniff_format(data)
    if kind is None:
        raise _refuse_type(data)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow names the count it refused
        declared = f"{int(found.group(1)) / 1e6:,.1f} MP" if found else "far more pixels"
        raise ImageRejected(
            "image_too_large",
            f"The {kind} image declares {declared}; the limit is {max_pixels / 1e6:,.0f} MP "
            "(a decompression bomb?). Resize it (Gemma sees 896x896).",
        ) from exc
    except Exception as exc:  # Pillow raises many kinds for a broken header
        raise ImageRejected(
            "image_undecodable", f"The {kind} image's header cannot be read ({_reason(exc)})."
        ) from exc
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageRejected("image_undecodable", f"The {kind} image has no pixels.")
        if width * height > max_pixels:
            raise ImageRejected(
                "image_too_large",
                f"The image is {width:,} x {height:,} pixels ({width * height / 1e6:,.1f} MP); "
                f"the limit is {max_pixels / 1e6:,.0f} MP. Resize it (Gemma sees 896x896).",
            )
        _decode(image, kind)
    return ImageFacts(format=kind, width=width, height=height, bytes=len(data))


def _decode(image: Any, kind: str) -> None:
    """Decode every byte of the image's data (a JPEG at 1/8 scale: same bytes, 1/64 memory)."""
    if kind == "JPEG":
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
    try:
        image.load()
    except Exception as exc:  # truncated data, bad checksums, unsupported compressions...
        raise ImageRejected(
            "image_undecodable", f"The {kind} image cannot be decoded ({_reason(exc)})."
        ) from exc


def _reason(exc: Exception) -> str:
    return str(exc).strip().rstrip(".")[:160] or type(exc).__name__


def checked_image(data: bytes) -> ImageFacts:
    """`inspect_image` with the default limits (`ParseLimits`)."""
    return inspect_image(
        data,
        max_bytes=DEFAULT_LIMITS.max_image_bytes,
        max_pixels=DEFAULT_LIMITS.max_image_pixels,
    )


def thumbnail(data: bytes, size: int = 160) -> str:
    """A JPEG `data:` URL of the image fitted into `size` x `size` pixels (for previews). The
    image is checked first (default limits); transparency is shown on white."""
    checked_image(data)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # a JPEG decodes straight at a smaller scale
        image.thumbnail((size, size))
        small = image.convert("RGBA")
    flat = Image.new("RGB", small.size, "white")
    flat.paste(small, mask=small.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
