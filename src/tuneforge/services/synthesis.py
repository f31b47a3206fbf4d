"""Synthesis: make a raw dataset from uploaded documents in a `dataset_synthesis` job, follow
it (progress, pairs kept and dropped, the last pairs made) and resume it. Always as the owner; a
foreign dataset or job is not found.

The documents are stored beside the new dataset under generated names (`documents/0.pdf`, ...),
never the client's path; their names are kept in the dataset's config, because the rows name
them. They are checked cheaply here (size, count, what the first bytes say they are) and read
in the worker, where a hostile document fails the job with the reason.
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from tuneforge.data.documents import DEFAULT_DOCUMENT_LIMITS, DocumentLimits
from tuneforge.data.documents.detect import HEAD_BYTES, binary_kind
from tuneforge.data.limits import DataFileError, size_text
from tuneforge.data.stored import dataset_prefix
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.tables import Dataset, Job, User
from tuneforge.errors import Conflict, InvalidInput, NotFound
from tuneforge.jobs.endpoints import check_generator, check_judges
from tuneforge.jobs.kinds.dataset import DatasetJobSpec
from tuneforge.jobs.kinds.synthesis import DatasetSynthesisKind
from tuneforge.jobs.lifecycle import create_job
from tuneforge.jobs.states import InvalidTransition, transition
from tuneforge.jobs.status import JobStatus
from tuneforge.schemas.synthesis import SynthesisProgress
from tuneforge.services.datasets import file_suffix, get_dataset
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

#: The key under a synthesised dataset's config that says how it was made.
CONFIG_KEY = "synthesis"
#: Where its documents are stored, under the dataset's prefix.
DOCUMENTS = "documents"
NAME_CHARS = 200
#: The live view shows this many of the last pairs kept.
SAMPLES_SHOWN = 8


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave it and its bytes."""

    filename: str
    stream: BinaryIO


def document_name(filename: str, index: int) -> str:
    """The name a document is known by in the rows: the client's file name without its path,
    shortened (`document-3` when it has none)."""
    base = posixpath.basename(filename.replace("\\", "/")).strip()
    base = "".join(ch for ch in base if ch.isprintable())
    return base[-NAME_CHARS:] if base else f"document-{index + 1}"


def _copy_bounded(stream: BinaryIO, path: Path, name: str, limits: DocumentLimits) -> int:
    """Copy the upload to `path`, refusing it once it passes `max_file_bytes`; its size."""
    size = 0
    with path.open("wb") as out:
        while block := stream.read(1 << 20):
            size += len(block)
            if size > limits.max_file_bytes:
                raise DataFileError(
                    f"{name!r} is larger than {size_text(limits.max_file_bytes)}, the most one "
                    "document may hold; split it, or upload its chapters as a ZIP."
                )
            out.write(block)
    if size == 0:
        raise DataFileError(f"{name!r} is empty.")
    with path.open("rb") as file:
        binary_kind(file.read(HEAD_BYTES))  # a PNG, a RAR, an old .doc: refused at once
    return size


def _check_spec(session: Session, user: User, settings: Settings, spec: SynthesisSpec) -> None:
    """The endpoint policy and the key secrets, of the generator and of a curation judge (the
    worker checks them again)."""
    check_generator(spec.generator, user, settings, session)
    if spec.curation.judge is not None:
        check_judges([spec.curation.judge], user, settings, session)


