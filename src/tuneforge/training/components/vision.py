"""A vision model in training: which of its parts learn, and the image inputs of its batches.

A Gemma 3 vision model (`Gemma3ForConditionalGeneration`) is an image encoder (SigLIP, the
`vision_tower`), a projector into the language model (`multi_modal_projector`) and the language
model with its head; a Gemma 4 one (`Gemma4ForConditionalGeneration`) has its own encoder
(`vision_tower`, whose linear layers are wrapped: `...self_attn.q_proj.linear`), the projector
`embed_vision` and the language model. By default only the language model learns: LoRA's
target modules are placed by path, inside `model.language_model` only (both encoders have a
`q_proj` too, and naming Gemma 4's wrapper would make PEFT fail), and the image side is frozen
and pinned in eval mode. The spec's `train_vision` adds the projector (trained whole: it is one
matrix and a norm, saved with the adapter) and the tower (LoRA adapters on its linear layers, or
every weight with `full`).

An encoder-free Gemma 4 (the 12B, `Gemma4UnifiedForConditionalGeneration`) has no encoder: its
`embed_vision` is a patch embedding (each 48-pixel patch through a LayerNorm, one Linear,
`patch_dense`, and a position table) and a projection into the decoder
(`embed_vision.multimodal_embedder`). For it the tower is the patch embedding (LoRA on
`patch_dense`, or all of it with `full`) and the projector is that projection.

`ImageInputs` gives a batch what the model needs besides token ids: the token types (1 at image
soft tokens, for the bidirectional attention over an image) and the images, as pixel values
(and Gemma 4's patch positions) through the model's own image processor, or, while the image
side is frozen, as the projected image features themselves, computed once per image and kept
(bounded by `CACHE_BYTES`): every later epoch skips the encoder and the image processing.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.models.vision import VisionInfo
from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs
from tuneforge.training.components.loss import causal_lm
from tuneforge.training.components.packing import Batch

#: The linear layers of each part, as `all-linear` means them.
LANGUAGE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TOWER_LINEAR = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
#: Gemma 4's encoder: the language model's names, each wrapping its `linear`.
GEMMA4_TOWER_LINEAR = LANGUAGE_LINEAR
#: Module paths (from the model's root) of each part.
LANGUAGE_MODEL = r"model\.language_model"
PROJECTOR = "multi_modal_projector"
GEMMA4_PROJECTOR = "embed_vision"
#: An encoder-free Gemma 4's `embed_vision`: its patch embedding's modules (the tower; the
#: position table, `pos_embedding`, is a weight of `embed_vision` itself) and its projector.
UNIFIED_PATCH_EMBEDDING = ("patch_ln1", "patch_dense", "patch_ln2", "pos_norm")
UNIFIED_PATCH_LINEAR = f"model.{GEMMA4_PROJECTOR}.patch_dense"
UNIFIED_PROJECTOR = f"{GEMMA4_PROJECTOR}.multimodal_embedder"
#: The modules of each part of a multimodal model's non-language side, as `model.model`'s
#: attributes (Gemma 3's names, then Gemma 4's; an encoder-free Gemma 4's: `unified_parts`).
PART_MODULES = {
    "vision_tower": ("vision_tower",),
    "projector": (PROJECTOR, GEMMA4_PROJECTOR),
    "audio": ("audio_tower", "embed_audio"),
}
#: At most this many bytes of cached image features.
CACHE_BYTES = 1 << 30
#: Images encoded in one pass when the features of a step's images are computed ahead (on a
#: CPU, four at once took a third of the time per image that one at a time did).
ENCODE_BATCH = 8


def lora_targets(
    targets: Sequence[str], parts: Sequence[str], model: nn.Module | None = None
) -> str:
    """PEFT's `target_modules` as a regular expression (PEFT full-matches it against module
    names): the named modules (or every linear layer for `all-linear`) inside the language
    model, and, when `parts` holds `vision_tower`, the tower's own linear layers so named in
    `model` (needed then). Both encoders keep their layers under `model.vision_tower` and both
    have a `q_proj`, but Gemma 4's are wrappers around a `linear`: a named layer itself, or the
    `linear` inside a named wrapper, is chosen."""
    everything = list(targets) == ["all-linear"]

    def chosen(linear: Sequence[str]) -> Sequence[str]:
        return linear if everything else targets

    language = "|".join(re.escape(name) for name in chosen(LANGUAGE_LINEAR))
    patterns = [rf"{LANGUAGE_MODEL}\.(?:.*\.)?(?:{language})"]
    if "vision_tower" in parts:
        if model is None:
            raise ValueError("Placing adapters in the vision tower needs the model.")
        wanted = {*chosen(TOWER_LINEAR), *chosen(GEMMA4_TOWER_LINEAR)}
        layers = tower_linear_layers(model, wanted)
        if layers:
            patterns.append("|".join(re.escape(name) for name in layers))
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def unified_embedder(model: nn.Module) -> nn.Module | None:
    """An encoder-free Gemma 4's `embed_vision` (of a model, possibly PEFT-wrapped), else None."""
    embedder = getattr(causal_lm(model).model, GEMMA4_PROJECTOR, None)
    return embedder if hasattr(embedder, "patch_dense") else None


def tower_linear_layers(model: nn.Module, wanted: set[str]) -> list[str]:
    """The names of the vision tower's linear layers called one of `wanted`, or wrapped by a
    module so called (Gemma 4's `...q_proj.linear`); an encoder-free Gemma 4's tower is its
    patch projection, whatever `wanted` names."""
    if unified_embedder(model) is not None:
        return [UNIFIED_PATCH_LINEAR]
    found = []
    for name, module in model.named_modules():
        if not name.startswith("model.vision_tower.") or not isinstance(module, nn.Linear):
            continue
        path = name.split(".")
        if path[-1] in wanted or (path[-1] == "linear" and path[-2] in wanted):
            found.append(name)
    return found


