"""Tiny random Gemmas for tests and smoke runs: the real architecture at the catalog entry's tiny
sizes, seeded random weights, and the real Gemma 3 tokenizer.

* A text entry (`tiny-random-gemma3`) is a `Gemma3ForCausalLM`.
* A Gemma 4 entry (`tiny-random-gemma4`) is a `Gemma4ForConditionalGeneration`, multimodal like
  the released E2B: Gemma 4's decoder (per-layer embeddings, layers that reuse earlier layers'
  keys and values, and wider heads, keys reused as values, in the full-attention layers, with
  the numbers of `GEMMA4_EXTRAS`), Gemma 4's image encoder at the sizes of the entry's `vision`
  block (16-pixel patches with 2-D positions, 3 x 3 pooling) and its `embed_vision` projector.
  Its image processor has the released settings (aspect kept, bicubic, pixels in [0, 1]) but at
  most `vision.tokens_per_image` (70) soft tokens an image. No audio encoder.
  Without a vision block, a Gemma 4 entry is a text-only `Gemma4ForCausalLM`; with experts
  (`tiny-random-gemma4-moe`), the 26B A4B's mixture-of-experts decoder: a router and experts
  beside each layer's dense MLP, at the sizes of `GEMMA4_MOE_EXTRAS`.
* A Gemma 4 entry whose `vision` block has no encoder layers (`tiny-random-gemma4-unified`) is a
  `Gemma4UnifiedForConditionalGeneration`, encoder-free like the released 12B: the 12B's decoder
  (keys doubling as values in the wider full-attention heads, bidirectional attention over an
  image's tokens, no per-layer embeddings, the numbers of `UNIFIED_EXTRAS`) and its
  `embed_vision`: each 48 x 48 pixel patch through a LayerNorm, a Linear to the block's
  `hidden_size`, a 2-D position table and a projection into the decoder. Its image processor
  has the 12B's settings (the same as Gemma 4's) at the block's soft-token budget. No audio.
* A vision entry (`tiny-random-gemma3-vision`) is a `Gemma3ForConditionalGeneration`: a tiny SigLIP
  encoder and projector from the entry's `vision` block, the same tiny decoder, and the real
  Gemma 3 image processor settings (896 x 896 bilinear resize, pixels scaled to [-1, 1]). The
  tokenizer gains `<image_soft_token>` at id 262,144, as the released vision Gemmas have it, and
  the directory holds the processor's files, so transformers' `AutoProcessor` loads it.

`tuneforge.models.loading` caches a build under a fingerprint of `recipe(entry)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer
from transformers import (
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    Gemma4Config,
    Gemma4ForCausalLM,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    Gemma4UnifiedConfig,
    Gemma4UnifiedForConditionalGeneration,
    Gemma4UnifiedTextConfig,
    SiglipVisionConfig,
)

from tuneforge.models.catalog import CatalogEntry, VisionArchitecture
from tuneforge.models.chat_template import START_OF_IMAGE
from tuneforge.models.vision import (
    END_OF_IMAGE,
    GEMMA4_BOI,
    GEMMA4_BOI_ID,
    GEMMA4_EOI,
    GEMMA4_EOI_ID,
    GEMMA4_IMAGE,
    GEMMA4_IMAGE_ID,
    IMAGE_SOFT_TOKEN,
)

#: Gemma's special token ids (the same in every Gemma 3 tokenizer; checked on every tiny build).
PAD_ID, EOS_ID, BOS_ID, END_OF_TURN_ID = 0, 1, 2, 106
#: The image tokens of Gemma 3's vision models.
START_OF_IMAGE_ID, END_OF_IMAGE_ID, IMAGE_SOFT_TOKEN_ID = 255999, 256000, 262144
#: Gemma 3 alternates five sliding-window layers with one full-attention layer.
SLIDING_PATTERN = 6
TINY_SLIDING_WINDOW = 64
#: The tiny model's weight scale. Gemma normalises the last hidden state, so a logit can reach at
#: most |h| x |embedding| = hidden_size x std with the (frozen, tied) embedding: at transformers'
#: usual 0.02 that is 1.3, and LoRA could never push the loss much below ln(262,144) = 12.5
#: (measured: 12.2 -> 11.4 in 40 steps at lr 3e-3 and 1e-2 alike). At 0.2 the same run falls to 8.0
#: at lr 3e-3 and to 4.4 at lr 1e-2; the untrained loss is 13.6 instead of 12.4.
TINY_INIT_STD = 0.2
#: Bump when the tiny models' recipe changes, so caches of the old one are not reused.
TINY_RECIPE = 3
#: What a tiny Gemma 4 has beyond the catalog's `architecture`: the full-attention layers' head
#: width and key/value heads (their keys double as values, as in the 12B, 26B A4B and 31B), the
#: per-layer embeddings' width (E2B/E4B: 256), how many of the last layers reuse earlier layers'
#: keys and values (E2B: 20 of 35), with twice the MLP width there (as E2B), and the final logit
#: soft-cap of every Gemma 4. The layers alternate sliding-window and full attention, so the
#: layers that keep their own keys and values have both kinds, as Gemma 4 requires.
GEMMA4_EXTRAS: dict[str, Any] = {
    "global_head_dim": 64,
    "num_global_key_value_heads": 1,
    "attention_k_eq_v": True,
    "hidden_size_per_layer_input": 8,
    "num_kv_shared_layers": 2,
    "use_double_wide_mlp": True,
    "final_logit_softcapping": 30.0,
}
GEMMA4_PERIOD = 2
#: What a tiny mixture-of-experts Gemma 4 has beyond `GEMMA4_EXTRAS` and the catalog's
#: `architecture` (whose `experts` gives the experts in each layer), as the released 26B A4B:
#: beside each layer's dense MLP, experts `moe_intermediate_size` wide of which `top_k_experts`
#: run per token; no per-layer embeddings and no layers that reuse others' keys and values.
GEMMA4_MOE_EXTRAS: dict[str, Any] = {
    "enable_moe_block": True,
    "top_k_experts": 2,
    "moe_intermediate_size": 32,
    "hidden_size_per_layer_input": 0,
    "num_kv_shared_layers": 0,
    "use_double_wide_mlp": False,
}
#: transformers starts the routers' input and per-expert scales and the expert branch's norms
#: at 1 (a released model brings trained ones); the tiny MoE draws them from this range, so a
#: GGUF file that drops or swaps one of them answers differently.
MOE_SCALE_RANGE = (0.5, 1.5)
MOE_SCALES = (
    "router.scale",
    "router.per_expert_scale",
    "pre_feedforward_layernorm_2.weight",
    "post_feedforward_layernorm_1.weight",
    "post_feedforward_layernorm_2.weight",
)
#: What a tiny Gemma 4 image encoder has beyond the entry's `vision` block: the E2B's clipped
#: linear layers and key/value heads (as many as its heads), and a table of patch positions long
#: enough for the longest side an image can get (at most 70 soft tokens: 210 patches).
GEMMA4_VISION_EXTRAS: dict[str, Any] = {
    "use_clipped_linears": True,
    "standardize": False,
    "position_embedding_size": 256,
}
#: What a tiny unified Gemma 4 has beyond the catalog's `architecture`, as the released 12B
#: (`gemma4_unified`): keys doubling as values in the full-attention layers' wider heads, one
#: key/value head there, bidirectional attention over each image's tokens, the final soft-cap.
UNIFIED_EXTRAS: dict[str, Any] = {
    "global_head_dim": 64,
    "num_global_key_value_heads": 1,
    "attention_k_eq_v": True,
    "use_bidirectional_attention": "vision",
    "final_logit_softcapping": 30.0,
}
#: Gemma 4's audio tokens (the processor wants them named even without an audio encoder).
GEMMA4_AUDIO_TOKENS = {"boa_token": "<|audio>", "eoa_token": "<audio|>", "audio_token": "<|audio|>"}
#: Gemma 4's image processor settings (the released `preprocessor_config.json`); the soft-token
#: budget comes from the entry.
GEMMA4_IMAGE_PROCESSOR: dict[str, Any] = {
    "image_processor_type": "Gemma4ImageProcessor",
    "do_convert_rgb": True,
    "do_resize": True,
    "resample": 3,  # bicubic
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": False,
    "image_mean": [0.0, 0.0, 0.0],
    "image_std": [1.0, 1.0, 1.0],
}
#: Gemma 3's image processor settings (the released models' `preprocessor_config.json`).
IMAGE_MEAN = IMAGE_STD = [0.5, 0.5, 0.5]
BILINEAR = 2


def recipe(entry: CatalogEntry) -> dict[str, Any]:
    """What a build depends on: a change to any of it makes a new build."""
    vision = entry.vision.model_dump() if entry.vision else None
    extras: dict[str, Any] = {}
    if is_unified(entry):
        extras = {"gemma4_unified": UNIFIED_EXTRAS}
    elif entry.family == "gemma-4":
        extras = {"gemma4": GEMMA4_EXTRAS, "gemma4_vision": GEMMA4_VISION_EXTRAS}
        if entry.architecture.experts:
            extras["gemma4_moe"] = GEMMA4_MOE_EXTRAS | {"scales": MOE_SCALE_RANGE}
    return {
        "recipe": TINY_RECIPE,
        "context": entry.context_length,
        "vision": vision,
        **extras,
    } | entry.architecture.model_dump()


def is_unified(entry: CatalogEntry) -> bool:
    """Whether `entry` is an encoder-free ("unified") Gemma 4, as the 12B."""
    return entry.family == "gemma-4" and entry.vision is not None and entry.vision.encoder_free


def build(
    entry: CatalogEntry,
) -> (
    Gemma3ForCausalLM
    | Gemma3ForConditionalGeneration
    | Gemma4ForCausalLM
    | Gemma4ForConditionalGeneration
    | Gemma4UnifiedForConditionalGeneration
):
    """The entry's tiny model with seeded random weights."""
    text = _text_config(entry)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if is_unified(entry):
            assert entry.vision is not None  # is_unified checks it
            return Gemma4UnifiedForConditionalGeneration(_unified_config(entry, entry.vision))
        if entry.family == "gemma-4":
            if entry.vision is None:
                return _vary_moe_scales(Gemma4ForCausalLM(_gemma4_config(entry)))
            return Gemma4ForConditionalGeneration(_gemma4_vision_config(entry, entry.vision))
        if entry.vision is None:
            return Gemma3ForCausalLM(text)
        model = Gemma3ForConditionalGeneration(_vision_config(text, entry.vision))
        # transformers starts the projection at zero (a released model brings trained weights):
        # random images would all read as the same nothing.
        with torch.no_grad():
            model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, TINY_INIT_STD)
        return model


