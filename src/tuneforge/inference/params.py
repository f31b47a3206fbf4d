"""What a generation request carries between the web process and the inference server."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.models.chat_template import BOS, render

EngineName = Literal["auto", "transformers", "llama.cpp", "vllm"]
MAX_STOP_STRINGS = 4


MAX_MESSAGES = 200
MAX_MESSAGE_CHARS = 100_000


class Turn(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"] = Field(description="Who says it.")
    content: str = Field(max_length=MAX_MESSAGE_CHARS, description="What is said.")


class GenerationParams(BaseModel):
    """How to pick tokens. The defaults are Gemma's recommended sampling."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(
        1.0, ge=0.0, le=2.0, description="Randomness: 0 always picks the likeliest token."
    )
    top_p: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Sample from the smallest set of tokens whose probabilities add up to this.",
    )
    top_k: int = Field(
        64, ge=0, le=1000, description="Sample from the k likeliest tokens (0: all)."
    )
    max_new_tokens: int = Field(512, ge=1, le=8192, description="Stop after this many tokens.")
    repetition_penalty: float = Field(
        1.0, ge=0.5, le=2.0, description="Above 1 discourages repeating tokens already present."
    )
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOP_STRINGS,
        description="Stop before any of these strings (the end of Gemma's turn always stops).",
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Same seed, same answer.")

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, stop: list[str]) -> list[str]:
        if any(not s or len(s) > 100 for s in stop):
            raise ValueError("stop strings must hold 1 to 100 characters")
        return stop

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


class ModelRef(BaseModel):
    """A model the inference server can load: a catalog base, optionally with a fine-tune
    (a LoRA adapter or full weights in the artifact store)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(description="Catalog id of the base model.")
    artifact_key: str | None = Field(None, description="Artifact key of the fine-tuned files.")
    kind: Literal["base", "adapter", "full"] = "base"
    engine: EngineName = "auto"
    gguf: str | None = Field(
        None,
        description="The fine-tune's newest verified GGUF export, as `artifact_key/file name`: "
        "llama.cpp serves the fine-tune from it.",
    )

    def weights(self, engine: str) -> str | None:
        """What `engine` loads besides the catalog base: the GGUF export for llama.cpp, the full
        fine-tuned weights otherwise (None: the base, plus an adapter if any)."""
        if engine == "llama.cpp":
            return self.gguf
        return self.artifact_key if self.kind == "full" else None

    def needs_adapter(self, engine: str) -> bool:
        """Whether `engine` attaches the LoRA adapter (a GGUF export has it merged in)."""
        return self.kind == "adapter" and self.weights(engine) is None


class Generate(BaseModel):
    """One request to the inference server: a conversation (or a raw prompt) for one model."""

    model_config = ConfigDict(extra="forbid")

    model: ModelRef
    messages: list[Turn] | None = Field(None, min_length=1, max_length=MAX_MESSAGES)
    prompt: str | None = Field(None, description="Raw text, used as is (no chat template).")
    params: GenerationParams = Field(default_factory=GenerationParams)

    def text(self) -> str:
        """The text the model continues: the rendered conversation, or the raw prompt after
        Gemma's `<bos>` (which every Gemma input starts with)."""
        if self.messages is not None:
            return render([t.model_dump() for t in self.messages], add_generation_prompt=True)
        if self.prompt is None:
            raise ValueError("Give messages or a prompt.")
        return self.prompt if self.prompt.startswith(BOS) else BOS + self.prompt
