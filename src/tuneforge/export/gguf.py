"""GGUF export of Gemma 3 text models, for llama.cpp and Ollama.

`convert` turns a transformers directory (`Gemma3ForCausalLM`: config.json, safetensors weights,
tokenizer files, chat template; or the language model of a vision `Gemma3ForConditionalGeneration`,
whose image encoder and projector `tuneforge.export.mmproj` writes to a second file) into a GGUF
file in this process, with the `gguf` package: the
weights are read straight from the safetensors files (no torch), renamed to llama.cpp's names,
the RMSNorm weights stored as `1 + w` (Gemma computes `x * (1 + w)`, llama.cpp `x * w`), and
written one at a time, so memory holds one tensor, not the model. The in-process types are the
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

from tuneforge.export.gguf_metadata import (
    GgufConversionError,
    Hyper,
    add_metadata,
    chat_template,
    hyper_parameters,
    read_config,
    read_header,
    vocabulary,
)

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
    """One tensor to write: where it is stored, its GGUF name and type."""

    source: Stored
    name: str
    qtype: gguf.GGMLQuantizationType
    #: Gemma's RMSNorm weight, stored as `1 + w` (Gemma computes `x * (1 + w)`).
    add_one: bool

    @property
    def nbytes(self) -> int:
        block_size, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        shape = self.source.shape
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
    """Write `model_dir` (a Gemma 3 text model) as a GGUF file of `outtype` to `out`, atomically.

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
    hyper = hyper_parameters(read_config(model_dir))
    stored = safetensors_index(model_dir)
    plan = _plan(stored, hyper, outtype)
    report(0.0, "Reading the tokenizer")
    vocab = vocabulary(model_dir, vocab_gguf, hyper.vocab_rows)
    template = chat_template(model_dir)

    write_planned(
        out,
        ARCH,
        lambda writer: add_metadata(writer, hyper, name, _TYPES[outtype][1], vocab, template),
        plan,
        report,
    )


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
                item.name, item.source.shape, np.dtype(np.float32), item.nbytes, item.qtype
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
    params.nthread = threads or default_threads()
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


def default_threads() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


def _plan(stored: dict[str, Stored], hyper: Hyper, outtype: str) -> list[Planned]:
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.GEMMA3, hyper.layers)
    matrix_type = _TYPES[outtype][0]
    plan = []
    for stored_key, tensor in stored.items():
        key = text_key(stored_key)
        if key is None:
            continue  # the image encoder's and projector's: `export.mmproj` writes them
        if key == "lm_head.weight" and hyper.tied:
            continue  # the embedding, again
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GgufConversionError(f"The weight {key!r} has no place in a Gemma 3 GGUF file.")
        norm = key.endswith("norm.weight")
        qtype = _tensor_type(name, tensor.shape, matrix_type, norm)
        plan.append(Planned(tensor, name, qtype, norm))
    embedding = next((p for p in plan if p.name == "token_embd.weight"), None)
    if embedding is None or embedding.source.shape[0] != hyper.vocab_rows:
        raise GgufConversionError(
            f"The model's token embedding does not have vocab_size ({hyper.vocab_rows}) rows."
        )
    return plan


#: Where a vision Gemma 3 keeps its language model, by transformers version: the checkpoint
#: layout (`language_model.model.*`) and transformers' own (`model.language_model.*`).
_LANGUAGE_PREFIXES = (
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.", ""),  # language_model.lm_head.weight
)
_VISION_PARTS = ("vision_tower.", "multi_modal_projector.")


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
    """Norms and vectors stay f32; matrices take the file's type when their rows split into its
    blocks, else f16 (llama.cpp's converter does the same)."""
    if norm or len(shape) == 1:
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
    data = load_tensor(item.source)
    if item.add_one:
        data = data + np.float32(1.0)  # Gemma's RMSNorm multiplies by (1 + w)
    encoded: npt.NDArray[Any] = gguf.quants.quantize(data, item.qtype)
    return encoded