def add_vision_files(entry: CatalogEntry, out: Path) -> None:
    """For a vision entry: the image token in the tokenizer, and the processor's files."""
    if entry.vision is None:
        return
    if entry.family == "gemma-4":
        _add_gemma4_vision_files(entry.vision, out, unified=is_unified(entry))
        return
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    tokenizer.add_special_tokens([AddedToken(IMAGE_SOFT_TOKEN, special=True, normalized=False)])
    if tokenizer.token_to_id(IMAGE_SOFT_TOKEN) != IMAGE_SOFT_TOKEN_ID:
        raise RuntimeError(f"{IMAGE_SOFT_TOKEN} did not get id {IMAGE_SOFT_TOKEN_ID}.")
    tokenizer.save(str(out / "tokenizer.json"))
    side = entry.vision.image_size
    image_processor = {
        "image_processor_type": "Gemma3ImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": side, "width": side},
        "resample": BILINEAR,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "do_pan_and_scan": False,
    }
    tokens = {
        "boi_token": START_OF_IMAGE,
        "eoi_token": END_OF_IMAGE,
        "image_token": IMAGE_SOFT_TOKEN,
    }
    _write_processor_files(
        out, "Gemma3Processor", tokens, image_processor, entry.vision.tokens_per_image
    )


def _write_processor_files(
    out: Path,
    processor_class: str,
    tokens: dict[str, str],
    image_processor: dict[str, Any],
    tokens_per_image: int,
) -> None:
    """The tokenizer's config naming the image `tokens` and the processor, the image
    processor's `preprocessor_config.json` and the processor's `processor_config.json`."""
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["extra_special_tokens"] = tokens
    config["processor_class"] = processor_class
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out / "preprocessor_config.json").write_text(
        json.dumps(image_processor, indent=2), encoding="utf-8"
    )
    processor = {"processor_class": processor_class, "image_seq_length": tokens_per_image}
    (out / "processor_config.json").write_text(json.dumps(processor, indent=2), encoding="utf-8")


