"""How far a user's models have gone along the path: which of them have an export."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.repositories.exports import ExportRepository
from tuneforge.db.repositories.owned import Principal
from tuneforge.db.tables import Export

FINISHED = ("succeeded",)


def exported_models(session: Session, principal: Principal, model_ids: Collection[str]) -> set[str]:
    """The ids among `model_ids` with a finished export."""
    if not model_ids:
        return set()
    statement = select(Export.model_id).where(
        Export.model_id.in_(sorted(set(model_ids))), Export.status.in_(FINISHED)
    )
    return set(session.scalars(ExportRepository(session, principal).scoped(statement)))
