"""The released Gemma 4 `config.json` values, transcribed (no model hub here to fetch them).

Sources, found through public code search: google/gemma-4-31B-it's config.json together with its
safetensors tensor table (1,188 tensors, 31,273,088,876 values: the count `test_gemma4.py`
reproduces on the meta device), google/gemma-4-12B's config.json as the Hub served it, and the
26B-A4B, E2B and E4B configs as several independent projects transcribe them (the same numbers in
each). Only the fields that shape the weights are kept; `build_config` turns one into a
transformers config. The base (`google/gemma-4-E2B`, ...) and instruction-tuned (`...-it`) models
of a size share one architecture.
"""

from __future__ import annotations

from typing import Any

# Gemma 4's control tokens and their ids, as TuneForge's tokenizer names them (test_loading checks
# the media tokens' ids against the released configs below).
from tuneforge.models.tokenizer import GEMMA4_CONTROL_TOKENS as GEMMA4_CONTROL_TOKENS


def _layer_types(layers: int, period: int) -> list[str]:
    """`period - 1` sliding-window layers, then one full-attention layer, repeated."""
    return [
        "full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(layers)
    ]


_ROPE = {
    "full_attention": {
        "partial_rotary_factor": 0.25,
        "rope_theta": 1000000.0,
        "rope_type": "proportional",
    },
    "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
}

#: The top level every Gemma 4 config shares (the image, audio and video token ids).
_TOP = {
    "audio_token_id": 258881,
    "boa_token_id": 256000,
    "boi_token_id": 255999,
    "eoa_token_index": 258883,
    "eoi_token_id": 258882,
    "eos_token_id": [1, 106],
    "image_token_id": 258880,
    "video_token_id": 258884,
    "tie_word_embeddings": True,
}


def _text(**fields: Any) -> dict[str, Any]:
    return {
        "model_type": "gemma4_text",
        "vocab_size": 262144,
        "vocab_size_per_layer_input": 262144,
        "head_dim": 256,
        "global_head_dim": 512,
        "final_logit_softcapping": 30.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "rope_parameters": _ROPE,
        "tie_word_embeddings": True,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
    } | fields


#: The image encoder of E2B and E4B.
_SMALL_VISION = {
    "model_type": "gemma4_vision",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 16,
    "num_attention_heads": 12,
    "num_key_value_heads": 12,
    "head_dim": 64,
    "patch_size": 16,
    "pooling_kernel_size": 3,
    "position_embedding_size": 10240,
    "use_clipped_linears": True,
    "standardize": False,
    "default_output_length": 280,
}
#: The image encoder of 26B-A4B and 31B.
_LARGE_VISION = _SMALL_VISION | {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "head_dim": 72,
    "use_clipped_linears": False,
    "standardize": True,
}
#: The audio encoder of E2B and E4B.
_AUDIO = {
    "model_type": "gemma4_audio",
    "hidden_size": 1024,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "subsampling_conv_channels": [128, 32],
    "conv_kernel_size": 5,
    "attention_chunk_size": 12,
    "attention_context_left": 13,
    "attention_context_right": 0,
    "output_proj_dims": 1536,
    "residual_weight": 0.5,
    "use_clipped_linears": True,
}

