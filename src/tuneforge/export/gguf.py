"""GGUF export of Gemma 3 and Gemma 4 language models, for llama.cpp and Ollama.

`convert` turns a transformers directory (`Gemma3ForCausalLM`: config.json, safetensors weights,
tokenizer files, chat template; or the language model of a vision `Gemma3ForConditionalGeneration`,
whose image encoder and projector `tuneforge.export.mmproj` writes to a second file; or a Gemma 4,
whose numbers `gguf_gemma4` writes and whose projector `mmproj_gemma4`) into a GGUF file in this
process, with the `gguf` package: the weights are read straight from the safetensors files (no
torch), renamed to llama.cpp's names, Gemma 3's RMSNorm weights stored as `1 + w` (Gemma 3
computes `x * (1 + w)`, llama.cpp `x * w`, as Gemma 4 does), and written one at a time, so memory
holds one tensor, not the model. The in-process types are the
plain ones (`f32`, `f16`, `bf16`, `q8_0`, `q5_0`, `q4_0`); the K-quants need llama.cpp's own
quantizer, which `quantize` runs on an `f16` or `f32` file through llama-cpp-python (the `gguf`
extra). `describe` reads a GGUF file's summary back.

The tokenizer comes from the directory's sentencepiece `tokenizer.model` when there is one, and
otherwise from a reference GGUF with the same vocabulary (`vocab_gguf`; our built-in models have
only a `tokenizer.json`, itself built from the bundled Gemma 3 270M GGUF), after checking that
the directory's `tokenizer.json` maps the same tokens to the same ids. See `gguf_metadata`.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import gguf
import numpy as np
import numpy.typing as npt

from tuneforge.export import gguf_gemma4
from tuneforge.export.gguf_header import GgufConversionError, read_header
from tuneforge.export.gguf_metadata import (
    DecoderHyper,
    chat_template,
    full_config,
    hyper_parameters,
    read_config,
    vocabulary,
)
from tuneforge.hardware import usable_cores

__all__ = [
    "GgufConversionError",
    "GgufSummary",
    "InProcessType",
    "KQuant",
    "convert",
    "describe",
    "quantize",
]

InProcessType = Literal["f32", "f16", "bf16", "q8_0", "q5_0", "q4_0"]
KQuant = Literal["q4_k_m", "q5_k_m", "q6_k"]
#: `progress(fraction_done, message)`.
Progress = Callable[[float, str], None]

ARCH = "gemma3"
_Q = gguf.GGMLQuantizationType
#: outtype -> (the type of the weight matrices, the file type)
_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (_Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (_Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (_Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (_Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q5_0": (_Q.Q5_0, gguf.LlamaFileType.MOSTLY_Q5_0),
    "q4_0": (_Q.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
_K_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
             "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}  # fmt: skip
#: Tensors that also serve as the output head (Gemma ties it to the embedding) stay at 8 bits
#: in the 4- and 5-bit types, as llama.cpp's quantizer keeps them at a higher precision too.
_HEAD_TENSORS = ("token_embd.weight", "output.weight")
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
_EXTRA_INSTALL = "install the gguf extra: pip install 'tuneforge[gguf]'"


@dataclass(frozen=True)
class GgufSummary:
    """What a GGUF file holds, read from its header."""

    architecture: str
    tensor_count: int
    #: `f32`, `f16`, `bf16`, `q8_0`, `q4_k_m`, ... (llama.cpp's file type, lower case).
    file_type: str
    has_tokenizer: bool
    vocab_size: int
    has_chat_template: bool
    size_bytes: int


@dataclass(frozen=True)
class Stored:
    """One tensor in a safetensors file."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class Planned:
    """One tensor to write: its GGUF name, type and shape (in the source's axis order), and how
    to read its float32 values."""

    name: str
    qtype: gguf.GGMLQuantizationType
    shape: tuple[int, ...]
    load: Callable[[], npt.NDArray[np.float32]]

    @classmethod
    def stored(
        cls,
        tensor: Stored,
        name: str,
        qtype: gguf.GGMLQuantizationType,
        *,
        add_one: bool = False,
        shape: tuple[int, ...] | None = None,
        arrange: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None = None,
    ) -> Planned:
        """`tensor` from a safetensors file; `add_one` for Gemma 3's RMSNorm weights (stored as
        `1 + w`: Gemma 3 computes `x * (1 + w)`), `arrange` (giving `shape`) to reorder it."""

        def load() -> npt.NDArray[np.float32]:
            data = load_tensor(tensor)
            if add_one:
                data = data + np.float32(1.0)
            return arrange(data) if arrange else data.reshape(shape or tensor.shape)

        return cls(name, qtype, shape or tensor.shape, load)

    @property
    def nbytes(self) -> int:
        block_size, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        shape = self.shape
        return int(np.prod(shape[:-1], dtype=np.int64)) * shape[-1] // block_size * type_size


