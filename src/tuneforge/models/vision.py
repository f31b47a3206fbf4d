"""What a vision model needs of a prompt, without torch: how many soft tokens an image becomes
and how the text around each image is written.

A Gemma 3 vision model reads an image as `mm_tokens_per_image` soft tokens (256 for the released
models), framed as transformers' `Gemma3Processor` frames them:

    \\n\\n<start_of_image><image_soft_token> x n<end_of_image>\\n\\n

The chat template writes `<start_of_image>` where an image stands; `expand_images` turns each into
the full frame, so the ids TuneForge encodes equal the processor's and the model finds its image
tokens (`image_token_id`) where the encoder's output goes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tuneforge.models.chat_template import START_OF_IMAGE

IMAGE_SOFT_TOKEN = "<image_soft_token>"  # noqa: S105 (a token, not a password)
END_OF_IMAGE = "<end_of_image>"
#: The tokens framing an image's soft tokens: `\n\n` (one token), `<start_of_image>`,
#: `<end_of_image>` and `\n\n`.
FRAME_TOKENS = 4


@dataclass(frozen=True)
class VisionInfo:
    """A vision model's image numbers, from its `config.json`."""

    tokens_per_image: int
    image_size: int
    image_token_id: int


def vision_info(model_dir: Path) -> VisionInfo | None:
    """The image numbers of the model in `model_dir`, or None for a text-only model."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        return None
    return VisionInfo(
        tokens_per_image=int(config.get("mm_tokens_per_image", 256)),
        image_size=int(vision.get("image_size", 896)),
        image_token_id=int(config.get("image_token_id", config.get("image_token_index", 262144))),
    )


def image_frame(tokens_per_image: int) -> str:
    """The text one image becomes in the model's input."""
    return f"\n\n{START_OF_IMAGE}{IMAGE_SOFT_TOKEN * tokens_per_image}{END_OF_IMAGE}\n\n"


def expand_images(text: str, tokens_per_image: int) -> str:
    """`text` with each `<start_of_image>` written as the image's full frame."""
    return text.replace(START_OF_IMAGE, image_frame(tokens_per_image))


def image_tokens(images: int, tokens_per_image: int) -> int:
    """Tokens that `images` images add to a sequence (their frames included)."""
    return images * (tokens_per_image + FRAME_TOKENS)
