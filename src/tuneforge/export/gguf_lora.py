"""A PEFT LoRA adapter as a llama.cpp GGUF LoRA adapter, so a LoRA fine-tune chats through
llama.cpp on its base's GGUF file without a merged export.

llama.cpp's adapter file holds, per adapted weight, the pair `<weight>.lora_a` (PEFT's
`lora_A`, rank x inputs) and `<weight>.lora_b` (`lora_B`, outputs x rank), named as the base's
GGUF names the weight (`export.gguf`'s mapping: `text_key`, `gguf.TensorNameMap`); its loader
checks each pair's shapes against the base's tensor. At every product with an adapted weight it
adds `alpha / rank * B (A x)`, with one `adapter.lora.alpha` for the file and each pair's own
rank. PEFT adds `lora_alpha / r * B (A x)` (`lora_alpha / sqrt(r)` with rsLoRA), with `r` and
`lora_alpha` per module under `rank_pattern` / `alpha_pattern`. The file's alpha is the one that
gives most pairs PEFT's scale as they are; a pair whose scale differs (another alpha in the
patterns) carries the ratio in its `B`, which is exact.

What llama.cpp's LoRA cannot express is refused with the reason (`GgufConversionError`): other
PEFT methods than LoRA, DoRA, layers trained whole (`modules_to_save`), trained biases, LoRA on
the token embedding or the output head (Gemma ties them: llama.cpp's one tensor would take both
adapters), on the image side, or on weights whose product llama.cpp computes without adapters.
The tensors are written in float32, one at a time, read straight from the safetensors file (no
torch, except for PEFT's own pattern matching when the adapter has an `alpha_pattern`).
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from tuneforge.export import gguf_gemma4
from tuneforge.export.gguf import (
    Planned,
    Stored,
    architecture_of,
    load_tensor,
    safetensors_index,
    text_key,
    write_planned,
)
from tuneforge.export.gguf_header import GgufConversionError
from tuneforge.export.gguf_metadata import full_config, hyper_parameters, read_config

__all__ = ["convert_adapter"]

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_A, _B = ".lora_A.weight", ".lora_B.weight"
#: The weights (by their name in a layer of the GGUF file) whose products llama.cpp's Gemma 3
#: and Gemma 4 graphs compute with the adapters (`build_lora_mm`): attention and MLP
#: projections, and Gemma 4's per-layer-input gate and projection.
ADAPTABLE = frozenset({"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                       "ffn_down", "inp_gate", "proj"})  # fmt: skip
#: The token embedding and the output head (Gemma ties them: llama.cpp's one tensor would take
#: both adapters), and Gemma 4's per-layer token embedding.
_TIED = ("embed_tokens", "lm_head")
_TIED_REASON = (
    "This LoRA adapter cannot run in llama.cpp: it adapts the token embedding or the output "
    "head, which llama.cpp's Gemma share as one tensor."
)
#: PEFT settings that change what a LoRA computes in ways llama.cpp does not: the setting, the
#: value that is harmless, and what the user reads.
_UNSUPPORTED = (
    ("use_dora", False, "it is a DoRA adapter (use_dora), whose weight-norm scaling llama.cpp "
                        "does not apply"),
    ("modules_to_save", None, "it trains whole layers beside the LoRA (modules_to_save: "
                              "{value}), which a llama.cpp LoRA adapter cannot carry"),
    ("bias", "none", "it trains biases (bias: {value!r}), which a llama.cpp LoRA adapter cannot "
                     "carry"),
    ("lora_bias", False, "its LoRA B matrices have biases (lora_bias), which llama.cpp does not "
                         "add"),
    ("layer_replication", None, "it repeats layers of the base (layer_replication)"),
    ("target_parameters", None, "it adapts parameters that are not linear layers "
                                "(target_parameters: {value})"),
    ("trainable_token_indices", None, "it trains token embeddings (trainable_token_indices)"),
    ("alora_invocation_tokens", None, "it is an activated LoRA (alora_invocation_tokens)"),
    ("use_qalora", False, "it is a QA-LoRA adapter (use_qalora)"),
    ("use_bdlora", None, "it is a block-diagonal LoRA (use_bdlora)"),
    ("kasa_config", None, "it is a KaSA adapter (kasa_config), which changes the base's weights"),
    ("monteclora_config", None, "it samples its LoRA weights (monteclora_config)"),
    ("arrow_config", None, "it routes between LoRA adapters (arrow_config)"),
)  # fmt: skip


@dataclass(frozen=True)
class _Pair:
    """One adapted weight: its GGUF name, PEFT's two matrices, and PEFT's scale for it."""

    name: str
    a: Stored
    b: Stored
    scale: float

    @property
    def rank(self) -> int:
        return self.a.shape[0]


def convert_adapter(adapter_dir: Path, base_dir: Path, out: Path) -> None:
    """PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors in adapter_dir) of the
    transformers model in base_dir -> llama.cpp GGUF LoRA adapter file `out` (written to a temp
    name in out.parent and renamed, so a reader never sees half a file).

    Raises `GgufConversionError` with a sentence a user can read for what llama.cpp's LoRA
    cannot express (see the module docstring), for an adapter that does not fit `base_dir`, and
    for a base llama.cpp cannot run.
    """
    adapter_dir, base_dir, out = Path(adapter_dir), Path(base_dir), Path(out)
    config = _adapter_config(adapter_dir)
    arch_name = architecture_of(base_dir)
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.TensorNameMap(arch, _layers(base_dir, arch_name))
    base = safetensors_index(base_dir)
    pairs = _pairs(adapter_dir, config, names, base)
    alpha = _file_alpha(pairs)
    plan: list[Planned] = []
    for pair in pairs:
        factor = pair.scale * pair.rank / alpha
        plan.append(Planned.stored(pair.a, f"{pair.name}.lora_a", gguf.GGMLQuantizationType.F32))
        plan.append(_scaled(pair.b, f"{pair.name}.lora_b", factor))

    def metadata(writer: gguf.GGUFWriter) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    write_planned(out, arch_name, metadata, plan, lambda _fraction, _message: None)


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """adapter_config.json, after refusing what llama.cpp's LoRA cannot express."""
    file = adapter_dir / CONFIG_FILE
    if not file.is_file() or not (adapter_dir / WEIGHTS_FILE).is_file():
        raise GgufConversionError(
            f"{adapter_dir} is not a PEFT LoRA adapter: it needs {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
    config: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    kind = config.get("peft_type")
    if kind != "LORA":
        raise GgufConversionError(
            f"llama.cpp runs LoRA adapters; this adapter is {kind or 'of an unknown PEFT type'}."
        )
    for key, harmless, reason in _UNSUPPORTED:
        value = config.get(key, harmless)
        if value != harmless and value not in (None, [], {}, False):
            raise GgufConversionError(
                "This LoRA adapter cannot run in llama.cpp: " + reason.format(value=value) + "."
            )
    return config


def _layers(base_dir: Path, arch_name: str) -> int:
    """The decoder's layer count; refuses a base llama.cpp cannot run, as its export does."""
    if arch_name == gguf_gemma4.ARCH:
        text = gguf_gemma4.text_config(full_config(base_dir))
        return gguf_gemma4.hyper_parameters(text).layers
    return hyper_parameters(read_config(base_dir)).layers


def _pairs(
    adapter_dir: Path, config: dict[str, Any], names: gguf.TensorNameMap, base: dict[str, Stored]
) -> list[_Pair]:
    """Every adapted weight of the adapter, checked against llama.cpp and the base."""
    stored = _safetensors(adapter_dir / WEIGHTS_FILE)
    by_text_key = {text_key(k): t for k, t in base.items()}
    modules = []
    for key in stored:
        if key.endswith(_A):
            modules.append(key.removesuffix(_A))
        elif not key.endswith(_B):
            raise GgufConversionError(_stray(key))
    alphas = _alphas(config, [m.removeprefix(_PREFIX) for m in modules])
    pairs = []
    for module in modules:
        a, b = stored[module + _A], stored.get(module + _B)
        weight = module.removeprefix(_PREFIX) + ".weight"
        name = _gguf_name(weight, names)
        original = by_text_key.get(text_key(weight))
        if (
            b is None
            or original is None
            or len(a.shape) != 2
            or len(b.shape) != 2
            or b.shape[1] != a.shape[0]
            or (b.shape[0], a.shape[1]) != original.shape
        ):
            raise GgufConversionError(
                f"The adapter's LoRA on {weight} does not fit the base model's weight: is it an "
                "adapter of this base?"
            )
        r, alpha = a.shape[0], alphas[module.removeprefix(_PREFIX)]
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        pairs.append(_Pair(name, a, b, scale))
    if any(k.endswith(_B) and k.removesuffix(_B) not in modules for k in stored):
        raise GgufConversionError("The adapter has a LoRA B matrix without its A matrix.")
    if not pairs:
        raise GgufConversionError("The adapter has no LoRA weights.")
    return pairs


def _stray(key: str) -> str:
    """Why a tensor that is not a LoRA A or B matrix cannot go to llama.cpp."""
    if "lora_magnitude_vector" in key:
        return "This LoRA adapter cannot run in llama.cpp: it is a DoRA adapter."
    if "lora_embedding_" in key or any(part in key for part in _TIED):
        return _TIED_REASON
    return (
        f"This LoRA adapter cannot run in llama.cpp: it holds {key.removeprefix(_PREFIX)}, "
        "which is not a LoRA matrix."
    )


def _gguf_name(weight: str, names: gguf.TensorNameMap) -> str:
    """The base GGUF's name of the adapted `weight`, if llama.cpp applies adapters to it."""
    key = text_key(weight)
    if key is None:
        raise GgufConversionError(
            f"This LoRA adapter cannot run in llama.cpp: it adapts the image side ({weight}), "
            "which llama.cpp's image encoder runs without adapters."
        )
    if any(part in key for part in _TIED):
        raise GgufConversionError(_TIED_REASON)
    name = gguf_gemma4.tensor_name(key) or names.get_name(key, try_suffixes=(".weight",))
    part = name.split(".")[2] if name and name.startswith("blk.") else None
    if name is None or part not in ADAPTABLE:
        raise GgufConversionError(
            f"This LoRA adapter cannot run in llama.cpp: it adapts {key}, whose product "
            "llama.cpp computes without adapters."
        )
    return name


def _alphas(config: dict[str, Any], modules: list[str]) -> dict[str, float]:
    """PEFT's `lora_alpha` for each adapted module (the base model's module names)."""
    default = float(config["lora_alpha"])
    pattern: dict[str, float] = config.get("alpha_pattern") or {}
    if not pattern:
        return dict.fromkeys(modules, default)
    from peft.utils.other import get_pattern_key  # PEFT's own matching, as it built the adapter

    return {m: float(pattern.get(get_pattern_key(list(pattern), m), default)) for m in modules}


def _file_alpha(pairs: list[_Pair]) -> float:
    """The `adapter.lora.alpha` that gives the most pairs PEFT's scale with `B` as it is (not 0,
    which llama.cpp reads as "scale 1")."""
    counts = Counter(pair.scale * pair.rank for pair in pairs if pair.scale)
    return float(counts.most_common(1)[0][0]) if counts else 1.0


def _scaled(tensor: Stored, name: str, factor: float) -> Planned:
    """`tensor` in float32, times `factor` unless it is 1."""
    if factor == 1.0:
        return Planned.stored(tensor, name, gguf.GGMLQuantizationType.F32)

    def load() -> npt.NDArray[np.float32]:
        return load_tensor(tensor) * np.float32(factor)

    return Planned(name, gguf.GGMLQuantizationType.F32, tensor.shape, load)


def _safetensors(file: Path) -> dict[str, Stored]:
    """The tensors of one safetensors file, from its header."""
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    for key, info in header.items():
        if info["dtype"] not in ("F32", "F16", "BF16"):
            raise GgufConversionError(
                f"The adapter's {key} is {info['dtype']}; expected F32, F16 or BF16."
            )
    return {
        key: Stored(file, info["dtype"], tuple(info["shape"]), 8 + length + info["data_offsets"][0])
        for key, info in header.items()
    }
