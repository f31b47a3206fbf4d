"""Image methods with Pillow: flips, random crops scaled back, rotations, colour jitter.

Every method keeps the image's width and height, so a variant costs the model what its source
does; a variant is written in its source's format (JPEG at quality 95, WebP and PNG as they
are; other formats as PNG) and goes through the same checks as any image a user gives
(`checked_image`): one that would not pass is left as its source was.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

from tuneforge.data.augment.spec import ColorMethod, CropMethod, FlipMethod, RotateMethod
from tuneforge.data.images import ImageRejected, checked_image, sniff_format

ImageMethod = FlipMethod | CropMethod | RotateMethod | ColorMethod
KEPT_FORMATS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "PNG": {}}


def _flip(image: Any, method: FlipMethod, rng: random.Random) -> Any:
    from PIL import Image

    side = Image.Transpose.FLIP_LEFT_RIGHT
    if method.direction == "vertical":
        side = Image.Transpose.FLIP_TOP_BOTTOM
    return image.transpose(side)


def _crop(image: Any, method: CropMethod, rng: random.Random) -> Any:
    width, height = image.size
    cut_w = int(width * rng.uniform(0, method.rate))
    cut_h = int(height * rng.uniform(0, method.rate))
    if cut_w == 0 and cut_h == 0:
        cut_w, cut_h = min(1, width - 1), min(1, height - 1)
    left, top = rng.randint(0, cut_w), rng.randint(0, cut_h)
    box = (left, top, left + width - cut_w, top + height - cut_h)
    return image.crop(box).resize((width, height))


def _rotate(image: Any, method: RotateMethod, rng: random.Random) -> Any:
    angle = rng.uniform(-method.degrees, method.degrees)
    return image.rotate(angle, expand=False, fillcolor=_black(image))


def _black(image: Any) -> Any:
    bands = len(image.getbands())
    return 0 if bands == 1 else (0,) * bands


def _color(image: Any, method: ColorMethod, rng: random.Random) -> Any:
    from PIL import ImageEnhance

    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    out = image.convert("RGB")
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhancer(out).enhance(rng.uniform(1 - method.rate, 1 + method.rate))
    if alpha is not None:
        out.putalpha(alpha)
    return out


OPS: dict[str, Callable[[Any, Any, random.Random], Any]] = {
    "flip": _flip,
    "crop": _crop,
    "rotate": _rotate,
    "color": _color,
}


def augment_image(data: bytes, methods: list[ImageMethod], rng: random.Random) -> bytes:
    """`data` (an accepted image) through `methods` in order, encoded in its format; the
    source's bytes when the result would be refused."""
    from PIL import Image

    kind = sniff_format(data) or "PNG"
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA" if "A" in opened.getbands() or opened.mode == "P" else "RGB")
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB")
    for method in methods:
        image = OPS[method.name](image, method, rng)
    target = kind if kind in KEPT_FORMATS else "PNG"
    if target == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, target, **KEPT_FORMATS[target])
    result = out.getvalue()
    try:
        checked_image(result)
    except ImageRejected:
        return data
    return result
