"""Parameter counts of a Gemma decoder from its catalog architecture: the linear layers of each
decoder layer, the tied embedding, and the LoRA adapters a target list puts beside them."""

from __future__ import annotations

from tuneforge.models.catalog import Architecture

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def linear_shapes(arch: Architecture) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer in one decoder layer."""
    d, f = arch.hidden_size, arch.intermediate_size
    q, kv = arch.attention_heads * arch.head_dim, arch.kv_heads * arch.head_dim
    return {
        "q_proj": (d, q),
        "k_proj": (d, kv),
        "v_proj": (d, kv),
        "o_proj": (q, d),
        "gate_proj": (d, f),
        "up_proj": (d, f),
        "down_proj": (f, d),
    }


def decoder_linear_parameters(arch: Architecture) -> int:
    """Weights of every decoder layer's linear layers (what a token's matmuls touch)."""
    return arch.layers * sum(i * o for i, o in linear_shapes(arch).values())


def embedding_parameters(arch: Architecture) -> int:
    """The token embedding, which Gemma ties to the output head."""
    return arch.vocab_size * arch.hidden_size


def lora_targets(arch: Architecture, targets: list[str]) -> tuple[list[str], list[str]]:
    """The adapted linear layers for `lora_target_modules` and the names that match none
    (PEFT matches a name against the end of each module's path)."""
    if "all-linear" in targets:
        return list(LINEAR_MODULES), []
    leaves = {target: target.rsplit(".", 1)[-1] for target in targets}
    known = {leaf for leaf in leaves.values() if leaf in LINEAR_MODULES}
    unknown = [target for target, leaf in leaves.items() if leaf not in LINEAR_MODULES]
    return sorted(known, key=LINEAR_MODULES.index), unknown


def lora_parameters(arch: Architecture, rank: int, targets: list[str]) -> int:
    """Trainable LoRA parameters: rank x (in + out) for each adapted linear layer."""
    shapes = linear_shapes(arch)
    modules, _ = lora_targets(arch, targets)
    return arch.layers * sum(rank * sum(shapes[name]) for name in modules)
