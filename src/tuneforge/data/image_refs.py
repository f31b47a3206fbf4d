"""A row's images: where a value points (a path inside the uploaded ZIP, a `data:` URL, base64
text, bytes, or a Parquet/HF image struct `{"bytes", "path"}`), read from the upload only (URLs
are never fetched) and checked by `inspect_image` before a record carries them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.conversation import Message, Part
from tuneforge.data.images import ImageFacts, ImageRejected, inspect_image
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
) -> tuple[bytes, ImageFacts] | None:
    """The image `value` (found in `where`, e.g. "column image") as checked bytes with its
    facts, or None with the problem (image_missing, image_url, image_undecodable,
    image_too_large, image_type)."""
    data = image_bytes(value, where, images, problems)
    if data is None:
        return None
    try:
        facts = inspect_image(
            data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels
        )
    except ImageRejected as exc:
        problems.append((exc.code, f"{where}: {exc.message}"))
        return None
    return data, facts


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


PLACEHOLDER = "<image>"  # LLaMA-Factory's mark for "the next image of the row's list"


def inline_reference(part: Mapping[str, Any]) -> tuple[bool, Any]:
    """Whether content `part` is an image, and the image it carries itself (None: the next one of
    the row's image column). Reads OpenAI's `{"type": "image_url", "image_url": {"url": ...}}`
    (or a bare string), the Responses API's `input_image`, and `{"type": "image", "image" |
    "url" | "path": ...}` as Hugging Face processors write them."""
    kind = part.get("type")
    if kind in ("image_url", "input_image"):
        value = part.get("image_url")
        if isinstance(value, Mapping):
            value = value.get("url")
        return True, value if value is not None else part.get("url")
    if kind == "image":
        for key in ("image", "url", "path"):
            if part.get(key) is not None:
                return True, part[key]
        return True, None
    return False, None


@dataclass
class RowImages:
    """The images of one row, in order of appearance, with what was wrong with them."""

    data: list[bytes] = field(default_factory=list)
    facts: list[ImageFacts] = field(default_factory=list)


def pooled(value: Any) -> list[Any] | None:
    """The image column's value as a list of image references (None: the value is missing)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def place_images(
    turns: list[Message],
    inline: Mapping[int, Any],
    pool: list[Any] | None,
    column: str | None,
    resolve: Callable[[Any, str, Problems], tuple[bytes, ImageFacts] | None],
    problems: Problems,
) -> RowImages:
    """Put each image of a row in its place in `turns` and read them in that order.

    An image part holds its own image when `inline` (keyed by the part's id) names it, else it
    takes the next one of the image column's `pool`; so does each `<image>` in a text when the
    mapping has an image column (the text is split around it). With no such place at all, the
    pool's images go first in the first user turn. More places than images, or images left over,
    are row problems (image_missing, image_surplus)."""
    if column is not None:
        for turn in turns:
            turn["content"] = _split_placeholders(turn["content"])
    places = [part for turn in turns for part in turn["content"] if part["type"] == "image"]
    from_pool = [part for part in places if id(part) not in inline]
    images = pool or []
    if column is not None and not places:
        if pool is None:
            problems.append(("image_missing", f"column {column}: no image"))
        first_user = next((t for t in turns if t["role"] == "user"), None)
        if first_user is not None and images:
            added: list[Part] = [{"type": "image"} for _ in images]
            first_user["content"][:0] = added
            places, from_pool = added, added
    counted: Problems = []
    if len(from_pool) > len(images):
        counted.append(
            ("image_missing", f"{_count(len(from_pool), 'image place')} in the text but "
             f"{_count(len(images), 'image')} in column {column or '(none)'}")
        )  # fmt: skip
    elif len(from_pool) < len(images):
        counted.append(
            ("image_surplus", f"{_count(len(images), 'image')} in column {column} but "
             f"{_count(len(from_pool), 'image place')} (<image> or an image part) in the text")
        )  # fmt: skip
    found = RowImages()
    if counted:
        problems += counted
        return found
    next_in_pool = iter(images)
    for number, part in enumerate(places, start=1):
        if id(part) in inline:
            value, where = inline[id(part)], f"image {number} (in the turns)"
        else:
            value, where = next(next_in_pool), f"image {number} (column {column})"
        got = resolve(value, where, problems)
        if got is not None:
            found.data.append(got[0])
            found.facts.append(got[1])
    return found


def _split_placeholders(content: list[Part]) -> list[Part]:
    if not any(PLACEHOLDER in part.get("text", "") for part in content):
        return content
    split: list[Part] = []
    for part in content:
        text = part.get("text", "")
        if part["type"] != "text" or PLACEHOLDER not in text:
            split.append(part)
            continue
        for i, piece in enumerate(text.split(PLACEHOLDER)):
            if i:
                split.append({"type": "image"})
            if piece:
                split.append({"type": "text", "text": piece})
    return split


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
