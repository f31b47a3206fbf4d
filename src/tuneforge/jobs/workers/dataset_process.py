"""The `dataset_process` job: processes a large raw dataset into conversations."""

from __future__ import annotations

from tuneforge.data.config import ProcessingConfig
from tuneforge.data.stored import dataset_prefix, process_raw
from tuneforge.db.tables import Dataset
from tuneforge.errors import InvalidInput
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.kinds.dataset import DatasetJobSpec, DatasetResult


def dataset_of(ctx: JobContext, dataset_id: str) -> Dataset:
    """The dataset the job fills, detached (a failure leaves it to the kind to mark `failed`)."""
    with ctx.transaction() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise InvalidInput("The dataset was deleted.")
        session.expunge(dataset)
    return dataset


def saved(ctx: JobContext, dataset: Dataset) -> DatasetResult:
    """Record what the job found on the dataset; the job's result."""
    with ctx.transaction() as session:
        session.merge(dataset)
    return DatasetResult(dataset_id=dataset.id, status=dataset.status, rows=dataset.rows)


def run(spec: DatasetJobSpec, ctx: JobContext) -> DatasetResult:
    def progress(done: float) -> None:
        ctx.check_cancelled()
        ctx.progress(done, "processing rows")

    target = dataset_of(ctx, spec.dataset_id)
    source = dataset_of(ctx, target.source_id) if target.source_id else None
    if source is None:
        raise InvalidInput("The source dataset was deleted.")
    ctx.log(f"processing {source.rows:,} rows of {source.name!r}")
    target.fill(
        process_raw(
            ctx.store,
            ctx.settings,
            (dataset_prefix(source.owner_id, source.id), source.splits),
            dataset_prefix(target.owner_id, target.id),
            ProcessingConfig.model_validate(target.config),
            progress,
        )
    )
    ctx.log(f"kept {target.rows:,} rows in {len(target.splits)} split(s)")
    return saved(ctx, target)
