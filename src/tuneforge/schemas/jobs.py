"""Job contracts. A job's spec is a typed model chosen by its `kind` (a discriminated union)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.export.spec import ExportSpec
from tuneforge.jobs.status import JobStatus
from tuneforge.training.spec import TrainingSpec


class DiagnosticSpec(BaseModel):
    """Checks the worker pipeline: runs for a while, reporting every second."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=5, ge=0, le=3600, description="How long the job runs.")
    fail: bool = Field(default=False, description="Fail at the end instead of succeeding.")
    fail_after: float | None = Field(
        default=None, ge=0, le=3600, description="Fail after this many seconds (implies fail)."
    )
    ignore_cancel: bool = Field(
        default=False,
        description="Ignore cancel requests, to check that a stuck worker is killed.",
    )


class DatasetJobSpec(BaseModel):
    """Imports or processes a dataset (jobs the datasets endpoints create)."""

    dataset_id: str = Field(description="The dataset the job fills (status `processing`).")


class DiagnosticJobCreate(BaseModel):
    kind: Literal["diagnostic"] = Field(description="Checks the worker pipeline (admins only).")
    spec: DiagnosticSpec = Field(default_factory=DiagnosticSpec, description="How it runs.")


class TrainJobCreate(BaseModel):
    kind: Literal["train"] = Field(description="Fine-tunes a model on a processed dataset.")
    spec: TrainingSpec = Field(description="What to train and how (`trainer` chooses: `sft`).")


class EvaluateJobCreate(BaseModel):
    kind: Literal["evaluate"] = Field(description="Scores one or two models on a dataset split.")
    spec: EvaluationSpec = Field(description="Which models, which samples, which suite.")


class ExportJobCreate(BaseModel):
    kind: Literal["export"] = Field(
        description="Exports a fine-tuned model (adapter, merged, GGUF, Ollama) to a destination."
    )
    spec: ExportSpec = Field(description="Which model, which format, where to.")


JobCreate = Annotated[
    DiagnosticJobCreate | TrainJobCreate | EvaluateJobCreate | ExportJobCreate,
    Field(discriminator="kind"),
]


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
    created_at: datetime = Field(description="When the job was created.")
    started_at: datetime | None = Field(description="When the job last started running.")
    finished_at: datetime | None = Field(description="When the job ended.")


class JobList(BaseModel):
    items: list[JobPublic] = Field(description="The jobs, newest first.")
    total: int = Field(description="How many jobs match the filters.")


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Increasing event id; resume a stream after it.")
    job_id: str = Field(description="The job that reported the event.")
    type: Literal["status", "progress", "metric", "samples", "log", "artifact"] = Field(
        description="What kind of report this is."
    )
    data: dict[str, Any] = Field(description="The report itself.")
    created_at: datetime = Field(description="When it was reported.")
