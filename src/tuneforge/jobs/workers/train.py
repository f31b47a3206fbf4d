"""The `train` job: fine-tunes a catalog model on a processed dataset and records the Model.

A run that continues an earlier fine-tune (`start_from`) trains from that model's files, fetched
from the artifact store (an adapter's config then names the local base); the new model's spec
keeps `start_from`, its lineage.

Checkpoints go to the artifact store under the job's prefix (`checkpoints/step-N/`, the newest
K kept), so a resumed job, wherever it runs, continues from the newest complete one (or, when
that one cannot be read, from the newest older one that can, saying so in its log). The finished
model is uploaded under `model/`, the TensorBoard logs under `tensorboard/`.

A run over several devices trains in one process per device, which this worker starts and
supervises (`training/parallel/launcher.py`): rank 0 reports through it and its checkpoints are
stored from here, as a one-process run's are. On Ray, ranks 1..N-1 run in actors of the job's
placement group, on whichever nodes Ray placed them (`jobs/ray_peers.py`); each gets the
starting model's files on its node as this worker does (`starting_model.py`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.data.stored import dataset_prefix, processed_records
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import Dataset, Model, User, utcnow
from tuneforge.errors import DomainError, InvalidInput
from tuneforge.jobs.check import queue_check
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.endpoints import check_judges
from tuneforge.jobs.inputs import starting_model
from tuneforge.jobs.kinds.train import TrainResult, training_dataset
from tuneforge.jobs.ray_peers import ray_peers
from tuneforge.jobs.tracking import prepare_tracking
from tuneforge.jobs.workers.starting_model import Continued, fetch_continued
from tuneforge.jobs.workers.train_phases import (
    TRAINING_SHARE,
    attempt_started,
    record_run,
    report_estimate,
    store_model,
    timed,
)
from tuneforge.models.loading import resolve
from tuneforge.storage import ArtifactStore, artifact_prefix
from tuneforge.training.checkpoint import checkpoint_name, step_of
from tuneforge.training.parallel.launcher import launch
from tuneforge.training.recipe import Checkpoints
from tuneforge.training.registry import recipe_for
from tuneforge.training.reporting import Tracked
from tuneforge.training.spec import TrainingBase


def _dataset(ctx: JobContext, spec: TrainingBase) -> tuple[Dataset, dict[str, str]]:
    """The run's dataset, and the API keys of the judges it calls (checked again as the owner:
    an address may have changed, a key may have been deleted)."""
    judges = recipe_for(spec).judges
    called = list(judges(spec)) if judges else []
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The run's owner no longer exists.")
        dataset = training_dataset(session, owner, spec.dataset_id)
        session.expunge(dataset)
        check_judges(called, owner, ctx.settings)
        names = {judge.api_key_secret for judge in called if judge.api_key_secret}
        keys = secret_values(session, ctx.settings, owner.id, names)
    for name in names - keys.keys():
        raise InvalidInput(f"The judge's key secret {name} was deleted; set it again.")
    return dataset, keys


def _continued(ctx: JobContext, spec: TrainingBase) -> Continued | None:
    """The fine-tune the run continues (checked again as the owner's), if it continues one."""
    if spec.start_from is None:
        return None
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The run's owner no longer exists.")
        model = starting_model(session, owner, spec)
        assert model is not None  # the spec names it
        return Continued(model.artifact_key, model.kind, model.name)


class StoredCheckpoints:
    """The job's checkpoints in the artifact store."""

    def __init__(self, store: ArtifactStore, prefix: str, keep: int) -> None:
        self.store = store
        self.prefix = f"{prefix}/checkpoints"
        self.keep = keep

    def steps(self) -> list[int]:
        names = {
            key[len(self.prefix) + 1 :].split("/", 1)[0] for key in self.store.list(self.prefix)
        }
        steps = (step_of(name) for name in names)
        return sorted(s for s in steps if s is not None and self.store.is_complete(self._key(s)))

    def _key(self, step: int) -> str:
        return f"{self.prefix}/{checkpoint_name(step)}"

    def fetched(self, local: Path) -> Iterator[Path]:
        """The complete checkpoints, newest first, each fetched into `local` (replacing the
        one before) when the iteration reaches it."""
        for step in reversed(self.steps()):
            shutil.rmtree(local, ignore_errors=True)
            self.store.get_dir(self._key(step), local)
            yield local

    def save(self, path: Path, step: int) -> None:
        try:
            self.store.put_dir(self._key(step), path)
        except BaseException:
            self.store.delete(self._key(step))  # never complete: its files only take space
            raise
        for old in self.steps()[: -self.keep]:
            self.store.delete(self._key(old))


def _queue_check(
    ctx: JobContext,
    session: Session,
    model: Model,
    dataset: Dataset,
    test: list[dict[str, Any]],
    spec: TrainingBase,
) -> tuple[str | None, str | None]:
    """Queue the model's before/after check (`jobs/check.py`): its job id, or why there is
    none when it cannot run here (the run has succeeded all the same)."""
    owner = session.get(User, ctx.owner_id)
    assert owner is not None  # `_dataset` found them
    try:
        job = queue_check(session, owner, ctx.settings, model, dataset, test, spec.check_examples)
    except DomainError as exc:
        return None, exc.message
    return (job.id if job is not None else None), None


def run(spec: TrainingBase, ctx: JobContext) -> TrainResult:
    began = attempt_started(ctx)
    dataset, keys = _dataset(ctx, spec)
    settings = ctx.settings
    ctx.progress(0.0, f"loading {spec.base_model} and the data")
    entry, base_path = resolve(spec.base_model, settings)
    data_prefix = dataset_prefix(dataset.owner_id, dataset.id)
    train = processed_records(ctx.store, data_prefix, dataset.splits, "train")
    test = processed_records(ctx.store, data_prefix, dataset.splits, "test")
    prefix = artifact_prefix(ctx.owner_id, ctx.kind, ctx.job_id)
    workdir = settings.data_dir / "work" / ctx.job_id
    continued = _continued(ctx, spec)
    model_path = base_path
    if continued is not None:
        ctx.progress(0.0, f"fetching {continued.name}, the model this run continues")
        model_path = fetch_continued(ctx.store, continued, base_path, workdir / "start")
        ctx.log(f"continuing {continued.name} ({spec.start_from}, {continued.kind})")
    stored = StoredCheckpoints(ctx.store, prefix, spec.keep_checkpoints)
    fetched = stored.fetched(workdir / "resume")
    latest = next(fetched, None)
    if latest is None:  # a first attempt: what the whole run should take
        report_estimate(ctx, spec, entry, dataset)
    name = spec.name or f"{entry.id} on {dataset.name}"
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The run's owner no longer exists.")
        tracking = prepare_tracking(session, owner, settings, spec)
    reporter = Tracked(
        ctx, spec, workdir / "tensorboard", name, secrets=tracking, share=TRAINING_SHARE
    )
    start_seconds = max((utcnow() - began).total_seconds(), 0.0)
    try:
        outcome = launch(  # in `devices` processes when there are several
            spec,
            model_path,
            train,
            test,
            reporter,
            workdir,
            Checkpoints(latest=latest, save=stored.save, older=fetched),
            secrets=keys,
            peers=ray_peers(settings, ctx.job_id, spec.base_model, continued),
        )
        with timed() as storing:
            store_model(ctx, f"{prefix}/model", outcome.output)
        store_seconds = storing()
        paths = sorted(p for p in outcome.output.rglob("*") if p.is_file())
        files = [p.relative_to(outcome.output).as_posix() for p in paths]
        size = sum(p.stat().st_size for p in paths)
    finally:
        try:
            reporter.close()
            if (workdir / "tensorboard").is_dir():
                ctx.store.put_dir(f"{prefix}/tensorboard", workdir / "tensorboard")
        finally:  # a full disk fails the logs' last write: the work files must go all the same
            shutil.rmtree(workdir, ignore_errors=True)
    record_run(ctx, spec, entry, dataset, outcome, start_seconds, store_seconds)
    with ctx.transaction() as session:
        model = Model(
            owner_id=ctx.owner_id,
            name=name,
            base_model=entry.id,
            kind=outcome.kind,
            dataset_id=dataset.id,
            job_id=ctx.job_id,
            spec=spec.model_dump(mode="json"),
            metrics=outcome.metrics,
            artifact_key=f"{prefix}/model",
            files=files,
            size_bytes=size,
        )
        session.add(model)
        session.flush()
        model_id = model.id
        check_job_id, no_check = _queue_check(ctx, session, model, dataset, test, spec)
    ctx.log(f"saved model {model_id} ({outcome.kind}, {size / 1e6:.1f} MB)")
    if no_check:
        ctx.log(f"No before/after check: {no_check}", level="warning")
    return TrainResult(
        model_id=model_id,
        steps=outcome.steps,
        epochs=outcome.epochs,
        metrics=outcome.metrics,
        tokens_per_second=outcome.tokens_per_second,
        peak_rss_bytes=outcome.peak_rss_bytes,
        stopped_early=outcome.stopped_early,
        precision=outcome.precision,
        device=outcome.device,
        check_job_id=check_job_id,
    )