def convert(
    model_dir: Path,
    out: Path,
    outtype: InProcessType,
    *,
    name: str,
    progress: Progress | None = None,
    vocab_gguf: Path | None = None,
) -> None:
    """Write `model_dir`'s language model (Gemma 3 or 4) as a GGUF file of `outtype` to `out`,
    atomically.

    `name` becomes `general.name`. `vocab_gguf` is a GGUF with the same vocabulary, used when the
    directory has no sentencepiece `tokenizer.model` (see the module docstring). `progress`
    hears the fraction of the tensor bytes written, after each tensor. Raises
    `GgufConversionError` for what cannot be converted: another architecture, missing files, a
    vocabulary that does not match.
    """
    if outtype not in _TYPES:
        raise GgufConversionError(
            f"Unknown GGUF type {outtype!r}: choose one of {', '.join(get_args(InProcessType))}."
        )
    report = progress or (lambda _fraction, _message: None)
    model_dir, out = Path(model_dir), Path(out)
    config = full_config(model_dir)
    file_type = _TYPES[outtype][1]
    extra: list[Planned] = []
    hyper: DecoderHyper
    if gguf_gemma4.is_gemma4(config):
        g4 = gguf_gemma4.hyper_parameters(gguf_gemma4.text_config(config))
        layout = _Layout(gguf.MODEL_ARCH.GEMMA4, g4.layers, g4.tied, False, g4.vocab_rows)
        freqs = gguf_gemma4.rope_freqs(g4)
        extra.append(Planned("rope_freqs.weight", _Q.F32, freqs.shape, lambda: freqs))
        hyper = g4
    else:
        hyper = hyper_parameters(read_config(model_dir))
        layout = _Layout(gguf.MODEL_ARCH.GEMMA3, hyper.layers, hyper.tied, True, hyper.vocab_rows)
    plan = _plan(safetensors_index(model_dir), layout, outtype) + extra
    report(0.0, "Reading the tokenizer")
    vocab = vocabulary(model_dir, vocab_gguf, layout.vocab_rows)
    template = chat_template(model_dir)
    write_planned(
        out,
        gguf.MODEL_ARCH_NAMES[layout.arch],
        lambda writer: hyper.add_to(writer, name, file_type, vocab, template),
        plan,
        report,
    )


def architecture_of(model_dir: Path) -> str:
    """The llama.cpp architecture a GGUF export of `model_dir` has (`gemma3`, `gemma4`)."""
    return gguf_gemma4.ARCH if gguf_gemma4.is_gemma4(full_config(model_dir)) else ARCH


def write_planned(
    out: Path,
    arch: str,
    metadata: Callable[[gguf.GGUFWriter], None],
    plan: list[Planned],
    report: Progress,
) -> None:
    """Write a GGUF file of architecture `arch` to `out`, atomically: its keys (`metadata`
    adds them), then the tensors of `plan` one at a time (memory holds one tensor), `report`
    hearing the fraction of the bytes written after each."""
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(partial, arch)
    try:
        metadata(writer)
        for item in plan:
            writer.add_tensor_info(
                item.name, item.shape, np.dtype(np.float32), item.nbytes, item.qtype
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total, done = sum(item.nbytes for item in plan), 0
        for item in plan:
            writer.write_tensor_data(_encode(item))
            done += item.nbytes
            report(done / total, f"Wrote {item.name} ({item.qtype.name})")
        writer.close()
        os.replace(partial, out)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)


