"""The job kinds. Worker code is named by import path so the web process never imports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.export.spec import ExportSpec
from tuneforge.schemas.jobs import DatasetJobSpec, DiagnosticSpec
from tuneforge.training.spec import TrainingSpec


@dataclass(frozen=True)
class JobKind:
    spec: Any  # a model, or an annotated union of models
    worker: str  # "module:function", imported only inside the worker process
    admin_only: bool = False

    def validate(self, spec: Any) -> Any:
        return TypeAdapter(self.spec).validate_python(spec)


KINDS: dict[str, JobKind] = {
    "dataset_import": JobKind(DatasetJobSpec, "tuneforge.jobs.workers.dataset_import:run"),
    "dataset_process": JobKind(DatasetJobSpec, "tuneforge.jobs.workers.dataset_process:run"),
    "diagnostic": JobKind(DiagnosticSpec, "tuneforge.jobs.workers.diagnostic:run", admin_only=True),
    "train": JobKind(TrainingSpec, "tuneforge.jobs.workers.train:run"),
    "evaluate": JobKind(EvaluationSpec, "tuneforge.jobs.workers.evaluate:run"),
    "export": JobKind(ExportSpec, "tuneforge.jobs.workers.export:run"),
}
