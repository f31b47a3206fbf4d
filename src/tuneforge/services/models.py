"""Fine-tuned models, always as their owner (or an admin)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Model, User
from tuneforge.errors import NotFound
from tuneforge.storage import ArtifactStore, artifact_prefix


class ModelRepository(OwnedRepository[Model]):
    model = Model


def list_models(
    session: Session, user: User, *, offset: int = 0, limit: int = 50
) -> tuple[list[Model], int]:
    return ModelRepository(session, user).page(
        select(Model), offset=offset, limit=limit, order=(Model.created_at.desc(), Model.id)
    )


def get_model(session: Session, user: User, model_id: str) -> Model:
    model = ModelRepository(session, user).get(model_id)
    if model is None:
        raise NotFound(f"No model {model_id}.")
    return model


def delete_model(session: Session, store: ArtifactStore, user: User, model_id: str) -> None:
    """Delete the model, its files and its exports (the run that made it stays, with its
    curves)."""
    model = get_model(session, user, model_id)
    store.delete(model.artifact_key)
    store.delete(artifact_prefix(model.owner_id, "exports", model.id))  # and its exports' files
    session.delete(model)
