"""The `dataset_import` job: brings in a Hugging Face dataset or a file on the server."""

from __future__ import annotations

from tuneforge.jobs.context import JobContext
from tuneforge.jobs.workers.dataset_process import settled_dataset
from tuneforge.schemas.jobs import DatasetJobSpec
from tuneforge.services.datasets import run_import


def run(spec: DatasetJobSpec, ctx: JobContext) -> dict[str, object]:
    with settled_dataset(ctx, spec.dataset_id) as (dataset, _):
        ctx.log(f"importing {dataset.origin_ref!r}")
        run_import(ctx.store, ctx.settings, dataset)
    ctx.log(f"imported {dataset.rows:,} rows in {len(dataset.splits)} split(s)")
    return {"dataset_id": dataset.id, "rows": dataset.rows}