def _decoder_arguments(entry: CatalogEntry, period: int) -> dict[str, Any]:
    """The config arguments every tiny Gemma decoder shares: the entry's sizes, a sliding
    window with one full-attention layer every `period` layers, the weight scale, the tied
    embedding and Gemma's special token ids."""
    arch = entry.architecture
    return {
        "vocab_size": arch.vocab_size,
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.attention_heads,
        "num_key_value_heads": arch.kv_heads,
        "head_dim": arch.head_dim,
        "max_position_embeddings": entry.context_length,
        "sliding_window": TINY_SLIDING_WINDOW,
        "layer_types": [
            "full_attention" if (i + 1) % period == 0 else "sliding_attention"
            for i in range(arch.layers)
        ],
        "rms_norm_eps": 1e-6,
        "initializer_range": TINY_INIT_STD,
        "tie_word_embeddings": True,
        "pad_token_id": PAD_ID,
        "eos_token_id": EOS_ID,
        "bos_token_id": BOS_ID,
    }


def _text_config(entry: CatalogEntry) -> Gemma3TextConfig:
    arch = entry.architecture
    period = min(SLIDING_PATTERN, arch.layers)  # at least one full-attention layer
    return Gemma3TextConfig(
        **_decoder_arguments(entry, period), query_pre_attn_scalar=arch.head_dim
    )


