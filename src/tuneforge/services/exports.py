"""Exports of fine-tuned models, as the web process sees them: checks before an `export` job is
queued, reuse of an identical export, the records per model, and what a download serves.
Always as the model's owner; another user's model or export answers `NotFound`. Nothing here
imports torch: the files are made by `export` jobs (`jobs/workers/export.py`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Export, Job, Model, User, utcnow
from tuneforge.export import sizes
from tuneforge.export.destinations import DirectoryDestination, S3Destination, required_secrets
from tuneforge.export.spec import (
    FORMAT_HELP,
    GGUF_FORMATS,
    K_QUANTS,
    QUANTIZATION_HELP,
    ExportRequest,
    ExportSpec,
)
from tuneforge.export.zipstream import CHUNK_SIZE, ZipEntry, ZipLayout
from tuneforge.jobs.status import JobStatus
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.services.endpoints import check_endpoint
from tuneforge.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tuneforge.services.models import get_model
from tuneforge.services.secrets import has_secret
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore, artifact_prefix

EXPORT_KIND = "export"
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class ExportRepository(OwnedRepository[Export]):
    model = Export


def export_prefix(owner_id: str, model_id: str) -> str:
    """Where every export of a model keeps its files (deleted with the model)."""
    return artifact_prefix(owner_id, "exports", model_id)


def _entry(settings: Settings, model: Model) -> CatalogEntry:
    entry = load_catalog(settings.catalog_file).get(model.base_model)
    if entry is None:
        raise InvalidInput(
            f"The base model {model.base_model!r} of {model.name!r} is no longer in the catalog."
        )
    return entry


def check_request(
    session: Session, user: User, settings: Settings, model: Model, request: ExportRequest
) -> None:
    """Refuse an export that cannot work, before it is queued, saying why."""
    if request.format == "adapter" and model.kind != "adapter":
        raise InvalidInput(
            f"{model.name!r} is a full fine-tune: it has no adapter. Export it as merged (its "
            "weights), gguf or ollama."
        )
    if request.format in GGUF_FORMATS:
        entry = _entry(settings, model)
        if entry.modality != "text":
            raise InvalidInput(
                f"GGUF export of vision models ({entry.name}) is not supported yet: export it "
                "as merged or adapter."
            )
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
        if not has_secret(session, user, name):
            raise InvalidInput(
                f"This destination needs the secret {name}: set it under Settings, Secrets (or "
                f"with `tuneforge secrets set {name}`)."
            )


def _identical(session: Session, model: Model, request: ExportRequest) -> list[Export]:
    """Exports of `model` in the same format and quantisation, newest first."""
    exports = list(
        session.scalars(
            select(Export)
            .where(
                Export.model_id == model.id,
                Export.format == request.format,
                Export.quantization.is_(None)
                if request.quantization is None
                else Export.quantization == request.quantization,
            )
            .order_by(Export.created_at.desc())
        )
    )
    for export in exports:
        reconcile(session, export)
    return exports


def reusable(
    session: Session, store: ArtifactStore, model: Model, request: ExportRequest
) -> Export | None:
    """A finished export whose files this one can reuse instead of making them again."""
    for export in _identical(session, model, request):
        if export.status == JobStatus.SUCCEEDED.value and store.is_complete(export.artifact_key):
            return export
    return None


def check_export(session: Session, user: User, settings: Settings, spec: ExportSpec) -> None:
    """Refuse an `export` job that cannot work, before it is queued."""
    check_request(session, user, settings, get_model(session, user, spec.model_id), spec)


def add_record(session: Session, user: User, job: Job, spec: ExportSpec) -> Export:
    """The record the newly queued `export` job `job` fills."""
    model = get_model(session, user, spec.model_id)
    export = Export(
        owner_id=model.owner_id,
        model_id=model.id,
        job_id=job.id,
        format=spec.format,
        quantization=spec.quantization,
        destination=spec.destination.model_dump(mode="json"),
        status=JobStatus.QUEUED.value,
        artifact_key=f"{export_prefix(model.owner_id, model.id)}/{spec.variant}",
    )
    session.add(export)
    session.flush()
    return export


def create_export(
    session: Session,
    store: ArtifactStore,
    user: User,
    settings: Settings,
    model_id: str,
    request: ExportRequest,
) -> tuple[Export, bool]:
    """Export a model: an identical download that exists or is under way is returned as it is
    (`True`); otherwise an `export` job is queued (which reuses identical files if any)."""
    model = get_model(session, user, model_id)
    if request.destination.kind == "download":
        for export in _identical(session, model, request):
            if export.destination.get("kind") != "download":
                continue
            if export.status in UNFINISHED or (
                export.status == JobStatus.SUCCEEDED.value
                and store.is_complete(export.artifact_key)
            ):
                return export, True
    from tuneforge.schemas.jobs import ExportJobCreate
    from tuneforge.services.jobs import create_job  # it queues every kind of job

    spec = ExportSpec(model_id=model.id, **request.model_dump())
    job = create_job(session, user, ExportJobCreate(kind="export", spec=spec), settings)
    return _by_job(session, job.id), False


def _by_job(session: Session, job_id: str) -> Export:
    return session.scalars(select(Export).where(Export.job_id == job_id)).one()


def export_of_job(session: Session, job_id: str) -> Export:
    """The record an `export` job fills (for its worker)."""
    return _by_job(session, job_id)


def served_ggufs(session: Session, model_ids: Sequence[str]) -> dict[str, str]:
    """For each of the models that has one, its newest succeeded (so verified) GGUF export's
    file, as `artifact_key/file name`: the file llama.cpp serves the model from."""
    exports = session.scalars(
        select(Export)
        .where(
            Export.model_id.in_(model_ids),
            Export.status == JobStatus.SUCCEEDED.value,
            Export.format.in_(GGUF_FORMATS),
        )
        .order_by(Export.created_at.desc())
    )
    served: dict[str, str] = {}
    for export in exports:
        name = next((f["name"] for f in export.files if f["name"].endswith(".gguf")), None)
        if name is not None:
            served.setdefault(export.model_id, f"{export.artifact_key}/{name}")
    return served


def list_exports(session: Session, user: User, model_id: str) -> list[Export]:
    model = get_model(session, user, model_id)
    exports = list(
        session.scalars(
            select(Export).where(Export.model_id == model.id).order_by(Export.created_at.desc())
        )
    )
    for export in exports:
        reconcile(session, export)
    return exports


def get_export(session: Session, user: User, export_id: str) -> Export:
    export = ExportRepository(session, user).get(export_id)
    if export is None:
        raise NotFound(f"No export {export_id}.")
    reconcile(session, export)
    return export


def reconcile(session: Session, export: Export) -> None:
    """An unfinished export whose job ended without finishing it (a killed worker, a cancel, a
    deleted job) takes the job's outcome."""
    if export.status not in UNFINISHED:
        return
    job = session.get(Job, export.job_id) if export.job_id else None
    if job is None:
        export.status, export.error = JobStatus.FAILED.value, "Its export job was deleted."
    elif job.status in (JobStatus.FAILED.value, JobStatus.CANCELLED.value):
        export.status, export.error = job.status, job.error
    elif job.status == JobStatus.RUNNING.value:
        export.status = job.status
    else:
        return
    if export.status != JobStatus.RUNNING.value:
        export.finished_at = utcnow()


