"""Training runs as the web process sees them: estimates, recommendations, resume, metrics and
comparisons. Nothing here imports torch; the `train` kind checks a launch
(`jobs/kinds/train.py`) and the work runs in its worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.tables import Job, User
from tuneforge.errors import Conflict, DomainError, InvalidInput, NotFound
from tuneforge.hardware import detect_hardware
from tuneforge.jobs.events import metric_values
from tuneforge.jobs.inputs import catalog_entry, starting_model
from tuneforge.jobs.kinds.train import TrainKind, estimate_run, training_dataset
from tuneforge.jobs.states import InvalidTransition, transition
from tuneforge.jobs.status import JobStatus
from tuneforge.models.catalog import load_catalog
from tuneforge.settings import Settings
from tuneforge.training.health import health_flags
from tuneforge.training.recommend import Recommendation, recommend
from tuneforge.training.registry import DEFAULT_TRAINER, recipes
from tuneforge.training.run_checks import check_run
from tuneforge.training.spec import TrainingBase
from tuneforge.training.spec_checks import Finding

__all__ = [
    "compare",
    "estimate_run",
    "metrics",
    "recommendations",
    "resume",
    "setting_checks",
    "training_job",
]


def recommendations(
    session: Session,
    user: User,
    settings: Settings,
    dataset_id: str,
    model_id: str,
    trainer: str = DEFAULT_TRAINER,
) -> list[Recommendation]:
    """Settings recommended for `trainer`'s recipe, from the dataset and this machine."""
    if trainer not in {r.trainer for r in recipes()}:
        known = ", ".join(r.trainer for r in recipes())
        raise InvalidInput(f"There is no trainer {trainer!r}; the trainers are {known}.")
    dataset = training_dataset(session, user, dataset_id)
    entry = catalog_entry(settings, model_id)
    rows = dataset.splits.get("train", 0)
    return recommend(entry, dataset.stats, rows, detect_hardware(), trainer=trainer)


def setting_checks(
    session: Session, user: User, settings: Settings, spec: TrainingBase
) -> list[Finding]:
    """What is likely wrong (warnings) or cannot work (refusals) in `spec` for its dataset: what
    the Train page says under the fields, and the launch check refuses (the model it would
    continue included)."""
    dataset = training_dataset(session, user, spec.dataset_id)
    findings = check_run(spec, dataset, load_catalog(settings.catalog_file).get(spec.base_model))
    try:
        starting_model(session, user, spec)
    except DomainError as exc:
        fields = tuple(exc.details.get("fields", ["start_from"]))
        return [Finding(fields, exc.message, "refusal"), *findings]
    return findings


def training_job(session: Session, user: User, job_id: str) -> Job:
    job = JobRepository(session, user).get(job_id)
    if job is None or job.kind != TrainKind.name:
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
    samples: dict[int, list[dict[str, Any]]] = {}
    warnings: list[dict[str, Any]] = []
    after, page = 0, 5000
    while True:
        events = repository.reports(
            job, after=after, limit=page, types={"metric", "samples", "log"}
        )
        for event in events:
            if event.type == "log":
                if event.data.get("level") in ("warning", "error"):
                    warnings.append(event.data)
                continue
            step = int(event.data["step"])
            if event.type == "samples":
                samples[step] = event.data["items"]
                continue
            for name, value in metric_values(event.data).items():
                series.setdefault(name, {})[step] = value
        if len(events) < page:
            break
        after = events[-1].id
    return {
        "job_id": job.id,
        "series": {name: sorted(points.items()) for name, points in series.items()},
        "samples": [{"step": step, "items": samples[step]} for step in sorted(samples)],
        "health": [
            flag.public()
            for flag in health_flags(series, samples, warnings, job.spec.get("learning_rate"))
        ],
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
