"""The `dataset_augment` job: the new dataset's train split augmented, its other splits copied."""

from __future__ import annotations

from tuneforge.data.augment.spec import AugmentSpec
from tuneforge.data.augment.stored import augment_stored
from tuneforge.data.stored import dataset_prefix
from tuneforge.errors import InvalidInput
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.kinds.dataset import DatasetJobSpec, DatasetResult
from tuneforge.jobs.workers.dataset_process import dataset_of, saved


def run(spec: DatasetJobSpec, ctx: JobContext) -> DatasetResult:
    def progress(done: float) -> None:
        ctx.check_cancelled()
        ctx.progress(done, "augmenting the train split")

    target = dataset_of(ctx, spec.dataset_id)
    source = dataset_of(ctx, target.source_id) if target.source_id else None
    if source is None or source.status != "ready":
        raise InvalidInput("The source dataset was deleted.")
    augmentation = (target.config or {})["augmentation"]
    how = AugmentSpec.model_validate(augmentation["spec"])
    ctx.log(
        f"augmenting {source.splits.get('train', 0):,} train rows of {source.name!r} with "
        f"{', '.join(how.method_names())} ({how.copies} per row, seed {how.seed})"
    )
    target.fill(
        augment_stored(
            ctx.store,
            ctx.settings,
            (dataset_prefix(source.owner_id, source.id), source.splits, source.config or {}),
            dataset_prefix(target.owner_id, target.id),
            how,
            progress,
        )
    )
    ctx.log(f"{target.rows:,} rows in {len(target.splits)} split(s): {target.warnings[0]}")
    return saved(ctx, target)
