"""The tiny Gemma 4 reads images as Gemma 4 does: a soft-token count per image from its shape,
patches with their positions, and ids equal to transformers' own Gemma 4 processor's."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from tests.images import png
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import GEMMA_4
from tuneforge.models.vision import (
    GEMMA4_BOI_ID,
    GEMMA4_EOI_ID,
    GEMMA4_IMAGE_ID,
    expand_segments,
    expand_text,
    gemma4_soft_tokens,
    vision_info,
)

pytestmark = pytest.mark.timeout(180)

TINY4 = catalog().get("tiny-random-gemma4")
QUESTION = [
    {"role": "system", "content": "Answer in one word."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image"},
            {"type": "text", "text": "with"},
            {"type": "image"},
        ],
    },
]


def picture(width: int, height: int, colour: str = "red") -> bytes:
    """A PNG of `width` x `height` pixels: a coloured square on noise, stretched."""
    square = Image.open(io.BytesIO(png(colour, size=64, seed=width * 7 + height)))
    out = io.BytesIO()
    square.resize((width, height)).save(out, format="PNG")
    return out.getvalue()


def gemma4_processor(model_dir: Path) -> Any:
    """transformers' `Gemma4Processor` over the model's own image processor and tokenizer.
    `AutoProcessor` cannot build one here: it also loads Gemma 4's video processor, which needs
    torchvision (not installed); this subclass leaves the video processor out and keeps the rest
    of the processor's code (placeholder expansion, token types) as transformers has it."""
    from transformers import AutoImageProcessor, AutoTokenizer, Gemma4Processor
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.processing_utils import ProcessorMixin

    class WithoutVideo(Gemma4Processor):  # type: ignore[misc]
        def __init__(self, feature_extractor: Any, image_processor: Any, tokenizer: Any) -> None:
            self.image_seq_length = image_processor.max_soft_tokens
            self.image_token_id = tokenizer.image_token_id
            self.boi_token, self.eoi_token = tokenizer.boi_token, tokenizer.eoi_token
            self.image_token = tokenizer.image_token
            self.video_token = "<|video|>"
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            self.audio_token, self.audio_token_id = tokenizer.audio_token, tokenizer.audio_token_id
            self.boa_token, self.eoa_token = tokenizer.boa_token, tokenizer.eoa_token
            self.audio_seq_length, self.audio_ms_per_token = 750, 40
            ProcessorMixin.__init__(
                self,
                feature_extractor=feature_extractor,
                image_processor=image_processor,
                tokenizer=tokenizer,
            )

    return WithoutVideo(
        Gemma4AudioFeatureExtractor(),
        AutoImageProcessor.from_pretrained(model_dir),
        AutoTokenizer.from_pretrained(model_dir),
    )


def test_the_tiny_gemma_4_is_multimodal_at_its_catalog_sizes(tiny_gemma4_model: Path) -> None:
    from tuneforge.models.loading import load_causal_lm

    assert TINY4 is not None and TINY4.vision is not None
    model = load_causal_lm(tiny_gemma4_model, torch.float32)
    assert type(model).__name__ == "Gemma4ForConditionalGeneration"
    # Values the checkpoint holds: the parameters (the head tied to the embedding) and the
    # encoder's clipping bounds (buffers: four per wrapped linear layer).
    held = {n: t.numel() for n, t in model.state_dict().items() if n != "lm_head.weight"}
    assert sum(held.values()) == TINY4.parameters
    image_side = sum(
        size
        for name, size in held.items()
        if name.startswith(("model.vision_tower", "model.embed_vision"))
    )
    assert image_side == TINY4.vision.parameters
    assert model.model.audio_tower is None
    encoder = model.config.vision_config
    assert (encoder.hidden_size, encoder.num_hidden_layers, encoder.patch_size) == (32, 2, 16)
    info = vision_info(tiny_gemma4_model)
    assert info is not None and info.variable
    assert (info.tokens_per_image, info.image_size, info.image_token_id) == (70, 384, 258880)
    assert (info.patch_size, info.pooling) == (16, 3)


@pytest.mark.parametrize("budget", [70, 280])
def test_our_soft_token_counts_equal_gemma_4s_image_processor(budget: int) -> None:
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    processor = Gemma4ImageProcessorPil(max_soft_tokens=budget)
    sizes = [(1000, 1000), (1600, 900), (300, 1200), (64, 48), (17, 900), (3000, 40), (768, 768)]
    sizes += [(123, 457), (2000, 1999), (48, 48), (10, 10)]
    counts = []
    for width, height in sizes:
        image = Image.new("RGB", (width, height), "red")
        theirs = int(processor(image, return_tensors="pt")["num_soft_tokens_per_image"][0])
        ours = gemma4_soft_tokens(height, width, 16, 3, budget)
        assert ours == theirs, (width, height)
        counts.append(ours)
    assert max(counts) <= budget and len(set(counts)) > 3


