"""What a vision model needs of a prompt, without torch: how many soft tokens an image becomes
and how the text around each image is written.

A Gemma 3 vision model reads every image as `mm_tokens_per_image` soft tokens (256 for the
released models), framed as transformers' `Gemma3Processor` frames them:

    \\n\\n<start_of_image><image_soft_token> x n<end_of_image>\\n\\n

The chat template writes `<start_of_image>` where an image stands; `expand_images` turns each into
the full frame, so the ids TuneForge encodes equal the processor's and the model finds its image
tokens (`image_token_id`) where the encoder's output goes.

A Gemma 4 model keeps each image's shape, so the count differs from image to image
(`gemma4_soft_tokens`): its image processor resizes an image to the largest size whose 16-pixel
patches, merged 3 x 3, make at most `max_soft_tokens` (280 for the released models) soft tokens,
with both sides multiples of 48 pixels. Its template writes `\\n\\n<|image|>\\n\\n` for an image,
and `Gemma4Processor` turns each `<|image|>` into `<|image>` + `<|image|>` x n + `<image|>`.
The encoder-free Gemma 4 12B (`gemma4_unified`) resizes, counts and frames its images the same
way (each soft token is one 48-pixel patch of the resized image, projected straight into the
decoder). `expand_segments` does either, given the images themselves.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.models.chat_template import START_OF_IMAGE

IMAGE_SOFT_TOKEN = "<image_soft_token>"  # noqa: S105 (a token, not a password)
END_OF_IMAGE = "<end_of_image>"
#: The tokens framing an image's soft tokens: `\n\n` (one token), `<start_of_image>`,
#: `<end_of_image>` and `\n\n`.
FRAME_TOKENS = 4
#: Gemma 4's image tokens (at the ids of Gemma 3's `<start_of_image>` and two unused tokens).
GEMMA4_BOI, GEMMA4_IMAGE, GEMMA4_EOI = "<|image>", "<|image|>", "<image|>"
GEMMA4_BOI_ID, GEMMA4_IMAGE_ID, GEMMA4_EOI_ID = 255999, 258880, 258882
#: Gemma 4's image processor: 16-pixel patches, 3 x 3 of them pooled into one soft token, at
#: most 280 soft tokens (the processor accepts 70, 140, 280, 560 or 1120).
GEMMA4_PATCH, GEMMA4_POOLING, GEMMA4_MAX_SOFT_TOKENS = 16, 3, 280
#: The `model_type`s of Gemma 4's vision models: with an image encoder, and encoder-free (the
#: 12B), whose processor resizes and counts alike.
GEMMA4_KINDS = frozenset({"gemma4", "gemma4_unified"})


@dataclass(frozen=True)
class VisionInfo:
    """A vision model's image numbers, from its `config.json` (and, for Gemma 4, its
    `preprocessor_config.json`). `tokens_per_image` is Gemma 3's fixed count, Gemma 4's most."""

    tokens_per_image: int
    image_size: int
    image_token_id: int
    #: `gemma3`, `gemma4` or `gemma4_unified` (the config's `model_type`).
    kind: str = "gemma3"
    patch_size: int = 14
    pooling: int = 4
    #: The text an image part is written as (`<start_of_image>`, Gemma 4's `<|image|>`), and the
    #: tokens that open, fill and close its expansion.
    placeholder: str = START_OF_IMAGE
    boi: str = START_OF_IMAGE
    soft: str = IMAGE_SOFT_TOKEN
    eoi: str = END_OF_IMAGE

    @property
    def variable(self) -> bool:
        """Whether the number of soft tokens depends on the image (Gemma 4)."""
        return self.kind in GEMMA4_KINDS

    def soft_tokens(self, image: bytes) -> int:
        """The soft tokens `image` (an encoded image file) becomes."""
        if not self.variable:
            return self.tokens_per_image
        width, height = image_size_of(image)
        return gemma4_soft_tokens(
            height, width, self.patch_size, self.pooling, self.tokens_per_image
        )

    def frame(self, soft_tokens: int) -> str:
        """The text an image of `soft_tokens` soft tokens becomes in place of its placeholder."""
        if self.variable:
            return f"{self.boi}{self.soft * soft_tokens}{self.eoi}"
        return image_frame(soft_tokens)


def vision_info(model_dir: Path) -> VisionInfo | None:
    """The image numbers of the model in `model_dir`, or None for a text-only model."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        return None
    kind = config.get("model_type")
    if kind in GEMMA4_KINDS:
        # The image processor's settings, else the model's, else the released models'.
        settings: dict[str, Any] = {
            "patch_size": GEMMA4_PATCH,
            "pooling_kernel_size": GEMMA4_POOLING,
            "max_soft_tokens": config.get("vision_soft_tokens_per_image", GEMMA4_MAX_SOFT_TOKENS),
        }
        settings |= {k: v for k, v in vision.items() if k in settings}
        file = model_dir / "preprocessor_config.json"
        if file.is_file():
            processor = json.loads(file.read_text(encoding="utf-8"))
            settings |= {k: v for k, v in processor.items() if k in settings}
        patch, pooling = int(settings["patch_size"]), int(settings["pooling_kernel_size"])
        most = int(settings["max_soft_tokens"])
        side, _ = gemma4_resized(1, 1, patch, pooling, most)  # a square image's
        return VisionInfo(
            tokens_per_image=most,
            image_size=side,
            image_token_id=int(config.get("image_token_id", GEMMA4_IMAGE_ID)),
            kind=str(kind),
            patch_size=patch,
            pooling=pooling,
            placeholder=GEMMA4_IMAGE,
            boi=GEMMA4_BOI,
            soft=GEMMA4_IMAGE,
            eoi=GEMMA4_EOI,
        )
    return VisionInfo(
        tokens_per_image=int(config.get("mm_tokens_per_image", 256)),
        image_size=int(vision.get("image_size", 896)),
        image_token_id=int(config.get("image_token_id", config.get("image_token_index", 262144))),
    )


