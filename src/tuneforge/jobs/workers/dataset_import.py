"""The `dataset_import` job: brings in a Hugging Face dataset or a file on the server. A Hub
download is bounded by the budget reserved with the job (`jobs/quotas.py`)."""

from __future__ import annotations

from tuneforge.data.config import DatasetImport
from tuneforge.data.limits import size_text
from tuneforge.data.stored import dataset_prefix, import_raw
from tuneforge.db.repositories.quotas import lower_reservation
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.kinds.dataset import DatasetJobSpec, DatasetResult
from tuneforge.jobs.workers.dataset_process import dataset_of, saved


def run(spec: DatasetJobSpec, ctx: JobContext) -> DatasetResult:
    dataset = dataset_of(ctx, spec.dataset_id)
    ctx.log(f"importing {dataset.origin_ref!r}")
    request = DatasetImport.model_validate(dataset.config)
    prefix = dataset_prefix(dataset.owner_id, dataset.id)
    if spec.budget_bytes is not None:
        ctx.log(f"this import may download at most {size_text(spec.budget_bytes)}")

    def bounded(limit: int) -> None:
        """Keep reserved only what this download may now take, freeing the rest of the quota."""
        ctx.log(f"the Hub gives this dataset's size: it may download at most {size_text(limit)}")
        with ctx.transaction() as session:
            lower_reservation(session, ctx.job_id, limit)

    raw = import_raw(ctx.store, ctx.settings, prefix, request, spec.budget_bytes, bounded)
    dataset.fill(raw)
    ctx.log(f"imported {dataset.rows:,} rows in {len(dataset.splits)} split(s)")
    return saved(ctx, dataset)
