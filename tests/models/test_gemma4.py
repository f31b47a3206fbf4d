"""Gemma 4 and the image encoders in the catalog: every number rebuilt with transformers.

The catalog's counts must equal what transformers builds from the released configs on PyTorch's
meta device (no weights allocated; a second or two for all sizes), and for the 31B that count
must be the released checkpoint's. The Gemma 3 vision blocks are rebuilt the same way from the
catalog's own numbers. The tiny random Gemma 4 is built, loaded like any model and trained one
LoRA step.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoModelForCausalLM, Gemma3Config

from tests.models import models_cache_dir
from tests.models.gemma4_configs import (
    CONFIGS,
    GEMMA4_CONTROL_TOKENS,
    GEMMA4_TOKEN_IDS,
    RELEASED_31B_VALUES,
    build_config,
)
from tuneforge.models.catalog import CatalogEntry, catalog
from tuneforge.models.loading import load_causal_lm, load_tokenizer, model_dir
from tuneforge.models.tokenizer import gemma_tokenizer
from tuneforge.training.components.vision import lora_targets

LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GEMMA4 = [e for e in catalog().models if e.family == "gemma-4" and not e.test_only]
GEMMA3_VISION = [
    e for e in catalog().models if e.family == "gemma-3" and e.source == "hub" and e.vision
]


def size_of(entry: CatalogEntry) -> str:
    return entry.id.removeprefix("gemma-4-").removesuffix("-it")


def meta_model(config: object) -> nn.Module:
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)  # type: ignore[no-any-return]


def values(model: nn.Module, *prefixes: str) -> int:
    """Values the checkpoint of `model` holds (its state dict, the head tied to the embedding),
    under any of `prefixes` (all of them without)."""
    return sum(
        tensor.numel()
        for name, tensor in model.state_dict().items()
        if name != "lm_head.weight" and (not prefixes or name.startswith(prefixes))
    )


def test_every_gemma_4_size_is_listed_base_and_instruction_tuned() -> None:
    assert {e.id for e in GEMMA4} == {
        f"gemma-4-{size}{suffix}" for size in CONFIGS for suffix in ("", "-it")
    }
    for entry in GEMMA4:
        assert entry.hub_id is not None
        assert entry.hub_id.startswith("google/gemma-4-")
        assert entry.hub_id.lower() == f"google/{entry.id}"


def test_the_31b_count_is_the_released_checkpoints() -> None:
    """Our way of counting, checked against a real checkpoint: the 31B-it's safetensors."""
    assert values(meta_model(build_config("31b"))) == RELEASED_31B_VALUES


@pytest.mark.parametrize("entry", GEMMA4, ids=lambda e: e.id)
def test_a_gemma_4_entry_is_its_config(entry: CatalogEntry) -> None:
    config = build_config(size_of(entry))
    text = config.text_config
    model = meta_model(config)
    assert entry.parameters == values(model)
    assert entry.context_length == text.max_position_embeddings
    arch = entry.architecture
    assert (
        arch.layers,
        arch.hidden_size,
        arch.intermediate_size,
        arch.attention_heads,
        arch.kv_heads,
        arch.head_dim,
        arch.vocab_size,
    ) == (
        text.num_hidden_layers,
        text.hidden_size,
        text.intermediate_size,
        text.num_attention_heads,
        text.per_layer_config[0].num_key_value_heads,  # a sliding-window layer's
        text.per_layer_config[0].head_dim,
        text.vocab_size,
    )
    assert arch.experts == (text.to_dict().get("num_experts") or 0)
    assert text.layer_types[0] == "sliding_attention"
    vision = entry.vision
    assert vision is not None and vision.variable_resolution
    encoder = config.vision_config
    assert (vision.patch_size, vision.pooling) == (encoder.patch_size, encoder.pooling_kernel_size)
    if size_of(entry) == "12b":  # no image encoder: patches projected into the decoder
        assert not hasattr(model.model, "vision_tower")
        assert (vision.layers, vision.hidden_size) == (0, encoder.mm_embed_dim)
        assert vision.parameters == values(model, "model.embed_vision.")
        return
    assert (
        vision.patch_size,
        vision.hidden_size,
        vision.intermediate_size,
        vision.layers,
        vision.attention_heads,
    ) == (
        encoder.patch_size,
        encoder.hidden_size,
        encoder.intermediate_size,
        encoder.num_hidden_layers,
        encoder.num_attention_heads,
    )
    assert vision.parameters == values(model, "model.vision_tower.", "model.embed_vision.")
    assert vision.tokens_per_image == config.vision_soft_tokens_per_image == 280


