"""A fine-tuned model's before/after check as its page shows it (queued, running, or what it
found in plain words), and the evaluation its Evaluate button prefills. Always as the model's
owner: another user's model answers `NotFound`, like a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from tuneforge.data import parquet
from tuneforge.data.stored import dataset_prefix
from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.tables import Dataset, Job, Model, User
from tuneforge.errors import NotFound
from tuneforge.evaluation.comparison import (
    comparison,
    delta_text,
    main_metric,
    metric_label,
    verdict,
)
from tuneforge.evaluation.fitting import FIT_ROWS
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.jobs.check import fitting_evaluation
from tuneforge.jobs.kinds.evaluate import EvaluateKind
from tuneforge.storage import ArtifactStore

CheckState = Literal[
    "queued", "running", "cancelling", "succeeded", "failed", "cancelled", "off", "no_test", "none"
]


@dataclass(frozen=True)
class ModelCheck:
    """Where the check stands: its job's status (`queued` ... `cancelled`), or why there is
    none: `off` (the run asked for none), `no_test` (its dataset has no test split), `none`
    (an older run, or the check could not be queued: the run's log says why). `summary` says
    what it found ("Learned: 11/12 answers now match, base 0/12."), `detail` how it was measured
    and the main metric's difference."""

    state: CheckState
    job: Job | None = None
    summary: str | None = None
    detail: str | None = None


def _test_dataset(session: Session, user: User, model: Model) -> Dataset | None:
    if model.dataset_id is None:
        return None
    dataset = DatasetRepository(session, user).get(model.dataset_id)
    return dataset if dataset is not None and dataset.status == "ready" else None


def model_check(session: Session, user: User, model_id: str) -> ModelCheck:
    """The before/after check of the model `model_id`."""
    model = ModelRepository(session, user).require(model_id)
    jobs = JobRepository(session, user)
    run = jobs.get(model.job_id) if model.job_id else None
    check_id = ((run.result if run is not None else None) or {}).get("check_job_id")
    job = jobs.get(check_id) if check_id else None
    if run is not None and run.status in ("queued", "running") and job is None:
        return ModelCheck("queued")  # the run records its model, then queues the check
    if job is None or job.kind != EvaluateKind.name:
        if (model.spec or {}).get("check_examples") == 0:
            return ModelCheck("off")
        dataset = _test_dataset(session, user, model)
        if dataset is not None and not dataset.splits.get("test"):
            return ModelCheck("no_test")
        return ModelCheck("none")
    if job.status != "succeeded" or not job.result:
        return ModelCheck(job.status, job)  # type: ignore[arg-type]
    return ModelCheck("succeeded", job, verdict(job.result), _detail(job.result))


def gain(result: dict[str, Any]) -> str | None:
    """The main metric's difference as people read it: "Exact match: fine-tune vs base:
    +33.3 pts"; None for one model or a suite without metrics."""
    compared = comparison(result["models"], result["metrics"])
    if compared is None:
        return None
    name = main_metric(result["suite"], result["metrics"][compared.first])
    if name is None or name not in compared.values:
        return None
    return f"{metric_label(name)}: {compared.label}: {delta_text(name, compared.values[name])}"


def _detail(result: dict[str, Any]) -> str:
    how = f"{result['count']} test examples, greedy, {result['suite']} suite"
    main = gain(result)
    return how if main is None else f"{main} · {how}"


NO_CHECK = {"off": "turned off", "no_test": "no test split", "none": "none"}


def run_checks(session: Session, user: User, results: list[dict[str, Any] | None]) -> list[str]:
    """For training runs' results (None for a run without one), what each one's check found:
    its verdict and main metric's gain, its status while it is to come, or why there is none
    ("no test split", "turned off")."""
    found: list[str] = []
    for result in results:
        model_id = (result or {}).get("model_id")
        try:
            check = model_check(session, user, model_id) if model_id else ModelCheck("none")
        except NotFound:  # the model was deleted
            check = ModelCheck("none")
        if check.state in NO_CHECK:
            found.append(NO_CHECK[check.state])
        elif check.summary is None or check.job is None or not check.job.result:
            found.append(check.state)
        else:
            main = gain(check.job.result)
            found.append(check.summary + (f" ({main})" if main else ""))
    return found


@dataclass(frozen=True)
class Suggestion:
    """What the Evaluate button of a model prefills: the model, its base, and the evaluation
    that fits its training data (None when that dataset is gone or not ready)."""

    model: str
    base: str
    spec: EvaluationSpec | None


def suggested_evaluation(
    session: Session, store: ArtifactStore, user: User, model_id: str
) -> Suggestion:
    """The evaluation the model's Evaluate button opens: the fine-tune against its base on its
    training dataset's test split (the train split when it has none), with the suite that fits
    the data."""
    model = ModelRepository(session, user).require(model_id)
    dataset = _test_dataset(session, user, model)
    if dataset is None:
        return Suggestion(model.id, model.base_model, None)
    split: Literal["test", "train"] = "test" if dataset.splits.get("test") else "train"
    key = parquet.split_key(dataset_prefix(dataset.owner_id, dataset.id), "processed", split)
    records = parquet.head(store, key, FIT_ROWS).to_pylist()
    spec = fitting_evaluation(model, dataset, split, records)
    return Suggestion(model.id, model.base_model, spec)