def modules_to_save(parts: Sequence[str], model: nn.Module) -> list[str] | None:
    """The modules a LoRA run of `model` trains whole (and saves with its adapter): the
    projector, under either family's name (PEFT passes over the name a model does not have),
    or an encoder-free Gemma 4's projection (PEFT matches the end of a module's name)."""
    if "projector" not in parts:
        return None
    if unified_embedder(model) is not None:
        return [UNIFIED_PROJECTOR]
    return [PROJECTOR, GEMMA4_PROJECTOR]


def image_side(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """`(part, module)` for each module of a (possibly PEFT-wrapped) multimodal model's image
    side that it has: the encoder (`vision_tower`), the projector (Gemma 3's
    `multi_modal_projector`, Gemma 4's `embed_vision`), and an audio side (`audio`: Gemma 4's
    encoder and its projector), which never trains here. An encoder-free Gemma 4's tower is
    its patch embedding's modules, its projector the projection into the decoder."""
    inner = causal_lm(model).model
    embedder = unified_embedder(model)
    if embedder is not None:
        side = [("vision_tower", getattr(embedder, name)) for name in UNIFIED_PATCH_EMBEDDING]
        side.append(("projector", embedder.multimodal_embedder))
        audio = getattr(inner, "embed_audio", None)
        return side + ([("audio", audio)] if isinstance(audio, nn.Module) else [])
    found = []
    for part, names in PART_MODULES.items():
        for name in names:
            module = getattr(inner, name, None)
            if isinstance(module, nn.Module):
                found.append((part, module))
    return found


def _always_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    del mode
    return nn.Module.train(self, False)


def freeze_image_side(model: nn.Module, parts: Sequence[str], full: bool) -> None:
    """Freeze the parts of the image side not in `parts` (no gradients, pinned in eval mode
    whatever `model.train()` says); with `full`, the chosen ones train every weight (with LoRA,
    PEFT has already made their adapters or copies trainable). An encoder-free Gemma 4's
    position table trains with its tower, and only with `full`."""
    embedder = unified_embedder(model)
    if embedder is not None:
        embedder.pos_embedding.requires_grad_(full and "vision_tower" in parts)
    for part, module in image_side(model):
        if part in parts:
            if full:
                module.requires_grad_(True)
            continue
        module.requires_grad_(False)
        module.train = types.MethodType(_always_eval, module)  # type: ignore[method-assign]
        module.eval()


class ImageInputs:
    """The image inputs of a vision model's batches (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        model_dir: Path,
        info: VisionInfo,
        frozen: bool,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.model, self.model_dir, self.info = model, model_dir, info
        self.frozen = frozen
        self.cache_bytes = cache_bytes
        self._features: dict[bytes, torch.Tensor] = {}
        self._cached = 0

    def warm(self, images: Sequence[bytes], device: str | torch.device) -> None:
        """Compute the features of `images` not yet cached, `ENCODE_BATCH` at a time (for a
        step's or an evaluation's images, before its per-example passes); a no-op while the
        image side trains."""
        if not self.frozen:
            return
        missing = list(dict.fromkeys(i for i in images if i not in self._features))
        for start in range(0, len(missing), ENCODE_BATCH):
            self.features(missing[start : start + ENCODE_BATCH], device)

    def pixels(
        self, images: Sequence[bytes], device: str | torch.device
    ) -> dict[str, torch.Tensor]:
        """The image processor's inputs for `images` (`pixel_values`, and Gemma 4's
        `image_position_ids`) on `device`."""
        return {k: v.to(device) for k, v in pixel_inputs(images, self.model_dir).items()}

    def features(
        self, images: Sequence[bytes], device: str | torch.device
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The projected features of `images`, from the cache where it has them; only for a
        frozen image side. Gemma 3: one tensor (n, tokens per image, hidden); Gemma 4, whose
        images differ in tokens: a tuple of (tokens of the image, hidden)."""
        missing = list(dict.fromkeys(i for i in images if i not in self._features))
        computed: dict[bytes, torch.Tensor] = {}
        if missing:
            inner = causal_lm(self.model).model
            with torch.no_grad():
                output = inner.get_image_features(**self.pixels(missing, device), return_dict=True)
            for image, row in zip(missing, output.pooler_output, strict=True):
                computed[image] = row
                if self._cached + row.numel() * row.element_size() <= self.cache_bytes:
                    self._features[image] = row
                    self._cached += row.numel() * row.element_size()
        rows = [self._features.get(i, computed.get(i)) for i in images]
        if self.info.variable:
            return tuple(rows)  # type: ignore[arg-type]
        return torch.stack(rows)  # type: ignore[arg-type]

    def generation_inputs(self, input_ids: torch.Tensor, images: Sequence[bytes]) -> dict[str, Any]:
        """What `generate` needs besides the prompt's ids (which hold the images' tokens)."""
        return self.pixels(images, input_ids.device) | token_type_inputs(input_ids, self.info)

    def attach(self, batch: Batch) -> Batch:
        """`batch` with its image inputs (unchanged when it has no images)."""
        if not batch.images:
            return batch
        device = batch.input_ids.device
        inputs: dict[str, Any] = token_type_inputs(batch.input_ids, self.info)
        if self.frozen:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            # Gemma 4 takes a tuple of per-image features (it concatenates them).
            pooled: Any = self.features(batch.images, device)
            features = BaseModelOutputWithPooling(pooler_output=pooled)
            inputs["mm_encoder_outputs"] = {"image": features}
        else:
            inputs |= self.pixels(batch.images, device)
        return replace(batch, inputs=inputs)
