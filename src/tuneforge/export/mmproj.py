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

What the families share lives here: the numbers (`ProjectorNumbers`, whose subclass says what
differs in a family's file), the mapping loop and its completeness checks, the writer
(`write_projector`) and the structure check (`projector_problems`). `mmproj_gemma4` holds Gemma
4's numbers and its weights' names.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import gguf
import numpy as np

from tuneforge.export.gguf import Planned, Stored, safetensors_index, write_planned
from tuneforge.export.gguf_header import GgufConversionError, read_header
from tuneforge.export.gguf_metadata import (
    full_config,
    is_vision_gemma3,
)

ARCH = "clip"
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
class ProjectorNumbers(ABC):
    """What a projector file says about an image encoder, from config.json and the processor.
    A family (Gemma 3 here, Gemma 4 in `mmproj_gemma4`) says as class attributes what differs
    in its file, and maps its weights to the file's tensors (`source_name`, `planned`)."""

    #: llama.cpp's projector type, and the family's name in messages.
    projector_type: ClassVar[str]
    family: ClassVar[str]
    #: The tensors without which the encoder and projector are not complete.
    required: ClassVar[frozenset[str]]
    #: The suffixes after a source name that `gguf`'s tensor map tries.
    suffixes: ClassVar[tuple[str, ...]] = (".weight", ".bias")
    #: The pooling llama.cpp assumes when the file does not say (None: the file always says).
    default_pooling: ClassVar[int | None]
    #: Whether the file names its projector type under `clip.vision.projector_type` too.
    names_vision_projector: ClassVar[bool]
    #: What `projector_problems` compares between the file and the model.
    checked: ClassVar[tuple[str, ...]]

    image_size: int
    patch_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    #: The encoder's norm epsilon (layer norms in SigLIP, RMS norms in Gemma 4).
    norm_eps: float
    projection_dim: int
    #: Patches pooled per side into one soft token.
    pooling: int
    tokens_per_image: int
    image_mean: list[float]
    image_std: list[float]

    @abstractmethod
    def source_name(self, key: str) -> str | None:
        """The name `gguf`'s tensor map knows for the encoder or projector weight `key` (None:
        a weight the projector file leaves out)."""

    @abstractmethod
    def planned(
        self, tensor: Stored, source: str, name: str, matrix: gguf.GGMLQuantizationType
    ) -> Planned:
        """How the weight `tensor` (`source` to the tensor map) is written as `name`; `matrix`
        is the type of the file's matrices."""

    def file_name(self, names: gguf.TensorNameMap, source: str) -> str | None:
        """The file's name for the weight `source` (None: it has no place there): the name
        `gguf`'s tensor map gives it."""
        return names.get_name(source, try_suffixes=self.suffixes)

    def tensors(self, stored: dict[str, Stored], outtype: str) -> list[Planned]:
        """The file's tensors from the model's weights `stored` (raises when a weight has no
        place in the file, or a required tensor or an encoder layer is missing)."""
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, self.layers)
        matrix = _Q.F32 if outtype == "f32" else _Q.F16
        plan = []
        for key, tensor in stored.items():
            source = self.source_name(key)
            if source is None:
                continue
            name = self.file_name(names, source)
            if name is None:
                raise GgufConversionError(
                    f"The weight {key!r} has no place in a {self.family} mmproj file."
                )
            plan.append(self.planned(tensor, source, name, matrix))
        missing = self.required - {p.name for p in plan}
        if missing:
            raise GgufConversionError(
                f"The model has no {', '.join(sorted(missing))}: it is not a complete "
                f"{self.family} image encoder and projector."
            )
        layers = {p.name.split(".")[2] for p in plan if p.name.startswith("v.blk.")}
        if len(layers) != self.layers:
            raise GgufConversionError(
                f"The encoder has weights for {len(layers)} layers; its config says {self.layers}."
            )
        return plan


@dataclass(frozen=True)
class VisionNumbers(ProjectorNumbers):
    """A vision Gemma 3's encoder: SigLIP and the `gemma3` projector."""

    projector_type: ClassVar[str] = "gemma3"
    family: ClassVar[str] = "Gemma 3"
    required: ClassVar[frozenset[str]] = frozenset(
        {
            "v.patch_embd.weight",
            "v.position_embd.weight",
            "mm.input_projection.weight",
            "mm.soft_emb_norm.weight",
            "v.post_ln.weight",
        }
    )
    default_pooling: ClassVar[int | None] = DEFAULT_POOLING
    names_vision_projector: ClassVar[bool] = False
    checked: ClassVar[tuple[str, ...]] = (
        "image size", "patch size", "projection size", "tokens per image", "encoder layers"
    )  # fmt: skip

    def source_name(self, key: str) -> str | None:
        return encoder_key(key)

    def planned(
        self, tensor: Stored, source: str, name: str, matrix: gguf.GGMLQuantizationType
    ) -> Planned:
        # Norms, biases, patch and position embeddings stay f32.
        small = len(tensor.shape) == 1 or ".embeddings." in source
        qtype = _Q.F32 if small else matrix
        return Planned.stored(tensor, name, qtype, add_one="soft_emb_norm" in source)