def quantize(source: Path, out: Path, kind: KQuant, *, threads: int | None = None) -> None:
    """Quantize `source` (an `f16`, `bf16` or `f32` GGUF written by `convert`) to the K-quant
    `kind` with llama.cpp's quantizer, writing `out` atomically."""
    if kind not in _K_QUANTS:
        raise GgufConversionError(
            f"Unknown K-quant {kind!r}: choose one of {', '.join(get_args(KQuant))}."
        )
    try:
        import llama_cpp
    except ImportError as exc:
        raise GgufConversionError(
            f"K-quant GGUF files ({kind}) are made by llama.cpp, which is not installed: "
            f"{_EXTRA_INSTALL}."
        ) from exc
    source = Path(source)
    if not source.is_file():
        raise GgufConversionError(f"There is no GGUF file {source} to quantize.")
    summary = describe(source)
    if summary.file_type not in ("f32", "f16", "bf16"):
        raise GgufConversionError(
            f"{source.name} is already quantized ({summary.file_type}); K-quants are made from an "
            "f16, bf16 or f32 GGUF file."
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or usable_cores()
    params.ftype = getattr(llama_cpp, _K_QUANTS[kind])
    out = Path(out)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if status != 0 or not partial.exists():
            raise GgufConversionError(
                f"llama.cpp could not quantize {source.name} to {kind} (status {status})."
            )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def describe(path: Path) -> GgufSummary:
    """The architecture, tensor count, file type, tokenizer and chat template of a GGUF file."""
    header = read_header(path)
    fields = header.fields
    tokens = fields.get(gguf.Keys.Tokenizer.LIST) or []
    try:
        file_type = gguf.LlamaFileType(int(fields.get(gguf.Keys.General.FILE_TYPE, -1)))
        type_name = file_type.name.split("_", 1)[1].lower()  # MOSTLY_Q4_K_M -> q4_k_m
    except (ValueError, IndexError):
        type_name = "unknown"
    return GgufSummary(
        architecture=str(fields.get(gguf.Keys.General.ARCHITECTURE)),
        tensor_count=len(header.tensors),
        file_type=type_name,
        has_tokenizer=bool(tokens),
        vocab_size=len(tokens),
        has_chat_template=bool(fields.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)),
        size_bytes=Path(path).stat().st_size,
    )


def safetensors_index(model_dir: Path) -> dict[str, Stored]:
    """Every tensor of the model's safetensors files, read from their headers."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = [model_dir / f for f in sorted(set(weight_map.values()))]
    else:
        files = sorted(model_dir.glob("model*.safetensors"))
    if not files or not all(f.is_file() for f in files):
        raise GgufConversionError(
            f"{model_dir} has no (or incomplete) safetensors weights (model.safetensors); "
            "GGUF export reads only safetensors."
        )
    stored: dict[str, Stored] = {}
    for file in files:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header: dict[str, Any] = json.loads(handle.read(length))
        for key, info in header.items():
            if key == "__metadata__":
                continue
            if info["dtype"] not in _SAFETENSORS_DTYPES:
                raise GgufConversionError(f"{key} is {info['dtype']}; expected F32, F16 or BF16.")
            start = info["data_offsets"][0]
            stored[key] = Stored(file, info["dtype"], tuple(info["shape"]), 8 + length + start)
    return stored


@dataclass(frozen=True)
class _Layout:
    """What planning a decoder's tensors needs to know."""

    arch: gguf.MODEL_ARCH
    layers: int
    tied: bool
    #: Gemma 3's RMSNorm weights are stored as `1 + w` (it computes `x * (1 + w)`); Gemma 4's
    #: multiply as they are.
    add_one_to_norms: bool
    vocab_rows: int


