"""Training runs as the web process sees them: checks before launch, estimates, recommendations,
resume, metrics and comparisons. Nothing here imports torch; the work runs in `train` jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.tables import Dataset, Job, User
from tuneforge.hardware import detect_hardware
from tuneforge.jobs.states import InvalidTransition, transition
from tuneforge.jobs.status import JobStatus
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.errors import Conflict, InvalidInput, NotFound
from tuneforge.settings import Settings
from tuneforge.training.estimate import CalibrationCache, Estimate, estimate
from tuneforge.training.recommend import Recommendation, recommend
from tuneforge.training.spec import TrainingBase

TRAIN_KIND = "train"


def catalog_entry(settings: Settings, model_id: str) -> CatalogEntry:
    entry = load_catalog(settings.catalog_file).get(model_id)
    if entry is None:
        raise InvalidInput(f"No model {model_id!r} in the catalog.")
    return entry


def training_dataset(session: Session, user: User, dataset_id: str) -> Dataset:
    """The dataset a run learns from: the user's own, processed and ready, with a train split."""
    dataset = DatasetRepository(session, user).get(dataset_id)
    if dataset is None:
        raise NotFound(f"No dataset {dataset_id}.")
    if dataset.kind != "processed":
        raise InvalidInput(
            f"The dataset {dataset.name!r} is raw: process it first (map its columns to "
            "conversations), then train on the processed dataset."
        )
    if dataset.status != "ready":
        raise InvalidInput(f"The dataset {dataset.name!r} is {dataset.status}, not ready.")
    if not dataset.splits.get("train"):
        raise InvalidInput(f"The dataset {dataset.name!r} has no training rows.")
    return dataset


def estimate_run(session: Session, user: User, settings: Settings, spec: TrainingBase) -> Estimate:
    """Peak memory and duration of `spec` on this machine, and whether it fits."""
    dataset = training_dataset(session, user, spec.dataset_id)
    entry = catalog_entry(settings, spec.base_model)
    return estimate(
        spec,
        entry,
        dataset.stats,
        dataset.splits.get("train", 0),
        detect_hardware(),
        CalibrationCache(settings.data_dir / "calibration.json"),
    )


def check_launch(session: Session, user: User, settings: Settings, spec: TrainingBase) -> None:
    """Refuse a run that cannot work here, saying what to change."""
    result = estimate_run(session, user, settings, spec)
    if result.refusal:
        raise InvalidInput(result.refusal, {"estimate": result.model_dump(mode="json")})


def recommendations(
    session: Session, user: User, settings: Settings, dataset_id: str, model_id: str
) -> list[Recommendation]:
    dataset = training_dataset(session, user, dataset_id)
    entry = catalog_entry(settings, model_id)
    return recommend(entry, dataset.stats, dataset.splits.get("train", 0), detect_hardware())


def training_job(session: Session, user: User, job_id: str) -> Job:
    job = JobRepository(session, user).get(job_id)
    if job is None or job.kind != TRAIN_KIND:
        raise NotFound(f"No training run {job_id}.")
    return job


def resume(session: Session, user: User, job_id: str) -> Job:
    """Queue a failed or cancelled run again; it continues from its newest checkpoint."""
    job = training_job(session, user, job_id)
    try:
        transition(session, job, JobStatus.QUEUED, error=None, result=None)
    except InvalidTransition as exc:
        raise Conflict(
            f"This run is {exc.current}; only a failed or cancelled run can be resumed."
        ) from exc
    return job


def metrics(session: Session, user: User, job_id: str) -> dict[str, Any]:
    """Every metric series of a run as `[step, value]` points, and its sample generations.

    A resumed run repeats the steps after its last checkpoint: the later report of a step wins,
    so the curve shows the run that continued.
    """
    job = training_job(session, user, job_id)
    repository = JobRepository(session, user)
    series: dict[str, dict[int, float]] = {}
    samples: dict[int, list[dict[str, str]]] = {}
    after = 0
    while True:
        events = repository.events(job, after=after, limit=5000, types={"metric", "samples"})
        if not events:
            break
        for event in events:
            step = int(event.data["step"])
            if event.type == "samples":
                samples[step] = event.data["items"]
                continue
            for name, value in event.data["values"].items():
                series.setdefault(name, {})[step] = value
        after = events[-1].id
    return {
        "job_id": job.id,
        "series": {name: sorted(points.items()) for name, points in series.items()},
        "samples": [{"step": step, "items": samples[step]} for step in sorted(samples)],
    }


def compare(session: Session, user: User, job_ids: list[str]) -> dict[str, Any]:
    """Several runs side by side: their curves and the settings in which their specs differ."""
    if not 2 <= len(job_ids) <= 8:
        raise InvalidInput("Compare between 2 and 8 runs.")
    jobs = [training_job(session, user, job_id) for job_id in job_ids]
    keys = sorted({key for job in jobs for key in job.spec})
    differences = {
        key: [job.spec.get(key) for job in jobs]
        for key in keys
        if len({repr(job.spec.get(key)) for job in jobs}) > 1
    }
    return {
        "runs": [
            {
                "job_id": job.id,
                "name": job.spec.get("name") or job.spec.get("base_model"),
                "status": job.status,
                "spec": job.spec,
                "result": job.result,
                **{k: v for k, v in metrics(session, user, job.id).items() if k == "series"},
            }
            for job in jobs
        ],
        "differences": differences,
    }