def vision_numbers(model_dir: Path) -> VisionNumbers:
    """The encoder's numbers of the vision Gemma 3 in `model_dir` (raises for another model)."""
    config = full_config(model_dir)
    if not is_vision_gemma3(config) or not isinstance(config.get("vision_config"), dict):
        raise GgufConversionError(f"{model_dir.name} is not a Gemma 3 with an image encoder.")
    vision: dict[str, Any] = config["vision_config"]
    text: dict[str, Any] = config.get("text_config") or {}
    processor = _processor_settings(model_dir)
    image_size = int(vision.get("image_size", 896))
    patch_size = int(vision.get("patch_size", 14))
    tokens = int(config.get("mm_tokens_per_image") or processor.get("image_seq_length") or 256)
    side = image_size // patch_size
    per_side = math.isqrt(tokens)
    if per_side * per_side != tokens or not per_side or side % per_side:
        raise GgufConversionError(
            f"{tokens} tokens per image do not pool evenly from "
            f"{side} x {side} patches: llama.cpp's Gemma 3 projector cannot reproduce it."
        )
    numbers = VisionNumbers(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=int(vision.get("hidden_size", 1152)),
        intermediate_size=int(vision.get("intermediate_size", 4304)),
        layers=int(vision.get("num_hidden_layers", 27)),
        heads=int(vision.get("num_attention_heads", 16)),
        norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
        projection_dim=int(text.get("hidden_size", 0)),
        pooling=side // per_side,
        tokens_per_image=tokens,
        image_mean=[float(x) for x in processor.get("image_mean") or (0.5, 0.5, 0.5)],
        image_std=[float(x) for x in processor.get("image_std") or (0.5, 0.5, 0.5)],
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
    numbers = vision_numbers(Path(model_dir))
    write_projector(Path(model_dir), Path(out), numbers, outtype, name=name, progress=progress)
    return numbers


def write_projector(
    model_dir: Path,
    out: Path,
    numbers: ProjectorNumbers,
    outtype: ProjectorType,
    *,
    name: str,
    progress: Progress | None,
) -> None:
    """Write the encoder and projector of the model in `model_dir`, described by `numbers`, as
    the `mmproj` file `out` (atomically)."""
    report = progress or (lambda _fraction, _message: None)
    plan = numbers.tensors(safetensors_index(model_dir), outtype)
    write_planned(
        out, ARCH, lambda writer: _add_metadata(writer, numbers, name, outtype), plan, report
    )


def _add_metadata(
    writer: gguf.GGUFWriter, numbers: ProjectorNumbers, name: str, outtype: str
) -> None:
    writer.add_type(gguf.GGUFType.MMPROJ)
    writer.add_name(name)
    writer.add_file_type(int(_FILE_TYPES[outtype]))
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(numbers.projector_type)
    if numbers.names_vision_projector:
        writer.add_clip_vision_projector_type(numbers.projector_type)
    writer.add_vision_projection_dim(numbers.projection_dim)
    writer.add_vision_image_size(numbers.image_size)
    writer.add_vision_patch_size(numbers.patch_size)
    writer.add_vision_embedding_length(numbers.hidden_size)
    writer.add_vision_feed_forward_length(numbers.intermediate_size)
    writer.add_vision_block_count(numbers.layers)
    writer.add_vision_head_count(numbers.heads)
    writer.add_vision_attention_layernorm_eps(numbers.norm_eps)
    writer.add_vision_image_mean(numbers.image_mean)
    writer.add_vision_image_std(numbers.image_std)
    writer.add_vision_use_gelu(True)
    if numbers.pooling != numbers.default_pooling:
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
    """What in the mmproj file at `path` does not match the vision Gemma 3 in `model_dir`: its
    architecture, projector type, sizes, tokens per image, tensors and their shapes."""
    return projector_problems(path, model_dir, vision_numbers(model_dir))


def projector_problems(path: Path, model_dir: Path, numbers: ProjectorNumbers) -> list[str]:
    """What in the mmproj file at `path` does not match the model in `model_dir`, described by
    `numbers`: the architecture, projector type, the numbers its family checks, the tensors."""
    summary = describe_projector(path)
    problems = []
    if summary.architecture != ARCH or summary.projector_type != numbers.projector_type:
        problems.append(
            f"it is {summary.architecture}/{summary.projector_type}, "
            f"not {ARCH}/{numbers.projector_type}"
        )
    found = {
        "image size": (summary.image_size, numbers.image_size),
        "patch size": (summary.patch_size, numbers.patch_size),
        "projection size": (summary.projection_dim, numbers.projection_dim),
        "pooling": (summary.pooling, numbers.pooling),
        "tokens per image": (summary.tokens_per_image, numbers.tokens_per_image),
        "encoder layers": (summary.encoder_layers, numbers.layers),
    }
    problems += [f"its {what} is {found[what][0]}, not {found[what][1]}"
                 for what in numbers.checked if found[what][0] != found[what][1]]  # fmt: skip
    planned = numbers.tensors(safetensors_index(model_dir), "f32")
    return problems + tensor_problems(path, planned)


def tensor_problems(path: Path, planned: list[Planned]) -> list[str]:
    """What in the projector file at `path` differs from the tensors of `planned`: missing
    data, a tensor missing or of another shape, tensors too many."""
    tensors = read_header(path).tensors
    shapes = {name: shape for name, shape, _type in tensors}
    problems = []
    data = 0
    for _name, shape, qtype in tensors:
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
        data += int(np.prod(shape, dtype=np.int64)) // block_size * type_size
    size = Path(path).stat().st_size
    if size < data:
        problems.append(f"its tensor data is incomplete ({size} bytes of {data}+)")
    for item in planned:
        want_shape = tuple(reversed(item.shape))  # GGUF lists the fastest axis first
        if shapes.get(item.name) != want_shape:
            problems.append(f"{item.name} is {shapes.get(item.name)}, not {want_shape}")
    if len(shapes) != len(planned):
        problems.append(f"it has {len(shapes)} tensors, not {len(planned)}")
    return problems
