"""The `export` kind: a fine-tuned model's files in a format (adapter, merged, GGUF, Ollama),
verified, delivered to a destination. Each job fills one `Export` record, added when the job
is queued, whose status follows the job's: this kind settles it at every move, a killed worker
or a deleted job included."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tuneforge.db.repositories.exports import export_of_job
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.repositories.secrets import has_secret
from tuneforge.db.tables import Export, Job, Model, User, utcnow
from tuneforge.errors import InvalidInput, PermissionDenied
from tuneforge.export.destinations import DirectoryDestination, S3Destination, required_secrets
from tuneforge.export.spec import (
    GGUF_FORMATS,
    K_QUANTS,
    ExportRequest,
    ExportSpec,
    gguf_refusal,
)
from tuneforge.jobs.endpoints import check_endpoint
from tuneforge.jobs.inputs import catalog_entry
from tuneforge.jobs.kind import JobKind, register
from tuneforge.jobs.status import TERMINAL, JobStatus
from tuneforge.settings import Settings
from tuneforge.storage import artifact_prefix


class ExportResult(BaseModel):
    artifact_key: str = Field(description="Where the export's files are stored.")
    files: list[dict[str, Any]] = Field(description="Each file's name, size and CRC-32.")
    size_bytes: int = Field(description="The files' total size.")
    verification: dict[str, Any] | None = Field(description="How the files were checked.")
    location: str | None = Field(description="Where they were delivered (not for downloads).")
    reused_from: str | None = Field(description="The identical export whose files were reused.")


def export_prefix(owner_id: str, model_id: str) -> str:
    """Where every export of a model keeps its files (deleted with the model)."""
    return artifact_prefix(owner_id, "exports", model_id)


def check_request(
    session: Session, user: User, settings: Settings, model: Model, request: ExportRequest
) -> None:
    """Refuse an export that cannot work, saying why."""
    if request.format == "adapter" and model.kind != "adapter":
        raise InvalidInput(
            f"{model.name!r} is a full fine-tune: it has no adapter. Export it as merged (its "
            "weights), gguf or ollama."
        )
    if request.format in GGUF_FORMATS:
        refusal = gguf_refusal(catalog_entry(settings, model.base_model))
        if refusal:
            raise InvalidInput(refusal)
        if request.quantization in K_QUANTS and importlib.util.find_spec("llama_cpp") is None:
            raise InvalidInput(
                f"{request.quantization} is made by llama.cpp's quantiser, which is not "
                "installed on this server (pip install 'tuneforge[gguf]'); choose q8_0, q5_0 "
                "or q4_0, which TuneForge writes itself."
            )
    destination = request.destination
    if isinstance(destination, DirectoryDestination):
        if not user.is_admin:
            raise PermissionDenied("Only administrators can export into a server directory.")
        target = Path(destination.path).resolve()
        roots = [root.expanduser().resolve() for root in settings.export_directories]
        if not any(target == root or root in target.parents for root in roots):
            allowed = ", ".join(str(r) for r in roots) or "none (set export_directories)"
            raise InvalidInput(f"{target} is not inside an export directory; allowed: {allowed}.")
    if isinstance(destination, S3Destination) and destination.endpoint_url is not None:
        check_endpoint(destination.endpoint_url, user, settings, "The S3 endpoint_url")
    for name in required_secrets(destination):
        if not has_secret(session, user.id, name):
            raise InvalidInput(
                f"This destination needs the secret {name}: set it under Settings, Secrets (or "
                f"with `tuneforge secrets set {name}`)."
            )


class ExportKind(JobKind[ExportSpec, ExportResult]):
    name = "export"
    description = "Exports a fine-tuned model (adapter, merged, GGUF, Ollama) to a destination."
    worker = "tuneforge.jobs.workers.export:run"
    spec = ExportSpec
    result = ExportResult

    def check(self, session: Session, user: User, settings: Settings, spec: ExportSpec) -> None:
        model = ModelRepository(session, user).require(spec.model_id)
        check_request(session, user, settings, model, spec)

    def on_queued(self, session: Session, user: User, job: Job, spec: ExportSpec) -> None:
        model = ModelRepository(session, user).require(spec.model_id)
        session.add(
            Export(
                owner_id=model.owner_id,
                model_id=model.id,
                job_id=job.id,
                format=spec.format,
                quantization=spec.quantization,
                destination=spec.destination.model_dump(mode="json"),
                status=job.status,
                artifact_key=f"{export_prefix(model.owner_id, model.id)}/{spec.variant}",
            )
        )
        session.flush()

    def settle(self, session: Session, job: Job) -> None:
        record = export_of_job(session, job.id)
        if record is None or job.status == JobStatus.CANCELLING:  # still running until it stops
            return
        record.status = job.status
        if job.status == JobStatus.SUCCEEDED and job.result:
            result = ExportResult.model_validate(job.result)
            record.files, record.size_bytes = result.files, result.size_bytes
            record.verification, record.location = result.verification, result.location
            record.reused_from, record.error = result.reused_from, None
        elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            record.error = job.error
        elif job.status == JobStatus.RUNNING:
            record.error = None
        record.finished_at = utcnow() if job.status in TERMINAL else None


register(ExportKind())
