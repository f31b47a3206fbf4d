"""The `export` job: makes a fine-tuned model's files in the asked format, verifies them, stores
them under `{owner}/exports/{model}/{variant}/` and delivers them to the destination.

Files of an identical earlier export (same model, format and quantisation) are reused, not made
again; only the delivery runs. The export's record (`exports` table) follows the job: running,
then succeeded with its files, size, verification and location, or failed with the reason (and
the verification numbers when that is what failed).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.db.tables import Dataset, Export, User, utcnow
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
from tuneforge.inference.loaders import fetch
from tuneforge.errors import JobCancelled
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.status import JobStatus
from tuneforge.models.loading import resolve
from tuneforge.models.tokenizer import ensure_gguf
from tuneforge.errors import InvalidInput
from tuneforge.services.exports import check_request, export_of_job, reusable
from tuneforge.services.models import get_model
from tuneforge.db.repositories.secrets import secret_values

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
        model = get_model(session, owner, spec.model_id)
        check_request(session, owner, ctx.settings, model, spec)
        record = export_of_job(session, ctx.job_id)
        record.status, record.error = JobStatus.RUNNING.value, None
        key = record.artifact_key
        secrets = secret_values(session, ctx.settings, owner.id, required_secrets(spec.destination))
        previous = reusable(session, ctx.store, model, spec)
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
        threads=max(1, len(os.sched_getaffinity(0))),
    )
    return plan, None, secrets, key


def _record(ctx: JobContext, **fields: Any) -> None:
    with ctx.transaction() as session:
        record = export_of_job(session, ctx.job_id)
        for name, value in fields.items():
            setattr(record, name, value)


def run(spec: ExportSpec, ctx: JobContext) -> dict[str, Any]:
    try:
        return _run(spec, ctx)
    except VerificationFailed as exc:
        _record(
            ctx,
            status=JobStatus.FAILED.value,
            error=str(exc),
            verification=exc.verification,
            finished_at=utcnow(),
        )
        raise
    except JobCancelled:
        _record(ctx, status=JobStatus.CANCELLED.value, error="cancelled", finished_at=utcnow())
        raise
    except Exception as exc:
        _record(ctx, status=JobStatus.FAILED.value, error=str(exc), finished_at=utcnow())
        raise


def _run(spec: ExportSpec, ctx: JobContext) -> dict[str, Any]:
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
            ctx.store.put_dir(key, out)
        location = None
        if not isinstance(spec.destination, DownloadDestination):
            delivery = _deliver(ctx, spec, out, secrets)
            location = delivery.location
            ctx.log(f"delivered {len(delivery.files)} files to {location}")
    size = sum(int(f["size"]) for f in files)
    _record(
        ctx,
        status=JobStatus.SUCCEEDED.value,
        files=files,
        size_bytes=size,
        verification=verification,
        location=location,
        reused_from=reused,
        finished_at=utcnow(),
    )
    return {"artifact_key": key, "size_bytes": size, "location": location, "reused_from": reused}


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
