"""The `dataset_import` job: brings in a Hugging Face dataset or a file on the server. A Hub
download is bounded by the owner's import budget (`jobs/quotas.py`)."""

from __future__ import annotations

from tuneforge.data.config import DatasetImport
from tuneforge.data.limits import size_text
from tuneforge.data.stored import dataset_prefix, import_raw
from tuneforge.db.tables import User
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.kinds.dataset import DatasetJobSpec, DatasetResult
from tuneforge.jobs.quotas import import_budget
from tuneforge.jobs.workers.dataset_process import dataset_of, saved


def run(spec: DatasetJobSpec, ctx: JobContext) -> DatasetResult:
    dataset = dataset_of(ctx, spec.dataset_id)
    ctx.log(f"importing {dataset.origin_ref!r}")
    request = DatasetImport.model_validate(dataset.config)
    prefix = dataset_prefix(dataset.owner_id, dataset.id)
    with ctx.transaction() as session:
        budget = import_budget(session, session.get_one(User, dataset.owner_id), ctx.settings)
    if budget is not None:
        ctx.log(f"this import may download at most {size_text(budget)}")
    dataset.fill(import_raw(ctx.store, ctx.settings, prefix, request, budget))
    ctx.log(f"imported {dataset.rows:,} rows in {len(dataset.splits)} split(s)")
    return saved(ctx, dataset)
