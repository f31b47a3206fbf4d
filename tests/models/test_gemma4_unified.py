"""The tiny encoder-free ("unified") Gemma 4 reads images as the released 12B does: the 12B's
layout at the catalog's sizes, Gemma 4's soft-token counts, each soft token one 48-pixel patch of
the resized image (the unified image processor's pixels, in its order), and the pixels reach the
decoder; its "vision tower" is the patch projection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.models.gemma4_configs import CONFIGS
from tests.models.gemma4_unified import TINY_UNIFIED_ID, tiny_unified_dir
from tests.models.test_gemma4_vision import picture, sees_its_images
from tuneforge.models.catalog import catalog
from tuneforge.models.vision import gemma4_soft_tokens, vision_info

pytestmark = pytest.mark.timeout(180)

TINY = catalog().get(TINY_UNIFIED_ID)


@pytest.fixture(scope="module")
def unified_dir(models_dir: Path) -> Path:
    return tiny_unified_dir(models_dir)


def test_the_tiny_unified_gemma_4_is_the_12bs_layout_at_its_catalog_sizes(
    unified_dir: Path,
) -> None:
    from tuneforge.models.loading import load_causal_lm

    assert TINY is not None and TINY.vision is not None and TINY.vision.encoder_free
    model = load_causal_lm(unified_dir, torch.float32)
    assert type(model).__name__ == "Gemma4UnifiedForConditionalGeneration"
    held = {n: t.numel() for n, t in model.state_dict().items() if n != "lm_head.weight"}
    assert sum(held.values()) == TINY.parameters
    side = sum(size for name, size in held.items() if name.startswith("model.embed_vision."))
    assert side == TINY.vision.parameters
    assert not hasattr(model.model, "vision_tower") and model.model.embed_audio is None
    assert model.model.embed_vision.patch_dense.in_features == 3 * 48 * 48
    text = model.config.text_config
    assert text.attention_k_eq_v and text.use_bidirectional_attention == "vision"
    processor = json.loads((unified_dir / "processor_config.json").read_text())
    assert processor["processor_class"] == "Gemma4UnifiedProcessor"
    info = vision_info(unified_dir)
    assert info is not None and info.variable and info.kind == "gemma4_unified"
    assert (info.tokens_per_image, info.image_size, info.image_token_id) == (70, 384, 258880)


def test_the_12bs_released_config_reads_as_gemma_4_images(tmp_path: Path) -> None:
    """No image processor file: the 12B's numbers come from its config and Gemma 4's
    processor defaults (the 280-token budget)."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS["12b"]))
    info = vision_info(tmp_path)
    assert info is not None and info.variable
    assert (info.tokens_per_image, info.image_size, info.patch_size, info.pooling) == (
        280,
        768,
        16,
        3,
    )
    # 1600 x 900 keeps its shape at 1056 x 576 pixels: 22 x 12 patches of 48
    assert info.soft_tokens(picture(1600, 900)) == gemma4_soft_tokens(900, 1600) == 264


def blocks_of(image: bytes) -> np.ndarray:
    """The image (at a size Gemma 4 keeps) in [0, 1], cut into 48-pixel patches in rows, each
    patch's pixels row by row, channels last: what the unified image processor gives."""
    pixels = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"), dtype=np.float32) / 255
    rows, columns = pixels.shape[0] // 48, pixels.shape[1] // 48
    grid = pixels.reshape(rows, 48, columns, 48, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * columns, 48 * 48 * 3)


def test_each_soft_token_is_one_48_pixel_patch(unified_dir: Path) -> None:
    from tuneforge.models.vision_inputs import pixel_inputs

    info = vision_info(unified_dir)
    assert info is not None
    kept = [picture(384, 384, "red"), picture(432, 336, "blue")]  # sizes Gemma 4 keeps
    resized = picture(90, 700, "green")
    inputs = pixel_inputs([*kept, resized], unified_dir)
    assert inputs["pixel_values"].shape == (3, 70, 3 * 48 * 48)
    counts = [info.soft_tokens(image) for image in (*kept, resized)]
    assert counts == [64, 63, 69]
    valid = (inputs["image_position_ids"] >= 0).all(-1).sum(-1).tolist()
    assert valid == counts
    for row, (image, count) in enumerate(zip(kept, counts, strict=False)):
        expected = torch.from_numpy(blocks_of(image))
        torch.testing.assert_close(inputs["pixel_values"][row, :count], expected)
        assert inputs["pixel_values"][row, count:].abs().sum() == 0
    columns = 432 // 48
    ys, xs = torch.arange(63) // columns, torch.arange(63) % columns
    assert torch.equal(inputs["image_position_ids"][1, :63], torch.stack([xs, ys], dim=-1))
    assert (inputs["image_position_ids"][1, 63:] == -1).all()


def test_the_tiny_unified_gemma_4_sees_its_images(unified_dir: Path) -> None:
    sees_its_images(unified_dir)


def test_its_vision_tower_is_the_patch_projection(unified_dir: Path) -> None:
    """LoRA stays in the language model by default; `vision_tower` adds an adapter on the
    patch projection and `projector` trains the projection into the decoder whole; with
    `full`, the tower is the whole patch embedding, its position table included."""
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.components.vision import (
        freeze_image_side,
        lora_targets,
        modules_to_save,
    )

    def trainable(parts: list[str]) -> list[str]:
        model = load_causal_lm(unified_dir, torch.float32)
        config = LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=lora_targets(["q_proj", "v_proj"], parts, model),
            modules_to_save=modules_to_save(parts, model),
        )
        peft = get_peft_model(model, config)
        freeze_image_side(peft, parts, full=False)
        return [n for n, p in peft.named_parameters() if p.requires_grad]

    assert not any("embed_vision" in n for n in trainable([]))
    tower = [n for n in trainable(["vision_tower"]) if "embed_vision" in n]
    assert tower and all("patch_dense.lora_" in n for n in tower)
    projector = [n for n in trainable(["projector"]) if "embed_vision" in n]
    assert projector == [
        "base_model.model.model.embed_vision.multimodal_embedder.modules_to_save.default."
        "embedding_projection.weight"
    ]

    full = load_causal_lm(unified_dir, torch.float32)
    full.requires_grad_(True)
    freeze_image_side(full, ["vision_tower"], full=True)
    learning = {n for n, p in full.named_parameters() if p.requires_grad and "embed_vision" in n}
    assert "model.embed_vision.pos_embedding" in learning
    assert "model.embed_vision.patch_dense.weight" in learning
    assert not any("multimodal_embedder" in n for n in learning)
    assert not full.model.embed_vision.multimodal_embedder.train().training  # pinned in eval


def test_the_estimate_counts_one_projection_per_soft_token() -> None:
    from tuneforge.training.estimate.images import encoder_flops, image_memory_bytes, patches
    from tuneforge.training.spec import SFTSpec

    twelve = catalog().get("gemma-4-12b-it")
    assert twelve is not None and twelve.vision is not None and twelve.vision.encoder_free
    assert patches(twelve.vision) == 280
    assert encoder_flops(twelve.vision) == 2 * twelve.vision.parameters * 280
    spec = SFTSpec(base_model=twelve.id, dataset_id="d", train_vision=["vision_tower"])
    memory = image_memory_bytes(spec, twelve, 2, images_in_batch=2, distinct_images=10)
    features = 280 * 3840 * 2
    pixels = 280 * 2 * 4 * 3 * 48 * 48
    assert memory == 2 * (features + pixels + 280 * 2 * 4 * 3840)
