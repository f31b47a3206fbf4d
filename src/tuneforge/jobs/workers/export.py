"""The `export` job: makes a fine-tuned model's files in the asked format, verifies them, stores
them under `{owner}/exports/{model}/{variant}/` and delivers them to the destination.

Files of an identical earlier export (same model, format and quantisation) are reused, not made
again; only the delivery runs. The export's record (`exports` table) follows the job through the
`export` kind, which copies the result (files, size, verification, location) onto it; when the
verification fails, its numbers are recorded here before the job fails.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.repositories.exports import export_of_job, identical_exports
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import Dataset, Export, Model, User
from tuneforge.errors import InvalidInput
from tuneforge.export.build import Plan, VerificationFailed, build, manifest
from tuneforge.export.card import CardFacts
from tuneforge.export.destinations import (
    Delivery,
    DownloadDestination,
    deliver,
    describe,
    required_secrets,
)
from tuneforge.export.sizes import base_dtype
from tuneforge.export.spec import ExportSpec
from tuneforge.hardware import usable_cores
from tuneforge.inference.loaders import fetch
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.kinds.export import ExportResult, check_request
from tuneforge.jobs.status import JobStatus
from tuneforge.models.loading import resolve
from tuneforge.models.tokenizer import ensure_gguf
from tuneforge.models.vision import vision_info
from tuneforge.storage import ArtifactStore

BUILD_SHARE = 0.9  # of the progress bar; the delivery takes the rest


def _prepare(
    ctx: JobContext, spec: ExportSpec
) -> tuple[Plan | None, Export | None, dict[str, str], str]:
    """Check the export again as its owner (the model, a secret may have gone); the build plan
    (None when an identical export's files are reused), that export, the destination's secrets
    and the files' key."""
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The export's owner no longer exists.")
        model = ModelRepository(session, owner).require(spec.model_id)
        check_request(session, owner, ctx.settings, model, spec)
        record = export_of_job(session, ctx.job_id)
        if record is None:
            raise InvalidInput("The export's record was deleted.")
        key = record.artifact_key
        secrets = secret_values(session, ctx.settings, owner.id, required_secrets(spec.destination))
        previous = _reusable(session, ctx.store, model, spec)
        if previous is not None:
            session.expunge(previous)
            return None, previous, secrets, previous.artifact_key
        dataset = session.get(Dataset, model.dataset_id) if model.dataset_id else None
        dataset_name = dataset.name if dataset is not None else None
        session.expunge(model)
    entry, base_dir = resolve(model.base_model, ctx.settings)
    facts = CardFacts(
        name=model.name,
        base_model=entry.id,
        base_name=entry.name,
        base_hub_id=entry.hub_id,
        license=entry.license,
        dataset=dataset_name,
        spec=model.spec,
        metrics=model.metrics,
        format=spec.format,
        quantization=spec.quantization,
        vision=vision_info(base_dir) is not None,
    )
    plan = Plan(
        format=spec.format,
        quantization=spec.quantization,
        model_kind=model.kind,
        source=fetch(model.artifact_key, ctx.settings),
        base_dir=base_dir,
        base_dtype=base_dtype(entry),
        vocab_gguf=ensure_gguf(ctx.settings.models_dir),
        facts=facts,
        threads=usable_cores(),
    )
    return plan, None, secrets, key


def _reusable(
    session: Session, store: ArtifactStore, model: Model, spec: ExportSpec
) -> Export | None:
    """A finished export whose files this one can reuse instead of making them again."""
    for export in identical_exports(session, model.id, spec.format, spec.quantization):
        if export.status == JobStatus.SUCCEEDED.value and store.is_complete(export.artifact_key):
            return export
    return None


def run(spec: ExportSpec, ctx: JobContext) -> ExportResult:
    try:
        return _run(spec, ctx)
    except VerificationFailed as exc:  # the numbers say what failed: keep them on the record
        with ctx.transaction() as session:
            record = export_of_job(session, ctx.job_id)
            if record is not None:
                record.verification = exc.verification
        raise


def _run(spec: ExportSpec, ctx: JobContext) -> ExportResult:
    ctx.progress(0.0, f"preparing the {spec.variant} export")
    plan, previous, secrets, key = _prepare(ctx, spec)

    progress = _progress(ctx, 0.0, BUILD_SHARE)
    with tempfile.TemporaryDirectory(prefix="tuneforge-export-") as work:
        out = Path(work) / "files"
        if plan is None:
            assert previous is not None
            ctx.log(f"reusing the files of the identical export {previous.id}")
            files, verification, reused = previous.files, previous.verification, previous.id
            if not isinstance(spec.destination, DownloadDestination):
                ctx.store.get_dir(key, out)
        else:
            out.mkdir()
            verification = build(plan, out, progress)
            ctx.log(f"verification: {verification}")
            files, reused = manifest(out), None
            ctx.progress(BUILD_SHARE, "storing the files")
            try:
                ctx.store.put_dir(key, out)
            except BaseException:
                # Never complete (a full disk, say): its files would only take space.
                ctx.store.delete(key)
                raise
        location = None
        if not isinstance(spec.destination, DownloadDestination):
            delivery = _deliver(ctx, spec, out, secrets)
            location = delivery.location
            ctx.log(f"delivered {len(delivery.files)} files to {location}")
    return ExportResult(
        artifact_key=key,
        files=files,
        size_bytes=sum(int(f["size"]) for f in files),
        verification=verification,
        location=location,
        reused_from=reused,
    )


def _progress(ctx: JobContext, start: float, share: float) -> Callable[[float, str], None]:
    """A progress callback for a phase that fills `share` of the bar from `start`: it checks
    for a cancel at every call and reports each new message or percent."""
    reported: dict[str, Any] = {}

    def progress(fraction: float, message: str) -> None:
        ctx.check_cancelled()
        if message != reported.get("message") or fraction - reported.get("at", 0.0) >= 0.01:
            reported.update(message=message, at=fraction)
            ctx.progress(start + share * fraction, message)

    return progress


def _deliver(ctx: JobContext, spec: ExportSpec, out: Path, secrets: dict[str, str]) -> Delivery:
    progress = _progress(ctx, BUILD_SHARE, 1 - BUILD_SHARE)
    where = f"delivering to {describe(spec.destination)}"
    return deliver(
        spec.destination,
        out,
        secrets,
        hub_endpoint=ctx.settings.hub_endpoint,
        progress=lambda done, total: progress(done / max(total, 1), where),
    )
