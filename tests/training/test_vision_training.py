"""A vision model in training: only the chosen parts learn (the image side is frozen and in eval
mode by default, LoRA never lands in the image encoder unless asked), and the fast loss (the head
only on answer tokens, cached image features) equals the model's own loss on the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.images import png
from tuneforge.data.conversation import message
from tuneforge.models.loading import load_causal_lm
from tuneforge.models.vision import vision_info
from tuneforge.training.components.loss import causal_lm_loss
from tuneforge.training.components.packing import collate
from tuneforge.training.components.tokenize import IGNORE_INDEX, encode_record
from tuneforge.training.components.vision import ImageInputs, image_side, lora_targets
from tuneforge.training.runtime import Runtime, prepare_model, trainable_parameters
from tuneforge.training.spec import SFTSpec

FP32 = Runtime("cpu", "fp32", unsloth=False)


def spec(**values: object) -> SFTSpec:
    return SFTSpec(base_model="tiny-random-gemma3-vision", dataset_id="d", **values)  # type: ignore[arg-type]


def trained(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in trainable_parameters(model)]


def test_lora_targets_stay_in_the_language_model_unless_asked(tiny_vision_model: Path) -> None:
    import re

    default = lora_targets(["all-linear"], [])
    assert re.fullmatch(default, "model.language_model.layers.0.self_attn.q_proj")
    assert re.fullmatch(default, "model.language_model.layers.1.mlp.down_proj")
    assert not re.fullmatch(default, "model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert not re.fullmatch(default, "lm_head")
    with pytest.raises(ValueError, match="needs the model"):
        lora_targets(["q_proj"], ["vision_tower"])
    model = load_causal_lm(tiny_vision_model, torch.float32)
    named = lora_targets(["q_proj", "v_proj"], ["vision_tower"], model)
    assert re.fullmatch(named, "model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert re.fullmatch(named, "model.language_model.layers.0.self_attn.v_proj")
    assert not re.fullmatch(named, "model.language_model.layers.0.self_attn.k_proj")


def test_by_default_only_the_language_model_learns(tiny_vision_model: Path) -> None:
    model = prepare_model(spec(), tiny_vision_model, FP32)
    names = trained(model)
    assert names and all(".language_model." in name and "lora_" in name for name in names)
    model.train()
    side = image_side(model)
    assert sorted(name for name, _ in side) == ["projector", "vision_tower"]
    for _, part in side:
        assert not part.training and not any(m.training for m in part.modules())
        assert not any(p.requires_grad for p in part.parameters())


def test_the_projector_and_tower_learn_when_chosen(tiny_vision_model: Path) -> None:
    lora = prepare_model(spec(train_vision=["projector", "vision_tower"]), tiny_vision_model, FP32)
    names = trained(lora)
    assert any("vision_tower" in n and "lora_" in n for n in names)
    assert any("multi_modal_projector" in n and "mm_input_projection_weight" in n for n in names)
    lora.train()
    assert dict(image_side(lora))["vision_tower"].training
    full = prepare_model(spec(method="full", train_vision=["projector"]), tiny_vision_model, FP32)
    names = trained(full)
    assert any(n.endswith("mm_input_projection_weight") for n in names)
    assert any(".language_model.layers." in n for n in names)
    assert not any("vision_tower" in n for n in names)


@pytest.mark.parametrize("frozen", [True, False])
def test_the_fast_loss_is_the_models_own(tiny_vision_model: Path, frozen: bool) -> None:
    from tokenizers import Tokenizer

    info = vision_info(tiny_vision_model)
    assert info is not None
    tokenizer = Tokenizer.from_file(str(tiny_vision_model / "tokenizer.json"))
    image = png("blue", seed=7)
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
            message("assistant", "blue, a deep blue"),
        ],
        "images": [image],
    }
    example = encode_record(record, tokenizer, 1024, True, info)
    assert example is not None
    model = prepare_model(spec(), tiny_vision_model, FP32)
    model.eval()
    inputs = ImageInputs(model, tiny_vision_model, info, frozen=frozen)
    batch = inputs.attach(collate([example], packing=True))
    assert ("mm_encoder_outputs" in batch.inputs) is frozen
    with torch.no_grad():
        fast = causal_lm_loss(model, batch)
        from tuneforge.models.vision_inputs import pixel_values, token_types

        ids = torch.tensor([example.input_ids])
        labels = torch.tensor([example.labels])
        own = model(
            input_ids=ids,
            pixel_values=pixel_values([image], tiny_vision_model),
            token_type_ids=token_types(ids, info),
            labels=labels,
        )
    assert fast.tokens == sum(label != IGNORE_INDEX for label in example.labels)
    assert float(fast.loss_sum) / fast.tokens == pytest.approx(float(own.loss), rel=1e-4)