def test_gemma_4_images_take_up_to_280_tokens_keeping_their_shape() -> None:
    """The catalog's `image_size` and `tokens_per_image` for Gemma 4, from its image processor."""
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    processor = Gemma4ImageProcessorPil()
    counts = {}
    for width, height in ((1000, 1000), (1600, 900), (300, 1200)):
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
        out = processor(Image.open(buffer), return_tensors="pt")
        counts[(width, height)] = int(out["num_soft_tokens_per_image"][0])
        assert out["pixel_values"].shape == (1, 280 * 9, 16 * 16 * 3)
    vision = catalog().get("gemma-4-31b-it").vision  # type: ignore[union-attr]
    assert vision is not None
    assert counts[(1000, 1000)] == (vision.image_size // 48) ** 2 == 256
    assert all(count <= vision.tokens_per_image for count in counts.values())
    assert len(set(counts.values())) > 1  # the count depends on the image's shape


@pytest.mark.timeout(60)
def test_a_tiny_gemma_4_reads_an_image_the_way_docs_models_md_says() -> None:
    """What a Gemma 4 image takes (docs/models.md, for when TuneForge wires it): patches and
    their positions from the image processor, and in the text `<|image>` (255999), one
    `<|image|>` (258880) per soft token of that image, `<image|>` (258882), with the image's
    tokens marked in `mm_token_type_ids`. Tiny sizes; the real layer kinds."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    text = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "global_head_dim": 64,
        "hidden_size_per_layer_input": 0,
        "sliding_window": 64,
        "layer_types": ["sliding_attention", "full_attention"],
        "use_bidirectional_attention": "vision",
        "initializer_range": 0.2,
    }
    encoder = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "position_embedding_size": 1024,
    }
    config = Gemma4Config(text_config=text, vision_config=encoder, audio_config=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma4ForConditionalGeneration(config).eval()
    processor = Gemma4ImageProcessorPil(max_soft_tokens=70)
    last = []
    for colour in ("red", "blue"):
        buffer = io.BytesIO()
        Image.new("RGB", (300, 200), colour).save(buffer, format="PNG")
        inputs = processor(Image.open(buffer), return_tensors="pt")
        tokens = int(inputs["num_soft_tokens_per_image"][0])
        assert tokens <= 70 and inputs["pixel_values"].shape == (1, 70 * 9, 16 * 16 * 3)
        image = [config.boi_token_id, *[config.image_token_id] * tokens, config.eoi_token_id]
        ids = torch.tensor([[2, 105, 2364, 108, *image, 108, 106, 105, 2516]])
        with torch.no_grad():
            logits = model(
                input_ids=ids,
                pixel_values=inputs["pixel_values"],
                image_position_ids=inputs["image_position_ids"],
                mm_token_type_ids=(ids == config.image_token_id).long(),
            ).logits
        last.append(logits[0, -1])
    assert (config.boi_token_id, config.image_token_id, config.eoi_token_id) == (
        255999,
        258880,
        258882,
    )
    assert (last[0] - last[1]).abs().max() > 1e-3  # the pixels reached the decoder


@pytest.mark.parametrize("entry", GEMMA3_VISION, ids=lambda e: e.id)
def test_a_gemma_3_vision_block_is_siglip_and_its_projector(entry: CatalogEntry) -> None:
    vision, arch = entry.vision, entry.architecture
    assert vision is not None
    assert (vision.image_size, vision.patch_size, vision.tokens_per_image) == (896, 14, 256)
    assert vision.pooling == 4 and not vision.variable_resolution
    config = Gemma3Config(
        text_config={
            "vocab_size": arch.vocab_size,
            "hidden_size": arch.hidden_size,
            "intermediate_size": arch.intermediate_size,
            "num_hidden_layers": arch.layers,
            "num_attention_heads": arch.attention_heads,
            "num_key_value_heads": arch.kv_heads,
            "head_dim": arch.head_dim,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.layers,
            "num_attention_heads": vision.attention_heads,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "vision_use_head": False,
        },
        mm_tokens_per_image=vision.tokens_per_image,
    )
    model = meta_model(config)
    assert values(model) == entry.parameters
    assert vision.parameters == values(model, "model.vision_tower.", "model.multi_modal_projector.")


def test_gemma_4_writes_text_with_gemma_3s_words_and_renames_its_control_tokens() -> None:
    """Why the tiny Gemma 4 may use Gemma 3's tokenizer: the token ids Gemma 4's tokenizer gives
    ordinary text (as published) are exactly Gemma 3's, and Gemma 4's control tokens sit at ids
    where Gemma 3 has its turn and image markers or unused tokens. Its chat format differs."""
    gemma3 = gemma_tokenizer(models_cache_dir())
    for text, ids in GEMMA4_TOKEN_IDS.items():
        assert gemma3.encode(text, add_special_tokens=False).ids == ids, text
    gemma3_names = {token: gemma3.id_to_token(i) for token, i in GEMMA4_CONTROL_TOKENS.items()}
    assert gemma3_names["<|turn>"] == "<start_of_turn>"
    assert gemma3_names["<turn|>"] == "<end_of_turn>"
    assert gemma3_names["<|image>"] == "<start_of_image>"
    others = {k: v for k, v in gemma3_names.items() if k not in {"<|turn>", "<turn|>", "<|image>"}}
    assert all(name.startswith("<unused") or name == "<end_of_image>" for name in others.values())


# -- the tiny random Gemma 4 ---------------------------------------------------------------------

TINY4 = catalog().get("tiny-random-gemma4")


@pytest.fixture(scope="module")
def tiny4_dir() -> Path:
    assert TINY4 is not None
    return model_dir(TINY4, models_cache_dir())


@pytest.mark.timeout(120)
def test_the_tiny_gemma_4_has_gemma_4s_parts_at_the_catalogs_sizes(tiny4_dir: Path) -> None:
    assert TINY4 is not None
    arch = TINY4.architecture
    model = load_causal_lm(tiny4_dir, torch.float32)
    assert type(model).__name__ == "Gemma4ForConditionalGeneration"  # multimodal, like E2B
    assert model.config.model_type == "gemma4"
    config = model.config.text_config
    assert config.model_type == "gemma4_text"
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (
        arch.layers,
        arch.hidden_size,
        arch.intermediate_size,
    )
    sliding = config.per_layer_config[0]
    assert (config.num_attention_heads, sliding.num_key_value_heads, sliding.head_dim) == (
        arch.attention_heads,
        arch.kv_heads,
        arch.head_dim,
    )
    assert values(model) == TINY4.parameters
    # What makes it Gemma 4 and not Gemma 3: per-layer embeddings, layers that reuse earlier
    # layers' keys and values (no k/v projections), wider heads in the full-attention layers.
    assert config.hidden_size_per_layer_input > 0
    decoder = model.model.language_model
    assert decoder.embed_tokens_per_layer.weight.shape[0] == arch.vocab_size
    layers = decoder.layers
    shared = [layer for layer in layers if layer.self_attn.is_kv_shared_layer]
    assert 0 < len(shared) < len(layers)
    assert all(not hasattr(layer.self_attn, "k_proj") for layer in shared)
    full = [layer for layer in layers if not layer.self_attn.is_sliding]
    assert full and all(layer.self_attn.head_dim > arch.head_dim for layer in full)
    assert model.generation_config.eos_token_id == [1, 106]


@pytest.mark.timeout(120)
def test_the_tiny_gemma_4_trains_with_lora_on_its_linear_layers(tiny4_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    tokenizer = load_tokenizer(tiny4_dir)
    assert tokenizer.convert_tokens_to_ids(["<|turn>", "<turn|>"]) == [105, 106]
    model = load_causal_lm(tiny4_dir, torch.float32)
    model.train()
    targets = lora_targets(list(LANGUAGE_LINEAR), [])  # the language model's, by path
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    adapted = {
        name.rsplit(".", 1)[-1]
        for name, module in peft.named_modules()
        if hasattr(module, "lora_A") and isinstance(module, nn.Module) and "lora_" not in name
    }
    assert adapted == set(LANGUAGE_LINEAR)
    lora_b = [p for name, p in peft.named_parameters() if "lora_B" in name]
    for parameter in lora_b:  # LoRA starts at zero: give B a value so A gets a gradient too
        nn.init.normal_(parameter, std=0.01)
    ids = tokenizer(
        "<|turn>user\nWhich colour is the sky?<turn|>\n<|turn>model\nBlue",
        return_tensors="pt",
    ).input_ids
    loss = peft(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss) and loss > 5  # random weights: about ln(262,144) = 12.5
    loss.backward()
    trainable = [(n, p) for n, p in peft.named_parameters() if p.requires_grad]
    assert trainable and all(name.count("lora_") == 1 for name, _ in trainable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in trainable)
