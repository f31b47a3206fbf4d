"""What an `export` job makes: a format, a GGUF quantisation, and where the files go.

Cheap to import (the web process validates export requests): no torch, no llama.cpp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.export.destinations import Destination, DownloadDestination

if TYPE_CHECKING:
    from tuneforge.models.catalog import CatalogEntry

Format: TypeAlias = Literal["adapter", "merged", "gguf", "ollama"]
#: GGUF types written in-process by the `gguf` package.
IN_PROCESS: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0", "q5_0", "q4_0")
#: The GGUF types that keep the weights' values (to 16-bit floats): no quantisation.
UNQUANTIZED: tuple[str, ...] = ("f32", "f16", "bf16")
#: K-quants, made by llama.cpp's quantiser from an f16 GGUF (the `gguf` extra).
K_QUANTS: tuple[str, ...] = ("q6_k", "q5_k_m", "q4_k_m")
Quantization: TypeAlias = Literal[
    "f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0"
]
GGUF_FORMATS: tuple[str, ...] = ("gguf", "ollama")
DEFAULT_QUANTIZATION: Quantization = "q8_0"

FORMAT_HELP: dict[str, str] = {
    "adapter": "The LoRA adapter (PEFT safetensors) with the tokenizer and chat template; the "
    "tokenizer is most of its size. Load it over the base model with transformers + PEFT, or "
    "serve it with vLLM's LoRA support.",
    "merged": "The base model with the fine-tune merged in: full safetensors weights that "
    "transformers and vLLM load directly.",
    "gguf": "One GGUF file for llama.cpp, LM Studio and other GGUF runtimes, with the "
    "tokenizer and chat template inside.",
    "ollama": "The GGUF file plus a Modelfile: `ollama create` turns it into an Ollama model.",
}
#: What each format holds for a model that reads images (a vision Gemma 3 or Gemma 4), added to
#: FORMAT_HELP.
VISION_HELP: dict[str, str] = {
    "adapter": "For this vision model it also carries the image processor's settings, so "
    "transformers' AutoProcessor loads the folder.",
    "merged": "For this vision model: the image encoder, projector and language model in one "
    "folder with the image processor's settings (AutoProcessor loads it).",
    "gguf": "For this vision model: two files, the language model and its mmproj image "
    "projector; llama.cpp needs both (--mmproj) to read images. Checked with an image "
    "through llama.cpp against transformers.",
    "ollama": "For this vision model: both GGUF files (language model and mmproj image "
    "projector), named by two FROM lines of the Modelfile.",
}
#: Model families whose GGUF TuneForge writes (vision ones with their mmproj projector).
GGUF_FAMILIES: tuple[str, ...] = ("gemma-3", "gemma-4")


def gguf_refusal(entry: CatalogEntry) -> str | None:
    """Why TuneForge does not write a GGUF file of a fine-tune of `entry` (None: it does)."""
    if entry.family not in GGUF_FAMILIES:
        return (
            f"GGUF export of {entry.name} is not supported: TuneForge writes GGUF files of "
            "Gemma 3 and Gemma 4 (text, and vision with its mmproj projector file). Export it "
            "as merged or adapter."
        )
    return None


QUANTIZATION_HELP: dict[str, str] = {
    "f32": "32-bit floats: exact, largest.",
    "f16": "16-bit floats: as good as the original for inference.",
    "bf16": "bfloat16: the training precision of Gemma; for runtimes with bf16 support.",
    "q8_0": "8-bit: indistinguishable from f16 in practice, half its size (recommended).",
    "q6_k": "6-bit K-quant: very close to q8_0, smaller.",
    "q5_k_m": "5-bit K-quant: a good balance for larger models.",
    "q5_0": "5-bit (legacy type).",
    "q4_k_m": "4-bit K-quant: the usual Ollama default; small models lose noticeable quality.",
    "q4_0": "4-bit (legacy type): smallest, lowest quality.",
}


class ExportRequest(BaseModel):
    """How to export a model: the format, its quantisation (GGUF and Ollama) and the
    destination."""

    model_config = ConfigDict(extra="forbid")

    format: Format = Field(
        description="`adapter` (PEFT LoRA files), `merged` (full safetensors), `gguf` "
        "(llama.cpp) or `ollama` (GGUF + Modelfile)."
    )
    quantization: Quantization | None = Field(
        default=None,
        description="For `gguf` and `ollama`: the GGUF weight type (default q8_0). `f32`, `f16`, "
        "`bf16`, `q8_0`, `q5_0` and `q4_0` are written by TuneForge itself; the K-quants "
        "`q6_k`, `q5_k_m` and `q4_k_m` need llama.cpp (the `gguf` extra).",
    )
    destination: Destination = Field(
        default_factory=DownloadDestination,
        description="Where the files go: `download` (kept on the server to download), "
        "`directory` (a server directory; administrators only), `s3`, `gcs` or `hub` (the "
        "Hugging Face Hub); credentials come from your stored secrets.",
    )

    @model_validator(mode="after")
    def _quantization_fits(self) -> ExportRequest:
        if self.format in GGUF_FORMATS:
            if self.quantization is None:
                self.quantization = DEFAULT_QUANTIZATION
        elif self.quantization is not None:
            raise ValueError(
                f"quantization applies to the gguf and ollama formats, not to {self.format}"
            )
        return self

    @property
    def variant(self) -> str:
        """The name of the files this export makes, shared by identical exports."""
        return self.format if self.quantization is None else f"{self.format}-{self.quantization}"


class ExportSpec(ExportRequest):
    """An `export` job: a fine-tuned model and how to export it."""

    model_id: str = Field(
        min_length=1, max_length=64, description="The fine-tuned model to export."
    )