def _gemma4_config(entry: CatalogEntry) -> Gemma4TextConfig:
    experts = entry.architecture.experts
    extras = (
        GEMMA4_EXTRAS | GEMMA4_MOE_EXTRAS | {"num_experts": experts} if experts else GEMMA4_EXTRAS
    )
    return Gemma4TextConfig(
        **_decoder_arguments(entry, GEMMA4_PERIOD),
        vocab_size_per_layer_input=entry.architecture.vocab_size,
        **extras,
    )


def _vary_moe_scales(model: Gemma4ForCausalLM) -> Gemma4ForCausalLM:
    """A mixture-of-experts model's router scales and expert-branch norms drawn from
    `MOE_SCALE_RANGE` (see there); a dense model as it is."""
    low, high = MOE_SCALE_RANGE
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(MOE_SCALES):
                parameter.uniform_(low, high)
    return model


def _gemma4_vision_config(entry: CatalogEntry, vision: VisionArchitecture) -> Gemma4Config:
    encoder = _gemma4_patches(vision) | {
        "hidden_size": vision.hidden_size,
        "intermediate_size": vision.intermediate_size,
        "num_hidden_layers": vision.layers,
        "num_attention_heads": vision.attention_heads,
        "num_key_value_heads": vision.attention_heads,
        "head_dim": vision.hidden_size // vision.attention_heads,
        **GEMMA4_VISION_EXTRAS,
    }
    return Gemma4Config(**_gemma4_multimodal(_gemma4_config(entry), encoder))