def _plan(stored: dict[str, Stored], layout: _Layout, outtype: str) -> list[Planned]:
    names = gguf.TensorNameMap(layout.arch, layout.layers)
    family = gguf.MODEL_ARCH_NAMES[layout.arch]
    matrix_type = _TYPES[outtype][0]
    plan = []
    for stored_key, tensor in stored.items():
        key = text_key(stored_key)
        if key is None:
            continue  # the encoders' and projectors': `export.mmproj` writes the image ones
        if key == "lm_head.weight" and layout.tied:
            continue  # the embedding, again
        name = gguf_gemma4.tensor_name(key) or names.get_name(
            key, try_suffixes=(".weight", ".bias")
        )
        if name is None:
            raise GgufConversionError(f"The weight {key!r} has no place in a {family} GGUF file.")
        if not name.endswith((".weight", ".bias", ".scale")):
            name += ".weight"  # Gemma 4's `layer_scalar` and fused experts, weights to llama.cpp
        norm = key.endswith("norm.weight")
        qtype = _tensor_type(name, tensor.shape, matrix_type, norm)
        plan.append(Planned.stored(tensor, name, qtype, add_one=norm and layout.add_one_to_norms))
    embedding = next((p for p in plan if p.name == "token_embd.weight"), None)
    if embedding is None or embedding.shape[0] != layout.vocab_rows:
        raise GgufConversionError(
            f"The model's token embedding does not have vocab_size ({layout.vocab_rows}) rows."
        )
    return plan


#: Where a vision Gemma 3 keeps its language model, by transformers version: the checkpoint
#: layout (`language_model.model.*`) and transformers' own (`model.language_model.*`).
_LANGUAGE_PREFIXES = (
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.", ""),  # language_model.lm_head.weight
)
#: The image (and audio) encoders and projectors: Gemma 3's, Gemma 4's (the encoder-free one's
#: patch embedding too).
_VISION_PARTS = ("vision_tower.", "multi_modal_projector.", "embed_vision.", "audio_tower.",
                 "embed_audio.", "vision_embedder.")  # fmt: skip


def text_key(key: str) -> str | None:
    """The `Gemma3ForCausalLM` name of the weight `key` (None: the image encoder's or the
    projector's)."""
    if any(part in key for part in _VISION_PARTS):
        return None
    for prefix, replacement in _LANGUAGE_PREFIXES:
        if key.startswith(prefix):
            return replacement + key.removeprefix(prefix)
    return key


def _tensor_type(
    name: str, shape: tuple[int, ...], matrix_type: gguf.GGMLQuantizationType, norm: bool
) -> gguf.GGMLQuantizationType:
    """Norms, vectors and a mixture of experts' router stay f32; matrices take the file's type
    when their rows split into its blocks, else f16 (llama.cpp's converter does the same)."""
    if norm or len(shape) == 1 or name.endswith(gguf_gemma4.ROUTER):
        return _Q.F32
    if matrix_type in (_Q.F32, _Q.F16, _Q.BF16):
        return matrix_type
    if name in _HEAD_TENSORS and matrix_type in (_Q.Q4_0, _Q.Q5_0):
        matrix_type = _Q.Q8_0
    block_size = gguf.GGML_QUANT_SIZES[matrix_type][0]
    return matrix_type if shape[-1] % block_size == 0 else _Q.F16


def load_tensor(tensor: Stored) -> npt.NDArray[np.float32]:
    dtype = np.dtype(_SAFETENSORS_DTYPES[tensor.dtype])
    count = int(np.prod(tensor.shape, dtype=np.int64))
    raw = np.fromfile(tensor.file, dtype=dtype, count=count, offset=tensor.offset)
    if tensor.dtype == "BF16":  # bfloat16 is the top half of a float32
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32, copy=False).reshape(tensor.shape)


def _encode(item: Planned) -> npt.NDArray[Any]:
    encoded: npt.NDArray[Any] = gguf.quants.quantize(item.load(), item.qtype)
    return encoded
