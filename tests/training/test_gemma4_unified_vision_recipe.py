"""SFT on images with the tiny encoder-free Gemma 4 (the 12B's layout), straight through the
recipe: images of three shapes reach the model, the loss falls, the sample answers are to held-out
images, LoRA stays in the language model by default, and `train_vision` reaches the patch
projection (the "vision tower" of a model without an encoder) and the projection into the
decoder; full fine-tuning trains the chosen patch embedding whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models.gemma4_unified import TINY_UNIFIED_ID, tiny_unified_dir
from tests.training.conftest import Recorder
from tests.training.test_gemma4_vision_recipe import (
    records,
    train_the_image_side,
    train_the_language_model,
)
from tests.training.test_gemma4_vision_recipe import spec as gemma4_spec
from tuneforge.training.recipes.sft import train_sft
from tuneforge.training.spec import SFTSpec


@pytest.fixture(scope="module")
def unified_dir(models_dir: Path) -> Path:
    return tiny_unified_dir(models_dir)


def spec(**values: object) -> SFTSpec:
    return gemma4_spec(**({"base_model": TINY_UNIFIED_ID} | values))


@pytest.mark.timeout(300)
def test_unified_gemma_4_images_train_the_language_model(unified_dir: Path, tmp_path: Path) -> None:
    train_the_language_model(TINY_UNIFIED_ID, unified_dir, tmp_path)


@pytest.mark.timeout(300)
def test_train_vision_reaches_the_patch_projection_and_the_projector(
    unified_dir: Path, tmp_path: Path
) -> None:
    saved = train_the_image_side(TINY_UNIFIED_ID, unified_dir, tmp_path)
    image_side = sorted(n for n in saved if "embed_vision" in n)
    assert image_side == [
        "base_model.model.model.embed_vision.multimodal_embedder.embedding_projection.weight",
        "base_model.model.model.embed_vision.patch_dense.lora_A.weight",
        "base_model.model.model.embed_vision.patch_dense.lora_B.weight",
    ]
    assert saved["base_model.model.model.embed_vision.patch_dense.lora_B.weight"].abs().sum() > 0


@pytest.mark.timeout(300)
def test_full_fine_tuning_trains_the_chosen_patch_embedding(
    unified_dir: Path, tmp_path: Path
) -> None:
    import torch

    from tuneforge.models.loading import load_causal_lm

    train = records(4, seed=4)
    run = spec(max_steps=2, method="full", batch_size=2, train_vision=["vision_tower"])
    outcome = train_sft(run, unified_dir, train, [], Recorder(), tmp_path)
    before, after = (
        dict(load_causal_lm(folder, torch.float32).model.embed_vision.named_parameters())
        for folder in (unified_dir, outcome.output)
    )
    moved = {name for name in before if not before[name].equal(after[name])}
    assert {"patch_dense.weight", "pos_embedding", "patch_ln1.weight"} <= moved
    assert not any("multimodal_embedder" in name for name in moved)  # the projector stayed


def test_packed_and_padded_batches_keep_each_example_to_itself(unified_dir: Path) -> None:
    """The 12B's layout attends both ways over an image's tokens: in a packed row, and in padded
    rows, each example still sees only itself (the loss is the sum of each one's alone)."""
    import torch
    from tokenizers import Tokenizer

    from tuneforge.models.loading import load_causal_lm
    from tuneforge.models.vision import vision_info
    from tuneforge.training.components.loss import causal_lm_loss
    from tuneforge.training.components.packing import Batch, collate
    from tuneforge.training.components.tokenize import encode_record
    from tuneforge.training.components.vision import ImageInputs

    info = vision_info(unified_dir)
    tokenizer = Tokenizer.from_file(str(unified_dir / "tokenizer.json"))
    examples = [encode_record(r, tokenizer, 512, True, info) for r in records(3, seed=9)]
    assert all(example is not None and example.images for example in examples)
    model = load_causal_lm(unified_dir, torch.float32)
    images = ImageInputs(model, unified_dir, info, frozen=False)

    def loss(batch: Batch) -> float:
        with torch.no_grad():
            return float(causal_lm_loss(model, images.attach(batch)).loss_sum)

    alone = sum(loss(collate([example], True)) for example in examples)
    for packing in (True, False):
        assert abs(loss(collate(examples, packing)) - alone) < 1e-3 * alone
