"""A row's images: where a value points (a path inside the uploaded ZIP, a `data:` URL, base64
text, bytes, or a Parquet/HF image struct `{"bytes", "path"}`), read from the upload only (URLs
are never fetched) and checked by `inspect_image` before a record carries them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from tuneforge.data.images import ImageRejected, inspect_image
from tuneforge.data.limits import DEFAULT_LIMITS, ParseLimits

ImageResolver = Callable[[str], bytes | None]  # a path inside the upload → its bytes, or None
Problems = list[tuple[str, str]]
IMAGE_PATH = re.compile(r"(?i)\.(png|jpe?g|gif|webp|bmp|tiff?|svg)$")
URL_SCHEMES = ("http://", "https://", "ftp://", "file://", "s3://", "gs://")


def row_image(
    value: Any,
    where: str,
    images: ImageResolver | None,
    problems: Problems,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> bytes | None:
    """The image `value` (found in `where`, e.g. "column image") as checked bytes, or None with
    the problem (image_missing, image_url, image_undecodable, image_too_large, image_type)."""
    data = image_bytes(value, where, images, problems)
    if data is None:
        return None
    try:
        inspect_image(data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
    except ImageRejected as exc:
        problems.append((exc.code, f"{where}: {exc.message}"))
        return None
    return data


def image_bytes(
    value: Any, where: str, images: ImageResolver | None, problems: Problems
) -> bytes | None:
    """The bytes `value` names or holds (unchecked), or None with the problem."""
    if isinstance(value, dict):  # a Parquet / HF datasets image: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path") or value.get("url")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str) or not value.strip():
        problems.append(("image_missing", f"{where}: no image"))
        return None
    shown = value[:80]
    if value.lower().startswith(URL_SCHEMES):
        problems.append(
            ("image_url", f"{where}: {shown} is a URL; URLs are never fetched, put the image in "
             "the upload (a ZIP) or inline it as a data: URL")
        )  # fmt: skip
        return None
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if ";base64" not in header:
            problems.append(("image_undecodable", f"{where}: a data: URL that is not base64"))
            return None
        return _base64(payload, where, problems)
    if images is not None and (data := images(value)) is not None:
        return data
    if IMAGE_PATH.search(value[-8:]):
        inside = "in the uploaded ZIP" if images is not None else "in the upload (use a ZIP)"
        problems.append(("image_missing", f"{where}: {shown} is not a file {inside}"))
        return None
    return _base64(value, where, problems)


def _base64(payload: str, where: str, problems: Problems) -> bytes | None:
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        problems.append(
            ("image_missing", f"{where}: {payload[:80]} is neither a file in the upload nor "
             "base64 data")
        )  # fmt: skip
        return None
