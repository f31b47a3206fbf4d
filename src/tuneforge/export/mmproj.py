"""The image half of a vision Gemma 3's GGUF export: the `mmproj` projector file llama.cpp's
multimodal library (mtmd) reads next to the text model.

A vision Gemma 3 (`Gemma3ForConditionalGeneration`) is a SigLIP image encoder, a projector and
the Gemma 3 decoder. `tuneforge.export.gguf` writes the decoder; `convert_projector` writes the
encoder and projector as llama.cpp's `clip` architecture with projector type `gemma3`:

* the encoder's weights as `v.*` (patch and position embeddings, `v.blk.N.*` layers, the final
  `v.post_ln`) and the projector's as `mm.input_projection` and `mm.soft_emb_norm`, named by the
  `gguf` package's tensor map; the projector's RMSNorm is Gemma's `x * (1 + w)`, stored as `1 + w`
  (the SigLIP layer norms are ordinary ones, stored as they are);
* the encoder's numbers (`clip.vision.*`: image size, patch size, width, MLP width, layers,
  heads, layer-norm epsilon, the text model's width as the projection size) and the image
  processor's mean and std;
* `clip.vision.projector.scale_factor` when the projector pools patches other than 4 x 4 per
  side: llama.cpp assumes Gemma 3's 64 x 64 patches -> 16 x 16 = 256 tokens; the tiny test
  model's 64 tokens per image from 64 x 64 patches pool 8 x 8.

Embeddings and norms stay f32, the rest f16 (f32 in an f32 export): llama.cpp's own converter
does the same, and projector files are small next to the decoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gguf
import numpy as np

from tuneforge.export.gguf import Planned, Stored, safetensors_index, write_planned
from tuneforge.export.gguf_metadata import (
    GgufConversionError,
    full_config,
    is_vision_gemma3,
    read_header,
)

ARCH = "clip"
PROJECTOR_TYPE = "gemma3"
#: Patches pooled per side by the released Gemma 3 projectors (llama.cpp's default).
DEFAULT_POOLING = 4
ProjectorType = Literal["f32", "f16"]
Progress = Callable[[float, str], None]
_Q = gguf.GGMLQuantizationType
_FILE_TYPES = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}
#: Where the encoder's weights live, by transformers version -> the name the tensor map knows.
_ENCODER_PREFIXES = (
    "model.vision_tower.vision_model.",
    "vision_tower.vision_model.",
    "model.vision_tower.",
    "vision_tower.",
)
_PROJECTOR_PREFIXES = ("model.multi_modal_projector.", "multi_modal_projector.")


@dataclass(frozen=True)
class VisionNumbers:
    """What the projector file says about the encoder, from config.json and the processor."""

    image_size: int
    patch_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    layer_norm_eps: float
    projection_dim: int
    tokens_per_image: int
    image_mean: list[float]
    image_std: list[float]

    @property
    def pooling(self) -> int:
        """Patches pooled per side into one soft token."""
        side = self.image_size // self.patch_size
        return side // math.isqrt(self.tokens_per_image)


def vision_numbers(model_dir: Path) -> VisionNumbers:
    """The encoder's numbers of the vision Gemma 3 in `model_dir` (raises for another model)."""
    config = full_config(model_dir)
    if not is_vision_gemma3(config) or not isinstance(config.get("vision_config"), dict):
        raise GgufConversionError(f"{model_dir.name} is not a Gemma 3 with an image encoder.")
    vision: dict[str, Any] = config["vision_config"]
    text: dict[str, Any] = config.get("text_config") or {}
    processor = _processor_settings(model_dir)
    numbers = VisionNumbers(
        image_size=int(vision.get("image_size", 896)),
        patch_size=int(vision.get("patch_size", 14)),
        hidden_size=int(vision.get("hidden_size", 1152)),
        intermediate_size=int(vision.get("intermediate_size", 4304)),
        layers=int(vision.get("num_hidden_layers", 27)),
        heads=int(vision.get("num_attention_heads", 16)),
        layer_norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
        projection_dim=int(text.get("hidden_size", 0)),
        tokens_per_image=int(
            config.get("mm_tokens_per_image") or processor.get("image_seq_length") or 256
        ),
        image_mean=[float(x) for x in processor.get("image_mean") or (0.5, 0.5, 0.5)],
        image_std=[float(x) for x in processor.get("image_std") or (0.5, 0.5, 0.5)],
    )
    side = numbers.image_size // numbers.patch_size
    per_side = math.isqrt(numbers.tokens_per_image)
    if per_side * per_side != numbers.tokens_per_image or side % per_side or not per_side:
        raise GgufConversionError(
            f"{numbers.tokens_per_image} tokens per image do not pool evenly from "
            f"{side} x {side} patches: llama.cpp's Gemma 3 projector cannot reproduce it."
        )
    if numbers.projection_dim <= 0:
        raise GgufConversionError("The model's config.json has no text_config.hidden_size.")
    return numbers


