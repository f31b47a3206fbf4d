"""The image half of a Gemma 4's GGUF export: its image encoder and `embed_vision` projector as
llama.cpp's `clip` file with projector type `gemma4v` (mtmd's Gemma 4 vision graph); the
encoder-free Gemma 4's patch embedding and projector with projector type `gemma4uv` (below).

What llama.cpp's `gemma4v` reads, and how a transformers Gemma 4 gives it:

* `v.patch_embd.weight`: the patch embedding, a linear layer over each 16 x 16 x 3 patch in
  transformers (patch rows, columns, channels), a convolution kernel in llama.cpp
  (channels, rows, columns): reordered (`_channels_first`);
* `v.position_embd.weight`: the two tables of patch positions (x, y), kept at f32;
* `v.blk.N.*`: the encoder layers (attention with q/k norms, the four norms around attention
  and MLP, the gated MLP); the E2B's "clipped" linear layers carry their clamp bounds as
  one-element tensors `*.input_min`, `*.input_max`, `*.output_min`, `*.output_max` (scalars in
  transformers), which llama.cpp applies around each product;
* `v.std_bias` / `v.std_scale` when the encoder standardises its output;
* `mm.input_projection.weight`: `embed_vision`'s projection into the decoder's width (its
  norm has no weight);
* the numbers: patch size, width, MLP width, layers, heads, RMS epsilon, the decoder's width,
  the pixels' mean and std (Gemma 4 reads pixels in [0, 1]: mean 0, std 1), and the pooling
  (`clip.vision.projector.scale_factor`: patches pooled per side, 3 in the released models).
  `clip.vision.image_size` is the side of the square image the model's processor makes (the
  number of soft tokens is the image's own; llama.cpp takes 40 to 280 an image unless told
  otherwise, see `vision_check`).

Gemma 4's RMSNorm weights multiply as they are (no `1 + w`). The audio encoder (E2B, E4B) is
not exported: TuneForge trains and serves text and images.

The encoder-free Gemma 4 (the 12B, `gemma4_unified`) has no encoder: llama.cpp's `gemma4uv`
reads its image part, each 48 x 48 x 3 block of pixels (3 x 3 patches of 16) as one soft token:

* `v.patch_norm.1` (a layer norm over the block's pixels), `v.patch_embd` (the linear layer
  into the part's width, with its bias), `v.patch_norm.2`: `vision_embedder.patch_ln1`,
  `patch_dense`, `patch_ln2`. transformers reads a block's pixels row by row with the channels
  innermost, llama.cpp channel by channel (its `im2col`), so the layer's columns and the first
  norm's weights are reordered;
* `v.position_embd.weight`: `pos_embedding` (positions, x/y, width) as llama.cpp's two tables
  (x, y) one after the other, then `v.patch_norm.3` (`pos_norm`);
* `mm.input_projection.weight`: `embed_vision`'s projection (its RMS norm has no weight; the
  file's epsilon is the one it uses);
* the numbers as for `gemma4v`, with no layers: the patch size 16 and the pooling 3, which
  llama.cpp multiplies into its 48-pixel patches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gguf
import numpy as np
import numpy.typing as npt

from tuneforge.export.gguf import Planned, Stored
from tuneforge.export.gguf_gemma4 import is_gemma4
from tuneforge.export.gguf_header import GgufConversionError
from tuneforge.export.gguf_metadata import full_config
from tuneforge.export.mmproj import (
    Progress,
    ProjectorNumbers,
    ProjectorType,
    projector_problems,
    write_projector,
)
from tuneforge.models.vision import VisionInfo, vision_info

_Q = gguf.GGMLQuantizationType
_ENCODER = "model.vision_tower."
_PROJECTOR = "model.embed_vision."
#: The encoder-free Gemma 4's image part before its projector.
_EMBEDDER = "model.vision_embedder."
#: What its model_type says.
UNIFIED = "gemma4_unified"
#: Its weights (name prefixes) -> the file's names, which `gguf`'s tensor map does not know.
_UNIFIED_NAMES = {
    f"{_EMBEDDER}patch_ln1.": "v.patch_norm.1.",
    f"{_EMBEDDER}patch_dense.": "v.patch_embd.",
    f"{_EMBEDDER}patch_ln2.": "v.patch_norm.2.",
    f"{_EMBEDDER}pos_embedding": "v.position_embd.weight",
    f"{_EMBEDDER}pos_norm.": "v.patch_norm.3.",
    f"{_PROJECTOR}embedding_projection.": "mm.input_projection.",
}
#: What a clipped linear layer keeps beside its weight.
_CLAMPS = (".input_min", ".input_max", ".output_min", ".output_max")


@dataclass(frozen=True)
class Gemma4VisionNumbers(ProjectorNumbers):
    """A Gemma 4's image encoder and the `gemma4v` projector. `image_size` is the side of the
    square image the processor makes, `tokens_per_image` its soft tokens."""

    projector_type: ClassVar[str] = "gemma4v"
    family: ClassVar[str] = "Gemma 4"
    required: ClassVar[frozenset[str]] = frozenset(
        {"v.patch_embd.weight", "v.position_embd.weight", "mm.input_projection.weight"}
    )
    default_pooling: ClassVar[int | None] = None
    names_vision_projector: ClassVar[bool] = True
    checked: ClassVar[tuple[str, ...]] = (
        "patch size", "projection size", "pooling", "encoder layers"
    )  # fmt: skip

    suffixes: ClassVar[tuple[str, ...]] = (".weight", ".bias", *_CLAMPS)

    def source_name(self, key: str) -> str | None:
        """The decoder's and the audio encoder's weights are left out."""
        if key.startswith(_PROJECTOR):
            return key
        if not key.startswith(_ENCODER):
            return None
        name = key.replace(f"{_ENCODER}encoder.", "vision_model.model.").replace(".linear.", ".")
        return name + ".weight" if name.endswith("position_embedding_table") else name

    def planned(
        self, tensor: Stored, source: str, name: str, matrix: gguf.GGMLQuantizationType
    ) -> Planned:
        if name == "v.patch_embd.weight":
            shape = (tensor.shape[0], 3, self.patch_size, self.patch_size)
            reorder = _channels_first(tensor.shape[1])
            return Planned.stored(
                tensor, name, _Q.F32, shape=shape,
                arrange=lambda data: data[:, reorder].reshape(shape),
            )  # fmt: skip
        small = len(tensor.shape) <= 1 or name == "v.position_embd.weight"
        return Planned.stored(tensor, name, _Q.F32 if small else matrix, shape=tensor.shape or (1,))


@dataclass(frozen=True)
class Gemma4UnifiedNumbers(ProjectorNumbers):
    """The encoder-free Gemma 4's image part and the `gemma4uv` projector (no layers, heads or
    MLP: `hidden_size` is the width patches are projected to)."""

    projector_type: ClassVar[str] = "gemma4uv"
    family: ClassVar[str] = "encoder-free Gemma 4"
    required: ClassVar[frozenset[str]] = frozenset(
        {"v.patch_embd.weight", "v.patch_embd.bias", "v.position_embd.weight",
         "mm.input_projection.weight"}
        | {f"v.patch_norm.{n}.{part}" for n in (1, 2, 3) for part in ("weight", "bias")}
    )  # fmt: skip
    default_pooling: ClassVar[int | None] = None
    names_vision_projector: ClassVar[bool] = True
    checked: ClassVar[tuple[str, ...]] = Gemma4VisionNumbers.checked

    def source_name(self, key: str) -> str | None:
        """The file's own name: the decoder's weights are left out, and a weight of the image
        part that the file has no place for keeps its name (`file_name` refuses it)."""
        if not key.startswith((_EMBEDDER, _PROJECTOR)):
            return None
        for prefix, name in _UNIFIED_NAMES.items():
            if key.startswith(prefix):
                return name + key.removeprefix(prefix)
        return key

    def file_name(self, names: gguf.TensorNameMap, source: str) -> str | None:
        return source if source.startswith(("v.", "mm.")) else None

    def planned(
        self, tensor: Stored, source: str, name: str, matrix: gguf.GGMLQuantizationType
    ) -> Planned:
        if name == "v.patch_embd.weight":
            reorder = _channels_first(tensor.shape[1])
            return Planned.stored(tensor, name, matrix, arrange=lambda data: data[:, reorder])
        if name.startswith("v.patch_norm.1."):
            reorder = _channels_first(tensor.shape[0])
            return Planned.stored(tensor, name, _Q.F32, arrange=lambda data: data[reorder])
        if name == "v.position_embd.weight":
            positions, axes, width = tensor.shape
            return Planned.stored(
                tensor, name, _Q.F32, shape=(axes, positions, width),
                arrange=lambda data: np.ascontiguousarray(data.transpose(1, 0, 2)),
            )  # fmt: skip
        return Planned.stored(tensor, name, _Q.F32 if len(tensor.shape) == 1 else matrix)


def _channels_first(inputs: int) -> npt.NDArray[np.int64]:
    """For each of llama.cpp's inputs of a square RGB block (channels, rows, columns), the
    index of the same pixel in transformers' order (rows, columns, channels)."""
    side = math.isqrt(inputs // 3)
    if side * side * 3 != inputs:
        raise GgufConversionError(f"A patch of {inputs} inputs is not a square RGB block.")
    return np.arange(inputs).reshape(side, side, 3).transpose(2, 0, 1).reshape(-1)


def vision_numbers(model_dir: Path) -> Gemma4VisionNumbers | Gemma4UnifiedNumbers:
    """The image part's numbers of the Gemma 4 in `model_dir`: its image encoder's, or the
    encoder-free one's (raises for another model)."""
    config = full_config(model_dir)
    vision = config.get("vision_config")
    info = vision_info(model_dir)
    if info is not None and info.kind == UNIFIED and isinstance(vision, dict):
        return Gemma4UnifiedNumbers(
            hidden_size=int(vision.get("mm_embed_dim", 0)),
            intermediate_size=0,
            layers=0,
            heads=0,
            norm_eps=float(vision.get("rms_norm_eps", 1e-6)),
            **_image_numbers(model_dir, config, info),
        )
    if not is_gemma4(config) or not isinstance(vision, dict) or info is None:
        raise GgufConversionError(f"{model_dir.name} is not a Gemma 4 with an image encoder.")
    if config.get("vision_config", {}).get("model_type") not in (None, "gemma4_vision"):
        raise GgufConversionError(
            f"{model_dir.name}'s image encoder is not Gemma 4's: llama.cpp's gemma4v cannot run it."
        )
    heads = int(vision.get("num_attention_heads", 12))
    hidden = int(vision.get("hidden_size", 768))
    if int(vision.get("head_dim", hidden // heads)) * heads != hidden:
        raise GgufConversionError("llama.cpp's gemma4v needs heads that split the encoder's width.")
    return Gemma4VisionNumbers(
        hidden_size=hidden,
        intermediate_size=int(vision.get("intermediate_size", 3072)),
        layers=int(vision.get("num_hidden_layers", 16)),
        heads=heads,
        norm_eps=float(vision.get("rms_norm_eps", 1e-6)),
        **_image_numbers(model_dir, config, info),
    )


def _image_numbers(model_dir: Path, config: dict[str, Any], info: VisionInfo) -> dict[str, Any]:
    """What both Gemma 4 image parts write alike: patches, pooling, the square image and its
    soft tokens, the decoder's width, the pixels' mean and std."""
    processor = _processor_settings(model_dir)
    side = info.image_size // info.patch_size // info.pooling
    return {
        "patch_size": info.patch_size,
        "pooling": info.pooling,
        "image_size": info.image_size,
        "tokens_per_image": side * side,
        "projection_dim": int((config.get("text_config") or {}).get("hidden_size", 0)),
        "image_mean": [float(x) for x in processor.get("image_mean") or (0.0, 0.0, 0.0)],
        "image_std": [float(x) for x in processor.get("image_std") or (1.0, 1.0, 1.0)],
    }


def _processor_settings(model_dir: Path) -> dict[str, Any]:
    import json

    file = model_dir / "preprocessor_config.json"
    data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    if data.get("do_normalize") is False:  # pixels in [0, 1], as they are
        return {"image_mean": [0.0] * 3, "image_std": [1.0] * 3}
    return data if isinstance(data, dict) else {}


def convert_projector(
    model_dir: Path,
    out: Path,
    outtype: ProjectorType = "f16",
    *,
    name: str,
    progress: Progress | None = None,
) -> Gemma4VisionNumbers | Gemma4UnifiedNumbers:
    """Write the image part of the Gemma 4 in `model_dir` (its encoder and projector, or the
    encoder-free one's patch embedding and projector) as llama.cpp's `mmproj` file `out`
    (atomically); returns the numbers written."""
    numbers = vision_numbers(Path(model_dir))
    write_projector(Path(model_dir), Path(out), numbers, outtype, name=name, progress=progress)
    return numbers


def structure_problems(path: Path, model_dir: Path) -> list[str]:
    """What in the mmproj file at `path` does not match the Gemma 4 in `model_dir`."""
    return projector_problems(path, model_dir, vision_numbers(model_dir))
