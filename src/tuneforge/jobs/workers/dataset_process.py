"""The `dataset_process` job: processes a large raw dataset into conversations."""

from __future__ import annotations

from tuneforge.db.tables import Dataset
from tuneforge.jobs.context import JobContext
from tuneforge.schemas.jobs import DatasetProcessSpec
from tuneforge.services.datasets import run_processing


def run(spec: DatasetProcessSpec, ctx: JobContext) -> dict[str, object]:
    def progress(done: float) -> None:
        ctx.check_cancelled()
        ctx.progress(done, "processing rows")

    with ctx.transaction() as session:
        target = session.get(Dataset, spec.dataset_id)
        source = session.get(Dataset, target.source_id) if target and target.source_id else None
        if target is None or source is None:
            raise LookupError("the dataset or its source was deleted")
        session.expunge_all()
    ctx.log(f"processing {source.rows:,} rows of {source.name!r}")
    try:
        run_processing(
            ctx.store,
            ctx.settings,
            source,
            target,
            progress=progress,
        )
    except BaseException as exc:
        target.status, target.error = "failed", f"processing stopped: {exc}"
        raise
    finally:
        with ctx.transaction() as session:
            session.merge(target)
    ctx.log(f"kept {target.rows:,} rows in {len(target.splits)} split(s)")
    return {"dataset_id": target.id, "status": target.status, "rows": target.rows}
