"""Secret contracts: a value goes in, only names and dates come out."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SecretSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(
        description="The secret's value (1 to 4096 characters). It is stored encrypted and "
        "never shown again."
    )


class SecretName(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str = Field(description="The secret's name, like an environment variable: `HF_TOKEN`.")


class SecretPublic(SecretName):
    created_at: datetime = Field(description="When it was first set.")
    updated_at: datetime = Field(description="When its value was last set.")
