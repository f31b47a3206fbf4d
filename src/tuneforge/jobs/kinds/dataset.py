"""The dataset kinds: `dataset_import` brings in a Hugging Face dataset or a file on the server,
`dataset_process` turns a large raw dataset into conversations. The datasets service queues
them; the dataset they fill is `processing` until they end, and `failed` with the job's reason
when the job fails or is cancelled (a lost worker included)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tuneforge.db.tables import Dataset, Job, User
from tuneforge.jobs.kind import JobKind, register
from tuneforge.jobs.status import JobStatus


class DatasetJobSpec(BaseModel):
    """Imports or processes a dataset (jobs the datasets endpoints create)."""

    dataset_id: str = Field(description="The dataset the job fills (status `processing`).")
    budget_bytes: int | None = Field(
        default=None,
        ge=0,
        description="For an import from the Hugging Face Hub: the most it may download, "
        "reserved from its owner's storage quota until the job ends; null: no bound.",
    )


class DatasetResult(BaseModel):
    dataset_id: str = Field(description="The dataset the job filled.")
    status: str = Field(description="The dataset's status: `ready`, or `failed` with why.")
    rows: int = Field(description="Its rows.")


class _DatasetKind(JobKind[DatasetJobSpec, DatasetResult]):
    spec = DatasetJobSpec
    result: ClassVar[type[BaseModel]] = DatasetResult  # a kind may report more
    public = False

    def on_queued(self, session: Session, user: User, job: Job, spec: DatasetJobSpec) -> None:
        dataset = session.get(Dataset, spec.dataset_id)
        if dataset is not None and dataset.owner_id == user.id:
            dataset.job_id = job.id

    def settle(self, session: Session, job: Job) -> None:
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            return
        dataset = session.get(Dataset, job.spec["dataset_id"])
        if dataset is not None and dataset.status == "processing":
            dataset.status, dataset.error = "failed", job.error or "its job ended unfinished"


class DatasetImportKind(_DatasetKind):
    name = "dataset_import"
    description = "Brings in a Hugging Face dataset or a file on the server."
    worker = "tuneforge.jobs.workers.dataset_import:run"


class DatasetProcessKind(_DatasetKind):
    name = "dataset_process"
    description = "Processes a large raw dataset into conversations."
    worker = "tuneforge.jobs.workers.dataset_process:run"


register(DatasetImportKind())
register(DatasetProcessKind())
