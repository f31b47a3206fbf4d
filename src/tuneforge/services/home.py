"""Where a user stands on the path (bring data → train → try → evaluate → export) and the one
thing to do next, read from what the database knows: datasets, training and evaluation jobs,
models and exports. Always the user's own things, administrators included."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from sqlalchemy.orm import Session

from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.repositories.steps import exported_models
from tuneforge.db.tables import Dataset, Job, Model, User
from tuneforge.jobs.status import JobStatus
from tuneforge.services.names import Names, names_for_jobs, run_title

RECENT = 5
#: How far back the path looks for datasets and jobs.
LOOK_BACK = 200
UNDER_WAY = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING})


class Stage(IntEnum):
    DATA = 0
    TRAIN = 1
    TRY = 2
    EVALUATE = 3
    EXPORT = 4
    DONE = 5


Action = Literal[
    "upload",  # nothing yet
    "follow_dataset",  # a dataset is being imported or processed
    "process",  # a raw dataset waits to become training data
    "train",  # training data, no model yet
    "watch_run",  # a run is under way
    "see_run",  # the last run failed
    "try",  # a model nobody has evaluated
    "evaluate",
    "watch_evaluation",  # its evaluation is under way
    "see_evaluation",
    "export",  # evaluated, not exported
    "train_again",  # the whole path walked
]


@dataclass(frozen=True)
class Next:
    """An action and what it acts on."""

    action: Action
    subject_id: str | None = None
    subject_name: str | None = None
    #: The base model of the model acted on (to try a fine-tune beside it).
    base: str | None = None


@dataclass(frozen=True)
class Own:
    """The user as a principal that sees only their own rows, even an administrator."""

    id: str
    is_admin: bool = False


@dataclass(frozen=True)
class Overview:
    stage: Stage
    next: Next
    #: A second way forward, shown beside the first (evaluate beside try, say).
    also: Next | None
    datasets: list[Dataset]
    runs: list[Job]
    models: list[Model]
    names: Names


def overview(session: Session, user: User) -> Overview:
    me = Own(user.id)
    jobs = JobRepository(session, me)
    datasets, _ = DatasetRepository(session, me).search(kind=None, offset=0, limit=LOOK_BACK)
    runs, _ = jobs.search(status=None, kind="train", offset=0, limit=LOOK_BACK)
    evaluations, _ = jobs.search(status=None, kind="evaluate", offset=0, limit=LOOK_BACK)
    models, _ = ModelRepository(session, me).newest(offset=0, limit=RECENT)
    names = names_for_jobs(session, me, runs[:RECENT])
    exported = exported_models(session, me, [m.id for m in models[:1]])
    stage, first, second = _where(datasets, runs, evaluations, models, exported, names)
    return Overview(stage, first, second, datasets[:RECENT], runs[:RECENT], models, names)


def _where(
    datasets: list[Dataset],
    runs: list[Job],
    evaluations: list[Job],
    models: list[Model],
    exported: set[str],
    names: Names,
) -> tuple[Stage, Next, Next | None]:
    active = next((r for r in runs if r.status in UNDER_WAY), None)
    if active is not None:
        return Stage.TRAIN, Next("watch_run", active.id, run_title(active, names)), None
    if models:
        return _model_stage(models[0], evaluations, exported)
    ready = [d for d in datasets if d.kind == "processed" and d.status == "ready"]
    if ready:
        failed = runs[0] if runs and runs[0].status == JobStatus.FAILED else None
        see = Next("see_run", failed.id, run_title(failed, names)) if failed else None
        return Stage.TRAIN, Next("train", ready[0].id, ready[0].name), see
    pending = next((d for d in datasets if d.status == "processing"), None)
    if pending is not None:
        return Stage.DATA, Next("follow_dataset", pending.id, pending.name), None
    raw = next((d for d in datasets if d.kind == "raw" and d.status == "ready"), None)
    if raw is not None:
        return Stage.DATA, Next("process", raw.id, raw.name), None
    return Stage.DATA, Next("upload"), None


def _model_stage(
    model: Model, evaluations: list[Job], exported: set[str]
) -> tuple[Stage, Next, Next | None]:
    def on(action: Action, subject: str = model.id) -> Next:
        return Next(action, subject, model.name, model.base_model)

    if model.id in exported:
        return Stage.DONE, Next("train_again"), on("try")
    # The run's automatic before/after check is not the user's own evaluation: trying the model
    # stays the next step after it.
    its = [
        e
        for e in evaluations
        if model.id in (e.spec.get("model"), e.spec.get("compare_with"))
        and not e.spec.get("automatic")
    ]
    done = next((e for e in its if e.status == JobStatus.SUCCEEDED), None)
    if done is not None:
        return Stage.EXPORT, on("export"), on("see_evaluation", done.id)
    going = next((e for e in its if e.status in UNDER_WAY), None)
    if going is not None:
        return Stage.EVALUATE, on("watch_evaluation", going.id), on("try")
    return Stage.TRY, on("try"), on("evaluate")
