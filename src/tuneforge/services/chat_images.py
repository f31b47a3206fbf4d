"""Images in a chat request: taken from `data:` URLs (or, from hosts an administrator allows,
fetched), checked for size and type before anything decodes them, and turned into the
inference server's image parts.

Every image goes through `tuneforge.data.images.inspect_image`, which reads only the file's
header: an SVG, an undecodable file or a decompression bomb is refused without being decoded. A
`data:` URL longer than the largest image allows is refused before its base64 is decoded. An
http(s) URL is refused unless its host is in `image_url_hosts` (set by an administrator) and it
passes the endpoint policy (`jobs/endpoints.py`: a private address only for a trusted host or an
administrator); it is then fetched without following redirects, within a size bound and a time
limit.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from tuneforge.data.images import ImageFacts, ImageRejected, inspect_image
from tuneforge.data.limits import size_text
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.inference.params import MAX_IMAGES, ImagePart, Part, TextPart, Turn
from tuneforge.jobs.endpoints import check_endpoint
from tuneforge.pinned import pinned_transport
from tuneforge.schemas.chat import ChatImagePart, ChatTurn
from tuneforge.settings import Settings

FETCH_SECONDS = 10.0


def image_count(turns: Sequence[ChatTurn]) -> int:
    return sum(
        isinstance(part, ChatImagePart)
        for turn in turns
        if not isinstance(turn.content, str)
        for part in turn.content
    )


def resolve_turns(
    turns: Sequence[ChatTurn], user: User, settings: Settings
) -> tuple[list[Turn], list[bytes]]:
    """The conversation as the inference server takes it, and its images in order."""
    count = image_count(turns)
    if count > MAX_IMAGES:
        raise InvalidInput(
            f"The conversation holds {count} images; a request takes at most {MAX_IMAGES}."
        )
    images: list[bytes] = []
    out: list[Turn] = []
    for turn in turns:
        extra = {"tool_calls": turn.tool_calls, "name": turn.name}
        if isinstance(turn.content, str):
            out.append(Turn(role=turn.role, content=turn.content, **extra))
            continue
        parts: list[Part] = []
        for part in turn.content:
            if isinstance(part, ChatImagePart):
                if turn.role != "user":
                    raise InvalidInput("Images go in user messages only.")
                images.append(image_from_url(part.image_url.url, user, settings, len(images) + 1))
                parts.append(ImagePart())
            else:
                parts.append(TextPart(text=part.text))
        out.append(Turn(role=turn.role, content=parts, **extra))
    return out, images


def image_from_url(url: str, user: User, settings: Settings, number: int = 1) -> bytes:
    """The checked image file that `url` (a `data:` or an allowed http(s) URL) holds."""
    what = f"Image {number}"
    limit = settings.chat_image_max_bytes
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        data = _from_data_url(url, limit, what)
    elif scheme in {"http", "https"}:
        data = _fetch(url, user, settings, what)
    else:
        raise InvalidInput(
            f"{what} must be a data: URL (data:image/png;base64,...), not {url[:40]!r}."
        )
    checked(data, settings, what)
    return data


def checked(data: bytes, settings: Settings, what: str = "The image") -> ImageFacts:
    """What `data`'s header says, once it says a raster image within the size limits."""
    try:
        return inspect_image(
            data,
            max_bytes=settings.chat_image_max_bytes,
            max_pixels=settings.chat_image_max_pixels,
        )
    except ImageRejected as exc:
        raise InvalidInput(f"{what}: {exc.message}", {"reason": exc.code}) from None


def _from_data_url(url: str, limit: int, what: str) -> bytes:
    head, comma, payload = url.partition(",")
    media = head[5:].split(";")[0].strip().lower()
    if not comma or ";base64" not in head.lower():
        raise InvalidInput(
            f"{what}: a data: URL must hold base64 data (data:image/png;base64,...)."
        )
    if media and not media.startswith("image/"):
        raise InvalidInput(f"{what} is {media}, not an image.", {"reason": "image_type"})
    if media == "image/svg+xml":
        raise InvalidInput(
            f"{what} is an SVG drawing: send a raster image (PNG, JPEG, WebP).",
            {"reason": "image_type"},
        )
    if len(payload) > 4 * (limit // 3 + 1) + 4:
        raise InvalidInput(
            f"{what} is about {size_text(len(payload) * 3 // 4)}, larger than the limit of "
            f"{size_text(limit)}.",
            {"reason": "image_too_large"},
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what}: the data: URL's base64 is broken.") from None


def _fetch(url: str, user: User, settings: Settings, what: str) -> bytes:
    host = (urlsplit(url).hostname or "").lower()
    allowed = {h.lower() for h in settings.image_url_hosts}
    if host not in allowed:
        raise InvalidInput(
            f"{what} links to {host or url[:60]}, and this server does not fetch images from "
            f"{host or 'there'}: send the image itself as a data: URL "
            "(data:image/png;base64,...), or ask an administrator to allow the host "
            "(image_url_hosts).",
            {"reason": "image_url"},
        )
    check_endpoint(url, user, settings, f"{what}'s URL")
    limit = settings.chat_image_max_bytes
    deadline = time.monotonic() + FETCH_SECONDS
    data = bytearray()
    try:
        with (
            httpx.Client(
                timeout=FETCH_SECONDS, follow_redirects=False, transport=pinned_transport()
            ) as client,
            client.stream("GET", url, headers={"Accept": "image/*"}) as response,
        ):
            if response.status_code != 200:
                raise InvalidInput(f"{what}: {url} answered HTTP {response.status_code}.")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(what, int(declared), limit)
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise _too_large(what, len(data), limit)
                if time.monotonic() > deadline:
                    raise InvalidInput(f"{what}: {url} took longer than {FETCH_SECONDS:.0f} s.")
    except httpx.HTTPError as exc:
        raise InvalidInput(f"{what}: {url} could not be fetched ({exc}).") from None
    return bytes(data)


def _too_large(what: str, size: int, limit: int) -> InvalidInput:
    return InvalidInput(
        f"{what} is larger than the limit of {size_text(limit)} (at least {size_text(size)}).",
        {"reason": "image_too_large"},
    )
