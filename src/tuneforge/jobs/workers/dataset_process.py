"""The `dataset_process` job: processes a large raw dataset into conversations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tuneforge.db.tables import Dataset
from tuneforge.jobs.context import JobContext
from tuneforge.schemas.jobs import DatasetJobSpec
from tuneforge.services.datasets import run_processing


@contextmanager
def settled_dataset(ctx: JobContext, dataset_id: str) -> Iterator[tuple[Dataset, Dataset | None]]:
    """The dataset the job fills (and its source), saved whatever happens: a failure or a
    cancel marks it `failed` with the reason."""
    with ctx.transaction() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise LookupError("the dataset was deleted")
        source = session.get(Dataset, dataset.source_id) if dataset.source_id else None
        session.expunge_all()
    try:
        yield dataset, source
    except BaseException as exc:
        dataset.status, dataset.error = "failed", str(exc) or type(exc).__name__
        raise
    finally:
        with ctx.transaction() as session:
            session.merge(dataset)


def run(spec: DatasetJobSpec, ctx: JobContext) -> dict[str, object]:
    def progress(done: float) -> None:
        ctx.check_cancelled()
        ctx.progress(done, "processing rows")

    with settled_dataset(ctx, spec.dataset_id) as (target, source):
        if source is None:
            raise LookupError("the source dataset was deleted")
        ctx.log(f"processing {source.rows:,} rows of {source.name!r}")
        run_processing(ctx.store, ctx.settings, source, target, progress)
    ctx.log(f"kept {target.rows:,} rows in {len(target.splits)} split(s)")
    return {"dataset_id": target.id, "status": target.status, "rows": target.rows}
