"""The estimate of a vision run: image tokens in the lengths as the model reads them, the image
encoder's work in the duration, and its memory (cached features, or activations when it
trains)."""

from __future__ import annotations

from typing import Any

from tests.training.test_estimate import cpu, model, stats
from tuneforge.models.catalog import VisionArchitecture
from tuneforge.training.estimate import estimate
from tuneforge.training.estimate.images import CACHE_BYTES, encoder_flops, patches
from tuneforge.training.spec import SFTSpec

#: Gemma 3 4B's image side (SigLIP-So400m at 896 px, 256 tokens).
GEMMA3_VISION = VisionArchitecture(
    image_size=896,
    patch_size=14,
    tokens_per_image=256,
    hidden_size=1152,
    intermediate_size=4304,
    layers=27,
    attention_heads=16,
    parameters=417_000_000,
    pooling=4,
)


def image_stats(per_image: int = 260) -> dict[str, Any]:
    """Statistics of 1,000 rows of one image each, the lengths counting `per_image` tokens."""
    data = stats().model_dump()
    sizes = {"min": 100, "mean": 300.0, "p50": 300, "p90": 500, "max": 800}
    data["images"] = {
        "total": 1000,
        "rows_with_images": 1000,
        "per_row": {1: 1000},
        "formats": {"PNG": 1000},
        "pixels": sizes,
        "width": sizes,
        "height": sizes,
        "bytes": sizes,
        "tokens_per_image": per_image,
    }
    return data


def spec(**values: object) -> SFTSpec:
    return SFTSpec(**{"base_model": "tiny-random-gemma3-vision", "dataset_id": "d", **values})  # type: ignore[arg-type]


def test_image_tokens_are_counted_as_the_model_reads_them() -> None:
    tiny = model("tiny-random-gemma3-vision")
    long = spec(max_length=65536)  # no example is cut
    text = estimate(long, tiny, stats(), 900, cpu())
    pictured = estimate(long, tiny, image_stats(), 900, cpu())
    # The statistics count 260 tokens an image; the tiny model reads 64 + 4.
    assert abs(pictured.tokens - (text.tokens - (260 - 68) * 900 * 3)) <= 1
    as_counted = estimate(long, tiny, image_stats(per_image=68), 900, cpu())
    assert as_counted.tokens == text.tokens
    assert any("image side is frozen" in m for m in pictured.messages)


def test_the_encoder_costs_once_per_image_frozen_and_every_step_trained() -> None:
    big = model("tiny-random-gemma3-vision").model_copy(update={"vision": GEMMA3_VISION})
    data = image_stats(per_image=260)
    frozen = estimate(spec(max_steps=100), big, data, 900, cpu())
    tower = estimate(spec(max_steps=100, train_vision=["vision_tower"]), big, data, 900, cpu())
    projector = estimate(spec(max_steps=100, train_vision=["projector"]), big, data, 900, cpu())
    assert frozen.training_seconds < projector.training_seconds < tower.training_seconds
    # Frozen: one forward pass for each of the 900 training and 100 test images, whatever the
    # steps; trained, the tower's work grows with them.
    assert encoder_flops(GEMMA3_VISION) > 2 * 417_000_000 * patches(GEMMA3_VISION)
    longer = estimate(spec(max_steps=200), big, data, 900, cpu())
    decoder = longer.training_seconds - frozen.training_seconds  # 100 more steps
    assert frozen.training_seconds > decoder  # the encoder's once-over is in the first
    longer_tower = estimate(
        spec(max_steps=200, train_vision=["vision_tower"]), big, data, 900, cpu()
    )
    assert longer_tower.training_seconds - tower.training_seconds > 2 * decoder
    # Memory: the features of a thousand 256-token images (capped), or the tower's activations.
    features = 1000 * 256 * big.architecture.hidden_size * 2
    assert frozen.memory.images_bytes == min(CACHE_BYTES, features)
    assert tower.memory.images_bytes > 1e9 > projector.memory.images_bytes > 0
    assert tower.peak_memory_bytes > frozen.peak_memory_bytes
    assert frozen.memory.total_bytes == frozen.peak_memory_bytes


def test_gemma_4_counts_each_image_by_its_shape() -> None:
    """Gemma 4 (`variable_resolution`): the typical image is the median width by the median
    height, 300 x 900, which the tiny Gemma 4 (at most 70 tokens) resizes to 192 x 672: 12 x 42
    patches, pooled 3 x 3, 56 tokens (a square one: 64); the longest row counts the budget; the
    encoder runs over the budget's 70 x 9 patches."""
    from tuneforge.models.vision import gemma4_soft_tokens
    from tuneforge.training.estimate.batches import Lengths
    from tuneforge.training.estimate.images import model_lengths, typical_image_tokens

    tiny = model("tiny-random-gemma4")
    assert tiny.vision is not None and tiny.vision.variable_resolution
    data = image_stats()
    data["images"]["height"] = data["images"]["height"] | {"p50": 900}
    assert typical_image_tokens(data, tiny.vision) == gemma4_soft_tokens(900, 300, 16, 3, 70) == 56
    assert gemma4_soft_tokens(300, 300, 16, 3, 70) == 64
    lengths = Lengths(
        mean=400.0, answer_mean=20.0, p50=400, p90=500, p95=520, max=600, histogram=[(300, 600, 10)]
    )
    shifted = model_lengths(lengths, data, tiny)
    assert shifted is not None
    assert shifted.p50 == 400 - 260 + 56 + 4 and shifted.mean == 400 - 260 + 60
    assert shifted.max == 600 - 260 + 70 + 4
    assert patches(tiny.vision) == 70 * 9
    long = SFTSpec(base_model="tiny-random-gemma4", dataset_id="d", max_length=65536)
    text = estimate(long, tiny, stats(), 900, cpu())
    pictured = estimate(long, tiny, data, 900, cpu())
    assert abs(pictured.tokens - (text.tokens - (260 - 60) * 900 * 3)) <= 1
    assert any("each about 56 tokens (at most 70" in m for m in pictured.messages)
