"""Fine-tuned model contracts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field


class ModelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The model's id.")
    owner_id: str = Field(description="The user who owns the model.")
    name: str = Field(description="The model's name (the run's name).")
    base_model: str = Field(description="The catalog model it was fine-tuned from.")
    kind: str = Field(description="`adapter` (LoRA weights over the base) or `full` (weights).")
    dataset_id: str | None = Field(description="The dataset it learned from (if still there).")
    job_id: str | None = Field(description="The training run that made it.")
    spec: dict[str, Any] = Field(description="The training settings.")
    metrics: dict[str, float] = Field(description="Final training and evaluation metrics.")
    artifact_key: str = Field(description="Where its files live in the artifact store.")
    files: list[str] = Field(description="Its files, relative to the artifact key.")
    size_bytes: int = Field(description="Total size of its files.")
    created_at: datetime = Field(description="When the run finished.")

    @computed_field(  # type: ignore[prop-decorator]
        description="The model it continued (the run's `start_from`), or null when it was "
        "fine-tuned from its base model."
    )
    @property
    def started_from(self) -> str | None:
        value = self.spec.get("start_from")
        return str(value) if value else None


class ModelList(BaseModel):
    items: list[ModelPublic] = Field(description="The models, newest first.")
    total: int = Field(description="How many models there are.")
