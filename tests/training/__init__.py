"""A tiny random Gemma 3 for the training components' tests."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

LAYER_TYPES = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]


def tiny_gemma3(attention: str = "sdpa", seed: int = 0, **overrides: Any) -> Gemma3ForCausalLM:
    """Gemma 3's architecture at toy size, fp32: grouped-query attention like the 270M (4 query
    heads, 1 key/value head), and a sliding window of 8 so that longer examples exercise it."""
    torch.manual_seed(seed)
    settings: dict[str, Any] = {
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": len(LAYER_TYPES),
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "query_pre_attn_scalar": 16,
        "sliding_window": 8,
        "layer_types": LAYER_TYPES,
        "attn_implementation": attention,
    }
    model = Gemma3ForCausalLM(Gemma3TextConfig(**(settings | overrides)))
    return model.eval()