def test_ids_pixels_and_positions_equal_the_gemma_4_processors(tiny_gemma4_model: Path) -> None:
    from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs

    info = vision_info(tiny_gemma4_model)
    assert info is not None
    images = [picture(300, 200, "red"), picture(90, 700, "blue")]
    text = GEMMA_4.render(QUESTION, add_generation_prompt=True)
    assert text.count("<|image|>") == 2
    tokenizer = Tokenizer.from_file(str(tiny_gemma4_model / "tokenizer.json"))
    ours = tokenizer.encode(expand_text(text, info, images), add_special_tokens=False).ids

    processor = gemma4_processor(tiny_gemma4_model)
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    theirs = processor(text=text, images=decoded, return_tensors="pt", add_special_tokens=False)

    assert ours == theirs["input_ids"][0].tolist()
    counts = [info.soft_tokens(image) for image in images]
    alone = processor.image_processor(decoded, return_tensors="pt")
    assert counts == alone["num_soft_tokens_per_image"].tolist() == [60, 69]
    assert ours.count(GEMMA4_IMAGE_ID) == sum(counts)
    assert ours.count(GEMMA4_BOI_ID) == ours.count(GEMMA4_EOI_ID) == 2
    inputs = pixel_inputs(images, tiny_gemma4_model)
    assert torch.equal(inputs["pixel_values"], theirs["pixel_values"].float())
    assert torch.equal(inputs["image_position_ids"], theirs["image_position_ids"].long())
    assert inputs["pixel_values"].shape == (2, 70 * 9, 3 * 16 * 16)
    types = token_type_inputs(torch.tensor([ours]), info)
    assert torch.equal(types["mm_token_type_ids"], theirs["mm_token_type_ids"].long())

    # Pieces of one conversation take the images in order, whichever piece holds them.
    cut = text.index("with")
    assert "".join(expand_segments([text[:cut], text[cut:]], info, images)) == expand_text(
        text, info, images
    )
    with pytest.raises(ValueError, match="more images than the 1"):
        expand_text(text, info, images[:1])


def test_the_tiny_gemma_4_sees_its_images(tiny_gemma4_model: Path) -> None:
    sees_its_images(tiny_gemma4_model)


def sees_its_images(model_dir: Path) -> None:
    """Different pixels, different answers; the frozen image side's cached features give the
    logits the pixels give (for the tiny Gemma 4 in `model_dir`, with an encoder or without)."""
    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.components.packing import Batch
    from tuneforge.training.components.vision import ImageInputs

    info = vision_info(model_dir)
    assert info is not None
    model = load_causal_lm(model_dir, torch.float32).eval()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    text = GEMMA_4.render(QUESTION, add_generation_prompt=True)
    last = []
    for colours in (("red", "blue"), ("green", "yellow")):
        images = (picture(300, 200, colours[0]), picture(90, 700, colours[1]))
        ids = torch.tensor(
            [tokenizer.encode(expand_text(text, info, images), add_special_tokens=False).ids]
        )
        positions = torch.arange(ids.shape[1])[None]
        batch = Batch(ids, positions, None, ids, ids.numel(), ids.numel(), images=images)
        logits = {}
        for frozen in (True, False):
            attached = ImageInputs(model, model_dir, info, frozen=frozen).attach(batch)
            with torch.no_grad():
                logits[frozen] = model(input_ids=ids, **attached.inputs).logits[0, -1]
        torch.testing.assert_close(logits[True], logits[False], rtol=1e-4, atol=1e-4)
        last.append(logits[False])
    assert (last[0] - last[1]).abs().max() > 1e-3


def test_lora_on_gemma_4_is_placed_by_path(tiny_gemma4_model: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.components.vision import lora_targets, modules_to_save

    def adapted(parts: list[str]) -> tuple[set[str], list[str]]:
        model = load_causal_lm(tiny_gemma4_model, torch.float32)
        config = LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=lora_targets(["all-linear"], parts, model),
            modules_to_save=modules_to_save(parts, model),
        )
        peft = get_peft_model(model, config)
        names = {
            name.removeprefix("base_model.model.")
            for name, module in peft.named_modules()
            if hasattr(module, "lora_A") and "lora_" not in name.rsplit(".", 1)[-1]
        }
        trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
        return names, trainable

    language, trainable = adapted([])
    assert language and all(n.startswith("model.language_model.layers.") for n in language)
    assert {n.rsplit(".", 1)[-1] for n in language} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert not any("vision" in n for n in trainable)

    both, trainable = adapted(["vision_tower", "projector"])
    tower = both - language
    assert tower and all(
        n.startswith("model.vision_tower.encoder.layers.") and n.endswith(".linear") for n in tower
    )
    assert len(tower) == 2 * 7  # two encoder layers, seven wrapped linear layers each
    assert any("embed_vision" in n and "modules_to_save" in n for n in trainable)
    assert not any("audio" in n for n in trainable)
