"""The tiny vision model and the image inputs: TuneForge's ids and pixels equal transformers'
own Gemma 3 processor's, and the model reads them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from tests.images import coloured_images
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import render
from tuneforge.models.vision import (
    FRAME_TOKENS,
    VisionInfo,
    expand_images,
    image_tokens,
    vision_info,
)

pytestmark = pytest.mark.timeout(180)

QUESTION = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image"},
            {"type": "text", "text": "with"},
            {"type": "image"},
        ],
    }
]


def test_the_tiny_vision_model_matches_its_catalog_entry(tiny_vision_model: Path) -> None:
    entry = catalog().get("tiny-random-gemma3-vision")
    assert entry is not None and entry.vision is not None
    info = vision_info(tiny_vision_model)
    assert info == VisionInfo(tokens_per_image=64, image_size=224, image_token_id=262144)
    from tuneforge.models.loading import load_causal_lm

    model = load_causal_lm(tiny_vision_model, torch.float32)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) == entry.parameters
    encoder = [
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith(("model.vision_tower", "model.multi_modal_projector"))
    ]
    assert sum(encoder) == entry.vision.parameters


def test_a_text_model_has_no_vision(tiny_model: Path) -> None:
    assert vision_info(tiny_model) is None


def test_ids_and_pixels_equal_the_gemma_3_processors(tiny_vision_model: Path) -> None:
    from transformers import AutoProcessor

    from tuneforge.models.vision_inputs import pixel_values

    info = vision_info(tiny_vision_model)
    assert info is not None
    images = [data for data, _ in coloured_images(2, seed=3)]
    text = render(QUESTION, add_generation_prompt=True)
    tokenizer = Tokenizer.from_file(str(tiny_vision_model / "tokenizer.json"))
    ours = tokenizer.encode(expand_images(text, info.tokens_per_image), add_special_tokens=False)

    processor = AutoProcessor.from_pretrained(tiny_vision_model)
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    theirs = processor(text=text, images=decoded, return_tensors="pt", add_special_tokens=False)

    assert ours.ids == theirs["input_ids"][0].tolist()
    assert ours.ids.count(info.image_token_id) == 2 * info.tokens_per_image
    plain = tokenizer.encode(text, add_special_tokens=False).ids
    assert len(ours.ids) - len(plain) <= image_tokens(2, info.tokens_per_image) - 2
    assert FRAME_TOKENS == 4
    pixels = pixel_values(images, tiny_vision_model)
    assert pixels.shape == (2, 3, 224, 224)
    assert torch.allclose(pixels, theirs["pixel_values"])


def test_the_model_reads_the_pixels(tiny_vision_model: Path) -> None:
    """Two different images give different logits for the same text."""
    from tuneforge.models.loading import load_causal_lm
    from tuneforge.models.vision_inputs import pixel_values, token_types

    info = vision_info(tiny_vision_model)
    assert info is not None
    model = load_causal_lm(tiny_vision_model, torch.float32)
    tokenizer = Tokenizer.from_file(str(tiny_vision_model / "tokenizer.json"))
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]
    text = expand_images(render(prompt, add_generation_prompt=True), info.tokens_per_image)
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False).ids])
    (red, _), (green, _) = coloured_images(2, seed=5)
    with torch.no_grad():
        logits = [
            model(
                input_ids=ids,
                pixel_values=pixel_values([image], tiny_vision_model),
                token_type_ids=token_types(ids, info),
            ).logits[0, -1]
            for image in (red, green)
        ]
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
