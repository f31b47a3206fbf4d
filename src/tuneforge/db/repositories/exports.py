"""Exports of fine-tuned models, scoped to their owner."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Export, Model

SUCCEEDED = "succeeded"


class ExportRepository(OwnedRepository[Export]):
    model = Export
    noun = "export"

    def of_model(self, model: Model) -> list[Export]:
        """The model's exports, newest first."""
        return list(
            self.session.scalars(
                select(Export).where(Export.model_id == model.id).order_by(Export.created_at.desc())
            )
        )


def identical_exports(
    session: Session, model_id: str, format: str, quantization: str | None
) -> list[Export]:
    """Exports of the model in the same format and quantisation, newest first."""
    return list(
        session.scalars(
            select(Export)
            .where(
                Export.model_id == model_id,
                Export.format == format,
                Export.quantization.is_(None)
                if quantization is None
                else Export.quantization == quantization,
            )
            .order_by(Export.created_at.desc())
        )
    )


def export_of_job(session: Session, job_id: str) -> Export | None:
    """The record an `export` job fills."""
    return session.scalars(select(Export).where(Export.job_id == job_id)).first()


def shares_files(session: Session, export: Export) -> bool:
    """Whether another export keeps its files where `export` does."""
    other = session.scalars(
        select(Export.id).where(Export.artifact_key == export.artifact_key, Export.id != export.id)
    ).first()
    return other is not None


def succeeded_exports(
    session: Session, model_ids: Sequence[str], formats: Sequence[str]
) -> list[Export]:
    """The succeeded exports of these models in these formats, newest first."""
    return list(
        session.scalars(
            select(Export)
            .where(
                Export.model_id.in_(model_ids),
                Export.status == SUCCEEDED,
                Export.format.in_(formats),
            )
            .order_by(Export.created_at.desc())
        )
    )
