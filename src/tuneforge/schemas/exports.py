"""Export contracts: the choices with their sizes, and the export records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExportChoice(BaseModel):
    format: str = Field(description="`adapter`, `merged`, `gguf` or `ollama`.")
    quantization: str | None = Field(description="The GGUF weight type (gguf and ollama).")
    bytes: int = Field(description="The export's estimated size in bytes (within about 10%).")
    help: str = Field(description="What this choice is for.")


class ExportChoices(BaseModel):
    model_id: str = Field(description="The model the choices are for.")
    base_dtype: str = Field(description="The dtype a merged export keeps (the base's).")
    vision: bool = Field(
        default=False,
        description="The model reads images: its exports carry the image processor, and its "
        "GGUF exports a second file, the mmproj image projector.",
    )
    choices: list[ExportChoice] = Field(description="Every format and quantisation available.")


class ExportFile(BaseModel):
    name: str = Field(description="The file's path inside the export.")
    size: int = Field(description="Its size in bytes.")


class ExportPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The export's id.")
    owner_id: str = Field(description="The user who owns the model.")
    model_id: str = Field(description="The exported model.")
    job_id: str | None = Field(description="The `export` job that makes it.")
    format: str = Field(description="`adapter`, `merged`, `gguf` or `ollama`.")
    quantization: str | None = Field(description="The GGUF weight type (gguf and ollama).")
    destination: dict[str, Any] = Field(description="Where the files go (no credentials).")
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    error: str | None = Field(description="Why it failed.")
    files: list[ExportFile] = Field(description="The export's files, once made.")
    size_bytes: int = Field(description="Total size of the files.")
    verification: dict[str, Any] | None = Field(
        description="What the built-in checks measured: `merge` (max_abs_logit_diff between "
        "the merged model and base + adapter), `gguf` (architecture, tensors, tokenizer, and "
        "llama.cpp's greedy_agreement with transformers per prompt)."
    )
    location: str | None = Field(description="Where the files were delivered (not downloads).")
    reused_from: str | None = Field(
        description="The identical earlier export whose files were reused instead of made again."
    )
    download_url: str | None = Field(
        default=None, description="Where to download every file as a ZIP (succeeded exports)."
    )
    created_at: datetime = Field(description="When the export was asked for.")
    finished_at: datetime | None = Field(description="When it ended.")


class ExportCreated(ExportPublic):
    reused: bool = Field(
        description="True when an identical download export already existed (or was under "
        "way) and is returned instead of a new one."
    )


class ExportList(BaseModel):
    items: list[ExportPublic] = Field(description="The model's exports, newest first.")
