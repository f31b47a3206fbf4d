"""A vision model's image inputs, in workers (torch): pixel values through the model's own image
processor, and the token types Gemma 3 needs to attend across an image's tokens."""

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


def pixel_values(images: Sequence[bytes], model_dir: Path) -> torch.Tensor:
    """`images` (encoded bytes) as the model's pixel values, shape (n, 3, H, W), float32."""
    from PIL import Image

    if not images:
        raise ValueError("pixel_values needs at least one image.")
    decoded = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            decoded.append(image.convert("RGB"))
    features = image_processor(Path(model_dir))(images=decoded, return_tensors="pt")
    return features["pixel_values"].to(torch.float32)  # type: ignore[no-any-return]


def token_types(input_ids: torch.Tensor, info: VisionInfo) -> torch.Tensor:
    """1 where `input_ids` holds an image soft token, 0 elsewhere (same shape)."""
    return (input_ids == info.image_token_id).long()
