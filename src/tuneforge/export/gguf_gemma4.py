"""Gemma 4's numbers in a GGUF file (llama.cpp architecture `gemma4`); `tuneforge.export.gguf`
writes the weights, `gguf_metadata` the tokenizer and chat template.

A Gemma 4 decoder differs from Gemma 3's in what llama.cpp must be told:

* the full-attention layers have wider heads (`global_head_dim`; transformers 5 keeps it in
  `per_layer_config`) and may have fewer key/value heads, whose keys double as values
  (`attention_k_eq_v`: those layers have no value projection, which llama.cpp reads as "reuse
  the keys"): the file gives the full layers' head width as `key_length`, the sliding ones' as
  `key_length_swa`, and the key/value heads layer by layer;
* the last `num_kv_shared_layers` layers reuse earlier layers' keys and values
  (`shared_kv_layers`), and with `use_double_wide_mlp` have twice the MLP width, so the MLP
  width is given layer by layer;
* per-layer embeddings (`embedding_length_per_layer_input`);
* the full layers' "proportional" RoPE rotates only a share of each head (0.25), spread over
  the whole head: llama.cpp rotates the first dimensions, so the file carries `rope_freqs`,
  frequency factors of 1 for the rotated pairs and 1e30 (no rotation) for the others, which
  the full layers read;
* the RMSNorm weights multiply as they are (`x * w`; Gemma 3's are `1 + w`);
* a mixture of experts (the 26B A4B, `enable_moe_block`) has, beside each layer's dense MLP, a
  router and experts whose weights transformers keeps fused per layer (`gate_up_proj`:
  experts x 2 widths x hidden, gate first; `down_proj`), which are llama.cpp's
  `ffn_gate_up_exps` and `ffn_down_exps` as they are; the file gives the experts' count, how
  many run per token and their width. The router's input scale and its per-expert scale of the
  experts' outputs become `ffn_gate_inp.scale` and `ffn_down_exps.scale` (`tensor_name`), and
  the router itself stays f32, as llama.cpp's quantizer keeps it, since a rounded router can
  pick other experts.

Settings llama.cpp cannot reproduce are refused with the reason: attention soft-capping,
another RoPE than "default"/"proportional", and attention that is bidirectional everywhere
(`use_bidirectional_attention: "all"`; the encoder-free 12B's, over image tokens in the sliding
layers, is `"vision"`, which llama.cpp reproduces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from tuneforge.export.gguf_header import GgufConversionError
from tuneforge.export.gguf_metadata import DecoderHyper

ARCH = "gemma4"
#: llama.cpp's frequency factor for a dimension pair that must not rotate.
NO_ROTATION = 1e30
_ARCHITECTURES = (
    "Gemma4ForConditionalGeneration",
    "Gemma4ForCausalLM",
    "Gemma4UnifiedForConditionalGeneration",  # the encoder-free 12B: the same decoder
)
#: The router's scales (transformers' name under a layer -> llama.cpp's).
_ROUTER_SCALES = {
    "router.scale": "ffn_gate_inp.scale",
    "router.per_expert_scale": "ffn_down_exps.scale",
}
_LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)")
#: The router of a mixture of experts, which stays f32 in every type.
ROUTER = "ffn_gate_inp.weight"


def is_gemma4(config: dict[str, Any]) -> bool:
    """Whether `config` (a whole config.json) is a Gemma 4, text-only or with encoders."""
    architectures = config.get("architectures") or []
    return any(a in _ARCHITECTURES for a in architectures) or config.get("model_type") in (
        "gemma4",
        "gemma4_text",
        "gemma4_unified",
    )


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The decoder's settings: `text_config` of a multimodal Gemma 4, else config.json's own."""
    if isinstance(config.get("text_config"), dict):
        text = dict(config["text_config"])
        text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", True))
        return text
    return config


@dataclass(frozen=True)
class Gemma4Hyper(DecoderHyper):
    """What llama.cpp's `gemma4` needs from config.json (see the module docstring)."""

    #: Per layer: the MLP width, the key/value heads, whether the layer slides.
    feed_forward: list[int]
    kv_heads: list[int]
    sliding_layers: list[bool]
    head_dim_sliding: int
    sliding_window: int
    rope_base_sliding: float
    rope_dims_sliding: int
    #: The full layers' frequency factors, one per dimension pair.
    rope_freqs: list[float]
    final_softcap: float | None
    shared_kv_layers: int
    per_layer_width: int
    #: A mixture of experts: experts per layer, how many run per token, and their MLP width
    #: (0, 0, 0: dense).
    experts: int
    experts_used: int
    expert_width: int

    def add_own(self, writer: gguf.GGUFWriter) -> None:
        writer.add_key_length_swa(self.head_dim_sliding)
        writer.add_value_length_swa(self.head_dim_sliding)
        writer.add_rope_freq_base_swa(self.rope_base_sliding)
        # The full layers rotate their whole head; `rope_freqs` keeps the unrotated pairs still.
        writer.add_rope_dimension_count(self.head_dim)
        writer.add_rope_dimension_count_swa(self.rope_dims_sliding)
        writer.add_sliding_window(self.sliding_window)
        writer.add_sliding_window_pattern(self.sliding_layers)
        writer.add_shared_kv_layers(self.shared_kv_layers)
        writer.add_embedding_length_per_layer_input(self.per_layer_width)
        if self.final_softcap:
            writer.add_final_logit_softcapping(self.final_softcap)
        if self.experts:
            writer.add_expert_count(self.experts)
            writer.add_expert_used_count(self.experts_used)
            writer.add_expert_feed_forward_length(self.expert_width)


