"""A vision model's images in the estimate: their tokens in the lengths, the image encoder's
work and its memory.

The dataset's statistics count each image as Gemma 3's 256 soft tokens and 4 around them
(`DatasetStats.images.tokens_per_image`); a model that reads an image as another number (the tiny
test model: 64) shifts every length by the difference per image (`model_lengths`). A Gemma 4
model (`variable_resolution`) reads each image as its own number of tokens, from its shape: the
typical lengths count the dataset's median image (median width by median height), the longest
the model's budget (`tokens_per_image`, 280 for the released models), which no image exceeds.

The image side costs what the recipe does with it (`training/components/vision.py`):

* frozen (the default): each distinct image goes through the encoder and projector once per run,
  without gradients, and its features stay in memory (at most `CACHE_BYTES`): the work is one
  forward pass per training and test image, the memory the cached features;
* trained (`train_vision`): every example's images go through the encoder at every step; the
  projector alone needs a forward pass per image, the tower a forward and a backward, and then
  autograd keeps the encoder's activations for each image of a micro-batch.

An encoder forward pass costs 2 x its weights per patch plus attention over the image's patches
(4 x width x patches per patch per layer); a backward twice that. Gemma 4's encoder always runs
over the budget's patches (`tokens_per_image` x pooling², padding masked), whatever the image.
An encoder-free Gemma 4 (the 12B: no encoder layers) projects each soft token's 48-pixel patch
once, padded to the budget too: 2 x its weights per soft token, no attention, and when its patch
embedding trains, autograd keeps each patch's pixels (fp32, through a LayerNorm) and a few
vectors of its width.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from tuneforge.models.catalog import CatalogEntry, VisionArchitecture
from tuneforge.models.vision import gemma4_soft_tokens, image_tokens
from tuneforge.training.estimate.batches import Lengths
from tuneforge.training.spec import TrainingBase

#: As `training/components/vision.py` bounds its cache of image features.
CACHE_BYTES = 1 << 30


def trained_parts(spec: TrainingBase) -> list[str]:
    """The parts of the image side the spec trains (only SFT has `train_vision`)."""
    return list(getattr(spec, "train_vision", None) or [])


def images_of(stats: Any) -> dict[str, Any] | None:
    """The `images` block of a dataset's statistics (a model or its JSON), or None."""
    if stats is None:
        return None
    data = stats.model_dump() if isinstance(stats, BaseModel) else dict(stats)
    images = data.get("images")
    return images if isinstance(images, dict) and images.get("total") else None


def images_per_row(stats: Any) -> tuple[float, int]:
    """(mean, most) images in a row of the dataset; (0, 0) for text data."""
    images = images_of(stats)
    if images is None:
        return 0.0, 0
    per_row = {int(k): int(v) for k, v in (images.get("per_row") or {}).items()}
    rows = sum(per_row.values()) or 1
    return float(images["total"]) / rows, max(per_row, default=0)