def _processor_settings(model_dir: Path) -> dict[str, Any]:
    """preprocessor_config.json, overlaid with processor_config.json (and its `image_processor`
    section), as transformers reads them."""
    import json

    settings: dict[str, Any] = {}
    for name in ("preprocessor_config.json", "processor_config.json"):
        file = model_dir / name
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                settings |= data | (data.get("image_processor") or {})
    return settings


def encoder_key(key: str) -> str | None:
    """The name `gguf`'s tensor map knows for the encoder or projector weight `key` (None: a
    weight of the language model, or the encoder's unused pooling head)."""
    for prefix in _ENCODER_PREFIXES:
        if key.startswith(prefix):
            rest = key.removeprefix(prefix)
            return None if rest.startswith("head.") else f"vision_tower.vision_model.{rest}"
    for prefix in _PROJECTOR_PREFIXES:
        if key.startswith(prefix):
            rest = key.removeprefix(prefix).replace("_weight", ".weight")
            return f"multi_modal_projector.{rest}"
    return None


def _plan(stored: dict[str, Stored], numbers: VisionNumbers, outtype: str) -> list[Planned]:
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, numbers.layers)
    matrix = _Q.F32 if outtype == "f32" else _Q.F16
    plan = []
    for key, tensor in stored.items():
        mapped = encoder_key(key)
        if mapped is None:
            continue
        name = names.get_name(mapped, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GgufConversionError(f"The weight {key!r} has no place in a Gemma 3 mmproj file.")
        # Norms, biases, patch and position embeddings stay f32.
        small = len(tensor.shape) == 1 or ".embeddings." in mapped
        qtype = _Q.F32 if small else matrix
        plan.append(Planned(tensor, name, qtype, add_one="soft_emb_norm" in mapped))
    wanted = {"v.patch_embd.weight", "v.position_embd.weight", "mm.input_projection.weight",
              "mm.soft_emb_norm.weight", "v.post_ln.weight"}  # fmt: skip
    missing = wanted - {p.name for p in plan}
    if missing:
        raise GgufConversionError(
            f"The model has no {', '.join(sorted(missing))}: it is not a complete Gemma 3 "
            "image encoder and projector."
        )
    layers = {p.name.split(".")[2] for p in plan if p.name.startswith("v.blk.")}
    if len(layers) != numbers.layers:
        raise GgufConversionError(
            f"The encoder has weights for {len(layers)} layers; its config says {numbers.layers}."
        )
    return plan


def convert_projector(
    model_dir: Path,
    out: Path,
    outtype: ProjectorType = "f16",
    *,
    name: str,
    progress: Progress | None = None,
) -> VisionNumbers:
    """Write the image encoder and projector of the vision Gemma 3 in `model_dir` as llama.cpp's
    `mmproj` file `out` (atomically); returns the numbers written."""
    report = progress or (lambda _fraction, _message: None)
    model_dir, out = Path(model_dir), Path(out)
    numbers = vision_numbers(model_dir)
    plan = _plan(safetensors_index(model_dir), numbers, outtype)
    write_planned(
        out, ARCH, lambda writer: _add_metadata(writer, numbers, name, outtype), plan, report
    )
    return numbers


def _add_metadata(writer: gguf.GGUFWriter, numbers: VisionNumbers, name: str, outtype: str) -> None:
    writer.add_type(gguf.GGUFType.MMPROJ)
    writer.add_name(name)
    writer.add_file_type(int(_FILE_TYPES[outtype]))
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(PROJECTOR_TYPE)
    writer.add_vision_projection_dim(numbers.projection_dim)
    writer.add_vision_image_size(numbers.image_size)
    writer.add_vision_patch_size(numbers.patch_size)
    writer.add_vision_embedding_length(numbers.hidden_size)
    writer.add_vision_feed_forward_length(numbers.intermediate_size)
    writer.add_vision_block_count(numbers.layers)
    writer.add_vision_head_count(numbers.heads)
    writer.add_vision_attention_layernorm_eps(numbers.layer_norm_eps)
    writer.add_vision_image_mean(numbers.image_mean)
    writer.add_vision_image_std(numbers.image_std)
    writer.add_vision_use_gelu(True)
    if numbers.pooling != DEFAULT_POOLING:
        writer.add_vision_projector_scale_factor(numbers.pooling)


# -- reading it back -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectorSummary:
    """What an mmproj file holds, read from its header."""

    architecture: str
    projector_type: str
    tensor_count: int
    encoder_layers: int
    image_size: int
    patch_size: int
    projection_dim: int
    pooling: int
    tokens_per_image: int
    size_bytes: int


def describe_projector(path: Path) -> ProjectorSummary:
    """The header of the mmproj file at `path`."""
    header = read_header(path)
    fields = header.fields
    image_size = int(fields.get(gguf.Keys.ClipVision.IMAGE_SIZE, 0))
    patch_size = int(fields.get(gguf.Keys.ClipVision.PATCH_SIZE, 0)) or 1
    pooling = int(fields.get(gguf.Keys.ClipVision.Projector.SCALE_FACTOR, DEFAULT_POOLING))
    per_side = image_size // patch_size // max(pooling, 1)
    layers = {n.split(".")[2] for n, _shape, _type in header.tensors if n.startswith("v.blk.")}
    return ProjectorSummary(
        architecture=str(fields.get(gguf.Keys.General.ARCHITECTURE)),
        projector_type=str(fields.get(gguf.Keys.Clip.PROJECTOR_TYPE)),
        tensor_count=len(header.tensors),
        encoder_layers=len(layers),
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=int(fields.get(gguf.Keys.ClipVision.PROJECTION_DIM, 0)),
        pooling=pooling,
        tokens_per_image=per_side * per_side,
        size_bytes=Path(path).stat().st_size,
    )


def structure_problems(path: Path, model_dir: Path) -> list[str]:
    """What in the mmproj file at `path` does not match the model in `model_dir`: its
    architecture, projector type, sizes, tokens per image, tensors and their shapes."""
    numbers = vision_numbers(model_dir)
    summary = describe_projector(path)
    problems = []
    if summary.architecture != ARCH or summary.projector_type != PROJECTOR_TYPE:
        problems.append(
            f"it is {summary.architecture}/{summary.projector_type}, not {ARCH}/{PROJECTOR_TYPE}"
        )
    expected = {
        "image size": (summary.image_size, numbers.image_size),
        "patch size": (summary.patch_size, numbers.patch_size),
        "projection size": (summary.projection_dim, numbers.projection_dim),
        "tokens per image": (summary.tokens_per_image, numbers.tokens_per_image),
        "encoder layers": (summary.encoder_layers, numbers.layers),
    }
    problems += [f"its {what} is {got}, not {want}" for what, (got, want) in expected.items()
                 if got != want]  # fmt: skip
    tensors = read_header(path).tensors
    shapes = {name: shape for name, shape, _type in tensors}
    data = 0
    for _name, shape, qtype in tensors:
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
        data += int(np.prod(shape, dtype=np.int64)) // block_size * type_size
    if summary.size_bytes < data:
        problems.append(f"its tensor data is incomplete ({summary.size_bytes} bytes of {data}+)")
    planned = _plan(safetensors_index(model_dir), numbers, "f32")
    for item in planned:
        want_shape = tuple(reversed(item.source.shape))  # GGUF lists the fastest axis first
        if shapes.get(item.name) != want_shape:
            problems.append(f"{item.name} is {shapes.get(item.name)}, not {want_shape}")
    if len(shapes) != len(planned):
        problems.append(f"it has {len(shapes)} tensors, not {len(planned)}")
    return problems