def delete_export(session: Session, store: ArtifactStore, user: User, export_id: str) -> None:
    """Delete the record, and its files once no other export of the model shares them."""
    export = get_export(session, user, export_id)
    if export.status in UNFINISHED:
        raise Conflict(f"This export is {export.status}; cancel its job before deleting it.")
    shared = session.scalars(
        select(Export.id).where(Export.artifact_key == export.artifact_key, Export.id != export.id)
    ).first()
    if shared is None:
        store.delete(export.artifact_key)
    session.delete(export)


@dataclass(frozen=True)
class Download:
    """What a download serves: one stored file (`key`) or a ZIP of all of them (`layout`)."""

    filename: str
    size: int
    key: str | None = None
    layout: ZipLayout | None = None
    prefix: str = ""

    def chunks(self, store: ArtifactStore, start: int, end: int) -> Iterator[bytes]:
        """The bytes [start, end) of the download."""
        if self.layout is not None:
            return self.layout.chunks(lambda name: store.open(f"{self.prefix}/{name}"), start, end)
        assert self.key is not None
        return _file_range(store, self.key, start, end)


def _file_range(store: ArtifactStore, key: str, start: int, end: int) -> Iterator[bytes]:
    with store.open(key) as f:
        f.seek(start)
        while start < end:
            data = f.read(min(CHUNK_SIZE, end - start))
            if not data:
                return
            start += len(data)
            yield data


def download(
    session: Session, store: ArtifactStore, user: User, export_id: str, file: str | None
) -> Download:
    """The export's file `file`, or every file as a ZIP when `file` is None."""
    export = get_export(session, user, export_id)
    if export.status != JobStatus.SUCCEEDED.value:
        raise Conflict(
            f"This export is {export.status}; its files can be downloaded once it has succeeded."
        )
    if not store.is_complete(export.artifact_key):
        raise NotFound("The files of this export are missing from the artifact store.")
    model = session.get(Model, export.model_id)
    stem = f"{(model.name if model else export.model_id)}-{export.format}" + (
        f"-{export.quantization}" if export.quantization else ""
    )
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)
    if file is not None:
        found = next((f for f in export.files if f["name"] == file), None)
        if found is None:
            raise NotFound(f"This export has no file {file!r}.")
        return Download(
            file.rsplit("/", 1)[-1], int(found["size"]), key=f"{export.artifact_key}/{file}"
        )
    layout = ZipLayout([ZipEntry(f["name"], int(f["size"]), int(f["crc32"])) for f in export.files])
    return Download(f"{stem}.zip", layout.size, layout=layout, prefix=export.artifact_key)


def estimates(session: Session, user: User, settings: Settings, model_id: str) -> dict[str, Any]:
    """Every export choice for the model with its estimated size and help text."""
    model = get_model(session, user, model_id)
    entry = _entry(settings, model)
    llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    choices: list[dict[str, Any]] = []
    for export_format in ("adapter", "merged", "gguf", "ollama"):
        if export_format == "adapter" and model.kind != "adapter":
            continue
        quantizations: list[str | None] = [None]
        if export_format in GGUF_FORMATS:
            if entry.modality != "text":
                continue
            quantizations = [q for q in sizes.GGUF_BITS if llama_cpp or q not in K_QUANTS]
        for quantization in quantizations:
            choices.append(
                {
                    "format": export_format,
                    "quantization": quantization,
                    "bytes": sizes.estimate(entry, export_format, quantization, model.size_bytes),  # type: ignore[arg-type]
                    "help": FORMAT_HELP[export_format]
                    + (f" {QUANTIZATION_HELP[quantization]}" if quantization else ""),
                }
            )
    return {"model_id": model.id, "base_dtype": sizes.base_dtype(entry), "choices": choices}
