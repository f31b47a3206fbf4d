"""Quota contracts: what an administrator sets for a user, and a user's limits beside their
usage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.strict_numbers import OptionalInteger


class QuotaSet(BaseModel):
    """A user's own limits; an empty one takes the server's default (the `quota_*` settings;
    administrators have none by default)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    storage_bytes: OptionalInteger = Field(
        default=None,
        ge=0,
        le=1 << 60,
        description="Bytes the user's datasets, models and exports may take.",
    )
    concurrent_jobs: OptionalInteger = Field(
        default=None, ge=0, le=1_000_000, description="Jobs the user may have queued or running."
    )
    jobs_per_day: OptionalInteger = Field(
        default=None,
        ge=0,
        le=1_000_000_000,
        description="Jobs the user may start in 24 hours.",
    )


class QuotaPublic(BaseModel):
    username: str = Field(description="Whose quota this is.")
    storage_bytes_limit: int | None = Field(description="The storage quota in bytes; null: none.")
    storage_bytes_used: int = Field(
        description="Bytes the user's datasets, models and exports take."
    )
    storage_bytes_reserved: int = Field(
        description="Bytes reserved for the user's Hugging Face imports in progress (the most "
        "each may download): they count against the storage quota until the imports end."
    )
    concurrent_jobs_limit: int | None = Field(
        description="How many jobs may be queued or running at once; null: no limit."
    )
    jobs_in_flight: int = Field(description="The user's jobs queued or running now.")
    jobs_per_day_limit: int | None = Field(
        description="How many jobs may start in 24 hours; null: no limit."
    )
    jobs_today: int = Field(description="The user's jobs started in the last 24 hours.")
    own: QuotaSet = Field(
        description="The limits an administrator set for this user; empty ones follow the "
        "server's defaults."
    )
