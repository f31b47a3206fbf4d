"""A row's image: read from the upload (a path inside the ZIP, base64 data or bytes), never from
a URL, and checked to decode before a record carries it."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from typing import Any

ImageResolver = Callable[[str], bytes | None]  # a path inside the upload → its bytes, or None


def row_image(
    value: Any, column: str, images: ImageResolver | None, problems: list[tuple[str, str]]
) -> bytes | None:
    """The image `value` (from `column`) as bytes Pillow decodes, or None with the problem."""
    data = _image_bytes(value, column, images, problems)
    if data is not None and not decodable(data):
        problems.append(("image_undecodable", f"{len(data):,} bytes that are no image"))
        return None
    return data


def _image_bytes(
    value: Any, column: str, images: ImageResolver | None, problems: list[tuple[str, str]]
) -> bytes | None:
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str) or not value:
        problems.append(("image_missing", f"no image in {column}"))
        return None
    if value.startswith(("http://", "https://", "ftp://")):
        problems.append(("image_url", f"{value[:80]} is a URL; images must be in the upload"))
        return None
    if images is not None and (data := images(value)) is not None:
        return data
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        problems.append(
            ("image_missing", f"{value[:80]} is neither a file in the ZIP nor base64 data")
        )
        return None


def decodable(data: bytes) -> bool:
    """Whether `data` is an image Pillow can decode (its header and structure; bombs refused)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception:  # Pillow raises many kinds for broken or hostile images
        return False
    return True
