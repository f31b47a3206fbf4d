"""The names a list of jobs refers to (datasets, models, the models runs made), read in one
owner-scoped query each, so that lists show names and keep ids as secondary text."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from tuneforge.db.repositories.names import dataset_names, model_names, models_of_runs
from tuneforge.db.repositories.owned import Principal
from tuneforge.db.tables import Job

#: The spec fields of each kind that hold a dataset id, and those that hold a model id
#: (a fine-tuned model's id, or for evaluations possibly a catalog id).
DATASET_FIELDS = ("dataset_id",)
DELETED_DATASET = "(deleted dataset)"
MODEL_FIELDS = ("model", "compare_with", "model_id")


@dataclass(frozen=True)
class Names:
    """Id → name of what some jobs refer to; a deleted referent is absent."""

    datasets: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    #: A training job's id → (id, name) of the model it made.
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)


def _ids(jobs: Iterable[Job], fields: tuple[str, ...]) -> set[str]:
    return {
        value for job in jobs for name in fields if isinstance(value := job.spec.get(name), str)
    }


def names_for_jobs(session: Session, principal: Principal, jobs: list[Job]) -> Names:
    """The names `jobs` refer to, as `principal` may see them."""
    return Names(
        datasets=dataset_names(session, principal, _ids(jobs, DATASET_FIELDS)),
        models=model_names(session, principal, _ids(jobs, MODEL_FIELDS)),
        runs=models_of_runs(session, principal, [j.id for j in jobs if j.kind == "train"]),
    )


def datasets_named(session: Session, principal: Principal, ids: list[str]) -> dict[str, str]:
    """Dataset id → name, for a list of things that came from datasets (models, say)."""
    return dataset_names(session, principal, ids)


def dataset_title(spec: dict[str, object], names: Names) -> str:
    """The name of the dataset a job's spec names, or that it was deleted."""
    dataset_id = spec.get("dataset_id")
    if not isinstance(dataset_id, str):
        return "—"
    return names.datasets.get(dataset_id, DELETED_DATASET)


def run_title(job: Job, names: Names) -> str:
    """A training run's name: its own, else its model's, else "<base model> on <dataset>"."""
    made = names.runs.get(job.id)
    if job.spec.get("name"):
        return str(job.spec["name"])
    if made:
        return made[1]
    return f"{job.spec.get('base_model', 'a model')} on {dataset_title(job.spec, names)}"