def synthesize(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    uploads: list[Upload],
    name: str | None,
    spec: SynthesisSpec,
    limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS,
) -> Dataset:
    """Store the documents beside a new raw dataset and start making it (in a
    `dataset_synthesis` job): `processing` until the job ends."""
    _check_spec(session, user, settings, spec)
    if not uploads:
        raise InvalidInput("Upload at least one document (PDF, DOCX, PPTX, HTML, Markdown, TXT).")
    if len(uploads) > limits.max_documents:
        raise InvalidInput(
            f"{len(uploads):,} files is more than the {limits.max_documents:,} documents one "
            "synthesis reads; upload fewer."
        )
    names = [document_name(upload.filename, i) for i, upload in enumerate(uploads)]
    dataset = Dataset(
        owner_id=user.id,
        name=(name or _default_name(names))[:NAME_CHARS],
        kind="raw",
        origin="synthesis",
        origin_ref=", ".join(names)[:1000],
        status="processing",
        config={},
    )
    session.add(dataset)
    session.flush()
    prefix = dataset_prefix(dataset.owner_id, dataset.id)
    documents: list[dict[str, Any]] = []
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            for index, (upload, document) in enumerate(zip(uploads, names, strict=True)):
                path = Path(tmp) / f"{index}{file_suffix(document)}"  # never the client's path
                size = _copy_bounded(upload.stream, path, document, limits)
                key = f"{prefix}/{DOCUMENTS}/{path.name}"
                store.put_file(key, path)
                documents.append({"name": document, "key": key, "bytes": size})
    except BaseException:
        store.delete(prefix)
        raise
    dataset.size_bytes = sum(d["bytes"] for d in documents)
    dataset.config = {
        CONFIG_KEY: {"documents": documents, "spec": spec.model_dump(mode="json")},
    }
    job = create_job(
        session, user, settings, DatasetSynthesisKind.name, DatasetJobSpec(dataset_id=dataset.id)
    )
    dataset.config = {CONFIG_KEY: {**dataset.config[CONFIG_KEY], "job_id": job.id}}
    return dataset


def _default_name(names: list[str]) -> str:
    first = names[0]
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"Synthesised from {first}{more}"


def synthesis_spec(dataset: Dataset) -> SynthesisSpec:
    """How a synthesised dataset is made; NotFound for a dataset that was not synthesised."""
    made = (dataset.config or {}).get(CONFIG_KEY)
    if dataset.origin != "synthesis" or not made:
        raise NotFound(f"The dataset {dataset.name!r} was not made by synthesis.")
    return SynthesisSpec.model_validate(made["spec"])


def synthesis_job(session: Session, user: User, dataset: Dataset) -> Job:
    synthesis_spec(dataset)
    job_id = (dataset.config or {})[CONFIG_KEY].get("job_id") or dataset.job_id
    job = JobRepository(session, user).get(job_id) if job_id else None
    if job is None:
        raise NotFound(f"The job that makes {dataset.name!r} was deleted.")
    return job


def resume(session: Session, settings: Settings, user: User, dataset_id: str) -> Dataset:
    """Queue a failed or cancelled synthesis again: the chunks it finished are kept, the others
    generated. The endpoint and key are checked again, as at the launch."""
    dataset = get_dataset(session, user, dataset_id)
    spec = synthesis_spec(dataset)
    job = synthesis_job(session, user, dataset)
    _check_spec(session, user, settings, spec)
    try:
        transition(session, job, JobStatus.QUEUED, error=None, result=None)
    except InvalidTransition as exc:
        raise Conflict(
            f"This synthesis is {exc.current}; only a failed or cancelled one can be resumed."
        ) from exc
    dataset.status, dataset.error, dataset.job_id = "processing", None, job.id
    return dataset


def progress(session: Session, user: User, dataset_id: str) -> SynthesisProgress:
    """How far a synthesis is: the job's status and progress, chunks done of all, pairs kept,
    dropped by reason, tokens, and the last pairs kept with their sources."""
    dataset = get_dataset(session, user, dataset_id)
    job = synthesis_job(session, user, dataset)
    repository = JobRepository(session, user)
    metric = repository.last_event(job, "metric")
    samples = repository.last_event(job, "samples")
    values: dict[str, Any] = dict(metric.data["values"]) if metric else {}
    dropped = {
        key.removeprefix("dropped/"): int(value or 0)
        for key, value in values.items()
        if key.startswith("dropped/")
    }
    return SynthesisProgress.model_validate(
        {
            "dataset_id": dataset.id,
            "dataset_status": dataset.status,
            "job_id": job.id,
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "error": job.error or dataset.error,
            "chunks_done": int(values.get("chunks_done") or 0),
            "chunks_total": int(values.get("chunks_total") or 0),
            "kept": int(values.get("kept") or 0),
            "dropped": dropped,
            "prompt_tokens": int(values.get("prompt_tokens") or 0),
            "completion_tokens": int(values.get("completion_tokens") or 0),
            "samples": list(samples.data["items"])[-SAMPLES_SHOWN:] if samples else [],
            "rows": dataset.rows,
        }
    )