CONFIGS: dict[str, dict[str, Any]] = {
    "e2b": _TOP
    | {
        "model_type": "gemma4",
        "vision_soft_tokens_per_image": 280,
        "text_config": _text(
            hidden_size=1536,
            intermediate_size=6144,
            num_hidden_layers=35,
            num_attention_heads=8,
            num_key_value_heads=1,
            num_global_key_value_heads=None,
            attention_k_eq_v=False,
            sliding_window=512,
            hidden_size_per_layer_input=256,
            num_kv_shared_layers=20,
            use_double_wide_mlp=True,
            max_position_embeddings=131072,
            layer_types=_layer_types(35, 5),
        ),
        "vision_config": _SMALL_VISION,
        "audio_config": _AUDIO,
    },
    "e4b": _TOP
    | {
        "model_type": "gemma4",
        "vision_soft_tokens_per_image": 280,
        "text_config": _text(
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=42,
            num_attention_heads=8,
            num_key_value_heads=2,
            num_global_key_value_heads=None,
            attention_k_eq_v=False,
            sliding_window=512,
            hidden_size_per_layer_input=256,
            num_kv_shared_layers=18,
            use_double_wide_mlp=False,
            max_position_embeddings=131072,
            layer_types=_layer_types(42, 6),
        ),
        "vision_config": _SMALL_VISION,
        "audio_config": _AUDIO,
    },
    "12b": _TOP
    | {
        "model_type": "gemma4_unified",
        "text_config": _text(
            model_type="gemma4_unified_text",
            hidden_size=3840,
            intermediate_size=15360,
            num_hidden_layers=48,
            num_attention_heads=16,
            num_key_value_heads=8,
            num_global_key_value_heads=1,
            attention_k_eq_v=True,
            sliding_window=1024,
            hidden_size_per_layer_input=0,
            num_kv_shared_layers=0,
            use_double_wide_mlp=False,
            use_bidirectional_attention="vision",
            max_position_embeddings=262144,
            layer_types=_layer_types(48, 6),
        ),
        # No image encoder: 48 x 48 x 3 pixel patches go through a LayerNorm and a Linear.
        "vision_config": {
            "model_type": "gemma4_unified_vision",
            "mm_embed_dim": 3840,
            "mm_posemb_size": 1120,
            "output_proj_dims": 3840,
            "patch_size": 16,
            "pooling_kernel_size": 3,
        },
        "audio_config": {"model_type": "gemma4_unified_audio", "audio_embed_dim": 640},
    },
    "26b-a4b": _TOP
    | {
        "model_type": "gemma4",
        "vision_soft_tokens_per_image": 280,
        "text_config": _text(
            hidden_size=2816,
            intermediate_size=2112,
            num_hidden_layers=30,
            num_attention_heads=16,
            num_key_value_heads=8,
            num_global_key_value_heads=2,
            attention_k_eq_v=True,
            sliding_window=1024,
            hidden_size_per_layer_input=0,
            num_kv_shared_layers=0,
            use_double_wide_mlp=False,
            enable_moe_block=True,
            num_experts=128,
            top_k_experts=8,
            moe_intermediate_size=704,
            use_bidirectional_attention="vision",
            max_position_embeddings=262144,
            layer_types=_layer_types(30, 6),
        ),
        "vision_config": _LARGE_VISION,
        "audio_config": None,
    },
    "31b": _TOP
    | {
        "model_type": "gemma4",
        "vision_soft_tokens_per_image": 280,
        "text_config": _text(
            hidden_size=5376,
            intermediate_size=21504,
            num_hidden_layers=60,
            num_attention_heads=32,
            num_key_value_heads=16,
            num_global_key_value_heads=4,
            attention_k_eq_v=True,
            sliding_window=1024,
            hidden_size_per_layer_input=0,
            num_kv_shared_layers=0,
            use_double_wide_mlp=False,
            use_bidirectional_attention="vision",
            max_position_embeddings=262144,
            layer_types=_layer_types(60, 6),
        ),
        "vision_config": _LARGE_VISION,
        "audio_config": None,
    },
}

#: Values (not counts) the released 31B-it safetensors hold: its tensor table, summed.
RELEASED_31B_VALUES = 31_273_088_876


def build_config(size: str) -> Any:
    """The transformers config of a Gemma 4 size (`e2b`, `e4b`, `12b`, `26b-a4b`, `31b`)."""
    from transformers import Gemma4Config, Gemma4UnifiedConfig

    fields = {key: value for key, value in CONFIGS[size].items() if key != "model_type"}
    if CONFIGS[size]["model_type"] == "gemma4_unified":
        return Gemma4UnifiedConfig(**fields)
    return Gemma4Config(**fields)


#: Token ids Gemma 4's own tokenizer gives, as published beside the Gemma 4 12B and 31B and the
#: E2B (golden prompts of chat-template ports: `apply_chat_template` of these texts), with the
#: control tokens by their Gemma 4 names.
GEMMA4_TOKEN_IDS: dict[str, list[int]] = {
    "Hello": [9259],
    "hi": [2202],
    "Name three primary colors.": [1567, 1806, 5905, 7913, 236761],
    "What is the capital of Portugal? Answer in one sentence.": [
        3689,
        563,
        506,
        5279,
        529,
        23613,
        236881,
        25685,
        528,
        886,
        13315,
        236761,
    ],
    "user": [2364],
    "model": [4368],
    "thought": [45518],
}