def image_size_of(image: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image, from its header."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        return opened.size


def gemma4_resized(
    height: int, width: int, patch: int, pooling: int, max_soft_tokens: int
) -> tuple[int, int]:
    """(height, width) Gemma 4's image processor resizes an image to: the aspect ratio kept,
    both sides multiples of `pooling` patches, at most `max_soft_tokens` x `pooling`² patches.
    An image too thin for one row of soft tokens gets one, and the other side at most the
    budget's length."""
    most_patches = max_soft_tokens * pooling**2
    scale = math.sqrt(most_patches * patch**2 / (height * width))
    step = pooling * patch
    new_height = math.floor(scale * height / step) * step
    new_width = math.floor(scale * width / step) * step
    if new_height == 0 and new_width == 0:
        raise ValueError(f"A {width} x {height} image cannot be resized for Gemma 4.")
    longest = (most_patches // pooling**2) * step
    if new_height == 0:
        new_height, new_width = step, min(math.floor(width / height) * step, longest)
    elif new_width == 0:
        new_height, new_width = min(math.floor(height / width) * step, longest), step
    if new_height * new_width > most_patches * patch**2:
        raise ValueError(f"A {width} x {height} image is too long and thin for Gemma 4.")
    return new_height, new_width


def gemma4_soft_tokens(
    height: int,
    width: int,
    patch: int = GEMMA4_PATCH,
    pooling: int = GEMMA4_POOLING,
    max_soft_tokens: int = GEMMA4_MAX_SOFT_TOKENS,
) -> int:
    """The soft tokens a `width` x `height` image becomes in Gemma 4."""
    new_height, new_width = gemma4_resized(height, width, patch, pooling, max_soft_tokens)
    return (new_height // patch) * (new_width // patch) // pooling**2


def image_frame(tokens_per_image: int) -> str:
    """The text one image becomes in a Gemma 3 model's input."""
    return f"\n\n{START_OF_IMAGE}{IMAGE_SOFT_TOKEN * tokens_per_image}{END_OF_IMAGE}\n\n"


def expand_images(text: str, tokens_per_image: int) -> str:
    """`text` with each `<start_of_image>` written as the image's full frame (Gemma 3)."""
    return text.replace(START_OF_IMAGE, image_frame(tokens_per_image))


def expand_segments(texts: Sequence[str], info: VisionInfo, images: Sequence[bytes]) -> list[str]:
    """`texts` (consecutive pieces of one rendered conversation) with each image placeholder
    written as its image's tokens, the images taken in order across the pieces; raises
    ValueError when the placeholders and `images` differ in number."""
    counts: Iterator[int] = iter([info.soft_tokens(image) for image in images])
    expanded = []
    used = 0
    for text in texts:
        pieces = text.split(info.placeholder)
        out = [pieces[0]]
        for piece in pieces[1:]:
            count = next(counts, None)
            if count is None:
                raise ValueError(f"The text holds more images than the {len(images)} given.")
            used += 1
            out += [info.frame(count), piece]
        expanded.append("".join(out))
    if used != len(images):
        raise ValueError(f"{len(images)} image(s) but {used} in the text.")
    return expanded


def expand_text(text: str, info: VisionInfo, images: Sequence[bytes]) -> str:
    """`text` with each image placeholder written as its image's tokens (`expand_segments`)."""
    return expand_segments([text], info, images)[0]


def image_tokens(images: int, tokens_per_image: int) -> int:
    """Tokens that `images` images add to a sequence (their frames included: Gemma 3's
    `\\n\\n<start_of_image>` ... `<end_of_image>\\n\\n`, Gemma 4's `\\n\\n<|image>` ...
    `<image|>\\n\\n`, four tokens either way)."""
    return images * (tokens_per_image + FRAME_TOKENS)
