"""Dataset contracts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ColumnInfo(BaseModel):
    name: str = Field(description="The column's name.")
    type: str = Field(description="Its type, as read (string, int64, list<...>, ...).")


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The dataset's id.")
    owner_id: str = Field(description="The user who owns it.")
    name: str = Field(description="A name to recognise it by.")
    kind: Literal["raw", "processed"] = Field(
        description="`raw` as brought in, or `processed` into conversations (immutable)."
    )
    source_id: str | None = Field(
        description="For a processed dataset: its raw source (an augmented one: the processed "
        "dataset it augments)."
    )
    origin: str = Field(
        description="upload, huggingface, server_path, processing, augmentation or synthesis."
    )
    origin_ref: str = Field(description="The file name, dataset id or path it came from.")
    format: str | None = Field(description="The recognised format (messages, alpaca, ...).")
    status: Literal["ready", "processing", "failed"] = Field(description="Whether it is usable.")
    error: str | None = Field(description="Why processing failed.")
    rows: int = Field(description="Rows over all splits.")
    splits: dict[str, int] = Field(description="Rows per split.")
    columns: list[ColumnInfo] = Field(description="The columns and their types.")
    mapping: dict[str, Any] | None = Field(
        description="Raw: the proposed mapping. Processed: the mapping used."
    )
    config: dict[str, Any] | None = Field(description="Processed: the full processing config.")
    warnings: list[str] = Field(description="What was noticed while reading it.")
    size_bytes: int = Field(description="Bytes in the artifact store.")
    job_id: str | None = Field(description="The job processing it, when large.")
    created_at: datetime = Field(description="When it was created.")


class DatasetList(BaseModel):
    items: list[DatasetPublic] = Field(description="The datasets, newest first.")
    total: int = Field(description="How many there are.")


class RowsPage(BaseModel):
    split: str = Field(description="The split these rows are from.")
    offset: int = Field(description="The first row's position.")
    total: int = Field(description="Rows in the split.")
    rows: list[dict[str, Any]] = Field(description="The rows (long values shortened).")
