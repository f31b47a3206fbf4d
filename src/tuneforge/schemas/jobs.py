"""Job contracts. A job's spec is a typed model chosen by its `kind` (a discriminated union
built from the registered kinds)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model, model_validator

from tuneforge.jobs.events import EventType, JobEventData, parse_event
from tuneforge.jobs.kind import JobKind, all_kinds
from tuneforge.jobs.status import JobStatus


def _create_model(kind: JobKind[Any, Any]) -> type[BaseModel]:
    spec = kind.spec_type()
    optional = isinstance(spec, type) and issubclass(spec, BaseModel)
    optional = optional and not any(f.is_required() for f in spec.model_fields.values())
    name = "".join(part.title() for part in kind.name.split("_"))
    model: type[BaseModel] = create_model(
        f"{name}JobCreate",
        kind=(Literal[kind.name], Field(description=kind.description)),  # type: ignore[arg-type, valid-type]
        spec=(
            spec,
            Field(default_factory=spec, description="Its settings.")
            if optional
            else Field(description="Its settings."),
        ),
    )
    return model


def job_create_type() -> Any:
    """What `POST /jobs` takes: a `kind` and its typed `spec`, one member per public kind."""
    members = tuple(_create_model(k) for k in all_kinds().values() if k.public)
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007


JobCreate = job_create_type()


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The job's id.")
    owner_id: str = Field(description="The user who owns the job.")
    kind: str = Field(description="What the job does.")
    spec: dict[str, Any] = Field(description="The job's settings, as validated at creation.")
    status: JobStatus = Field(description="Where the job is in its life.")
    progress: float = Field(description="Fraction done, from 0 to 1.")
    message: str | None = Field(description="What the job is doing now.")
    error: str | None = Field(description="Why the job failed or was cancelled.")
    result: dict[str, Any] | None = Field(description="What the job produced.")
    attempt: int = Field(description="How many times the job was queued again.")
    heartbeat_at: datetime | None = Field(description="The worker's last sign of life.")
    executor: str | None = Field(
        description="Where the job runs: `local` (worker processes) or `ray` (a Ray cluster); "
        "unset until an executor takes it."
    )
    node: str | None = Field(
        validation_alias=AliasChoices("node", "worker_host"),
        description="The machine it runs on: the worker's host name, or the Ray node's address.",
    )
    resources: dict[str, Any] | None = Field(
        description="What it asked its executor for: `cpus`, `gpus`, `memory_gb`, and an "
        "`accelerator` type where one is required."
    )
    waiting: str | None = Field(
        default=None, description="Why a queued job has not started yet (null otherwise)."
    )
    created_at: datetime = Field(description="When the job was created.")
    started_at: datetime | None = Field(description="When the job last started running.")
    finished_at: datetime | None = Field(description="When the job ended.")


class JobList(BaseModel):
    items: list[JobPublic] = Field(description="The jobs, newest first.")
    total: int = Field(description="How many jobs match the filters.")


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @model_validator(mode="before")
    @classmethod
    def _typed(cls, value: Any) -> Any:
        """An event row's `data` is parsed by its `type`."""
        if not isinstance(value, dict):
            value = {k: getattr(value, k) for k in ("id", "job_id", "type", "data", "created_at")}
        return {**value, "data": parse_event(value["type"], value["data"])}

    id: int = Field(description="Increasing event id; resume a stream after it.")
    job_id: str = Field(description="The job that reported the event.")
    type: EventType = Field(description="What kind of report this is.")
    data: JobEventData = Field(description="The report itself.")
    created_at: datetime = Field(description="When it was reported.")