def typical_image_tokens(stats: Any, vision: VisionArchitecture) -> int:
    """Soft tokens of the dataset's typical image for the model: its fixed count, or for Gemma 4
    the count of an image of the median width and height (the budget without sizes)."""
    images = images_of(stats)
    if not vision.variable_resolution or images is None:
        return vision.tokens_per_image
    try:
        width, height = int(images["width"]["p50"]), int(images["height"]["p50"])
        return gemma4_soft_tokens(
            height, width, vision.patch_size, vision.pooling, vision.tokens_per_image
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return vision.tokens_per_image


def token_shift(stats: Any, entry: CatalogEntry, typical: bool = True) -> int:
    """Tokens to add to a length per image, for `entry`'s image tokens (negative: fewer): for
    the typical image, or (`typical` False) for the most an image can take."""
    images = images_of(stats)
    if images is None or entry.vision is None:
        return 0
    counted = int(images.get("tokens_per_image") or 0)
    tokens = typical_image_tokens(stats, entry.vision) if typical else entry.vision.tokens_per_image
    return image_tokens(1, tokens) - counted


def model_lengths(lengths: Lengths | None, stats: Any, entry: CatalogEntry) -> Lengths | None:
    """`lengths` (from the statistics) with each image counted as `entry` reads it."""
    shift, longest = token_shift(stats, entry), token_shift(stats, entry, typical=False)
    if lengths is None or (shift == 0 and longest == 0):
        return lengths
    mean, most = images_per_row(stats)
    typical = round(mean * shift)
    return lengths.model_copy(
        update={
            "mean": max(1.0, lengths.mean + mean * shift),
            "p50": max(1, lengths.p50 + typical),
            "p90": max(1, lengths.p90 + typical),
            "p95": max(1, lengths.p95 + typical),
            "max": max(1, lengths.max + most * longest),
            "histogram": [
                (max(0, start + typical), max(1, end + typical), count)
                for start, end, count in lengths.histogram
            ],
        }
    )


def patches(vision: VisionArchitecture) -> int:
    """Patches the encoder attends over for one image (Gemma 4: the budget's, padded; an
    encoder-free one's: one merged patch per soft token)."""
    if vision.encoder_free:
        return vision.tokens_per_image
    if vision.variable_resolution:
        return vision.tokens_per_image * vision.pooling**2
    return (vision.image_size // vision.patch_size) ** 2


def encoder_flops(vision: VisionArchitecture) -> float:
    """FLOPs of one image's forward pass through the encoder and projector."""
    n = patches(vision)
    attention = 4 * vision.layers * vision.hidden_size * n * n
    return float(2 * vision.parameters * n + attention)


def image_seconds(
    spec: TrainingBase,
    entry: CatalogEntry,
    flops_per_second: float,
    images_trained: float,
    distinct_images: float,
) -> float:
    """Seconds the image side adds to the run: `images_trained` images pass through the steps
    (every epoch's), of which `distinct_images` are different images (training and test)."""
    if entry.vision is None or flops_per_second <= 0 or images_trained <= 0:
        return 0.0
    forward = encoder_flops(entry.vision)
    parts = trained_parts(spec)
    if not parts:
        work = forward * distinct_images
    elif "vision_tower" in parts:
        work = 3 * forward * images_trained + forward * distinct_images
    else:
        work = forward * (images_trained + distinct_images)
    return work / flops_per_second


def image_memory_bytes(
    spec: TrainingBase,
    entry: CatalogEntry,
    bytes_per_value: int,
    images_in_batch: int,
    distinct_images: float,
) -> int:
    """Memory the image side adds at a step's peak: the cached features of `distinct_images`
    (frozen), or the encoder's activations for the `images_in_batch` of a micro-batch (the tower
    trains) or its projected output (the projector trains)."""
    vision = entry.vision
    if vision is None or images_in_batch <= 0:
        return 0
    hidden = entry.architecture.hidden_size
    parts = trained_parts(spec)
    features = vision.tokens_per_image * hidden * bytes_per_value
    if not parts:
        return int(min(CACHE_BYTES, math.ceil(distinct_images) * features))
    if "vision_tower" not in parts:
        return images_in_batch * (patches(vision) * vision.hidden_size * bytes_per_value + features)
    # Per layer and patch, like a decoder layer: the norms in fp32, the linear layers' inputs,
    # attention's q, k, v and output, the MLP's two vectors of its width.
    d, f = vision.hidden_size, vision.intermediate_size
    if vision.encoder_free:
        pixels = 3 * (vision.patch_size * vision.pooling) ** 2
        per_patch = 2 * 4 * pixels + bytes_per_value * 4 * d
        return images_in_batch * (patches(vision) * per_patch + features)
    per_patch = 2 * 4 * d + bytes_per_value * (3 * d + f + 4 * d + 2 * f)
    return images_in_batch * (vision.layers * patches(vision) * per_patch + features)