def _unified_config(entry: CatalogEntry, vision: VisionArchitecture) -> Gemma4UnifiedConfig:
    """The 12B's layout at the entry's sizes: the patch embedder is `vision.hidden_size` wide,
    and its position table as long as the longest side an image can get (the budget of soft
    tokens in one row), as the 12B's 1,120 is for the largest budget."""
    text = Gemma4UnifiedTextConfig(**_decoder_arguments(entry, GEMMA4_PERIOD), **UNIFIED_EXTRAS)
    embedder = _gemma4_patches(vision) | {
        "mm_embed_dim": vision.hidden_size,
        "output_proj_dims": vision.hidden_size,
        "mm_posemb_size": vision.tokens_per_image,
    }
    return Gemma4UnifiedConfig(**_gemma4_multimodal(text, embedder))


def _gemma4_patches(vision: VisionArchitecture) -> dict[str, Any]:
    """The image part's settings both Gemma 4 layouts have: patches, pooling, norms, init."""
    return {
        "patch_size": vision.patch_size,
        "pooling_kernel_size": vision.pooling,
        "rms_norm_eps": 1e-6,
        "initializer_range": TINY_INIT_STD,
    }


def _gemma4_multimodal(
    text: Gemma4TextConfig | Gemma4UnifiedTextConfig, vision: dict[str, Any]
) -> dict[str, Any]:
    """A multimodal Gemma 4 config's arguments around its decoder's and image part's: the
    image tokens' ids, tied embeddings, no audio."""
    return {
        "text_config": text.to_dict(),
        "vision_config": vision,
        "audio_config": None,
        "boi_token_id": GEMMA4_BOI_ID,
        "eoi_token_id": GEMMA4_EOI_ID,
        "image_token_id": GEMMA4_IMAGE_ID,
        "initializer_range": TINY_INIT_STD,
        "tie_word_embeddings": True,
    }


def _add_gemma4_vision_files(vision: VisionArchitecture, out: Path, unified: bool) -> None:
    """Gemma 4's image processor and processor files (`unified`: the encoder-free 12B's, whose
    settings are the same under other class names), and its image and audio tokens named in
    the tokenizer's config (the tokenizer already has them at their ids)."""
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    for token, expected in (
        (GEMMA4_BOI, GEMMA4_BOI_ID),
        (GEMMA4_IMAGE, GEMMA4_IMAGE_ID),
        (GEMMA4_EOI, GEMMA4_EOI_ID),
    ):
        if tokenizer.token_to_id(token) != expected:
            raise RuntimeError(f"The Gemma 4 tokenizer has no {token} at id {expected}.")
    tokens = {
        "boi_token": GEMMA4_BOI,
        "eoi_token": GEMMA4_EOI,
        "image_token": GEMMA4_IMAGE,
        **GEMMA4_AUDIO_TOKENS,
    }
    family = "Gemma4Unified" if unified else "Gemma4"
    image_processor = GEMMA4_IMAGE_PROCESSOR | {
        "image_processor_type": f"{family}ImageProcessor",
        "patch_size": vision.patch_size,
        "pooling_kernel_size": vision.pooling,
        "max_soft_tokens": vision.tokens_per_image,
    }
    _write_processor_files(
        out, f"{family}Processor", tokens, image_processor, vision.tokens_per_image
    )


def _vision_config(text: Gemma3TextConfig, vision: VisionArchitecture) -> Gemma3Config:
    encoder = SiglipVisionConfig(
        hidden_size=vision.hidden_size,
        intermediate_size=vision.intermediate_size,
        num_hidden_layers=vision.layers,
        num_attention_heads=vision.attention_heads,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )
    return Gemma3Config(
        text_config=text.to_dict(),
        vision_config=encoder.to_dict(),
        mm_tokens_per_image=vision.tokens_per_image,
        boi_token_index=START_OF_IMAGE_ID,
        eoi_token_index=END_OF_IMAGE_ID,
        image_token_index=IMAGE_SOFT_TOKEN_ID,
        initializer_range=TINY_INIT_STD,
    )
