"""A vision model's image inputs, in workers (torch): pixel values through the model's own image
processor, and the token types that mark an image's tokens.

Gemma 3's processor gives `pixel_values` (n, 3, H, W) of fixed-size squares; Gemma 4's gives each
image's 16-pixel patches, flattened, padded to the budget's patch count, `pixel_values` (n,
patches, 3 x 16 x 16), with their (x, y) positions, `image_position_ids` (n, patches, 2), -1 for
padding. Gemma 3 reads the token types as `token_type_ids`, Gemma 4 as `mm_token_type_ids`.

An encoder-free Gemma 4 (the 12B, `gemma4_unified`) reads each 3 x 3 block of those patches as
one 48-pixel patch, `pixel_values` (n, soft tokens, 3 x 48 x 48), with the block's position,
padded to the soft-token budget. transformers' image processor for it
(`Gemma4UnifiedImageProcessor`) needs torchvision; its settings and resizing are Gemma 4's, so
here Gemma 4's image processor prepares the image with them and `merge_patches` forms the blocks
as the unified processor's `patches_merge` does (the same pixels in the same order:
`tests/models/test_gemma4_unified.py`)."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tuneforge.models.vision import VisionInfo

#: The image processor an encoder-free Gemma 4 saves (`preprocessor_config.json`), and the
#: settings of it that Gemma 4's image processor takes.
UNIFIED_IMAGE_PROCESSOR = "Gemma4UnifiedImageProcessor"
UNIFIED_SETTINGS = (
    "patch_size",
    "pooling_kernel_size",
    "max_soft_tokens",
    "resample",
    "do_resize",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
)


@functools.lru_cache(maxsize=8)
def image_processor(model_dir: Path) -> Any:
    """The image processor saved with the model in `model_dir` (loaded once per directory);
    for an encoder-free Gemma 4, Gemma 4's with its settings."""
    from transformers import AutoImageProcessor

    settings = unified_settings(model_dir)
    if settings is not None:
        from transformers import Gemma4ImageProcessorPil

        return Gemma4ImageProcessorPil(**settings)
    return AutoImageProcessor.from_pretrained(model_dir)  # type: ignore[no-untyped-call]


def unified_settings(model_dir: Path) -> dict[str, Any] | None:
    """The image processor settings of an encoder-free Gemma 4 in `model_dir`, else None."""
    file = Path(model_dir) / "preprocessor_config.json"
    if not file.is_file():
        return None
    settings = json.loads(file.read_text(encoding="utf-8"))
    if settings.get("image_processor_type") != UNIFIED_IMAGE_PROCESSOR:
        return None
    return {key: settings[key] for key in UNIFIED_SETTINGS if key in settings}


def merge_patches(
    pixels: torch.Tensor, positions: torch.Tensor, pooling: int, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gemma 4's patches of each image (`pixels` (n, patches, p x p x 3) in rows of the image,
    `positions` (n, patches, 2) as (x, y), -1 for padding) as its `pooling` x `pooling` blocks:
    (n, budget, (pooling x p)² x 3) in rows of blocks, each block's pixels row by row, and the
    blocks' (x, y), padded with zeros and -1 to `budget` blocks."""
    count, _, width = pixels.shape
    side = round((width // 3) ** 0.5)
    merged = pixels.new_zeros((count, budget, width * pooling**2))
    places = positions.new_full((count, budget, 2), -1)
    for row in range(count):
        valid = positions[row, :, 0] >= 0
        columns = int(positions[row, valid, 0].max()) + 1
        lines = int(valid.sum()) // columns
        shape = (lines // pooling, pooling, columns // pooling, pooling, side, side, 3)
        # (block row, row in block, block column, column in block, pixel row, column, channel)
        # -> blocks in rows, each block's pixels row by row
        grid = pixels[row, valid].reshape(shape).permute(0, 2, 1, 4, 3, 5, 6)
        blocks = grid.reshape(-1, width * pooling**2)
        merged[row, : len(blocks)] = blocks
        ys, xs = torch.meshgrid(
            torch.arange(lines // pooling), torch.arange(columns // pooling), indexing="ij"
        )
        places[row, : len(blocks)] = torch.stack([xs, ys], dim=-1).reshape(-1, 2)
    return merged, places


def pixel_inputs(images: Sequence[bytes], model_dir: Path) -> dict[str, torch.Tensor]:
    """`images` (encoded bytes) as the model's image inputs: `pixel_values` (float32), and for
    Gemma 4 `image_position_ids` (an encoder-free one's: of its 48-pixel patches)."""
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
    settings = unified_settings(Path(model_dir))
    if settings is not None:
        processor = image_processor(Path(model_dir))
        inputs["pixel_values"], inputs["image_position_ids"] = merge_patches(
            inputs["pixel_values"],
            inputs["image_position_ids"],
            processor.pooling_kernel_size,
            processor.max_soft_tokens,
        )
    return inputs


def pixel_values(images: Sequence[bytes], model_dir: Path) -> torch.Tensor:
    """`images` (encoded bytes) as the model's pixel values, float32: (n, 3, H, W) for Gemma 3,
    (n, patches, 3 x 16 x 16) for Gemma 4 (whose positions `pixel_inputs` adds), (n, soft
    tokens, 3 x 48 x 48) for an encoder-free Gemma 4."""
    return pixel_inputs(images, model_dir)["pixel_values"]


def token_types(input_ids: torch.Tensor, info: VisionInfo) -> torch.Tensor:
    """1 where `input_ids` holds an image soft token, 0 elsewhere (same shape)."""
    return (input_ids == info.image_token_id).long()


def token_type_inputs(input_ids: torch.Tensor, info: VisionInfo) -> dict[str, torch.Tensor]:
    """The token types under the name the model reads them by."""
    key = "mm_token_type_ids" if info.variable else "token_type_ids"
    return {key: token_types(input_ids, info)}
