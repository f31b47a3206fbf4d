"""Hostile images, generated at test time (nothing large is stored): each is refused per row with
its code and a clear message, without decoding what it declares.

- `bomb_png()`: a PNG of ~1 KB whose header declares 100,000 x 100,000 pixels (30 GB decoded);
- `huge_png()`: a complete, valid 20,000 x 20,000 PNG (1.2 GB decoded, ~1.2 MB on disk);
- `truncated_jpeg()`: a real photograph-sized JPEG cut in the middle of its data;
- `svg_with_references()`: an SVG that pulls a file, a cloud metadata URL and an external entity;
- `thousand_images_zip(path)`: a ZIP of 1,000 distinct noisy PNGs (~70 KB each, ~70 MB in all),
  each named once by `captions.csv`.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image

from tests.images import COLOURS

BOMB_SIDE = 100_000
HUGE_SIDE = 20_000
THOUSAND = 1_000
THOUSAND_SIDE = 176  # noisy RGB: about 70 KB of PNG each, 70 MB in all


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def bomb_png() -> bytes:
    """A small file declaring a huge image: its data is a sliver of what the header claims."""
    return _png(BOMB_SIDE, BOMB_SIDE, zlib.compress(bytes(1 << 16), 9))


def huge_png(side: int = HUGE_SIDE) -> bytes:
    """A complete `side` x `side` black RGB PNG, every row present and its checksums right.

    Zeros compress ~1000x; deflating 1.2 GB takes long, so one block of 100 rows is deflated
    once, ended by a full flush (which resets the compressor, so the same input deflates to the
    same bytes), and repeated; then a final empty block and the zlib checksum of everything."""
    row_bytes, rows_per_block = 1 + 3 * side, 100  # each row: filter byte 0, then its pixels
    block_data = bytes(row_bytes * rows_per_block)
    compressor = zlib.compressobj(9)
    first = compressor.compress(block_data) + compressor.flush(zlib.Z_FULL_FLUSH)
    header, block = first[:2], first[2:]
    blocks, rest = divmod(side, rows_per_block)
    checksum = 1
    for _ in range(blocks):
        checksum = zlib.adler32(block_data, checksum)
    tail = b""
    if rest:
        compressor = zlib.compressobj(9)
        tail_data = bytes(row_bytes * rest)
        tail = (compressor.compress(tail_data) + compressor.flush(zlib.Z_FULL_FLUSH))[2:]
        checksum = zlib.adler32(tail_data, checksum)
    stream = header + block * blocks + tail + b"\x03\x00" + struct.pack(">I", checksum)
    return _png(side, side, stream)


def truncated_jpeg() -> bytes:
    """A 1600 x 1200 noisy JPEG cut at half of its bytes."""
    image = Image.effect_noise((1600, 1200), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) // 2]


SVG_WITH_REFERENCES = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="100" height="100">
  <image href="http://169.254.169.254/latest/meta-data/" width="100" height="100"/>
  <image xlink:href="file:///etc/shadow" width="10" height="10"/>
  <use href="https://example.com/sprites.svg#icon"/>
  <text>&secret;</text>
</svg>
"""


def svg_with_references() -> bytes:
    return SVG_WITH_REFERENCES


def noisy_png(index: int, side: int = THOUSAND_SIDE) -> bytes:
    """A distinct incompressible PNG: a colour square on seeded noise."""
    rng = random.Random(index)
    pixels = bytearray(rng.randbytes(side * side * 3))
    colour = list(COLOURS.values())[index % len(COLOURS)]
    for y in range(side // 4, side * 3 // 4):
        start = (y * side + side // 4) * 3
        pixels[start : start + side // 2 * 3] = bytes(colour) * (side // 2)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), bytes(pixels)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def thousand_images_zip(path: Path, count: int = THOUSAND) -> int:
    """Write the ZIP of `count` images (stored, not deflated: PNGs do not compress) with
    `captions.csv` naming each once; returns the images' total size in bytes."""
    colours = list(COLOURS)
    total = 0
    lines = ["image,caption"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            data = noisy_png(index)
            total += len(data)
            name = f"images/{index:04d}.png"
            archive.writestr(name, data)
            lines.append(f"{name},A {colours[index % len(colours)]} square ({index}).")
        archive.writestr("captions.csv", "\n".join(lines) + "\n")
    return total


def hostile_images_zip(path: Path) -> dict[str, str]:
    """A ZIP whose `captions.csv` names each hostile image (and one good image) once; returns
    the code each file's row must be refused with (the good one: "")."""
    good = noisy_png(0, 32)
    members = {
        "bomb.png": (bomb_png(), "image_too_large"),
        "huge.png": (huge_png(), "image_too_large"),
        "truncated.jpg": (truncated_jpeg(), "image_undecodable"),
        "references.svg": (svg_with_references(), "image_type"),
        "disguised.png": (svg_with_references(), "image_type"),  # an SVG named .png
        "good.png": (good, ""),
    }
    lines = ["image,caption"]
    # stored: deflating the huge PNG again would make the ZIP look like a compression bomb
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, (data, _) in members.items():
            archive.writestr(f"images/{name}", data)
            lines.append(f"images/{name},{name}")
        archive.writestr("captions.csv", "\n".join(lines) + "\n")
    return {name: code for name, (_, code) in members.items()}