def hyper_parameters(config: dict[str, Any]) -> Gemma4Hyper:
    """What llama.cpp needs from the decoder's `config` (`text_config`); refuses what it cannot
    reproduce."""
    if config.get("use_bidirectional_attention") == "all":
        raise GgufConversionError(
            "This Gemma 4 attends in both directions everywhere; llama.cpp's gemma4 decoder is "
            "causal. Export it as merged safetensors."
        )
    if config.get("attn_logit_softcapping"):
        raise GgufConversionError("llama.cpp's Gemma 4 has no attention logit soft-capping.")
    layers = int(config["num_hidden_layers"])
    types = list(config.get("layer_types") or [])
    if len(types) != layers:
        raise GgufConversionError("The model's config.json has no layer_types for every layer.")
    sliding = [t == "sliding_attention" for t in types]
    head_dim = int(config.get("head_dim", 256))
    kv_heads = int(config.get("num_key_value_heads", 1))
    overrides = _per_layer(config, sliding)
    dims = [int(overrides[i].get("head_dim", head_dim)) for i in range(layers)]
    full_dims = {d for d, s in zip(dims, sliding, strict=True) if not s}
    sliding_dims = {d for d, s in zip(dims, sliding, strict=True) if s}
    if len(full_dims) > 1 or len(sliding_dims) > 1:
        raise GgufConversionError("llama.cpp needs one head width per kind of attention layer.")
    full_dim = full_dims.pop() if full_dims else head_dim
    shared = int(config.get("num_kv_shared_layers") or 0)
    width = int(config["intermediate_size"])
    double = bool(config.get("use_double_wide_mlp"))
    rope = config.get("rope_parameters") or {}
    full, local = rope.get("full_attention") or {}, rope.get("sliding_attention") or {}
    if (local.get("rope_type") or "default") != "default":
        raise GgufConversionError("llama.cpp's Gemma 4 does not scale sliding-window RoPE.")
    softcap = config.get("final_logit_softcapping")
    moe = bool(config.get("enable_moe_block"))
    return Gemma4Hyper(
        context_length=int(config.get("max_position_embeddings", 131_072)),
        hidden_size=int(config["hidden_size"]),
        layers=layers,
        feed_forward=[
            width * 2 if double and i >= layers - shared else width for i in range(layers)
        ],
        kv_heads=[int(overrides[i].get("num_key_value_heads", kv_heads)) for i in range(layers)],
        sliding_layers=sliding,
        heads=int(config.get("num_attention_heads", 8)),
        head_dim=full_dim,
        head_dim_sliding=sliding_dims.pop() if sliding_dims else head_dim,
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        vocab_rows=int(config["vocab_size"]),
        sliding_window=int(config.get("sliding_window") or 512),
        rope_base=float(full.get("rope_theta", 1_000_000.0)),
        rope_base_sliding=float(local.get("rope_theta", 10_000.0)),
        rope_dims_sliding=int(head_dim * float(local.get("partial_rotary_factor", 1.0))),
        rope_freqs=_rope_freqs(full, full_dim),
        final_softcap=float(softcap) if softcap else None,
        shared_kv_layers=shared,
        per_layer_width=int(config.get("hidden_size_per_layer_input") or 0),
        tied=bool(config.get("tie_word_embeddings", True)),
        experts=int(config["num_experts"]) if moe else 0,
        experts_used=int(config["top_k_experts"]) if moe else 0,
        expert_width=int(config["moe_intermediate_size"]) if moe else 0,
    )


def tensor_name(key: str) -> str | None:
    """llama.cpp's name of a weight `gguf`'s name map does not know (a router's scales), from
    its `Gemma4ForCausalLM` name; None for the others."""
    match = _LAYER_KEY.fullmatch(key)
    if match is None or match.group(2) not in _ROUTER_SCALES:
        return None
    return f"blk.{match.group(1)}.{_ROUTER_SCALES[match.group(2)]}"


def _per_layer(config: dict[str, Any], sliding: list[bool]) -> list[dict[str, Any]]:
    """Each layer's overrides of the shared numbers: transformers 5's `per_layer_config`, or
    the older `global_head_dim` / `num_global_key_value_heads` of the full layers."""
    table = config.get("per_layer_config")
    if isinstance(table, dict):
        return [dict(table.get(str(i)) or {}) for i in range(len(sliding))]
    full: dict[str, Any] = {"head_dim": config.get("global_head_dim", 512)}
    if config.get("num_global_key_value_heads") and config.get("attention_k_eq_v", True):
        full["num_key_value_heads"] = config["num_global_key_value_heads"]
    return [{} if s else full for s in sliding]


def _rope_freqs(full: dict[str, Any], head_dim: int) -> list[float]:
    """The full layers' frequency factors: 1 for the rotated pairs, `NO_ROTATION` for the rest."""
    kind = full.get("rope_type") or "default"
    if kind == "default":
        share = 1.0
    elif kind == "proportional":
        share = float(full.get("partial_rotary_factor", 1.0))
    else:
        raise GgufConversionError(f"llama.cpp's Gemma 4 does not support {kind!r} RoPE.")
    rotated = int(head_dim * share / 2)
    return [1.0] * rotated + [NO_ROTATION] * (head_dim // 2 - rotated)


def rope_freqs(hyper: Gemma4Hyper) -> npt.NDArray[np.float32]:
    """The `rope_freqs` tensor."""
    return np.asarray(hyper.rope_freqs, dtype=np.float32)
