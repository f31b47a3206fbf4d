"""Exports of fine-tuned models, as the web process sees them: a new export (or an identical
download that exists), the records per model, the choices with their sizes, and what a download
serves. Always as the model's owner; another user's model or export answers `NotFound`. Nothing
here imports torch: the files are made by `export` jobs (`jobs/kinds/export.py` checks them
before they are queued and settles their records)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.repositories.exports import (
    ExportRepository,
    export_of_job,
    identical_exports,
    shares_files,
)
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.tables import Export, Model, User
from tuneforge.errors import Conflict, InvalidInput, NotFound
from tuneforge.export import sizes
from tuneforge.export.spec import (
    FORMAT_HELP,
    GGUF_FORMATS,
    K_QUANTS,
    QUANTIZATION_HELP,
    VISION_HELP,
    ExportRequest,
    ExportSpec,
    gguf_refusal,
)
from tuneforge.export.zipstream import CHUNK_SIZE, ZipEntry, ZipLayout
from tuneforge.jobs import lifecycle
from tuneforge.jobs.status import JobStatus
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def _entry(settings: Settings, model: Model) -> CatalogEntry:
    entry = load_catalog(settings.catalog_file).get(model.base_model)
    if entry is None:
        raise InvalidInput(
            f"The base model {model.base_model!r} of {model.name!r} is no longer in the catalog."
        )
    return entry


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
    model = ModelRepository(session, user).require(model_id)
    if request.destination.kind == "download":
        identical = identical_exports(session, model.id, request.format, request.quantization)
        for export in identical:
            if export.destination.get("kind") != "download":
                continue
            if export.status in UNFINISHED or (
                export.status == JobStatus.SUCCEEDED.value
                and store.is_complete(export.artifact_key)
            ):
                return export, True
    spec = ExportSpec(model_id=model.id, **request.model_dump())
    job = lifecycle.create_job(session, user, settings, "export", spec)
    record = export_of_job(session, job.id)
    assert record is not None  # the export kind adds it when the job is queued
    return record, False


def list_exports(session: Session, user: User, model_id: str) -> list[Export]:
    model = ModelRepository(session, user).require(model_id)
    return ExportRepository(session, user).of_model(model)


def get_export(session: Session, user: User, export_id: str) -> Export:
    return ExportRepository(session, user).require(export_id)


def delete_export(session: Session, store: ArtifactStore, user: User, export_id: str) -> None:
    """Delete the record, and its files once no other export of the model shares them."""
    export = get_export(session, user, export_id)
    if export.status in UNFINISHED:
        raise Conflict(f"This export is {export.status}; cancel its job before deleting it.")
    if not shares_files(session, export):
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
    model = ModelRepository(session, user).require(model_id)
    entry = _entry(settings, model)
    llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    choices: list[dict[str, Any]] = []
    for export_format in ("adapter", "merged", "gguf", "ollama"):
        if export_format == "adapter" and model.kind != "adapter":
            continue
        quantizations: list[str | None] = [None]
        if export_format in GGUF_FORMATS:
            if gguf_refusal(entry) is not None:
                continue
            quantizations = [q for q in sizes.GGUF_BITS if llama_cpp or q not in K_QUANTS]
        for quantization in quantizations:
            choices.append(
                {
                    "format": export_format,
                    "quantization": quantization,
                    "bytes": sizes.estimate(entry, export_format, quantization, model.size_bytes),  # type: ignore[arg-type]
                    "help": FORMAT_HELP[export_format]
                    + (f" {VISION_HELP[export_format]}" if entry.vision else "")
                    + (f" {QUANTIZATION_HELP[quantization]}" if quantization else ""),
                }
            )
    return {
        "model_id": model.id,
        "base_dtype": sizes.base_dtype(entry),
        "vision": entry.vision is not None,
        "choices": choices,
    }
