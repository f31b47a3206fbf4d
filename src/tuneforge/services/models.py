"""Fine-tuned models, always as their owner (or an admin)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.tables import Model, User
from tuneforge.inference import loaders
from tuneforge.jobs.kinds.export import export_prefix
from tuneforge.storage import ArtifactStore


def list_models(
    session: Session, user: User, *, offset: int = 0, limit: int = 50
) -> tuple[list[Model], int]:
    return ModelRepository(session, user).newest(offset=offset, limit=limit)


def get_model(session: Session, user: User, model_id: str) -> Model:
    return ModelRepository(session, user).require(model_id)


def delete_model(
    session: Session, store: ArtifactStore, user: User, model_id: str, data_dir: Path
) -> None:
    """Delete the model, its files and its exports (the run that made it stays, with its
    curves), and this machine's copies of its files under `data_dir` (the inference cache's,
    its llama.cpp fast path's)."""
    model = get_model(session, user, model_id)
    store.delete(model.artifact_key)
    store.delete(export_prefix(model.owner_id, model.id))  # and its exports' files
    loaders.forget(model.artifact_key, data_dir)
    session.delete(model)
