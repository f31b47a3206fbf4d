"""Fine-tuned models, always as their owner (or an admin)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.tables import Model, User
from tuneforge.jobs.kinds.export import export_prefix
from tuneforge.storage import ArtifactStore


def list_models(
    session: Session, user: User, *, offset: int = 0, limit: int = 50
) -> tuple[list[Model], int]:
    return ModelRepository(session, user).newest(offset=offset, limit=limit)


def get_model(session: Session, user: User, model_id: str) -> Model:
    return ModelRepository(session, user).require(model_id)


def delete_model(session: Session, store: ArtifactStore, user: User, model_id: str) -> None:
    """Delete the model, its files and its exports (the run that made it stays, with its
    curves)."""
    model = get_model(session, user, model_id)
    store.delete(model.artifact_key)
    store.delete(export_prefix(model.owner_id, model.id))  # and its exports' files
    session.delete(model)
