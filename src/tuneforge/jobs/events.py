"""What a job reports, as typed events: the worker's context and the state machine write them,
the API reads them back (`JobEventPublic`) and streams them as Server-Sent Events."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from tuneforge.jobs.status import JobStatus


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def data(self) -> dict[str, Any]:
        """The stored (and served) form: every field but `type`, which has a column of its own
        and stays out of every dump."""
        return self.model_dump(mode="json")


class StatusEvent(_Event):
    type: Literal["status"] = Field(default="status", exclude=True)
    status: JobStatus = Field(description="The job's new status.")
    previous: JobStatus | None = Field(default=None, description="Its status before the move.")
    error: str | None = Field(default=None, description="Why it failed or was cancelled.")


class ProgressEvent(_Event):
    type: Literal["progress"] = Field(default="progress", exclude=True)
    progress: float = Field(ge=0, le=1, description="Fraction done, from 0 to 1.")
    message: str | None = Field(default=None, description="What the job is doing now.")


class MetricEvent(_Event):
    type: Literal["metric"] = Field(default="metric", exclude=True)
    step: int = Field(description="The step the values belong to.")
    values: dict[str, float | None] = Field(
        description="One point of each named series; null for a value that is not a finite "
        "number (a loss that became NaN, say), which JSON cannot hold."
    )

    @field_validator("values")
    @classmethod
    def _finite_or_null(cls, values: dict[str, float | None]) -> dict[str, float | None]:
        return {k: v if v is not None and math.isfinite(v) else None for k, v in values.items()}


def metric_values(data: dict[str, Any]) -> dict[str, float]:
    """A stored metric event's values as numbers, a value that was not finite as NaN."""
    return {k: math.nan if v is None else float(v) for k, v in data["values"].items()}


class Sample(BaseModel):
    prompt: str = Field(description="What the model was asked.")
    answer: str = Field(description="What it answered.")
    reference: str | None = Field(default=None, description="The dataset's answer, if any.")
    ended: bool | None = Field(
        default=None,
        description="It stopped at an end of turn (False: it ran out of tokens first; None: "
        "not reported).",
    )
    reward: float | None = Field(
        default=None, description="GRPO: the answer's total reward (its graders' weighted sum)."
    )
    grades: dict[str, float] | None = Field(
        default=None, description="GRPO: each grader's score of the answer (0..1), by name."
    )
    images: list[str] | None = Field(
        default=None,
        description="The prompt's images as small JPEG `data:` URLs "
        "(`tuneforge.data.images.thumbnail`), in order; None: a text prompt.",
    )
    source: str | None = Field(
        default=None,
        description="Synthesis: where the pair comes from (document, pages, section, chunk).",
    )


class SamplesEvent(_Event):
    type: Literal["samples"] = Field(default="samples", exclude=True)
    step: int = Field(description="The step at which the answers were generated.")
    items: list[Sample] = Field(description="The answers.")


LogLevel = Literal["debug", "info", "warning", "error"]


class LogEvent(_Event):
    type: Literal["log"] = Field(default="log", exclude=True)
    level: LogLevel = Field(description="How serious.")
    message: str = Field(description="The line logged.")


class ArtifactEvent(_Event):
    type: Literal["artifact"] = Field(default="artifact", exclude=True)
    name: str = Field(description="The file's name within the job.")
    key: str = Field(description="Where it lives in the artifact store.")
    size: int = Field(ge=0, description="Its size in bytes.")


JobEventData = Annotated[
    StatusEvent | ProgressEvent | MetricEvent | SamplesEvent | LogEvent | ArtifactEvent,
    Field(discriminator="type"),
]
EventType = Literal["status", "progress", "metric", "samples", "log", "artifact"]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(JobEventData)


def parse_event(type_: str, data: dict[str, Any]) -> JobEventData:
    """The typed event stored as (`type_`, `data`)."""
    event: JobEventData = _ADAPTER.validate_python({**data, "type": type_})
    return event
