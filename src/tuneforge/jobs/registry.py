"""The job kinds. Worker code is named by import path so the web process never imports it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from tuneforge.schemas.jobs import DatasetJobSpec, DiagnosticSpec


@dataclass(frozen=True)
class JobKind:
    spec: type[BaseModel]
    worker: str  # "module:function", imported only inside the worker process
    admin_only: bool = False


KINDS: dict[str, JobKind] = {
    "dataset_import": JobKind(DatasetJobSpec, "tuneforge.jobs.workers.dataset_import:run"),
    "dataset_process": JobKind(DatasetJobSpec, "tuneforge.jobs.workers.dataset_process:run"),
    "diagnostic": JobKind(DiagnosticSpec, "tuneforge.jobs.workers.diagnostic:run", admin_only=True),
}
