"""A vision model's image inputs, in workers (torch): pixel values through the model's own image
processor, and the token types that mark an image's tokens.

Gemma 3's processor gives `pixel_values` (n, 3, H, W) of fixed-size squares; Gemma 4's gives each
image's 16-pixel patches, flattened, padded to the budget's patch count, `pixel_values` (n,
patches, 3 x 16 x 16), with their (x, y) positions, `image_position_ids` (n, patches, 2), -1 for
padding. Gemma 3 reads the token types as `token_type_ids`, Gemma 4 as `mm_token_type_ids`."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tuneforge.models.vision import VisionInfo


@functools.lru_cache(maxsize=8)
def image_processor(model_dir: Path) -> Any:
    """The image processor saved with the model in `model_dir` (loaded once per directory)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(model_dir)  # type: ignore[no-untyped-call]


def pixel_inputs(images: Sequence[bytes], model_dir: Path) -> dict[str, torch.Tensor]:
    """`images` (encoded bytes) as the model's image inputs: `pixel_values` (float32), and for
    Gemma 4 `image_position_ids`."""
    from PIL import Image

    if not images:
        raise ValueError("pixel_values needs at least one image.")
    decoded = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            decoded.append(image.convert("RGB"))
    features = image_processor(Path(model_dir))(images=decoded, return_tensors="pt")
    inputs = {"pixel_values": features["pixel_values"].to(torch.float32)}
    if "image_position_ids" in features:
        inputs["image_position_ids"] = features["image_position_ids"].long()
    return inputs


def pixel_values(images: Sequence[bytes], model_dir: Path) -> torch.Tensor:
    """`images` (encoded bytes) as the model's pixel values, float32: (n, 3, H, W) for Gemma 3,
    (n, patches, 3 x 16 x 16) for Gemma 4 (whose positions `pixel_inputs` adds)."""
    return pixel_inputs(images, model_dir)["pixel_values"]


def token_types(input_ids: torch.Tensor, info: VisionInfo) -> torch.Tensor:
    """1 where `input_ids` holds an image soft token, 0 elsewhere (same shape)."""
    return (input_ids == info.image_token_id).long()


def token_type_inputs(input_ids: torch.Tensor, info: VisionInfo) -> dict[str, torch.Tensor]:
    """The token types under the name the model reads them by."""
    key = "mm_token_type_ids" if info.variable else "token_type_ids"
    return {key: token_types(input_ids, info)}
