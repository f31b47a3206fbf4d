"""How large each export of a model will be, shown before the user starts one.

Estimates from the catalog's architecture (no weights are read): the merged model holds every
parameter in the base's dtype; a GGUF holds the decoder's linear layers (a mixture of experts'
experts too) at the quantisation's bits per weight and the tied token embedding at the type
llama.cpp gives it (q6_k under the K-quant mixes), plus the tokenizer (about 6.5 MB for Gemma's
262k tokens); a vision model adds its projector file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tuneforge.export.spec import GGUF_FORMATS, Format, Quantization
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate import decoder_linear_parameters, embedding_parameters

#: Bits per weight of (decoder linear layers, token embedding) for each GGUF type. llama.cpp
#: keeps the tied embedding at 8 bits under the legacy types and at q6_k under the K-quant mixes,
#: which also keep some tensors (attention values, half the MLP outputs) one step higher.
GGUF_BITS: dict[str, tuple[float, float]] = {
    "f32": (32, 32),
    "f16": (16, 16),
    "bf16": (16, 16),
    "q8_0": (8.5, 8.5),
    "q6_k": (6.5625, 6.5625),
    "q5_k_m": (5.7, 6.5625),
    "q5_0": (5.5, 8.5),
    "q4_k_m": (4.9, 6.5625),
    "q4_0": (4.5, 8.5),
}
#: K-quants work on rows of 256 weights; a model whose width is not a multiple of 256 (Gemma 3
#: 270M: 640) gets llama.cpp's fallbacks instead (q5_0 or q8_0, and q8_0 for the embedding).
K_BLOCK = 256
K_FALLBACK_BITS: dict[str, float] = {"q6_k": 8.5, "q5_k_m": 5.7, "q4_k_m": 5.5}
TOKENIZER_BYTES = 6_500_000
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class SizeEstimate:
    format: Format
    quantization: Quantization | None
    bytes: int


def base_dtype(entry: CatalogEntry) -> str:
    """The dtype the base's weights are stored in (and a merged export keeps): float32 for
    the bundled models, bfloat16 for Google's hub releases, the config's for a local one."""
    if entry.source in ("gguf-package", "tiny-random"):
        return "float32"
    if entry.source == "local" and entry.path:
        config = Path(entry.path).expanduser() / "config.json"
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "bfloat16"
        dtype = data.get("dtype") or data.get("torch_dtype") or "bfloat16"
        return str(dtype) if dtype in DTYPE_BYTES else "bfloat16"
    return "bfloat16"


def gguf_bytes(entry: CatalogEntry, quantization: str) -> int:
    """The text model's file, plus a vision model's projector file (`projector_bytes`)."""
    linear_bits, embedding_bits = GGUF_BITS[quantization]
    if quantization in K_FALLBACK_BITS and entry.architecture.hidden_size % K_BLOCK:
        linear_bits, embedding_bits = K_FALLBACK_BITS[quantization], 8.5
    linear = decoder_linear_parameters(entry.architecture)
    embedding = embedding_parameters(entry.architecture)
    vision = entry.vision.parameters if entry.vision else 0
    rest = max(entry.parameters - linear - embedding - vision, 0)
    # Gemma 3's rest is its norms, kept in f32. Gemma 4's is mostly its per-layer embeddings,
    # quantised like the embedding (and the E2B's and E4B's audio encoder, not exported: the
    # estimate stays within about 7% above). A mixture of experts' rest is its experts (22.8B
    # of the 26B A4B's weights): linear layers, quantised as the others (the K-quants fall back
    # to 5 or 8 bits for the 26B A4B's experts' down projections, rows 704 wide: about 3% more).
    if entry.architecture.experts:
        rest_bits = linear_bits
    else:
        rest_bits = embedding_bits if entry.family == "gemma-4" else 32
    bits = linear * linear_bits + embedding * embedding_bits + rest * rest_bits
    return int(bits / 8) + TOKENIZER_BYTES + projector_bytes(entry, quantization)


def projector_bytes(entry: CatalogEntry, quantization: str) -> int:
    """A vision model's mmproj file: the encoder and projector in f16 (f32 in an f32 export),
    its patch and position embeddings in f32 (see `export.mmproj`)."""
    if entry.vision is None:
        return 0
    vision = entry.vision
    patches = (vision.image_size // vision.patch_size) ** 2
    embeddings = (patches + 3 * vision.patch_size**2) * vision.hidden_size
    if quantization == "f32":
        return vision.parameters * 4
    return max(vision.parameters - embeddings, 0) * 2 + embeddings * 4


def estimate(
    entry: CatalogEntry, export_format: Format, quantization: str | None, adapter_bytes: int
) -> int:
    """Bytes of the export's files (within about 10%; the export records the real size)."""
    if export_format == "adapter":
        return adapter_bytes
    if export_format == "merged":
        return entry.parameters * DTYPE_BYTES[base_dtype(entry)] + TOKENIZER_BYTES * 5
    assert quantization is not None and export_format in GGUF_FORMATS
    return gguf_bytes(entry, quantization)
