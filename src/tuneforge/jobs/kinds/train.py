"""The `train` kind: fine-tunes a catalog model (or continues one of the user's fine-tunes) on a
processed dataset and records the Model.

Before a run is queued, the model it continues is checked, its spec is checked against the
dataset (`training/run_checks.py`: the data its trainer learns from, the settings), and its peak
memory and duration are estimated on this machine; a run that cannot work or fit is refused with
what to change.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tuneforge.db.tables import Dataset, User
from tuneforge.errors import InvalidInput
from tuneforge.hardware import detect_hardware
from tuneforge.jobs.endpoints import check_judges
from tuneforge.jobs.inputs import (
    catalog_entry,
    processed_dataset,
    runnable_entry,
    starting_model,
)
from tuneforge.jobs.kind import JobKind, register
from tuneforge.jobs.tracking import tracking_secrets
from tuneforge.settings import Settings
from tuneforge.training.estimate import CalibrationCache, Estimate, estimate
from tuneforge.training.registry import TrainingSpec, recipe_for
from tuneforge.training.run_checks import check_run
from tuneforge.training.spec import TrainingBase
from tuneforge.training.spec_checks import refusals


class TrainResult(BaseModel):
    model_id: str = Field(description="The model the run made.")
    steps: int = Field(description="Optimizer steps taken.")
    epochs: float = Field(description="Passes over the training split.")
    metrics: dict[str, Any] = Field(description="The last value of each metric.")
    tokens_per_second: float = Field(description="Training speed, in tokens a second.")
    peak_rss_bytes: int = Field(description="The worker's peak memory.")
    stopped_early: bool = Field(description="Whether early stopping ended the run.")
    precision: str = Field(description="The precision the run computed in.")
    device: str = Field(description="Where it ran (cpu, cuda, mps).")
    check_job_id: str | None = Field(
        default=None,
        description="The model's automatic before/after check (an `evaluate` job), when one "
        "was queued.",
    )


def training_dataset(session: Session, user: User, dataset_id: str) -> Dataset:
    """The dataset a run learns from: the user's own, processed and ready, with a train split."""
    return processed_dataset(session, user, dataset_id, "train", "train")


def estimate_run(session: Session, user: User, settings: Settings, spec: TrainingBase) -> Estimate:
    """Peak memory and duration of `spec` on this machine, and whether it fits. With the Ray
    executor, this server's hardware does not decide: what it cannot run becomes a warning, and
    the cluster places the job on a node that has what it asks for (it waits, saying for what,
    until one has)."""
    dataset = training_dataset(session, user, spec.dataset_id)
    entry = catalog_entry(settings, spec.base_model)
    result = estimate(
        spec,
        entry,
        dataset.stats,
        dataset.splits.get("train", 0),
        detect_hardware(),
        CalibrationCache(settings.data_dir / "calibration.json"),
        test_rows=dataset.splits.get("test", 0),
    )
    if settings.executor != "ray" or result.refusal is None:
        return result
    on_ray = (
        f"On this server: {result.refusal} Jobs run on the Ray cluster, which starts this one on "
        "a node that has the GPUs and memory it asks for."
    )
    return result.model_copy(update={"refusal": None, "messages": [*result.messages, on_ray]})


class TrainKind(JobKind[TrainingBase, TrainResult]):
    name = "train"
    description = "Fine-tunes a model on a processed dataset."
    worker = "tuneforge.jobs.workers.train:run"
    spec = TrainingSpec
    result = TrainResult

    def check(self, session: Session, user: User, settings: Settings, spec: TrainingBase) -> None:
        runnable_entry(settings, spec.base_model)
        judges = recipe_for(spec).judges
        check_judges(judges(spec) if judges else [], user, settings, session)
        tracking_secrets(session, user, settings, spec)
        starting_model(session, user, spec)
        dataset = training_dataset(session, user, spec.dataset_id)
        entry = catalog_entry(settings, spec.base_model)
        for refusal in refusals(check_run(spec, dataset, entry)):
            raise InvalidInput(refusal.message, {"fields": list(refusal.fields)})
        result = estimate_run(session, user, settings, spec)
        if result.refusal:
            raise InvalidInput(result.refusal, {"estimate": result.model_dump(mode="json")})


register(TrainKind())
