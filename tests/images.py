"""Generated images for vision tests: coloured shapes at random sizes and positions on a noisy grey
background, so a model can only name the colour (or shape) by looking at the pixels."""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Sequence

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
}
SHAPES = ("square", "circle", "triangle")


def png(colour: str, *, size: int | None = None, shape: str = "square", seed: int = 0) -> bytes:
    """A PNG of one `shape` in `colour` (a name in COLOURS) on a noisy grey background; the
    canvas side (`size`, else random from 48 to 320 pixels), the shape's size and its position
    are drawn from `seed`."""
    rng = random.Random(seed)
    side = size or rng.randint(48, 320)
    noise = bytes(min(255, max(0, round(rng.gauss(128, 40)))) for _ in range(side * side))
    image = Image.frombytes("L", (side, side), noise).convert("RGB")
    extent = rng.randint(side // 3, side * 3 // 4)
    left, top = rng.randint(0, side - extent), rng.randint(0, side - extent)
    box = (left, top, left + extent, top + extent)
    draw = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "triangle":
        draw.polygon(
            [(left, top + extent), (left + extent, top + extent), (left + extent // 2, top)],
            fill=fill,
        )
    else:
        raise ValueError(f"unknown shape {shape!r}; one of {SHAPES}")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def coloured_images(n: int, seed: int = 0, shape: str = "square") -> list[tuple[bytes, str]]:
    """`n` images with their colour names, the colours in turn and everything else random."""
    names = list(COLOURS)
    return [
        (png(names[i % len(names)], shape=shape, seed=seed * 100_003 + i), names[i % len(names)])
        for i in range(n)
    ]


def image_zip(
    rows: Sequence[tuple[bytes, str]],
    *,
    question: str = "What colour is the square?",
    folder: str = "images",
) -> bytes:
    """A ZIP of the images (`images/0000.png`, ...) and a `metadata.jsonl` whose rows have
    `image` (the path), `question` and `answer` (the label)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        lines = []
        for index, (data, label) in enumerate(rows):
            name = f"{folder}/{index:04d}.png"
            archive.writestr(name, data)
            lines.append(json.dumps({"image": name, "question": question, "answer": label}))
        archive.writestr("metadata.jsonl", "\n".join(lines) + "\n")
    return out.getvalue()
